"""Plans a flow: one runAfter graph per block (``Block.dependents``: plain dicts, no graph library), checked for unknown names and cycles, and
the "finished before" relation the validator uses for expression references.

An action Y is *guaranteed finished* before X starts when some ancestor-or-self of Y and
some ancestor-or-self of X are siblings in one block and the first is upstream (through
runAfter) of the second, or when Y sits inside a container that X itself evaluates after
running it (an Until's condition).
"""
from __future__ import annotations

import difflib
from collections import deque
from typing import Any

from .model import Action, Block


def suggest(name: str, candidates: list[str] | set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def plan_block(block: Block, all_actions: dict[str, Action]) -> list[tuple[str, str]]:
    """Fill in the block's graph; return [(dotted path in file, message)] problems."""
    problems: list[tuple[str, str]] = []
    dependents: dict[str, list[str]] = {n: [] for n in block.actions}
    waits: dict[str, int] = dict.fromkeys(block.actions, 0)  # siblings each action runs after
    for name, action in block.actions.items():
        for pred in action.run_after:
            where = f"{action.where}.runAfter.{pred}"
            if pred == name:
                problems.append((where, f"'{name}' cannot run after itself"))
            elif pred in block.actions:
                dependents[pred].append(name)
                waits[name] += 1
            elif pred in all_actions:
                problems.append((where, f"'{pred}' is not in the same scope as '{name}'; runAfter "
                                        f"may only name siblings{suggest(pred, set(block.actions) - {name})}"))
            else:
                problems.append((where, f"unknown action '{pred}'{suggest(pred, set(block.actions) - {name})}"))
    block.dependents = dependents
    problems += _cycles(block)
    block.starts = [n for n in block.actions if waits[n] == 0]
    block.leaves = [n for n in block.actions if not dependents[n]]
    block.run_after = {n: a.run_after for n, a in block.actions.items()}
    block.chain = _chain(block)
    return problems


def _cycles(block: Block) -> list[tuple[str, str]]:
    """One problem per tangle of actions that wait on each other (a strongly connected
    component with more than one action), naming one cycle through it and the rest of it."""
    out: list[tuple[str, str]] = []
    for tangle in _tangles(block.actions, block.dependents):
        names = _cycle_through(tangle[0], set(tangle), block.dependents)
        message = "cycle in runAfter: " + " -> ".join(names)
        rest = [n for n in tangle if n not in names]
        if rest:
            message += f" (also caught in it: {', '.join(rest)})"
        out.append((f"{block.actions[names[1]].where}.runAfter", message))
    return out


def _tangles(order: Any, edges: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node, each in ``order``, ordered by their
    first node (Tarjan's algorithm, iterative: a 100,000-action chain needs no deep recursion)."""
    rank = {n: i for i, n in enumerate(order)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in order:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(edges[nxt])))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component, key=rank.__getitem__))
    return sorted(found, key=lambda c: rank[c[0]])


def _cycle_through(start: str, within: set[str], edges: dict[str, list[str]]) -> list[str]:
    """The shortest cycle from ``start`` back to it, inside ``within``: [start, ..., start]."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in edges[node]:
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return list(reversed(path)) + [start]
            if nxt in within and nxt not in came_from:
                came_from[nxt] = node
                queue.append(nxt)
    return [start, start]  # not reached: ``start`` is in a tangle


def _reaches(block: Block, source: str, target: str) -> bool:
    """Whether ``target`` runs after ``source``, directly or through others, in ``block``."""
    seen, queue = {source}, deque([source])
    while queue:
        for nxt in block.dependents.get(queue.popleft(), ()):
            if nxt == target:
                return True
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return False


def _downstream(block: Block, source: str) -> set[str]:
    seen: set[str] = set()
    queue = deque([source])
    while queue:
        for nxt in block.dependents.get(queue.popleft(), ()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    seen.discard(source)
    return seen


def _chain(block: Block) -> list[str] | None:
    """The block's actions in order if it is a straight line (each waits for at most the one
    before it), which the executor runs without a task group; else None."""
    if len(block.starts) != 1 or any(len(d) > 1 for d in block.dependents.values()):
        return None
    order = [block.starts[0]]
    while block.dependents[order[-1]] and len(order) <= len(block.actions):  # bounded: a cycle
        order.append(block.dependents[order[-1]][0])
    return order if len(order) == len(block.actions) else None


def finished_before(target: Action, user: Action, *, inside_ok: bool = False) -> bool:
    """Is ``target`` guaranteed to have finished when ``user`` evaluates its expressions?"""
    user_chain = [user] + user.ancestors()
    target_chain = [target] + target.ancestors()
    if inside_ok and user in target_chain[1:]:
        return True
    for t in target_chain:
        for u in user_chain:
            if t.block is u.block and t is not u and _reaches(t.block, t.name, u.name):
                return True
    return False


def rerun_set(target: Action) -> set[str]:
    """Names of the actions a rerun from ``target`` runs again.

    The target, everything downstream of it in its block, everything nested in those, and
    for every container around it, the container itself and what is downstream of it."""
    again: set[str] = set()

    def with_nested(action: Action) -> None:
        again.add(action.name)
        for block in action.blocks.values():
            for inner in block.actions.values():
                with_nested(inner)

    def with_downstream(action: Action) -> None:
        for name in _downstream(action.block, action.name):
            with_nested(action.block.actions[name])

    with_nested(target)
    with_downstream(target)
    container = target.parent
    while container is not None:
        again.add(container.name)  # runs again, reusing what inside it is not downstream
        with_downstream(container)
        container = container.parent
    return again


def plan_rerun(flow: Any, from_action: str) -> list[str]:
    """The names of the actions a rerun from ``from_action`` runs again (the rest is reused)."""
    from .errors import StoreError

    target = flow.actions.get(from_action)
    if target is None:
        raise StoreError(f"no action '{from_action}' in flow '{flow.name}'{suggest(from_action, flow.actions)}")
    return sorted(rerun_set(target))
