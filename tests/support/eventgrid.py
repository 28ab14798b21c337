"""A loopback Azure Event Grid topic: ``POST /api/events?api-version=...`` as the service documents
it, on a real HTTP server (tests/support/recorder.py) that records every request.

- The key (``aeg-sas-key``) or a SAS token (``aeg-sas-token``) must match, else 401 with the
  service's error body ``{"error": {"code": "Unauthorized", "message": ...}}``.
- A body over 1 MB gets 413 (``RequestEntityTooLarge``); ``fail_next(status, times)`` answers
  the next requests with that status (429 / 503 for retry tests).
- ``events`` is every event accepted, in order, as sent (JSON).
"""
from __future__ import annotations

import json
from typing import Any

from .recorder import Recorded, Recorder

MAX_BODY = 1_048_576


class EventGridTopic:
    def __init__(self, key: str | None = None, sas: str | None = None):
        self.key, self.sas = key, sas
        self.api = Recorder()
        self.events: list[dict] = []
        self._fail: list[int] = []
        self.api.route("POST", r"/api/events", handler=self._publish)

    @property
    def url(self) -> str:
        return self.api.url

    @property
    def endpoint(self) -> str:
        return self.api.url + "/api/events"

    def fail_next(self, status: int, times: int = 1) -> None:
        self._fail += [status] * times

    @property
    def requests(self) -> list[Recorded]:
        return [r for r in self.api.requests if r.method == "POST"]

    @staticmethod
    def _error(status: int, code: str, message: str) -> tuple[int, dict, bytes]:
        return status, {"Content-Type": "application/json"}, json.dumps(
            {"error": {"code": code, "message": message}}).encode()

    def _publish(self, req: Recorded) -> tuple[int, dict, bytes]:
        if self._fail:
            status = self._fail.pop(0)
            code = {429: "TooManyRequests", 413: "RequestEntityTooLarge", 401: "Unauthorized"}.get(status, "Busy")
            return self._error(status, code, "try later")
        if not ((self.key and req.header("aeg-sas-key") == self.key)
                or (self.sas and req.header("aeg-sas-token") == self.sas)):
            return self._error(401, "Unauthorized", "The request authorization key is not authorized")
        if len(req.body) > MAX_BODY:
            return self._error(413, "RequestEntityTooLarge", "The maximum size (1536000) has been exceeded.")
        body: Any = json.loads(req.body)
        self.events += body if isinstance(body, list) else [body]
        return 200, {}, b""

    def __enter__(self) -> "EventGridTopic":
        self.api.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.api.stop()
