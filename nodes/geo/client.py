"""The geocoding connections (``mapbox``, ``google_maps``): an API key each, geopy's MapBox and
GoogleV3 geocoders, a rate limit per connection shared by every action and iteration of the
process, and the one place geopy's errors are mapped.

geopy is imported only inside the client factory and ``GeoVendor``. A connection's
``endpoint`` (``http://127.0.0.1:8080``) becomes geopy's ``scheme`` and ``domain``.
"""
from __future__ import annotations

import math
import time
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

import anyio

from engine.plugin import ActionError, Connection, ConnectionSpec, Fault, Rule, Vendor, secret, trace_headers

PROVIDERS = {"mapbox": "mapbox", "google_maps": "google"}  # connection kind -> provider name


def _settings(rate: float, what: str) -> dict:
    return {
        "type": "object", "additionalProperties": False, "required": ["api_key"],
        "properties": {
            "api_key": secret(what),
            "cache": {"type": "boolean", "default": True,
                      "description": "Keep results in the state database (provider terms on caching "
                                     "differ: switch it off where they forbid it)."},
            "cache_ttl": {"type": "integer", "minimum": 1, "default": 30 * 86400,
                          "description": "Seconds a cached result is used (default 30 days)."},
            "rate": {"type": "number", "exclusiveMinimum": 0, "maximum": 10000, "default": rate,
                     "description": "Requests per second at most, shared by every action and loop "
                                    "iteration using this connection in the process."},
            "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 120, "default": 10,
                        "description": "Seconds one request may take."},
        },
    }


class RateLimit:
    """Requests spaced at least ``1/rate`` seconds apart, across every task that shares it
    (the slots are handed out in order under a lock; each waiter sleeps outside it).
    ``now``/``sleep`` are injectable (tests count the waits instead of waiting)."""

    def __init__(self, rate: float, *, now: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = anyio.sleep):
        self.interval = 1.0 / rate if rate and math.isfinite(rate) and rate > 0 else 0.0
        self.now, self.sleep = now, sleep
        self._next = 0.0
        self._lock: Any = None

    async def wait(self) -> None:
        if not self.interval:
            return
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            now = self.now()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            await self.sleep(slot - now)


class Provider:
    """One connection's geocoder: geopy's MapBox or GoogleV3, its limiter and its cache rule."""

    def __init__(self, conn: Connection):
        from geopy.adapters import RequestsAdapter
        from geopy.geocoders import GoogleV3, MapBox

        self.connection = conn.name
        self.name = PROVIDERS[conn.kind]
        options: dict[str, Any] = {"timeout": float(conn.settings.get("timeout", 10)), "user_agent": "flowrun"}
        self.host = ""  # the vendor's own host (geopy's default domain)
        if conn.endpoint:
            parts = urlsplit(conn.endpoint)
            options.update(scheme=parts.scheme or "https", domain=parts.netloc + parts.path.rstrip("/"))
            self.host = f"{options['scheme']}://{options['domain']}".casefold()
        class TracingAdapter(RequestsAdapter):
            """geopy hands each request's headers to its adapter: the attempt span's traceparent
            joins them (the call runs in a worker thread holding a copy of the attempt's context)."""

            def _request(self, url: str, *, timeout: Any, headers: Any) -> Any:
                return super()._request(url, timeout=timeout, headers=trace_headers(headers))

        # requests' own retries off (urllib3 retried a 429/503 after sleeping its Retry-After):
        # the fallback provider and the action's retryPolicy decide
        options["adapter_factory"] = lambda proxies, ssl_context: TracingAdapter(
            proxies=proxies, ssl_context=ssl_context, max_retries=0)
        cls = MapBox if self.name == "mapbox" else GoogleV3
        with GEO.mapped(conn):
            self.geocoder = cls(api_key=conn.secret("api_key"), **options)
        self.limit = RateLimit(float(conn.settings.get("rate", 10)))
        self.cache = bool(conn.settings.get("cache", True))
        self.cache_ttl = int(conn.settings.get("cache_ttl", 30 * 86400))


