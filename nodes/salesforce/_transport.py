"""The HTTP session simple-salesforce is given: timeouts, the endpoint override, and
Retry-After capture. Imported lazily (it imports requests)."""
from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests


class EndpointSession(requests.Session):
    """A requests.Session that

    * applies a default timeout to every request (simple-salesforce sets none);
    * with an endpoint override, sends every URL to that endpoint instead
      (scheme + host replaced, path and query kept), since the SDK builds
      ``https://<host>/...`` URLs itself;
    * remembers the Retry-After of the last 429/503 answer in ``local.retry_after``
      (the SDK's exceptions do not keep response headers).
    """

    def __init__(self, endpoint: str | None, timeout: float, local: threading.local):
        super().__init__()
        self._endpoint = urlsplit(endpoint.rstrip("/")) if endpoint else None
        self._timeout = timeout
        self._local = local

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        if self._endpoint is not None:
            parts = urlsplit(url)
            url = urlunsplit((self._endpoint.scheme, self._endpoint.netloc,
                              self._endpoint.path + parts.path, parts.query, ""))
        response = super().request(method, url, *args, **kwargs)
        if response.status_code in (429, 503):
            value = response.headers.get("Retry-After")
            try:
                self._local.retry_after = float(value) if value is not None else None
            except ValueError:
                self._local.retry_after = None
        return response
