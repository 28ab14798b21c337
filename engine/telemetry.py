"""OpenTelemetry traces of runs: a no-op unless ``flowrun[otel]`` is installed and tracing is on.

Tracing is on when

- the standard environment asks for it: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, or ``OTEL_TRACES_EXPORTER`` is ``otlp`` or
  ``console``; flowrun then builds an SDK ``TracerProvider`` (resource from ``OTEL_SERVICE_NAME``
  / ``OTEL_RESOURCE_ATTRIBUTES``, service name ``flowrun`` by default) with a batch processor
  and the OTLP/HTTP exporter, which reads the other ``OTEL_EXPORTER_OTLP_*`` variables itself.
  ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` keep it off;
- or the application embedding the engine installed an SDK ``TracerProvider`` globally before
  the first run, or handed one to ``enable(provider)`` (tests do, with the in-memory exporter).

Otherwise every hook below costs one global read, and ``opentelemetry`` is never imported.

What is traced (``Tracing``): one span per execution of a run (``run <flow>``; a resume is
another execution, in the same trace), a child span per action attempt (named after the
action; containers' inner actions are children of the container's attempt). Attributes:
``flowrun.flow``, ``flowrun.run_id``, ``flowrun.action.path``, ``flowrun.action.type``,
``flowrun.action.status``, ``flowrun.attempt``, ``flowrun.iteration``. An error is a span event
``flowrun.error`` (code and message, secrets masked by the engine's redactor) and the span's
status; no stack trace is recorded.

Propagation: ``carrier(headers)`` reads a W3C ``traceparent`` (and ``tracestate``) from any
mapping without OpenTelemetry; the engine stores it with the run (``runs.trace``) and the
run's span is its child, in this process and in any that resumes the run. A run that came
without one stores its first span's context, so its resumes join its trace. ``headers()``
gives the current span's ``traceparent`` for outgoing requests and messages.
"""
from __future__ import annotations

import logging
import os
import re
import sys
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

log = logging.getLogger("flowrun.telemetry")

