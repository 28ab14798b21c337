"""Request-head limits, enforced by the app itself (an ASGI middleware in front of every route).

uvicorn's HTTP parsers bound the head differently (h11 at 16 KiB of incomplete head,
httptools not at all: an 8 MB header reaches the app), so the app checks what it got:
more than ``max_headers`` headers, or more than ``max_header_bytes`` of names and values
(each counted as ``name: value\\r\\n``), is answered ``431 Request Header Fields Too Large``
with one log line, before any route runs. Whatever a run stores of its request's headers
is therefore bounded by the same numbers, in process and behind a real server alike.
"""
from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger("flowrun.listener")

MAX_HEADERS = 100
MAX_HEADER_BYTES = 16_384


def head_problem(headers: list[tuple[bytes, bytes]], max_headers: int, max_bytes: int) -> str | None:
    """Why this request head is too large, or None."""
    if len(headers) > max_headers:
        return f"the request has {len(headers)} headers; the limit is {max_headers}"
    size = 0
    for name, value in headers:
        size += len(name) + len(value) + 4
        if size > max_bytes:
            return f"the request headers exceed {max_bytes} bytes"
    return None


class HeaderLimits:
    def __init__(self, app: Any, max_headers: int = MAX_HEADERS, max_bytes: int = MAX_HEADER_BYTES,
                 metrics: Any = None):
        self.app, self.max_headers, self.max_bytes, self.metrics = app, max_headers, max_bytes, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            problem = head_problem(scope.get("headers") or [], self.max_headers, self.max_bytes)
            if problem is not None:
                client = scope.get("client")
                log.warning("request refused: %s", problem,
                            extra={"event": "rejected", "reason": "headers_too_large", "http_status": 431,
                                   "method": scope.get("method"), "client": client[0] if client else None})
                if self.metrics is not None:
                    self.metrics.rejected.labels("", "", "headers_too_large").inc()
                body = json.dumps({"error": problem}).encode()
                await send({"type": "http.response.start", "status": 431,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
