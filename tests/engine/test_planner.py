"""engine/planner.py: runAfter graphs, their problems, straight-line chains, "finished before"."""
import textwrap

import pytest

from engine.loader import load_text
from engine.model import Action, Block, RetryPolicy
from engine.planner import finished_before, plan_block, suggest


def block(run_after: dict[str, list[str]]) -> Block:
    """A block of Compose actions named by ``run_after`` keys, each waiting for the listed ones."""
    actions = {name: Action(name, "Compose", None, {}, None, {p: ("Succeeded",) for p in preds},
                            RetryPolicy(), None, None, f"actions.{name}")
               for name, preds in run_after.items()}
    b = Block("", actions)
    for a in actions.values():
        a.block = b
    return b


def problems(run_after: dict[str, list[str]], elsewhere: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    b = block(run_after)
    every = dict(b.actions)
    every.update({name: None for name in elsewhere})
    return plan_block(b, every)


@pytest.mark.parametrize("name, candidates, hint", [
    ("charge_cusomer", ["charge_customer", "notify"], " (did you mean 'charge_customer'?)"),
    ("Compse", ["Compose", "Http"], " (did you mean 'Compose'?)"),
    ("zzz", ["Compose", "Http"], ""),
    ("anything", [], ""),
])
def test_suggest_names_the_closest_candidate_or_nothing(name, candidates, hint):
    assert suggest(name, candidates) == hint


@pytest.mark.parametrize("run_after, elsewhere, expected", [
    ({"a": [], "b": ["a"]}, (), []),
    ({"a": ["a"]}, (), [("actions.a.runAfter.a", "'a' cannot run after itself")]),
    ({"a": [], "b": ["ghost"]}, (), [("actions.b.runAfter.ghost", "unknown action 'ghost'")]),
    ({"first": [], "b": ["frist"]}, (), [("actions.b.runAfter.frist",
                                         "unknown action 'frist' (did you mean 'first'?)")]),
    ({"a": [], "b": ["inner"]}, ("inner",),
     [("actions.b.runAfter.inner", "'inner' is not in the same scope as 'b'; runAfter may only name siblings")]),
    ({"a": ["c"], "b": ["a"], "c": ["b"]}, (), [("actions.b.runAfter", "cycle in runAfter: a -> b -> c -> a")]),
])
def test_run_after_problems_are_named_one_per_line(run_after, elsewhere, expected):
    assert problems(run_after, elsewhere) == expected


@pytest.mark.parametrize("run_after, chain", [
    ({"a": [], "b": ["a"], "c": ["b"]}, ["a", "b", "c"]),
    ({"only": []}, ["only"]),
    ({"a": [], "b": []}, None),                       # two starts
    ({"a": [], "b": ["a"], "c": ["a"]}, None),        # a fan-out
    ({"a": [], "b": [], "c": ["a", "b"]}, None),      # a join
])
def test_a_straight_line_is_planned_as_a_chain_and_anything_else_is_not(run_after, chain):
    b = block(run_after)
    assert plan_block(b, dict(b.actions)) == []
    assert b.chain == chain


def test_the_plan_knows_starts_leaves_and_dependents():
    b = block({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]})
    plan_block(b, dict(b.actions))
    assert (b.starts, b.leaves) == (["a"], ["d"])
    assert b.dependents == {"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": []}


FLOW = load_text(textwrap.dedent("""
    actions:
      first: {type: Compose, inputs: 1}
      try:
        type: Scope
        runAfter: {first: [Succeeded]}
        actions:
          inner: {type: Compose, inputs: 2}
          after_inner: {type: Compose, inputs: 3, runAfter: {inner: [Succeeded]}}
      parallel: {type: Compose, inputs: 4}
      last: {type: Compose, inputs: 5, runAfter: {try: [Succeeded, Failed]}}
      poll:
        type: Until
        expression: "{{ outputs('probe') == 1 }}"
        limit: {count: 2}
        actions:
          probe: {type: Compose, inputs: 1}
"""))


@pytest.mark.parametrize("target, user, inside_ok, finished", [
    ("first", "try", False, True),          # upstream sibling
    ("first", "inner", False, True),        # upstream of an ancestor
    ("inner", "after_inner", False, True),  # upstream sibling inside the scope
    ("inner", "last", False, True),         # inside a container that is upstream
    ("parallel", "last", False, False),     # no runAfter path: may still be running
    ("last", "first", False, False),        # downstream
    ("first", "first", False, False),       # itself
    ("probe", "poll", True, True),          # Until evaluates its condition after its body
    ("probe", "poll", False, False),
])
def test_finished_before_follows_run_after_through_scopes(target, user, inside_ok, finished):
    assert finished_before(FLOW.actions[target], FLOW.actions[user], inside_ok=inside_ok) is finished


# -- cycles: every tangle named once, instantly, whatever the graph -----------------------------
import re  # noqa: E402
import time  # noqa: E402

from hypothesis import given, settings, strategies as st  # noqa: E402

NAMES = [f"n{i}" for i in range(10)]


def tangles(run_after: dict[str, list[str]]) -> list[set[str]]:
    """Groups of two or more actions that each reach the others (computed without networkx)."""
    reach = {n: set(preds) for n, preds in run_after.items()}
    changed = True
    while changed:
        changed = False
        for n in reach:
            more = set().union(*(reach[p] for p in reach[n])) - reach[n]
            if more:
                reach[n] |= more
                changed = True
    groups: list[set[str]] = []
    for n in run_after:
        group = {n} | {m for m in reach[n] if n in reach[m]}
        if len(group) > 1 and group not in groups:
            groups.append(group)
    return groups


@st.composite
def graphs(draw) -> dict[str, list[str]]:
    names = NAMES[: draw(st.integers(1, len(NAMES)))]
    return {n: sorted(set(draw(st.lists(st.sampled_from(names), max_size=3))) - {n}) for n in names}


@settings(deadline=None, max_examples=300)
@given(graphs())
def test_validation_of_any_run_after_graph_ends_within_a_second_and_names_every_cycle(run_after):
    started = time.perf_counter()
    found = [message for _, message in problems(run_after) if message.startswith("cycle in runAfter")]
    assert time.perf_counter() - started < 1.0
    expected = tangles(run_after)
    assert len(found) == len(expected)
    named = [set(re.findall(r"n\d", message)) for message in found]
    assert sorted(map(sorted, named)) == sorted(map(sorted, expected))


@pytest.mark.parametrize("run_after, message", [
    # an entry point into the cycle: the straight-line planner used to walk b -> c -> b forever
    ({"a": [], "b": ["a", "c"], "c": ["b"]}, "cycle in runAfter: b -> c -> b"),
    ({"a": [], "b": ["a", "d"], "c": ["b"], "d": ["c"]}, "cycle in runAfter: b -> c -> d -> b"),
    ({"a": ["b"], "b": ["a"], "c": ["d"], "d": ["c"]}, "cycle in runAfter: a -> b -> a"),
])
def test_a_cycle_with_an_entry_point_is_one_problem_line_not_a_hang(run_after, message):
    assert message in [m for _, m in problems(run_after)]
