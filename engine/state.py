"""Statuses (Logic Apps' words, so runAfter maps straight onto them) and how they fold.

    Queued → Running → Succeeded | Failed | TimedOut | Cancelled      (actions and runs)
             Running ⇄ Waiting                                         (runs parked by serve)
    (not started)    → Skipped                                         (actions)

``Status`` is a ``str`` enum: a member equals its word (``Status.FAILED == "Failed"``), so
values read back from the store or written in a flow compare directly, and ``Status.of``
accepts any letter case.

A container's status (Scope, If, Switch, a loop iteration) and the run's status come from
its *leaf* actions (nothing runs after them): a Skipped leaf is replaced by the actions it
ran after, repeatedly; then Failed beats TimedOut beats everything else, which is Succeeded.
"""
from __future__ import annotations

from enum import StrEnum
from typing import Iterable, Mapping


class Status(StrEnum):
    QUEUED = "Queued"
    RUNNING = "Running"
    WAITING = "Waiting"  # a parked run (flowrun serve): holds no task until its wake-up time
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    TIMEDOUT = "TimedOut"
    CANCELLED = "Cancelled"

    @property
    def is_terminal(self) -> bool:
        """The status will not change again (for this attempt of the run)."""
        return self not in (Status.QUEUED, Status.RUNNING, Status.WAITING)

    @property
    def is_failure(self) -> bool:
        """Failed or TimedOut: what makes a Scope, a loop or a run fail."""
        return self in (Status.FAILED, Status.TIMEDOUT)

    @classmethod
    def of(cls, text: str) -> "Status":
        """The status named by ``text`` in any letter case; ValueError otherwise."""
        found = _BY_LOWER.get(str(text).lower())
        if found is None:
            raise ValueError(f"unknown status {text!r}; one of {', '.join(cls)}")
        return found


_BY_LOWER = {s.value.lower(): s for s in Status}

QUEUED, RUNNING, WAITING = Status.QUEUED, Status.RUNNING, Status.WAITING
SUCCEEDED, FAILED, SKIPPED, TIMEDOUT, CANCELLED = (Status.SUCCEEDED, Status.FAILED, Status.SKIPPED,
                                                   Status.TIMEDOUT, Status.CANCELLED)
TERMINAL = frozenset(s for s in Status if s.is_terminal)
RUN_AFTER = (SUCCEEDED, FAILED, SKIPPED, TIMEDOUT)  # what a runAfter list may name


def is_terminal(status: str | None) -> bool:
    return status in TERMINAL


def is_failure(status: str | None) -> bool:
    return status in (FAILED, TIMEDOUT)


def fold(statuses: Iterable[str]) -> Status:
    """Failed > TimedOut > anything else (Succeeded)."""
    seen = set(statuses)
    if FAILED in seen:
        return FAILED
    if TIMEDOUT in seen:
        return TIMEDOUT
    return SUCCEEDED


def block_status(leaves: list[str], run_after: Mapping[str, Iterable[str]],
                 status_of: Mapping[str, str]) -> Status:
    """The folded status of a block given its leaves, its runAfter edges and the statuses."""
    out: list[str] = []
    todo, seen = list(leaves), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        status = status_of.get(name, SKIPPED)
        if status == SKIPPED and run_after.get(name):
            todo.extend(run_after[name])
        else:
            out.append(status)
    return fold(out)
