"""Polling capabilities: the token in a run's ``Location`` URL that lets its caller read it.

``GET /runs/{id}`` answers the admin token, or a token that belongs to that run only:
``token = base64url(HMAC-SHA256(server key, "run:" + id))`` truncated to 32 characters
(192 bits), where the server key is random and kept in the state database (so tokens
outlive restarts and need no column). Whoever holds the ``Location`` a trigger answered
with may poll that run, and nothing else: a token names one run id, and signed trigger
requests (replayed or not) are no credential here. Checks are constant-time.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

KEY_NAME = "run-capabilities"
PARAM = "token"  # a name the redactor masks in stored URLs and logs


class Capabilities:
    def __init__(self, engine: Any):
        self.engine = engine
        self._key: bytes | None = None

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = self.engine.server_key(KEY_NAME)
        return self._key

    def prepare(self) -> None:
        """Make or read the key now (at start-up), not inside the first request."""
        _ = self.key

    def token(self, run_id: str) -> str:
        digest = hmac.new(self.key, b"run:" + run_id.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode()[:32]

    def allows(self, run_id: str, given: str | None) -> bool:
        if not given:
            return False
        return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), self.token(run_id).encode())
