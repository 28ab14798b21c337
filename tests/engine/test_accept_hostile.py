"""Engine.accept under hostile checkpoints: a run and its checkpoint commit together or not at
all, whatever the trigger hands over (values that are not JSON, keys that are not strings, a
database that refuses the write), and keys and values with quotes, backslashes and NUL come
back exactly as saved."""
from __future__ import annotations

import contextlib
import sqlite3

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.api import Engine
from engine.errors import StoreError
from engine.loader import load_text

FLOW = """\
name: sink
triggers:
  feed: {type: Manual}
actions:
  a: {type: Compose, inputs: "{{ triggerBody() }}"}
"""


def committed(path) -> tuple[int, int]:
    """(runs, checkpoints) another connection sees: only committed rows."""
    with contextlib.closing(sqlite3.connect(str(path))) as con:
        runs = con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        try:
            points = con.execute("SELECT COUNT(*) FROM trigger_checkpoints").fetchone()[0]
        except sqlite3.OperationalError:
            points = 0
    return runs, points


@pytest.mark.parametrize("checkpoint", [{"p0": {1, 2}}, {"p0": b"\x00\xff"}, {"p0": object()},
                                        {"p0": float("nan")}, {"p0": 1, 7: 2}, {"p0": [float("inf")]}],
                         ids=["set", "bytes", "object", "nan", "int-key", "inf"])
def test_a_checkpoint_that_cannot_be_stored_starts_no_run_and_moves_no_checkpoint(tmp_path, checkpoint):
    eng = Engine(tmp_path / "state.db")
    flow = load_text(FLOW, "sink.yaml", registry=eng.registry)
    try:
        with pytest.raises(ValueError, match="checkpoint"):
            anyio.run(lambda: eng.accept(flow, "feed", {"body": 1}, "m1", checkpoint=checkpoint))
        later = anyio.run(lambda: eng.accept(flow, "feed", {"body": 2}, "m2", checkpoint={"p0": 5}))
        assert not later.duplicate
        assert committed(tmp_path / "state.db") == (1, 1)
        assert eng.checkpoint("sink", "feed", "p0") == 5
        assert eng.find_run("sink", "m1") is None
    finally:
        eng.close()


def test_a_checkpoint_the_database_refuses_rolls_back_its_run_and_later_runs_still_resume(tmp_path):
    eng = Engine(tmp_path / "state.db")
    flow = load_text(FLOW, "sink.yaml", registry=eng.registry)
    try:
        eng.checkpoint("sink", "feed")  # creates the table
        eng.store.db.execute("CREATE TRIGGER refuse BEFORE INSERT ON trigger_checkpoints "
                             "BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        eng.store.db.commit()
        with pytest.raises(StoreError, match="checkpoint could not be recorded"):
            anyio.run(lambda: eng.accept(flow, "feed", {"body": 1}, "m1", checkpoint={"p0": 1}))
        assert committed(tmp_path / "state.db") == (0, 0)
        eng.store.db.execute("DROP TRIGGER refuse")
        eng.store.db.commit()
        got = anyio.run(lambda: eng.accept(flow, "feed", {"body": 2}, "m2", checkpoint={"p0": 2}))
        eng.store.flush()
        assert committed(tmp_path / "state.db") == (1, 1)
        assert eng.result(got.run_id).definition, "the rolled-back run must not take the flow's definition with it"
    finally:
        eng.close()


TEXT = st.text(alphabet=st.sampled_from(list("ab'\"\\\x00\n/[]é\u2028")), max_size=12)
JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**53, 2**53), TEXT),
                    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
                    max_leaves=8)


@settings(max_examples=20, deadline=None)
@given(key=TEXT, value=JSON)
def test_checkpoint_keys_and_values_with_quotes_backslashes_and_nul_come_back_exactly(tmp_path_factory, key, value):
    path = tmp_path_factory.mktemp("cp") / "state.db"
    eng = Engine(path)
    try:
        anyio.run(lambda: eng.save_checkpoint("sink", "feed", key, value))
    finally:
        eng.close()
    again = Engine(path)
    try:
        assert again.checkpoint("sink", "feed", key) == value
    finally:
        again.close()
