"""Reading a run's steps from the store: what a resume, a rerun and ``result()`` of a loop read
must be exactly the steps asked for, in the order they happened, at a cost that does not grow
with the size of the run (a resumed loop reads every reused iteration once)."""
import sqlite3

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.store import Store


def _fill(store: Store, run_id: str, paths: list[str]) -> None:
    for p in paths:
        store.step_finished(run_id, p, p.rpartition("/")[2].partition("[")[0] or "x", "Compose", "Succeeded",
                            attempts=1, inputs=None, outputs=p, error=None, started=0.0, ended=0.0, commit=False)
    store.flush()


def _instructions(db: sqlite3.Connection, read) -> int:
    count = [0]

    def tick() -> int:
        count[0] += 1
        return 0
    db.set_progress_handler(tick, 100)
    try:
        read()
    finally:
        db.set_progress_handler(None, 100)
    return count[0]


def test_reading_one_loop_iteration_costs_the_same_in_a_small_and_a_huge_run(tmp_path):
    costs = {}
    for n in (1_000, 15_000):
        store = Store(tmp_path / f"s{n}.db")
        paths = [p for i in range(n) for p in (f"loop[{i}]", f"loop[{i}]/c")]
        _fill(store, "r", paths)
        costs[n] = _instructions(store.db, lambda: list(store.iter_steps("r", prefix=f"loop[{n // 2}]")))
        assert [s.path for s in store.iter_steps("r", prefix=f"loop[{n // 2}]")] == [f"loop[{n // 2}]/c"]
        store.close()
    assert costs[15_000] <= 2 * costs[1_000] + 5, costs  # a scan of the run would cost 15x


SEGMENT = st.sampled_from(["a", "b", "loop", "lo", "loop2", "in"])
PATH = st.lists(st.tuples(SEGMENT, st.one_of(st.none(), st.integers(0, 12))), min_size=1, max_size=3).map(
    lambda parts: "/".join(name + ("" if i is None else f"[{i}]") for name, i in parts))


@settings(max_examples=30, deadline=None)
@given(paths=st.lists(PATH, min_size=1, max_size=40, unique=True), pick=st.integers(0, 39),
       page=st.integers(1, 8), cut=st.integers(0, 3))
def test_steps_inside_a_prefix_are_exactly_those_below_it_in_the_order_they_happened(tmp_path_factory, paths, pick,
                                                                                     page, cut):
    store = Store(tmp_path_factory.mktemp("s") / "state.db")
    try:
        order = list(reversed(paths))  # finished in an order unrelated to the paths' own order
        _fill(store, "r", order)
        chosen = order[pick % len(order)]
        parts = chosen.split("/")
        prefix = "/".join(parts[:max(1, len(parts) - cut)])
        expected = [p for p in order if p.startswith(prefix + "/") or p.startswith(prefix + "[")]
        got = [s.path for s in store.iter_steps("r", prefix=prefix, page=page)]
        assert got == expected
        assert [s.path for s in store.iter_steps("r", page=page)] == order
    finally:
        store.close()