# version 00 as W3C Trace Context defines it; other versions are read by their first four fields
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_TRACESTATE = re.compile(r"[\x20-\x7e]{1,512}")
# one list-member of W3C tracestate: key=value, the key simple or tenant@system
_TS_KEY = r"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
_TS_MEMBER = re.compile(_TS_KEY + r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")
_ITERATION = re.compile(r"\[(\d+)\](?!.*\[\d+\])")

_UNDECIDED = object()
_active: Any = _UNDECIDED  # Tracing, None (off), or undecided until the first run


def _tracestate(state: str, redact: Any) -> str | None:
    """``state`` when it is a W3C tracestate (at most 32 key=value members, 512 characters) and
    holds no secret the process knows, else None (dropped, as W3C allows: the traceparent stays).
    OpenTelemetry would otherwise log each bad member, and export a secret with every span."""
    if not _TRACESTATE.fullmatch(state):
        return None
    members = [m.strip(" \t") for m in state.split(",")]
    members = [m for m in members if m]
    if not members or len(members) > 32 or not all(_TS_MEMBER.fullmatch(m) for m in members):
        return None
    if redact is not None and redact(state) != state:
        return None
    return state


def carrier(headers: Any, *, redact: Any = None) -> dict | None:
    """The W3C trace context of ``headers`` (any mapping, any letter case; a list of pairs with
    bytes values, as Kafka gives) as ``{"traceparent": ..., "tracestate"?: ...}``, or None when
    there is none or it is malformed (an invalid ``traceparent`` is ignored, as W3C says; an
    invalid ``tracestate``, or one holding a secret ``redact`` masks, is dropped)."""
    found: dict[str, str] = {}
    try:
        pairs = headers.items() if hasattr(headers, "items") else iter(headers or ())
        for pair in pairs:
            name, value = pair
            name = name.decode("latin-1") if isinstance(name, bytes) else name
            if not isinstance(name, str) or name.lower() not in ("traceparent", "tracestate"):
                continue
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            if isinstance(value, dict):  # an SQS message attribute: {"DataType", "StringValue"}
                value = value.get("StringValue", value.get("stringValue"))
            if isinstance(value, str):
                found.setdefault(name.lower(), value.strip())
    except (TypeError, ValueError, AttributeError):
        return None
    parent = found.get("traceparent", "")
    m = _TRACEPARENT.fullmatch(parent)
    if (m is None or m.group(1) == "ff" or (m.group(1) == "00" and m.group(5))
            or m.group(2) == "0" * 32 or m.group(3) == "0" * 16):
        return None
    out = {"traceparent": "-".join(m.group(1, 2, 3, 4))}  # a later version: its first four fields, as W3C says
    state = _tracestate(found.get("tracestate") or "", redact)
    if state:
        out["tracestate"] = state
    return out


def active() -> "Tracing | None":
    """The process's tracing, or None (decided from the environment on first use)."""
    global _active
    if _active is _UNDECIDED:
        _active = _from_environment()
    return _active


def enable(provider: Any) -> "Tracing":
    """Trace runs with ``provider`` (an SDK TracerProvider) from now on, whatever the environment."""
    global _active
    _active = Tracing(provider)
    return _active


def disable() -> None:
    """Stop tracing (the next ``active()`` is None until ``enable`` or ``reset``)."""
    global _active
    _active = None


def reset() -> None:
    """Forget the decision: the next ``active()`` reads the environment again."""
    global _active
    _active = _UNDECIDED


def headers() -> dict[str, str]:
    """The current span's W3C context to send on (``traceparent``, ``tracestate``), or {}."""
    tracing = _active if _active is not _UNDECIDED else None
    if tracing is None:
        return {}
    out: dict[str, str] = {}
    tracing.propagate.inject(out)
    return out


def _wants_tracing(env: Mapping[str, str]) -> str | None:
    """What the ``OTEL_*`` variables ask for: "otlp", "console", or None (nothing)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporters = [e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",") if e.strip()]
    if "none" in exporters:
        return None
    if "console" in exporters:
        return "console"
    if "otlp" in exporters or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return "otlp"
    return None


HEADER_VARIABLES = ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS")


def _header_secrets(env: Mapping[str, str]) -> set[str]:
    """The credentials the exporter sends (``Authorization=Bearer ...``, ``x-api-key=...``): each
    variable whole, each of its headers, and each value with and without its scheme word. The
    SDK logs a header it cannot parse as it is, value and all."""
    from urllib.parse import unquote

    found: set[str] = set()
    for name in HEADER_VARIABLES:
        text = env.get(name) or ""
        found.add(text.strip())
        for part in text.split(","):
            part = part.strip()
            found.add(part)
            for sep in "=:":
                if sep in part:
                    value = part.split(sep, 1)[1].strip()
                    found |= {value, unquote(value), value.split(" ", 1)[-1].strip(),
                              unquote(value).split(" ", 1)[-1].strip()}
    return {v for v in found if len(v) >= 4}


def _from_environment() -> "Tracing | None":
    wanted = _wants_tracing(os.environ)
    if wanted is None:
        return _embedding_provider()
    from .connections import PROCESS_REDACTOR

    for secret in _header_secrets(os.environ):  # before the exporter reads (and may log) them
        PROCESS_REDACTOR.add(secret)
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
        if wanted == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        log.warning("OTEL_* asks for traces, but OpenTelemetry is not installed: "
                    "pip install 'flowrun[otel]'; running without traces")
        return None
    try:
        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or "flowrun"})
        provider = TracerProvider(resource=resource)
        exporter = _closing(OTLPSpanExporter)() if wanted == "otlp" else ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    except Exception as exc:  # a malformed OTEL_* value: say which, run without traces
        log.warning("OpenTelemetry could not be configured from OTEL_*: %s: %s; running without traces",
                    type(exc).__name__, exc)
        return None
    import atexit

    atexit.register(_at_exit, provider, exporter)
    if type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider":
        trace.set_tracer_provider(provider)  # the process's other instrumentation joins the same traces
    return Tracing(provider)


EXIT_FLUSH_MS = 3000  # at exit, spans still queued get this long to reach the collector


def _closing(exporter_class: type) -> type:
    """The exporter, whose ``shutdown`` may be called twice (at exit, then by the processor)."""

    class Closing(exporter_class):  # type: ignore[misc, valid-type]
        _closed = False

        def shutdown(self) -> None:
            if not self._closed:
                self._closed = True
                super().shutdown()

    return Closing


def _at_exit(provider: Any, exporter: Any) -> None:
    """Export what is queued, for at most EXIT_FLUSH_MS: a collector that is down or slow does not
    hold ``flowrun run`` for the exporter's whole retry schedule (its retries stop here)."""
    import threading

    flush = threading.Thread(target=provider.force_flush, daemon=True)  # its own timeout is not a bound
    flush.start()
    flush.join(EXIT_FLUSH_MS / 1000)
    exporter.shutdown()  # an export still retrying gives up now
    provider.shutdown()


def _embedding_provider() -> "Tracing | None":
    """An SDK provider the embedding application set globally (never imports OpenTelemetry)."""
    if "opentelemetry.trace" not in sys.modules or "opentelemetry.sdk.trace" not in sys.modules:
        return None
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    provider = trace.get_tracer_provider()
    return Tracing(provider) if isinstance(provider, TracerProvider) else None


class _Span:
    """One attempt's span, current while the attempt runs; the executor tells it how it ended.
    (A plain class, not two generator context managers: it is made once per action attempt.)"""

    __slots__ = ("span", "redact", "token", "context")

    def __init__(self, span: Any, redact: Any, context: Any, set_in: Any):
        self.span, self.redact, self.context = span, redact, context
        self.token = context.attach(set_in(span))

    def __enter__(self) -> "_Span":
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        try:
            if exc is not None:  # cancelled (a timeout, Terminate, shutdown) or a node bug
                cancelled = _is_cancel(exc)
                self.span.set_attribute("flowrun.action.status", "Cancelled" if cancelled else "Failed")
                if not cancelled:
                    _record_error(self.span, {"code": "NodeError", "message": f"{type(exc).__name__}: {exc}"},
                                  self.redact)
        finally:
            self.context.detach(self.token)
            self.span.end()

    def ended(self, status: str, error: Any = None) -> None:
        self.span.set_attribute("flowrun.action.status", str(status))
        if error:
            _record_error(self.span, error, self.redact)


class _NoSpan:
    __slots__ = ()

    def __enter__(self) -> "_NoSpan":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def ended(self, status: str, error: Any = None) -> None:
        return None


NO_SPAN = _NoSpan()


def _record_error(span: Any, error: Any, redact: Any) -> None:
    from opentelemetry.trace import Status, StatusCode

    if isinstance(error, dict):
        code, message = str(error.get("code", "Error")), str(error.get("message", ""))
    else:
        code, message = "Error", str(error)
    message = redact(message) if redact else message
    span.add_event("flowrun.error", {"flowrun.error.code": code, "flowrun.error.message": message})
    span.set_status(Status(StatusCode.ERROR, f"{code}: {message}"))


class Tracing:
    """Spans of runs and action attempts on one TracerProvider."""

    def __init__(self, provider: Any):
        from opentelemetry import context, propagate, trace

        self.provider = provider
        self.tracer = provider.get_tracer("flowrun")
        self.trace, self.context, self.propagate = trace, context, propagate
        _log_ids()

    @contextmanager
    def run(self, *, flow: str, run_id: str, trigger: str | None, execution: int, parent: dict | None,
            redact: Any) -> Iterator[tuple[Any, dict | None]]:
        """The span of one execution of a run, as the child of ``parent`` (a stored carrier) or,
        without one, of the current span (a child run's Workflow action). Yields (span, the
        carrier to store with the run when it has none yet: this span's)."""
        ctx = self.propagate.extract(parent) if parent else None
        attributes = {"flowrun.flow": flow, "flowrun.run_id": run_id, "flowrun.run.execution": execution}
        if trigger:
            attributes["flowrun.trigger"] = trigger
        with self.tracer.start_as_current_span(f"run {flow}", context=ctx, attributes=attributes,
                                               record_exception=False, set_status_on_exception=False) as span:
            own = None
            if parent is None:
                own = {}
                self.propagate.inject(own)
                own = carrier(own)
            try:
                yield span, own
            except BaseException as exc:
                span.set_attribute("flowrun.status", "Interrupted")
                span.add_event("flowrun.interrupted", {"flowrun.error.code": type(exc).__name__})
                raise

    def run_ended(self, span: Any, status: str, error: Any, redact: Any) -> None:
        span.set_attribute("flowrun.status", str(status))
        if error:
            _record_error(span, error, redact)

    def attempt(self, *, flow: str, run_id: str, action: str, path: str, type_: str, attempt: int,
                redact: Any) -> _Span:
        """The span of one action attempt (a context manager), a child of the current span."""
        attributes = {"flowrun.flow": flow, "flowrun.run_id": run_id, "flowrun.action.path": path,
                      "flowrun.action.type": type_, "flowrun.attempt": attempt}
        if "[" in path:
            m = _ITERATION.search(path)
            if m is not None:
                attributes["flowrun.iteration"] = int(m.group(1))
        return _Span(self.tracer.start_span(action, attributes=attributes), redact, self.context,
                     self.trace.set_span_in_context)


def _is_cancel(exc: BaseException) -> bool:
    import anyio

    return isinstance(exc, anyio.get_cancelled_exc_class())


_log_ids_installed = False


def _log_ids() -> None:
    """Every log record made while a span is current carries ``trace_id`` and ``span_id`` (hex),
    for the JSON log lines and any ``%(trace_id)s`` format."""
    global _log_ids_installed
    if _log_ids_installed:
        return
    _log_ids_installed = True
    from opentelemetry import trace

    base = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        if _active is not None and _active is not _UNDECIDED:
            ctx = trace.get_current_span().get_span_context()
            if ctx.is_valid:
                record.trace_id, record.span_id = f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
        return record

    factory._flowrun = getattr(base, "_flowrun", False)  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
