"""The base vendor client: the plumbing every ``nodes/<vendor>`` package shares.

A vendor package declares one ``Vendor`` (its name, the SDK modules it needs, the pip extra
that installs them, and its error table) and hangs it on its ``ConnectionSpec``::

    STRIPE = StripeVendor()          # subclass of Vendor: name, modules, extra, rules()
    CONNECTION = ConnectionSpec(kind="stripe", ..., client=build_client, vendor=STRIPE)

    async def run(self, inputs, context):
        client = await STRIPE.client(context)            # built once per connection, off the loop
        return await STRIPE.call(context, client.v1.customers.create, params)

What lives here, once:

- ``Vendor.client`` / ``Connection.get_client``: the SDK client is built in a worker thread,
  at most once per connection even when the first runs race;
- ``Vendor.call``: a blocking SDK call in a worker thread, None-valued keyword arguments
  dropped, SDK exceptions mapped through the declared table;
- ``ErrorTable``: exception class -> (retryable?, flowrun code). The most specific class
  wins (as httpx's ``map_httpcore_exceptions``); the vendor's own code and message are kept
  in the error, secrets are scrubbed from them, the SDK exception stays the ``__cause__``;
- ``retry_after``: the one Retry-After parser (delay-seconds or an HTTP date);
- ``endpoint_url``: the one endpoint override (a connection's ``endpoint`` replaces the
  scheme and host of every URL an SDK builds; used for loopback test peers and proxies);
- ``compact`` (drop None values) and ``inputs_schema`` (a node's input JSON Schema);
- ``trace_headers``: the one place outgoing requests get the current span's W3C
  ``traceparent`` (engine.telemetry; nothing is added when tracing is off). Http and every
  vendor whose SDK request passes through a flowrun hook (Twilio's and Salesforce's HTTP
  clients, SendGrid's per-request client, Databricks' HTTP adapter) call it there.

Importing this module imports no SDK: vendors import theirs inside ``rules``, ``describe``
and their client factory.
"""
from __future__ import annotations

import base64
import html
import contextlib
import importlib.util
import json
import math
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

import anyio

from . import telemetry
from .errors import ActionError, RetryableError

__all__ = ["Vendor", "ErrorTable", "Rule", "Fault", "retry_after", "header", "compact",
           "inputs_schema", "endpoint_url", "status_is_retryable", "scrub", "trace_headers"]

MASK = "***"


# -- small helpers --------------------------------------------------------------------------

def header(headers: Any, name: str) -> Any:
    """A header from any mapping (dict, requests/httpx headers, email.Message), any case."""
    if headers is None:
        return None
    try:
        value = headers.get(name)
    except AttributeError:
        return None
    if value is not None:
        return value
    lower = name.lower()
    try:
        items = headers.items()
    except AttributeError:
        return None
    for key, value in items:
        if str(key).lower() == lower:
            return value
    return None


