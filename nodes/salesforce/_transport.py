"""The HTTP session simple-salesforce is given: timeouts, the endpoint override, and
Retry-After capture. Imported lazily (it imports requests)."""
from __future__ import annotations

import threading
from typing import Any

import requests

from engine.plugin import endpoint_url, retry_after, trace_headers


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
        self._endpoint = endpoint
        self._timeout = timeout
        self._local = local

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        url = endpoint_url(url, self._endpoint)
        if len(args) < 3:  # headers not given by position (simple-salesforce names them): add the traceparent
            kwargs["headers"] = trace_headers(kwargs.get("headers"))
        response = super().request(method, url, *args, **kwargs)
        if response.status_code in (429, 503):
            self._local.retry_after = retry_after(response.headers)
        return response
