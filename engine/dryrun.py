"""``flowrun plan``: a whole-flow dry run, with no network and no side effect.

The flow runs for real on a throw-away state database, with a virtual clock, up to the node
boundary: every action's inputs are rendered from the payload, conditions and loops take the
branches they would take. At the boundary, an action that acts outside the run (it declares an
``effect``), talks to a vendor (it has a connection) or reaches out where the network guard cannot
see (a native or child-process ``transport``) does not run: its effect is noted
("would POST to ...", "would send SMS to +1...") and its outputs come from the test file's mock,
else from the node's declared example outputs, so what is downstream can go on. Actions that
change nothing outside the run (Compose, variables, conditions, Terminate) run as they would.
The network guard is on the whole time: an action that would still reach out fails, named.

    plan = dry_run(engine, flow, input=..., params=..., mocks=...)   # Plan
    print("\n".join(plan.lines()))                                    # as `flowrun plan` shows it
"""
from __future__ import annotations

import json
import re
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

    def lines(self, *, effects_only: bool = False) -> list[str]:
        """The plan as text: the outcome, then (unless ``effects_only``) each action in run order
        with its rendered inputs, the branch a condition took, a loop's first iteration, and
        its side effect; ``effects_only``: the numbered side effects alone."""
        head = f"plan of {self.flow}: the run would end {self.status}"
        if isinstance(self.error, dict):
            head += f" ({one_line(str(self.error.get('message')), 500)})"
        if effects_only:
            return [head, *effect_lines(self.effects)]
        return [head, *action_lines(self.actions, self.effects)]

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
        outside = (node.has_effect() or ctx.action.connection is not None or node.connection is not None
                   or not node.guard_sees())  # a native or child-process transport: never run here
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
    steps = engine.steps(run.id)
    inside: dict[str, list] = {}  # container path -> the steps directly inside it
    for step in steps:
        if "/" in step.path:
            inside.setdefault(step.path.rsplit("/", 1)[0], []).append(step)
    for step in steps:
        if step.type == "Iteration":
            continue
        row = {"action": step.path, "type": step.type, "status": str(step.status), "inputs": step.inputs,
               "outputs": step.outputs, "error": step.error}
        action = flow.actions.get(step.action)
        if action is not None and len(action.blocks) > 1 and not action.node.loops:  # If, Switch
            row["branch"] = _branch_taken(action, inside.get(step.path, []))
        plan.actions.append(row)
    for attempt in guard.attempts:
        plan.effects.append(Effect(attempt.action or "-", "network", f"blocked: {attempt}", "none"))
    return plan


def _branch_taken(action: Any, inside: list) -> str | None:
    """The key of the block whose actions ran (If: "actions" or "else"; Switch: "case:..." or
    "default"); None when none did."""
    ran = {s.action for s in inside if str(s.status) != "Skipped"}
    for key, block in action.blocks.items():
        if ran & set(block.actions):
            return key
    return None


# -- the plan as text ------------------------------------------------------------------------------
WIDE = 100  # a value's longest rendering before it is cut
DEEP = 3  # nesting shown as a block; deeper values print as one (cut) JSON line
TALL = 24  # an action's input lines before the rest are counted, not shown
WIDTH = 10  # a mapping's keys or a list's items shown before the rest are counted
_LAST_INDEX = re.compile(r"\[(\d+)\]$")  # the loop index at the end of a container's path


def effect_lines(effects: list[Effect]) -> list[str]:
    """The side effects, numbered, in the order they would happen."""
    if not effects:
        return ["no side effects"]
    return [f"{n:>3}. {e.path}: {_effect(e)}" for n, e in enumerate(effects, 1)]


def _effect(e: Effect) -> str:
    what = e.effect or f"would read with {e.type}"
    return what + ("" if e.stood_in == "none" else f"  [outputs: {e.stood_in}]")


def action_lines(actions: list[dict], effects: list[Effect]) -> list[str]:
    """Every action in run order, indented under its container; of a loop, the first iteration
    only, and how many more there would be (with their side effects counted)."""
    by_path: dict[str, list[Effect]] = {}
    for e in effects:
        by_path.setdefault(e.path, []).append(e)
    children: dict[str | None, list[dict]] = {}
    for row in actions:
        children.setdefault(_parent(row["action"]), []).append(row)
    by_row = {row["action"]: row for row in actions}
    position = {row["action"]: n for n, row in enumerate(actions)}  # the order steps finished in
    first: dict[str, int] = {}  # a subtree's first finished step: its run order among siblings

    def order(path: str) -> int:
        if path not in first:
            first[path] = min([position[path]] + [order(c["action"]) for c in children.get(path, [])])
        return first[path]

    out: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        rows = sorted(children.get(parent, []), key=lambda r: order(r["action"]))
        branched = parent is not None and "branch" in by_row.get(parent, {})  # an If or a Switch
        shown = [r for r in rows if not _later_iteration(r["action"])
                 and not (branched and r["status"] == "Skipped")]  # the branches not taken
        for row in shown:
            out.extend(_action(row, by_path.get(row["action"], []), depth))
            walk(row["action"], depth + 1)
            more = [r for r in children.get(row["action"], []) if _later_iteration(r["action"])]
            if more:
                out.append("  " * (depth + 1) + _more(row, actions, by_path))
    walk(None, 0)
    blocked = [e for e in effects if e.stood_in == "none"]  # network the guard refused
    out += [f"{e.path}: {e.effect}" for e in blocked if e.path not in {r["action"] for r in actions}]
    return out


