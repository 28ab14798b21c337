"""A run and a step: the one shape each has everywhere (store, API, CLI, listener).

The store returns them, the API hands them out; nothing else builds its own.

    Run   one execution of a flow: what started it, its status, outputs, error, reply,
          and links to its parent (a Workflow action) and the run it re-runs
    Step  one action (or loop iteration) of a run, as recorded: status, attempts,
          resolved inputs, outputs, error, start and end times
    Attempt  one attempt of a retried action: its number, status, times and error summary
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable

from .state import SUCCEEDED, Status


def iso(ts: float | None) -> str | None:
    """A Unix time as ISO 8601 UTC (``2026-12-02T17:42:14.123456Z``), or None."""
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class Step:
    path: str  # e.g. loop[3]/notify
    action: str
    type: str
    status: Status
    attempts: int = 0
    inputs: Any = None
    outputs: Any = None
    error: Any = None
    started: float | None = None
    ended: float | None = None
    seq: int | None = None  # the order steps finished in, across processes
    handle: Any = None  # a long-running job's handle (job id, query id), recorded at start
    wake: float | None = None  # when a waiting or polling step is due again
    interrupted: bool = False  # it was in flight when its process died and ran again on resume

    def __post_init__(self) -> None:
        self.status = Status.of(self.status)

    @property
    def duration(self) -> float | None:
        return None if self.started is None or self.ended is None else self.ended - self.started

    def to_json(self) -> dict:
        """As ``--json`` prints it: times in ISO 8601."""
        return {"path": self.path, "action": self.action, "type": self.type, "status": str(self.status),
                "attempts": self.attempts, "started": iso(self.started), "ended": iso(self.ended),
                "duration_ms": None if self.duration is None else round(self.duration * 1000, 3),
                "inputs": self.inputs, "outputs": self.outputs, "error": self.error,
                "interrupted": self.interrupted}


@dataclass
class Attempt:
    number: int  # 1 for the first attempt
    status: Status  # how this attempt ended (Failed for one that was retried)
    started: float | None = None
    ended: float | None = None
    error: Any = None  # {"code", "message"}: a summary, redacted

    def __post_init__(self) -> None:
        self.status = Status.of(self.status)

    @property
    def duration(self) -> float | None:
        return None if self.started is None or self.ended is None else self.ended - self.started

    def to_json(self) -> dict:
        return {"attempt": self.number, "status": str(self.status), "started": iso(self.started),
                "ended": iso(self.ended),
                "duration_ms": None if self.duration is None else round(self.duration * 1000, 3),
                "error": self.error}


@dataclass
class Run:
    id: str
    flow: str
    status: Status
    outputs: Any = None
    error: Any = None
    response: Any = None
    file: str | None = None
    flow_hash: str | None = None
    git_commit: str | None = None
    definition: str | None = None
    trigger: str | None = None
    payload: Any = None
    params: Any = None
    created: float | None = None
    started: float | None = None
    ended: float | None = None
    parent_id: str | None = None
    rerun_of: str | None = None
    request: Any = None
    dedupe_key: str | None = None
    attempts: int = 0
    trace: Any = None  # {"traceparent", "tracestate"?}: the W3C trace context its spans continue (engine.telemetry)
    orphaned: bool = False  # Queued/Running, but no live process holds it (it died): resume it
    waiting: str | None = None  # why a Queued run waits (a concurrency slot), for flowrun runs
    _load_steps: Callable[[str], list[Step]] | None = field(default=None, repr=False, compare=False)
    _steps: dict[str, Step] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.status = Status.of(self.status)

    @property
    def run_id(self) -> str:
        return self.id

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED

    @property
    def status_text(self) -> str:
        """The status as ``flowrun runs`` shows it: ``Running (orphaned)`` when its process died."""
        return f"{self.status} (orphaned)" if self.orphaned else str(self.status)

    @property
    def steps(self) -> dict[str, Step]:
        """Every recorded step by path, read from the store on first use."""
        if self._steps is None:
            self._steps = {s.path: s for s in self._load_steps(self.id)} if self._load_steps else {}
        return self._steps

    def to_json(self, *, steps: bool = True) -> dict:
        """As ``--json`` prints it: times in ISO 8601."""
        out = {"run_id": self.id, "flow": self.flow, "status": str(self.status), "trigger": self.trigger,
               "created": iso(self.created), "started": iso(self.started), "ended": iso(self.ended),
               "parent_id": self.parent_id, "rerun_of": self.rerun_of, "git_commit": self.git_commit,
               "flow_hash": self.flow_hash, "params": self.params, "outputs": self.outputs,
               "error": self.error, "response": self.response, "orphaned": self.orphaned}
        if isinstance(self.trace, dict) and self.trace.get("traceparent"):  # find the run in a tracing backend
            out["traceparent"] = self.trace["traceparent"]
        if self.waiting:
            out["waiting"] = self.waiting
        if steps:
            out["steps"] = [s.to_json() for s in self.steps.values()]
        return out

    def __repr__(self) -> str:  # short: asyncio reprs a finished main task (and its result) on exit
        return f"Run({self.id!r}, flow={self.flow!r}, status={self.status!r})"