def retry_after(value: Any, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a Retry-After value (``"120"`` or an HTTP date), else None.

    ``value`` may be the header's value or a whole headers mapping. A date in the past
    gives 0; anything unparseable gives None. ``now`` is injectable for tests.
    """
    if value is not None and not isinstance(value, (str, bytes, int, float)):
        value = header(value, "Retry-After")
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:  # an int past float's range: no usable wait
            return None
        return None if not math.isfinite(seconds) else max(0.0, seconds)
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            import email.utils  # an HTTP date: rare, and email is slow to import

            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None or when.tzinfo is None:
            return None
        return max(0.0, when.timestamp() - now())
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf
        return None
    return max(0.0, seconds)


def trace_headers(headers: Any = None) -> Any:
    """``headers`` (a mapping or None) with the current span's ``traceparent`` and ``tracestate``
    added, as a new dict; ``headers`` itself when tracing is off, there is no current span, or
    it already carries a ``traceparent`` (a flow that sets its own keeps it)."""
    extra = telemetry.headers()
    if not extra or header(headers, "traceparent") is not None:
        return headers
    return {**(dict(headers) if headers else {}), **extra}


def tracing_adapter(base: Any = None, **pool: Any) -> Any:
    """A requests ``HTTPAdapter`` (of class ``base``, default requests' own, built with ``pool``)
    that adds the current span's ``traceparent`` to each request as it is sent: for SDKs on
    requests that let us mount an adapter or hand them a session (Databricks, Tableau TSC,
    Looker). A request is prepared per call, so nothing carries over between calls or threads;
    an SDK call runs in a worker thread that holds a copy of the attempt's context. requests is
    imported here, on first use (the engine imports no vendor library)."""
    if base is None:
        from requests.adapters import HTTPAdapter as base

    class TracingAdapter(base):
        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            if "traceparent" not in request.headers:  # requests' headers: any letter case
                request.headers.update(trace_headers({}))  # {} when tracing is off
            return super().send(request, *args, **kwargs)

    return TracingAdapter(**pool)


def tracing_session(session: Any = None) -> Any:
    """``session`` (a requests ``Session``; a new one when None) with ``tracing_adapter()``
    mounted for http:// and https://."""
    if session is None:
        import requests

        session = requests.Session()
    for prefix in ("https://", "http://"):
        session.mount(prefix, tracing_adapter())
    return session


def compact(values: Mapping[str, Any] | None) -> dict:
    """The mapping without its None values: parameters that were not given."""
    return {k: v for k, v in (values or {}).items() if v is not None}


def inputs_schema(required: Iterable[str], **properties: dict) -> dict:
    """A node's ``input_schema``: a closed object with these properties."""
    return {"type": "object", "additionalProperties": False, "required": list(required),
            "properties": properties}


def endpoint_url(url: str, endpoint: str | None) -> str:
    """``url`` sent to ``endpoint`` instead: its scheme and host (and path prefix) replace
    the URL's, the path and query the SDK built are kept. No endpoint: ``url`` unchanged."""
    if not endpoint:
        return url
    target = urlsplit(endpoint.rstrip("/"))
    parts = urlsplit(url)
    return urlunsplit((target.scheme, target.netloc, target.path + parts.path, parts.query, ""))


def keep_to_host(session: Any, base_url: str, refuse: Callable[[str], BaseException]) -> Any:
    """``session`` (a requests session an SDK sends with) made to send nothing to another host
    than ``base_url``'s: a redirect to another host (which requests or the SDK would follow,
    carrying a sign-in body or a token header with it) raises ``refuse(message)`` before a byte
    leaves. The same host and port, or http to https on default ports, is the same host."""
    from urllib.parse import urlsplit

    from requests.adapters import HTTPAdapter

    home = urlsplit(base_url)

    class OneHost(HTTPAdapter):
        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            there = urlsplit(request.url)
            if there.hostname != home.hostname or (there.port != home.port and not there.port is home.port is None):
                raise refuse(f"refused to send a request to {there.netloc}: the connection's server is "
                             f"{home.netloc} (a redirect to another host would carry the credentials)")
            return super().send(request, *args, **kwargs)

    for prefix in ("http://", "https://"):  # and each request carries the attempt span's traceparent
        session.mount(prefix, tracing_adapter(OneHost))
    return session


def secret_forms(value: str) -> set[str]:
    """Every way ``value`` reads inside text that passed through the usual encodings: as is,
    JSON-escaped once, twice and three times (a response body inside a JSON error, inside the
    store's JSON, printed by ``--json``), Python's repr and unicode-escape, HTML-escaped,
    URL-encoded (either letter case, ``/`` kept or not), hex (either case), base32, base64
    and base64url with or without padding (also unaligned inside a larger blob such as
    ``user:secret`` or a JWT's payload). A secret with quotes or
    backslashes differs in each of them."""
    if not value or len(value) < 4:
        return set()
    once = {value, repr(value)[1:-1], json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
            value.encode("unicode_escape").decode("ascii"), html.escape(value)}
    raw = value.encode("utf-8", "surrogatepass")
    urls = {quote(value, safe=""), quote_plus(value, safe=""), quote(value), quote(value, safe="/:@+")}
    urls |= {u.lower() for u in urls} | {re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), u) for u in urls}
    forms = {*urls, base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode(),
             base64.b64encode(raw).decode().rstrip("="), base64.urlsafe_b64encode(raw).decode().rstrip("="),
             base64.b32encode(raw).decode().rstrip("="),
             raw.hex(), raw.hex().upper(), *once,
             *(json.dumps(f)[1:-1] for f in once), *(json.dumps(f, ensure_ascii=False)[1:-1] for f in once),
             *(json.dumps(json.dumps(f)[1:-1])[1:-1] for f in once)}
    # unaligned inside a larger encoded blob: the value as is, or JSON-escaped (a claim inside a
    # JWT's payload), standard and URL-safe (a JWT's parts, a JWK's "k": base64url, no padding)
    for text in {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}:
        for pad, skip in ((0, 0), (1, 2), (2, 3)):
            enc = base64.b64encode(b"\0" * pad + text.encode("utf-8", "surrogatepass")).decode().rstrip("=")
            core = enc[skip:len(enc) - 2]
            if len(core) >= 8:
                forms |= {core, core.replace("+", "-").replace("/", "_")}
    return {f for f in forms if len(f) >= 4}


