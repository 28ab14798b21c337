"""A flow's actions laid out as a DAG for the run page: boxes in layers, edges for runAfter.

Each block (the flow's root, a Scope's actions, an If's branches, a loop's body) is laid out
on its own, left to right: an action's layer is one past the deepest action it runs after.
``diagram`` returns the positions and the status of each box; the template draws the SVG,
so every name passes through the template's escaping. A container's blocks are sections
under its diagram, opened when something in them did not succeed.

The status of a box comes from ``status_of(action, path)`` (a step) or, for the body of a
loop when no iteration is chosen, ``counts_of(loop path)`` (every iteration's steps counted
by status).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from engine.model import Action, Block

W, H, GAP_X, GAP_Y, PAD = 176, 44, 54, 16, 8
SEVERITY = ["Failed", "TimedOut", "Cancelled", "Running", "Waiting", "Queued", "Succeeded", "Skipped"]


@dataclass
class Box:
    name: str
    type: str
    path: str  # the step's path (for a loop's body without an iteration: the loop's path + "[]/name")
    x: int
    y: int
    status: str  # a Status name, or "NotRun"
    note: str = ""  # a loop body's counts: "3 Succeeded, 1 Failed"
    container: bool = False

    @property
    def label(self) -> str:
        return self.name if len(self.name) <= 22 else self.name[:21] + "…"


@dataclass
class Edge:
    d: str  # SVG path data
    label: str
    lx: int
    ly: int


@dataclass
class Section:
    """One block of a container action: ``owner`` (its name), ``key`` (actions, else, case:x)."""

    owner: str
    owner_type: str
    key: str
    diagram: "Diagram"
    open: bool
    loop_path: str | None = None  # set for a loop's body: the iteration strip goes here


@dataclass
class Diagram:
    boxes: list[Box]
    edges: list[Edge]
    width: int
    height: int
    sections: list[Section] = field(default_factory=list)

    @property
    def bad(self) -> bool:
        return any(b.status in ("Failed", "TimedOut", "Cancelled") for b in self.boxes) or any(
            s.diagram.bad for s in self.sections)


def worst(counts: dict[str, int]) -> str:
    for status in SEVERITY:
        if counts.get(status):
            return status
    return "NotRun"


def layers(block: Block) -> dict[str, int]:
    out: dict[str, int] = {}

    def depth(name: str, seen: frozenset = frozenset()) -> int:
        if name not in out:
            preds = [p for p in block.actions[name].run_after if p in block.actions and p not in seen]
            out[name] = 1 + max((depth(p, seen | {name}) for p in preds), default=-1)
        return out[name]

    for name in block.actions:
        depth(name)
    return out


def diagram(block: Block, prefix: str, status_of: Callable[[Action, str], str | None],
            counts_of: Callable[[str], dict[str, dict[str, int]]], chosen: dict[str, str],
            aggregate: dict[str, dict[str, int]] | None = None) -> Diagram:
    """The layout of ``block`` whose actions' paths start with ``prefix`` (``""`` for the root).
    ``chosen`` maps a loop's path to the iteration path the page shows (``loop[3]``);
    ``aggregate`` is set inside a loop body shown without an iteration (counts by action)."""
    depth = layers(block)
    rows: dict[int, int] = {}
    boxes: dict[str, Box] = {}
    sections: list[Section] = []
    for name, action in block.actions.items():
        layer = depth[name]
        row = rows.get(layer, 0)
        rows[layer] = row + 1
        path = f"{prefix}/{name}" if prefix else name
        note = ""
        if aggregate is not None:
            counts = aggregate.get(name, {})
            status = worst(counts)
            note = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        else:
            status = status_of(action, path) or "NotRun"
        boxes[name] = Box(name, action.type, path, PAD + layer * (W + GAP_X), PAD + row * (H + GAP_Y), status, note,
                          bool(action.blocks))
        for key, sub in action.blocks.items():
            loop_path = path if action.node.loops else None
            if aggregate is not None:
                inner = diagram(sub, f"{path}[]", status_of, counts_of, chosen, aggregate)
            elif loop_path is not None and loop_path in chosen:
                inner = diagram(sub, chosen[loop_path], status_of, counts_of, chosen)
            elif loop_path is not None:
                inner = diagram(sub, f"{path}[]", status_of, counts_of, chosen, counts_of(path))
            else:
                inner = diagram(sub, path, status_of, counts_of, chosen)
            sections.append(Section(name, action.type, key, inner, open=inner.bad or loop_path in chosen,
                                    loop_path=loop_path))
    edges = []
    for name, action in block.actions.items():
        b = boxes[name]
        for pred, statuses in action.run_after.items():
            p = boxes.get(pred)
            if p is None:
                continue
            x1, y1, x2, y2 = p.x + W, p.y + H // 2, b.x, b.y + H // 2
            mid = (x1 + x2) // 2
            label = "" if list(statuses) == ["Succeeded"] else "|".join(str(s) for s in statuses)
            edges.append(Edge(f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}", label, mid, (y1 + y2) // 2 - 4))
    width = PAD * 2 + (max(depth.values(), default=0) + 1) * (W + GAP_X) - GAP_X
    height = PAD * 2 + max(rows.values(), default=1) * (H + GAP_Y) - GAP_Y
    return Diagram(list(boxes.values()), edges, width, height, sections)
