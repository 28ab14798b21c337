"""Plans a flow: one runAfter graph per block, checked for unknown names and cycles, and
the "finished before" relation the validator uses for expression references.

An action Y is *guaranteed finished* before X starts when some ancestor-or-self of Y and
some ancestor-or-self of X are siblings in one block and the first is upstream (through
runAfter) of the second, or when Y sits inside a container that X itself evaluates after
running it (an Until's condition).
"""
from __future__ import annotations

import difflib
from typing import Any

import networkx as nx

from .model import Action, Block


def suggest(name: str, candidates: list[str] | set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def plan_block(block: Block, all_actions: dict[str, Action]) -> list[tuple[str, str]]:
    """Fill in the block's graph; return [(dotted path in file, message)] problems."""
    problems: list[tuple[str, str]] = []
    g = nx.DiGraph()
    g.add_nodes_from(block.actions)
    for name, action in block.actions.items():
        for pred in action.run_after:
            where = f"{action.where}.runAfter.{pred}"
            if pred == name:
                problems.append((where, f"'{name}' cannot run after itself"))
            elif pred in block.actions:
                g.add_edge(pred, name)
            elif pred in all_actions:
                problems.append((where, f"'{pred}' is not in the same scope as '{name}'; runAfter "
                                        f"may only name siblings{suggest(pred, set(block.actions) - {name})}"))
            else:
                problems.append((where, f"unknown action '{pred}'{suggest(pred, set(block.actions) - {name})}"))
    problems += _cycles(block, g)
    block.graph = g
    block.starts = [n for n in block.actions if g.in_degree(n) == 0]
    block.dependents = {n: list(g.successors(n)) for n in block.actions}
    block.leaves = [n for n in block.actions if g.out_degree(n) == 0]
    block.run_after = {n: a.run_after for n, a in block.actions.items()}
    block.chain = _chain(block)
    return problems


def _cycles(block: Block, g: nx.DiGraph) -> list[tuple[str, str]]:
    """One problem per tangle of actions that wait on each other (a strongly connected
    component with more than one action), naming one cycle through it and the rest of it."""
    out: list[tuple[str, str]] = []
    order = {name: i for i, name in enumerate(block.actions)}
    tangles = [sorted(c, key=order.__getitem__) for c in nx.strongly_connected_components(g) if len(c) > 1]
    for tangle in sorted(tangles, key=lambda c: order[c[0]]):
        cycle = nx.find_cycle(g.subgraph(tangle), source=tangle[0])
        names = [edge[0] for edge in cycle] + [cycle[0][0]]
        message = "cycle in runAfter: " + " -> ".join(names)
        rest = [n for n in tangle if n not in names]
        if rest:
            message += f" (also caught in it: {', '.join(rest)})"
        out.append((f"{block.actions[cycle[0][1]].where}.runAfter", message))
    return out


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
            if t.block is u.block and t is not u and nx.has_path(t.block.graph, t.name, u.name):
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
        for name in nx.descendants(action.block.graph, action.name):
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