def scrub(text: Any, secrets: Iterable[str]) -> Any:
    """``text`` (a string, or strings inside lists/dicts) with every secret value masked, in
    each of its ``secret_forms``."""
    values = sorted({f for s in secrets if s for f in secret_forms(s)}, key=len, reverse=True)
    if not values:
        return text
    return _mask(text, values)


def _mask(text: Any, values: list[str]) -> Any:
    """``text`` with each of ``values`` (already every form of every secret) masked; nested
    values reuse the one list (expanding the forms again at each level grew without bound)."""
    if isinstance(text, str):
        for v in values:
            if v in text:
                text = text.replace(v, MASK)
        return text
    if isinstance(text, dict):
        return {k: _mask(v, values) for k, v in text.items()}
    if isinstance(text, list):
        return [_mask(v, values) for v in text]
    return text


def status_is_retryable(status: Any, *, also: Iterable[int] = ()) -> bool:
    """429 and 5xx (plus ``also``, e.g. 408 or 409) may pass on a later attempt."""
    return isinstance(status, int) and (status == 429 or status >= 500 or status in set(also))


# -- the error table ------------------------------------------------------------------------

@dataclass
class Fault:
    """What a vendor's ``describe`` reads off one SDK exception."""

    message: str
    code: str | None = None          # the vendor's own error code, if it sent one
    status: int | None = None        # HTTP status, if there was a response
    headers: Any = None              # response headers (Retry-After), if known
    details: dict = field(default_factory=dict)
    retry_after: float | None = None  # a wait the vendor gave some other way (overrides headers)


Decide = Callable[[Fault, BaseException], Any]


@dataclass(frozen=True)
class Rule:
    """One row of a vendor's error table.

    ``exceptions`` the SDK classes this row maps (a subclass is mapped by the row of its
                   nearest declared ancestor);
    ``code``       the flowrun error code: a string, or ``f(fault, exc) -> str``;
    ``retryable``  True / False, or ``f(fault, exc) -> bool``;
    ``fallback``   True for the catch-all row of an SDK's base class. Every concrete
                   exception class the SDK raises should have a row of its own.
    """

    exceptions: tuple[type[BaseException], ...]
    code: str | Decide
    retryable: bool | Decide = False
    fallback: bool = False

    def decide(self, fault: Fault, exc: BaseException) -> tuple[str, bool]:
        code = self.code(fault, exc) if callable(self.code) else self.code
        retry = self.retryable(fault, exc) if callable(self.retryable) else self.retryable
        return str(code), bool(retry)


class ErrorTable:
    """Exception class -> Rule; the most specific declared class wins."""

    def __init__(self, rules: Iterable[Rule]):
        self.rules = list(rules)
        self._by_class: dict[type, Rule] = {}
        for rule in self.rules:
            for cls in rule.exceptions:
                if cls in self._by_class:
                    raise ValueError(f"{cls.__qualname__} is declared twice in an error table")
                self._by_class[cls] = rule

    def rule_for(self, exc: BaseException | type[BaseException]) -> Rule | None:
        """The row of the nearest declared class in ``exc``'s MRO, or None."""
        cls = exc if isinstance(exc, type) else type(exc)
        for klass in cls.__mro__:
            rule = self._by_class.get(klass)
            if rule is not None:
                return rule
        return None

    @property
    def roots(self) -> tuple[type[BaseException], ...]:
        return tuple(self._by_class)


# -- the vendor -----------------------------------------------------------------------------

