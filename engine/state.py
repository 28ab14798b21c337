"""Statuses (Logic Apps' words, so runAfter maps straight onto them) and how they fold.

    Queued → Running → Succeeded | Failed | TimedOut | Cancelled      (actions and runs)
    (not started)    → Skipped                                         (actions)

A container's status (Scope, If, Switch, a loop iteration) and the run's status come from
its *leaf* actions (nothing runs after them): a Skipped leaf is replaced by the actions it
ran after, repeatedly; then Failed beats TimedOut beats everything else, which is Succeeded.
"""
from __future__ import annotations

from typing import Iterable, Mapping

QUEUED, RUNNING = "Queued", "Running"
SUCCEEDED, FAILED, SKIPPED, TIMEDOUT, CANCELLED = "Succeeded", "Failed", "Skipped", "TimedOut", "Cancelled"
TERMINAL = frozenset({SUCCEEDED, FAILED, SKIPPED, TIMEDOUT, CANCELLED})


def is_terminal(status: str | None) -> bool:
    return status in TERMINAL


def fold(statuses: Iterable[str]) -> str:
    """Failed > TimedOut > anything else (Succeeded)."""
    seen = set(statuses)
    if FAILED in seen:
        return FAILED
    if TIMEDOUT in seen:
        return TIMEDOUT
    return SUCCEEDED


def block_status(leaves: list[str], run_after: Mapping[str, Iterable[str]],
                 status_of: Mapping[str, str]) -> str:
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
