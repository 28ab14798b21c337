"""``flowrun plan``: a whole-flow dry run, with no network and no side effect.

The flow runs for real on a throw-away state database, with a virtual clock, up to the node
boundary: every action's inputs are rendered from the payload, conditions and loops take the
branches they would take. At the boundary, an action that acts outside the run (it declares an
``effect``) or talks to a vendor (it has a connection) does not run: its effect is noted
("would POST to ...", "would send SMS to +1...") and its outputs come from the test file's mock,
else from the node's declared example outputs, so what is downstream can go on. Actions that
change nothing outside the run (Compose, variables, conditions, Terminate) run as they would.
The network guard is on the whole time: an action that would still reach out fails, named.

    plan = dry_run(engine, flow, input=..., params=..., mocks=...)   # Plan
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .inspection import one_line
from .standins import Boundary, StandIn, pick


@dataclass
class Effect:
    path: str
    type: str
    effect: str | None  # None: a vendor read (its outputs stood in)
    stood_in: str  # where its outputs came from: "mock", "static result" or "example"


@dataclass
class Plan:
    flow: str
    status: str
    effects: list[Effect] = field(default_factory=list)
    actions: list[dict] = field(default_factory=list)  # every step: path, type, status, inputs, outputs, error
    error: Any = None
    response: Any = None

    def as_dict(self) -> dict:
        return {"flow": self.flow, "status": self.status, "error": self.error, "response": self.response,
                "effects": [{"action": e.path, "type": e.type, "effect": e.effect, "outputs": e.stood_in}
                            for e in self.effects],
                "actions": self.actions}


def effect_line(node: Any, inputs: Any) -> str | None:
    """``node.effect(inputs)`` as the plan prints it. The payload chose the text: one bounded line,
    control characters escaped (a newline in a phone number cannot print a plan line of its own,
    an ANSI escape cannot reach a terminal); a describe that cannot read these inputs says so."""
    try:
        effect = node.effect(inputs)
    except Exception as exc:  # noqa: BLE001
        effect = f"would run {node.type} ({type(exc).__name__} describing it)"
    return one_line(str(effect), 300) if effect is not None else None


class PlanBoundary(Boundary):
    """Runs what changes nothing outside the run; notes and stands in for the rest."""

    def __init__(self, flow: Any, mocks: dict[str, StandIn | list[StandIn]] | None = None):
        self.flow = flow
        self.mocks = mocks or {}
        self.effects: list[Effect] = []

    def stand_in(self, node: Any, inputs: Any, ctx: Any) -> StandIn | None:
        static = super().stand_in(node, inputs, ctx)
        outside = node.has_effect() or ctx.action.connection is not None or node.connection is not None
        if not outside and static is None:
            return None
        effect = effect_line(node, inputs) if node.has_effect() else None
        mock = self.mocks.get(ctx.action.name) if ctx._runtime.flow is self.flow else None
        chosen = pick(mock, ctx.path) if mock is not None else None
        source = "mock" if chosen is not None else "static result" if static is not None else "example"
        self.effects.append(Effect(ctx.path, node.type, effect, source))
        return chosen or static or StandIn(outputs=node.example_output())


async def dry_run(engine: Any, flow: Any, *, input: Any = None, params: dict | None = None,
                  mocks: dict | None = None) -> Plan:
    """Run ``flow`` as a plan on ``engine`` (a throw-away engine: its store keeps the plan's steps)."""
    from .testing.network import NetworkGuard

    boundary = PlanBoundary(flow, mocks)
    engine.boundary = boundary
    with NetworkGuard() as guard:
        run = await engine.run(flow, input=input, params=params or {})
    plan = Plan(flow.name, str(run.status), boundary.effects, error=run.error, response=run.response)
    for step in engine.steps(run.id):
        if step.type == "Iteration":
            continue
        row = {"action": step.path, "type": step.type, "status": str(step.status), "inputs": step.inputs,
               "outputs": step.outputs, "error": step.error}
        plan.actions.append(row)
    for attempt in guard.attempts:
        plan.effects.append(Effect(attempt.action or "-", "network", f"blocked: {attempt}", "none"))
    return plan