def _parent(path: str) -> str | None:
    """The container a step path is inside (its loop's index dropped): ``a[2]/b`` -> ``a``."""
    if "/" not in path:
        return None
    return _LAST_INDEX.sub("", path.rsplit("/", 1)[0])


def _later_iteration(path: str) -> bool:
    """The step belongs to a loop iteration past the first (of its innermost loop)."""
    head = path.rsplit("/", 1)[0] if "/" in path else ""
    m = _LAST_INDEX.search(head)
    return bool(m and int(m.group(1)) > 0)


def _more(loop: dict, actions: list[dict], by_path: dict[str, list[Effect]]) -> str:
    prefix = loop["action"] + "["
    later = [r["action"] for r in actions if r["action"].startswith(prefix) and not r["action"].startswith(prefix + "0]")]
    effects = sum(len(v) for k, v in by_path.items() if k.startswith(prefix) and not k.startswith(prefix + "0]"))
    count = _iterations(loop)
    n = f"{count - 1} more iteration(s)" if isinstance(count, int) else "more iterations"
    return f"... {n} not shown ({len(later)} step(s), {effects} side effect(s); --effects-only lists them all)"


def _iterations(row: dict) -> int | None:
    outputs = row.get("outputs")
    if isinstance(outputs, dict):
        for key in ("count", "iterations"):
            if isinstance(outputs.get(key), int) and not isinstance(outputs.get(key), bool):
                return outputs[key]
    return None


def _action(row: dict, effects: list[Effect], depth: int) -> list[str]:
    pad = "  " * depth
    head = f"{pad}{one_line(row['action'], 200)} ({row['type']}): {row['status']}"
    if row.get("branch"):
        head += f", took its '{one_line(row['branch'], 80)}' branch"
    elif "branch" in row:
        head += ", took no branch"
    count = _iterations(row)
    if count is not None:
        head += f", {count} iteration(s)" + (", the first shown" if count > 1 else "")
    lines = [head]
    lines += [f"{pad}    {_effect(e)}" for e in effects]
    if isinstance(row.get("error"), dict) and row["error"].get("message") and row["status"] != "Succeeded":
        lines.append(f"{pad}    error: {one_line(str(row['error']['message']), 300)}")
    inputs = row.get("inputs")
    if inputs not in (None, {}, []) and row["status"] != "Skipped":
        block = _yamlish(inputs, 0)
        if len(block) > TALL:
            block = block[:TALL] + [f"... {len(block) - TALL} more line(s)"]
        lines.append(f"{pad}    inputs:")
        lines += [f"{pad}      {b}" for b in block]
    return lines


def _yamlish(value: Any, depth: int) -> list[str]:
    """``value`` as indented ``key: value`` / ``- item`` lines; scalars as JSON (strings quoted,
    control characters escaped), long ones cut with the length they had; past ``WIDTH`` keys or
    items, and ``DEEP`` levels, counted instead of shown."""
    if isinstance(value, dict) and value:
        out = []
        for key, item in list(value.items())[:WIDTH]:
            name = str(key) if re.fullmatch(r"[\w.$@-]{1,60}", str(key)) else _scalar(str(key), 60)
            out += _entry(f"{name}:", item, depth)
        return out + ([f"... {len(value) - WIDTH} more key(s)"] if len(value) > WIDTH else [])
    if isinstance(value, list) and value:
        out = []
        for item in value[:WIDTH]:
            out += _entry("-", item, depth)
        return out + ([f"... {len(value) - WIDTH} more item(s)"] if len(value) > WIDTH else [])
    return [_scalar(value, WIDE)]


def _entry(label: str, item: Any, depth: int) -> list[str]:
    if isinstance(item, (dict, list)) and item:
        if depth + 1 >= DEEP:
            return [f"{label} {_folded(item)}"]
        return [label] + ["  " + line for line in _yamlish(item, depth + 1)]
    return [f"{label} {_scalar(item, WIDE)}"]


def _folded(value: dict | list) -> str:
    """A value nested too deep to show: what it is and how big."""
    return f"{{{len(value)} key(s)}}" if isinstance(value, dict) else f"[{len(value)} item(s)]"


def _scalar(value: Any, most: int) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    text = one_line(text, 10 ** 9)
    return text if len(text) <= most else f"{text[:most]}... [{len(text)} chars]"