class Vendor:
    """One vendor's SDK plumbing. Subclass it once per vendor package.

    ``name``     shown in messages: "Stripe" ("needs the Stripe SDK")
    ``modules``  import names of the SDK (checked with importlib.util.find_spec, not imported)
    ``extra``    the pip extra that installs them: ``pip install 'flowrun[<extra>]'``
    ``rules()``  the declared error table (import the SDK inside)
    ``describe(exc)`` a Fault: the vendor's message, code, status, headers and details
    """

    name: ClassVar[str] = ""
    modules: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str | None] = None

    def __init__(self) -> None:
        self._table: ErrorTable | None = None
        self._lock = threading.Lock()

    # -- declarations (override) ----------------------------------------------------------
    def rules(self) -> list[Rule]:
        return []

    def describe(self, exc: BaseException) -> Fault:
        return Fault(message=str(exc) or type(exc).__name__)

    # -- what is installed ---------------------------------------------------------------
    def missing_modules(self, find_spec: Callable[[str], Any] | None = None) -> list[str]:
        """SDK modules that cannot be found (never imports them)."""
        find = find_spec or importlib.util.find_spec
        missing = []
        for name in self.modules:
            try:
                found = find(name)
            except (ImportError, ValueError):
                found = None
            if found is None:
                missing.append(name)
        return missing

    def missing_sdk(self, type_name: str, find_spec: Callable[[str], Any] | None = None) -> str | None:
        """The validate message for a node of this vendor whose SDK is not installed."""
        if not self.missing_modules(find_spec):
            return None
        return f"{type_name} needs the {self.name} SDK: pip install 'flowrun[{self.extra}]'"

    # -- errors --------------------------------------------------------------------------
    @property
    def table(self) -> ErrorTable:
        if self._table is None:
            with self._lock:
                if self._table is None:
                    self._table = ErrorTable(self.rules())
        return self._table

    def map_error(self, exc: BaseException, secrets: Iterable[str] = (),
                  fault: Fault | None = None) -> ActionError | None:
        """The flowrun error for an SDK exception, or None when no row declares it.

        ``fault`` replaces ``describe(exc)`` when the caller knows more (the request it made)."""
        if isinstance(exc, ActionError):
            return exc
        rule = self.table.rule_for(exc)
        if rule is None:
            return None
        fault = fault if fault is not None else self.describe(exc)
        code, retryable = rule.decide(fault, exc)
        secrets = list(secrets)
        details = {k: v for k, v in fault.details.items() if v is not None}
        details = scrub(details, secrets)
        message = scrub(fault.message, secrets)
        if not retryable:
            return ActionError(message, code=code, details=details or None)
        wait = fault.retry_after if fault.retry_after is not None else retry_after(fault.headers)
        return RetryableError(message, code=code, details=details or None, retry_after=wait)

    @contextlib.contextmanager
    def mapped(self, connection: Any = None) -> Iterator[None]:
        """Map SDK exceptions raised inside the block; the SDK exception is the cause."""
        try:
            yield
        except ActionError:
            raise
        except Exception as exc:  # noqa: BLE001 - only declared classes are mapped
            secrets = connection.secret_values() if connection is not None else ()
            mapped = self.map_error(exc, secrets)
            if mapped is None:
                raise
            raise mapped from exc

    # -- client and calls ----------------------------------------------------------------
    async def client(self, context: Any) -> Any:
        """The connection's SDK client, built once per connection in a worker thread."""
        return await context.connection.get_client()

    async def call(self, context: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in a worker thread, None-valued keyword arguments dropped,
        SDK errors mapped. Cancellation (timeout, Terminate) abandons the thread."""
        connection = getattr(context, "connection", None)
        kwargs = compact(kwargs)

        def invoke() -> Any:
            with self.mapped(connection):
                return fn(*args, **kwargs)

        return await anyio.to_thread.run_sync(invoke, abandon_on_cancel=True)


def build_once(holder: Any, lock: threading.Lock, build: Callable[[], Any]) -> Any:
    """``holder._client``, built by ``build()`` at most once (double-checked under ``lock``)."""
    client = holder._client
    if client is None:
        with lock:
            client = holder._client
            if client is None:
                client = holder._client = build()
    return client
