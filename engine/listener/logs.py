"""Structured logs: one JSON object per line on stderr, secrets redacted.

Every record carries ``ts``, ``level``, ``logger`` and ``msg``, plus whichever of the
context fields below it was given (``extra={...}``): the run id and trigger of what it is
about, the event name, and the like. The whole line passes through the engine's redactor,
so a secret value resolved from a connection never reaches the log, whatever carries it.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any, Callable

from engine.safejson import utf8_json

FIELDS = ("event", "run_id", "flow", "trigger", "action", "status", "reason", "http_status", "duration_ms",
          "method", "path", "client", "problem", "file", "url", "count", "scheduled", "dedupe_key",
          "trace_id", "span_id")  # trace_id, span_id: the current span's (engine.telemetry), when tracing


class JsonFormatter(logging.Formatter):
    def __init__(self, redact: Callable[[str], str] | None = None):
        super().__init__()
        self.redact = redact or (lambda s: s)

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return utf8_json(self.redact(json.dumps(out, default=str, ensure_ascii=False)))


def configure(redact: Callable[[str], str], level: str = "info", stream: Any = None) -> logging.Handler:
    """Send flowrun's and uvicorn's logs to ``stream`` (stderr) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(redact))
    for name in ("flowrun", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True
    otel = logging.getLogger("opentelemetry")  # an exporter's warnings (collector down) as JSON lines too
    otel.handlers[:] = [handler]
    chosen = logging.getLevelName(level.upper())
    otel.setLevel(max(logging.WARNING, chosen if isinstance(chosen, int) else logging.WARNING))
    otel.propagate = False
    return handler