def build_client(conn: Connection) -> Provider:
    if not conn.secret("api_key"):
        raise ActionError(f"connection '{conn.name}' needs the api_key secret", code="MissingSetting")
    return Provider(conn)


class GeoVendor(Vendor):
    """geopy: what it needs, and how its exceptions map.

    ====================================================  ==========  ==========================
    geopy exception                                       retried?    code
    ====================================================  ==========  ==========================
    GeocoderRateLimited (429, Retry-After kept)           yes         ``GeocoderRateLimited``
    GeocoderTimedOut, GeocoderUnavailable (5xx, network)  yes         ``GeocoderUnavailable``
    GeocoderServiceError (another 5xx)                    yes         ``GeocoderError``
    GeocoderQuotaExceeded (402, a daily quota)            no          ``GeocoderQuotaExceeded``
    GeocoderAuthenticationFailure (401, a bad key)        no          ``GeocoderAuthFailed``
    GeocoderInsufficientPrivileges (403)                  no          ``GeocoderForbidden``
    GeocoderQueryError (400: a query it refuses)          no          ``GeocoderQueryError``
    GeocoderParseError (an answer it cannot read)         yes         ``GeocoderBadAnswer``
    ConfigurationError, GeocoderNotFound                  no          ``GeocoderConfig``
    ====================================================  ==========  ==========================
    """

    name = "geopy"
    modules = ("geopy",)
    extra = "geo"

    def rules(self) -> list[Rule]:
        from geopy import exc as e

        return [
            Rule((e.GeocoderRateLimited,), "GeocoderRateLimited", retryable=True),
            Rule((e.GeocoderTimedOut, e.GeocoderUnavailable), "GeocoderUnavailable", retryable=True),
            Rule((e.GeocoderQuotaExceeded,), "GeocoderQuotaExceeded"),
            Rule((e.GeocoderAuthenticationFailure,), "GeocoderAuthFailed"),
            Rule((e.GeocoderInsufficientPrivileges,), "GeocoderForbidden"),
            Rule((e.GeocoderQueryError,), "GeocoderQueryError"),
            Rule((e.GeocoderParseError,), "GeocoderBadAnswer", retryable=True),
            Rule((e.GeocoderServiceError,), "GeocoderError", retryable=True),
            Rule((e.ConfigurationError, e.GeocoderNotFound), "GeocoderConfig"),
            Rule((e.GeopyError,), "GeocoderError", fallback=True),
        ]

    def describe(self, exc: BaseException) -> Fault:
        wait = getattr(exc, "retry_after", None)
        message = " ".join(str(exc).split())[:500] or type(exc).__name__
        return Fault(message=message, retry_after=float(wait) if isinstance(wait, (int, float))
                     and math.isfinite(wait) and 0 <= wait < 86_400 else None)


GEO = GeoVendor()
MAPBOX = ConnectionSpec(
    kind="mapbox",
    description="Mapbox geocoding (v5 places) through geopy's MapBox: an access token. `endpoint` "
                "replaces https://api.mapbox.com (proxies, tests).",
    settings=_settings(10, "Mapbox access token (pk.../sk...)."),
    client=build_client, vendor=GEO,
    example={"kind": "mapbox", "settings": {"cache_ttl": 604800}, "secrets": {"api_key": "MAPBOX_TOKEN"}},
)
GOOGLE_MAPS = ConnectionSpec(
    kind="google_maps",
    description="Google Geocoding API through geopy's GoogleV3: an API key. `endpoint` replaces "
                "https://maps.googleapis.com (proxies, tests).",
    settings=_settings(50, "Google Maps Platform API key."),
    client=build_client, vendor=GEO,
    example={"kind": "google_maps", "settings": {"cache": False}, "secrets": {"api_key": "GOOGLE_MAPS_KEY"}},
)
