"""fakesnow in server mode on 127.0.0.1, behind a thin recorder: what the real Snowflake
connector sent (SQL text, bindings, login data), and, for durable-polling tests, queries the
monitoring endpoint reports RUNNING for their first N status checks (fakesnow runs every
statement at once, so a query is never seen running otherwise).

    fake = FakeSnowflake().start()
    fake.hold(query_id, polls=3)          # the next 3 status checks say RUNNING
    fake.sql()                            # every statement text the connector sent
    fake.refuse_logins("bad password {}") # logins fail with this message (a hostile server
                                          # echoing what it got: {} is the password sent)
    fake.stall("INSERT")                  # a query request whose SQL holds the text is run,
                                          # but its answer is held back (a kill -9 before the
                                          # query id reaches the client); unstall() lets it go
    fake.stop()
"""
from __future__ import annotations

import gzip
import json
import socket
import threading
from typing import Any

from tests.support.waiting import wait_until


class FakeSnowflake:
    def __init__(self) -> None:
        self.requests: list[dict] = []  # {"path", "body"} of every POST with a JSON body
        self.status_checks: dict[str, int] = {}
        self._held: dict[str, int] = {}
        self.submitted: dict[str, str] = {}  # SQL text -> query id, of async queries while holding
        self._hold_next: int = 0
        self.login_refusal: str | None = None
        self._stall: str | None = None
        self._unstalled = threading.Event()
        self.stalled = threading.Event()  # set once a stalled request has been run
        self._lock = threading.Lock()
        self._server: Any = None
        self.port = 0

    # -- what the tests steer and read ----------------------------------------------------
    def hold(self, query_id: str, polls: int) -> None:
        with self._lock:
            self._held[query_id] = polls

    def hold_next(self, polls: int | None) -> None:
        """Every query submitted from now on reports RUNNING for ``polls`` checks (None: forever)."""
        with self._lock:
            self._hold_next = 10 ** 9 if polls is None else polls

    def release(self, query_id: str | None = None) -> None:
        with self._lock:
            if query_id is None:
                self._held.clear()
                self._hold_next = 0
            else:
                self._held.pop(query_id, None)

    def refuse_logins(self, message: str | None) -> None:
        self.login_refusal = message

    def stall(self, text: str | None) -> None:
        self._stall = text
        self.stalled.clear()
        self._unstalled.clear()

    def unstall(self) -> None:
        self._stall = None
        self._unstalled.set()

    def sql(self) -> list[str]:
        return [r["body"].get("sqlText") for r in list(self.requests) if r["path"].endswith("query-request")]

    def query(self, text: str) -> list[dict]:
        """Query requests whose SQL contains ``text``."""
        return [r["body"] for r in list(self.requests)
                if r["path"].endswith("query-request") and text in (r["body"].get("sqlText") or "")]

    def logins(self) -> list[dict]:
        return [r["body"] for r in list(self.requests) if r["path"].endswith("login-request")]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- the ASGI wrapper ---------------------------------------------------------------------
    def _app(self, inner: Any) -> Any:
        async def app(scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return await inner(scope, receive, send)
            path = scope["path"]
            if path.startswith("/monitoring/queries/"):
                qid = path.rsplit("/", 1)[1]
                with self._lock:
                    self.status_checks[qid] = self.status_checks.get(qid, 0) + 1
                    left = self._held.get(qid, 0)
                    if left > 0:
                        self._held[qid] = left - 1
                if left > 0:
                    body = json.dumps({"data": {"queries": [{"id": qid, "status": "RUNNING"}]},
                                       "success": True}).encode()
                    await send({"type": "http.response.start", "status": 200,
                                "headers": [(b"content-type", b"application/json")]})
                    await send({"type": "http.response.body", "body": body})
                    return
                return await inner(scope, receive, send)
            chunks, more = [], True
            while more:
                message = await receive()
                chunks.append(message.get("body", b""))
                more = message.get("more_body", False)
            raw = b"".join(chunks)
            headers = dict(scope.get("headers") or [])
            try:
                text = gzip.decompress(raw) if headers.get(b"content-encoding") == b"gzip" else raw
                body = json.loads(text) if text else {}
            except (OSError, ValueError):
                body = {}
            with self._lock:
                self.requests.append({"path": path, "body": body})
            if path.endswith("login-request") and self.login_refusal is not None:
                sent = (body.get("data") or {}).get("PASSWORD") or ""
                answer = json.dumps({"data": {"nextAction": "RETRY_LOGIN", "authnMethod": "USERNAME_PASSWORD"},
                                     "code": "390100", "success": False,
                                     "message": self.login_refusal.replace("{}", sent)}).encode()
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": answer})
                return
            replayed = False

            async def replay() -> dict:
                nonlocal replayed
                if replayed:
                    return {"type": "http.disconnect"}
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}

            stall = self._stall
            if path.endswith("query-request") and stall and stall in (body.get("sqlText") or ""):
                held: list[dict] = []

                async def hold(message: dict) -> None:
                    held.append(message)

                await inner(scope, replay, hold)  # the statement runs; its answer waits
                self.stalled.set()
                import anyio
                await anyio.to_thread.run_sync(self._unstalled.wait, 60)
                for message in held:
                    await send(message)
                return
            if not path.endswith("query-request") or not self._hold_next:
                return await inner(scope, replay, send)
            sent: list[bytes] = []

            async def capture(message: dict) -> None:
                if message["type"] == "http.response.body":
                    sent.append(message.get("body", b""))
                await send(message)

            await inner(scope, replay, capture)
            try:
                qid = json.loads(b"".join(sent))["data"]["queryId"]
            except (ValueError, KeyError, TypeError):
                return
            if body.get("asyncExec"):
                with self._lock:
                    self._held[qid] = self._hold_next
                    self.submitted[body.get("sqlText")] = qid

        return app

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "FakeSnowflake":
        import logging

        import fakesnow.server
        import uvicorn

        logging.getLogger("fakesnow.server").setLevel(logging.WARNING)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(self._app(fakesnow.server.app), host="127.0.0.1", port=self.port,
                                log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        threading.Thread(target=self._server.run, name="fakesnow", daemon=True).start()
        wait_until(lambda: self._server.started, "fakesnow did not start")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
