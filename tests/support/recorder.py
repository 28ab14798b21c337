"""A real HTTP server on 127.0.0.1 that answers like a vendor API and records what it got.

    with Recorder() as api:
        api.route("POST", r"/2010-04-01/Accounts/(\\w+)/Messages.json", status=201,
                  json={"sid": "SM123", "status": "queued"})
        ... point the SDK at api.url ...
        req = api.requests[0]
        assert req.form()["To"] == ["+15551234567"]

A route answers with a fixed status/json/body/headers, or with ``handler(req)`` returning
``(status, headers, body)``; ``times=N`` makes a route answer only its first N matches
(so a 500 followed by a 200 is two routes). Unmatched requests get 404 and are recorded.
"""
from __future__ import annotations

import json as _json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

POLL_INTERVAL = 0.01  # seconds between the server's checks for shutdown()


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return _json.loads(self.body or b"null")

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode(), keep_blank_values=True)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class _Route:
    method: str
    pattern: re.Pattern
    status: int = 200
    headers: dict = field(default_factory=dict)
    body: bytes | None = None
    handler: Callable[[Recorded], tuple[int, dict, bytes]] | None = None
    times: int | None = None


class Recorder:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._routes: list[_Route] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- routes ----------------------------------------------------------------------
    def route(self, method: str, path: str, *, status: int = 200, json: Any = None,
              body: bytes | str | None = None, headers: dict | None = None,
              handler: Callable[[Recorded], tuple[int, dict, bytes]] | None = None,
              times: int | None = None) -> None:
        hdrs = dict(headers or {})
        if json is not None:
            body = _json.dumps(json)
            hdrs.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        with self._lock:
            self._routes.append(_Route(method.upper(), re.compile(path + r"\Z"), status, hdrs,
                                       body, handler, times))

    def _answer(self, req: Recorded) -> tuple[int, dict, bytes]:
        with self._lock:
            self.requests.append(req)
            for r in self._routes:
                if r.method == req.method and r.pattern.match(req.path) and r.times != 0:
                    if r.times is not None:
                        r.times -= 1
                    break
            else:
                return 404, {"Content-Type": "application/json"}, b'{"error": "no route"}'
        if r.handler:
            return r.handler(req)
        return r.status, r.headers, r.body or b""

    # -- lifecycle -------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self, port: int = 0) -> "Recorder":
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Recorded(self.command, parts.path, parse_qs(parts.query, keep_blank_values=True),
                               {k.lower(): v for k, v in self.headers.items()}, body)
                status, headers, payload = recorder._answer(req)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.request_queue_size = 128
        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        # socketserver checks for shutdown() once per poll_interval (0.5 s by default), which
        # every test paid at teardown; 10 ms polls cost nothing and stop at once.
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> "Recorder":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
