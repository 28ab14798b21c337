"""A counting server on loopback, with a gate, for the kill -9 harnesses.

Every POST is an action's side effect: the server counts it per ``Idempotency-Key`` at the
moment it lets it through (the effect "happens" then), and answers ``{"n": <last path
segment>}``. The gate answers only as many requests as the test allows, so a kill lands at a
chosen point of progress (after the n-th answer, after a commit), never after a time.

A request whose client died waiting (its process was killed) is never let through and never
counted: while it waits, the server watches its socket, and a peer that has closed the
connection gives up its place. Without that watch, a request the killed process had sent
but the server had not yet read reaches the gate *after* the kill and takes the token meant
for the next process, which then waits forever at the gate (the "stall after a kill right
after a commit": a harness race, not the engine's).
"""
from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WATCH = 0.02  # seconds between looks at a waiting request's socket


def _peer_gone(sock: socket.socket) -> bool:
    """True once the client closed its end (killed): EOF or a reset, without consuming data."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


class Gate:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.tokens = 0
        self.answered = 0
        self.open = False

    def allow(self, n: int) -> None:
        with self.cond:
            self.tokens += n
            self.cond.notify_all()

    def pass_all(self) -> None:
        with self.cond:
            self.open = True
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.open = False
            self.tokens = 0

    def killed(self) -> None:
        """The process was killed: tokens it did not use are not the next process's."""
        with self.cond:
            self.tokens = 0

    def wait(self, sock: socket.socket, on_pass: Any) -> bool:
        """Block until this request may pass (True; ``on_pass`` runs under the gate's lock, so
        the count and ``answered`` move together) or its client is gone (False)."""
        with self.cond:
            while True:
                if _peer_gone(sock):
                    return False
                if self.open or self.tokens:
                    if not self.open:
                        self.tokens -= 1
                    on_pass()
                    self.answered += 1
                    self.cond.notify_all()
                    return True
                self.cond.wait(WATCH)

    def wait_answered(self, more_than: int, timeout: float = 30.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.answered > more_than, timeout)


class CountingServer:
    """``with CountingServer() as server:`` ... ``server.url``, ``server.gate``, ``server.counts()``."""

    def __init__(self) -> None:
        self.gate = Gate()
        self._counts: dict[str | None, int] = {}
        self._server: ThreadingHTTPServer | None = None

    def counts(self) -> dict[str | None, int]:
        with self.gate.cond:
            return dict(self._counts)

    def clear(self) -> None:
        with self.gate.cond:
            self._counts.clear()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "CountingServer":
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                key = self.headers.get("Idempotency-Key")

                def count() -> None:
                    outer._counts[key] = outer._counts.get(key, 0) + 1
                if not outer.gate.wait(self.connection, count):
                    self.close_connection = True
                    return
                last = self.path.rsplit("/", 1)[-1]
                body = json.dumps({"n": int(last) if last.isdigit() else 0}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a killed client: a reset or a broken pipe is expected, not news

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.gate.pass_all()
        self._server.shutdown()
        self._server.server_close()
