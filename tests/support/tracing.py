"""Spans of runs, caught by the OpenTelemetry SDK's in-memory exporter.

    with traced() as spans:
        result = run_flow(...)
    [run] = spans.runs()
    assert [s.name for s in spans.children(run)] == ["a", "b"]
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from engine import telemetry


class Spans:
    def __init__(self, exporter: InMemorySpanExporter):
        self.exporter = exporter

    def all(self) -> list[Any]:
        return sorted(self.exporter.get_finished_spans(), key=lambda s: s.start_time)

    def runs(self) -> list[Any]:
        return [s for s in self.all() if s.name.startswith("run ")]

    def named(self, name: str) -> list[Any]:
        return [s for s in self.all() if s.name == name]

    def children(self, parent: Any) -> list[Any]:
        return [s for s in self.all() if s.parent is not None and s.parent.span_id == parent.context.span_id]


def trace_id(span: Any) -> str:
    return f"{span.context.trace_id:032x}"


def span_id(span: Any) -> str:
    return f"{span.context.span_id:016x}"


def traceparent(span: Any) -> str:
    return f"00-{trace_id(span)}-{span_id(span)}-{span.context.trace_flags:02x}"


REMOTE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"  # W3C's own example


@contextlib.contextmanager
def traced() -> Iterator[Spans]:
    """Trace every run started in the block (this process) into memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.enable(provider)
    try:
        yield Spans(exporter)
    finally:
        telemetry.reset()
        provider.shutdown()
