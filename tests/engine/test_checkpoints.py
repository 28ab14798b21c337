"""Engine.accept and trigger checkpoints: a run is committed, with its checkpoint, before accept
returns; a de-duplication key seen before starts nothing; a run that cannot start moves no
checkpoint."""
from __future__ import annotations

import contextlib
import json
import sqlite3

import anyio
import pytest

from engine.api import Engine
from engine.errors import FlowrunError
from engine.loader import load_text

FLOW = """\
name: sink
triggers:
  feed: {type: Manual}
parameters:
  must: {type: string}
actions:
  a: {type: Compose, inputs: "{{ triggerBody() }}"}
"""


@pytest.fixture
def engine(tmp_path):
    e = Engine(tmp_path / "state.db")
    yield e
    e.close()


def committed(tmp_path) -> tuple[list, list]:
    """What another connection sees: only committed rows."""
    with contextlib.closing(sqlite3.connect(str(tmp_path / "state.db"))) as con:
        runs = con.execute("SELECT id, dedupe_key FROM runs ORDER BY created").fetchall()
        points = con.execute("SELECT key, value FROM trigger_checkpoints").fetchall()
    return runs, points


def test_accept_returns_only_after_the_run_and_its_checkpoint_are_committed(engine, tmp_path):
    flow = load_text(FLOW.replace("  must: {type: string}\n", "  must: {type: string, defaultValue: x}\n"))

    async def main():
        got = await engine.accept(flow, "feed", {"body": {"n": 1}}, "feed:m-1", checkpoint={"p0": 7})
        seen = committed(tmp_path)  # read before anything else can commit
        return got, seen

    got, (runs, points) = anyio.run(main)
    assert not got.duplicate
    assert runs == [(got.run_id, "feed:m-1")]
    assert points == [("p0", "7")]
    assert engine.checkpoint("sink", "feed", "p0") == 7
    assert engine.run_record(got.run_id).request == {"via": "trigger", "trigger": "feed"}


def test_the_same_key_twice_gives_one_run_and_the_checkpoint_still_moves(engine, tmp_path):
    flow = load_text(FLOW.replace("  must: {type: string}\n", "  must: {type: string, defaultValue: x}\n"))

    async def main():
        first = await engine.accept(flow, "feed", {"body": 1}, "feed:k", checkpoint={"": 1})
        again = await engine.accept(flow, "feed", {"body": 1}, "feed:k", checkpoint={"": 2})
        return first, again

    first, again = anyio.run(main)
    assert again.duplicate and again.run_id == first.run_id
    runs, points = committed(tmp_path)
    assert len(runs) == 1 and points == [("", "2")]


def test_a_run_that_cannot_start_moves_no_checkpoint(engine, tmp_path):
    flow = load_text(FLOW)  # the parameter 'must' has no default: the run cannot start

    async def main():
        await engine.save_checkpoint("sink", "feed", "", 5)
        with pytest.raises(FlowrunError, match="parameter 'must' is required"):
            await engine.accept(flow, "feed", {"body": 1}, "feed:k", checkpoint={"": 6})
        engine.flush()

    anyio.run(main)
    assert committed(tmp_path) == ([], [("", json.dumps(5))])
