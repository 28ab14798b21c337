"""What answers for a node instead of running it: a flow test's mock, a Logic Apps static result,
a plan's example outputs.

Every action's operation runs through one function, ``Runtime._dispatch`` in the executor (the
*node boundary*): the engine's ``boundary`` (a ``Boundary``) decides there whether the node runs
or a ``StandIn`` answers for it. Everything around the boundary runs for real: inputs are rendered,
``runAfter``, Scope, If, Switch, Foreach and Until do what they do, results are stored.

- ``Boundary``: the default; a Logic Apps static result (``runtimeConfiguration.staticResult``
  naming an entry of the definition's ``staticResults``) answers, else the node runs.
- ``engine.testing.runner``'s boundary adds a test file's mocks and the network guard;
  ``engine.dryrun``'s answers with mocks or declared example outputs and records side effects.

A stand-in is a status (Succeeded, Failed, TimedOut; Skipped and Cancelled for Logic Apps' static
results), outputs and an error, or a list of them,
one per loop iteration (the innermost ``[N]`` of the action's path picks the entry).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .state import CANCELLED, FAILED, SKIPPED, SUCCEEDED, TIMEDOUT

STATUSES = (SUCCEEDED, FAILED, TIMEDOUT, SKIPPED, CANCELLED)  # what a stand-in may end an action with
_ITERATION = re.compile(r"\[(\d+)\](?=/[^\[\]]*$)")


class StoodIn(Exception):
    """Raised at the boundary by a stand-in that does not succeed; the executor records the action
    with its status, error and outputs (a failed Http keeps its status code and body, as in Logic
    Apps), and does not retry it."""

    def __init__(self, status: str, outputs: Any, error: dict | None):
        self.status = status
        self.outputs = outputs
        self.error = error
        super().__init__(status)


@dataclass(frozen=True)
class StandIn:
    status: str = SUCCEEDED
    outputs: Any = None
    error: dict | None = None

    def answer(self) -> Any:
        """The outputs (Succeeded); else StoodIn, with the error the action ends with."""
        if self.status == SUCCEEDED:
            return self.outputs
        error = self.error
        if self.status in (FAILED, TIMEDOUT):
            error = {"code": "ActionTimedOut" if self.status == TIMEDOUT else "ActionFailed",
                     "message": f"{self.status} (stand-in)", **(self.error or {})}
        raise StoodIn(self.status, self.outputs, error)


def iteration(path: str) -> int | None:
    """The index of the innermost loop iteration around the action at ``path`` (None outside loops)."""
    m = _ITERATION.search(path)
    return int(m.group(1)) if m else None


def pick(entry: StandIn | list[StandIn], path: str) -> StandIn | None:
    """One stand-in for the action at ``path``: the entry, or a list's entry for this iteration
    (past the list's end, its last entry; outside a loop, its first)."""
    if not isinstance(entry, list):
        return entry
    if not entry:
        return None
    index = iteration(path)
    return entry[min(index or 0, len(entry) - 1)]


def static_result(action: Any, flow: Any) -> StandIn | None:
    """A Logic Apps static result for ``action`` (engine.runtimeconfig reads it: its
    ``runtimeConfiguration.staticResult`` names an entry of the definition's ``staticResults``);
    containers are never stood in for."""
    from .runtimeconfig import static_result as configured

    if action.blocks:
        return None
    found = configured(action.raw, getattr(flow, "raw", {}).get("staticResults") or {})
    return None if found is None else StandIn(found.status, found.outputs, found.error)


def stand_in(entry: dict) -> StandIn:
    """A StandIn from its written form {status, outputs, error} (status in any letter case)."""
    from .state import Status

    status = Status.of(str(entry.get("status") or SUCCEEDED)).value
    error = entry.get("error")
    if error is not None and not isinstance(error, dict):
        error = {"message": str(error)}
    return StandIn(status, entry.get("outputs"), error)


class Boundary:
    """Decides, for each action, whether its node runs or a stand-in answers."""

    def stand_in(self, node: Any, inputs: Any, ctx: Any) -> StandIn | None:
        return static_result(ctx.action, ctx._runtime.flow)

    async def dispatch(self, node: Any, inputs: Any, ctx: Any) -> Any:
        answer = self.stand_in(node, inputs, ctx)
        if answer is not None:
            return answer.answer()
        return await node.run(inputs, ctx)


DEFAULT = Boundary()
