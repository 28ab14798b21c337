"""`flowrun prune --older-than AGE` deletes finished runs older than AGE with their steps,
the blobs nothing else refers to and old schedule firings; a run that has not finished, a
recent run and a blob a remaining run shares stay."""
import json
import sqlite3
import textwrap
import time

import anyio
import pytest
from click.testing import CliRunner

from engine.api import Engine
from engine.cli import main
from engine.retention import parse_age, prune

BIG = """
    name: big
    actions:
      make: {type: Compose, inputs: "{{ triggerBody().fill * 1200000 }}"}
"""
DAY = 86400


def cli(tmp_path, *args):
    return CliRunner().invoke(main, ["--state", str(tmp_path / "s.db"), *args])


def age(state, run_id, days):
    db = sqlite3.connect(state)
    with db:
        db.execute("UPDATE runs SET created = created - ?, ended = ended - ? WHERE id = ?",
                   (days * DAY, days * DAY, run_id))
    db.close()


@pytest.fixture
def history(tmp_path):
    flow = tmp_path / "big.yaml"
    flow.write_text(textwrap.dedent(BIG))
    engine = Engine(tmp_path / "s.db")
    try:
        ids = {}
        for name, fill, days in [("old_a", "a", 40), ("old_shared", "b", 40), ("new_shared", "b", 1), ("new", "c", 1)]:
            ids[name] = anyio.run(lambda: engine.run(flow, input={"fill": fill})).id
            age(tmp_path / "s.db", ids[name], days)
        ids["unfinished"] = engine.start(engine.load(flow), input={"fill": "d"})
        engine.flush()
        age(tmp_path / "s.db", ids["unfinished"], 90)
        engine.store.db.execute("INSERT INTO schedule_firings VALUES ('big', 'every', ?, NULL, ?)",
                                (time.time() - 50 * DAY, time.time() - 50 * DAY))
        engine.store.db.execute("INSERT INTO schedule_firings VALUES ('big', 'every', ?, NULL, ?)",
                                (time.time(), time.time()))
        engine.flush()
    finally:
        engine.close()
    return ids


def test_prune_deletes_old_finished_runs_their_steps_blobs_and_firings(tmp_path, history):
    blobs = tmp_path / "s.db.blobs"
    assert len(list(blobs.iterdir())) == 3  # a, b (shared), c
    dry = json.loads(cli(tmp_path, "prune", "--older-than", "30d", "--dry-run", "--json").stdout)
    assert (dry["runs"], dry["steps"], dry["firings"]) == (2, 2, 1)
    assert len(list(blobs.iterdir())) == 3
    out = cli(tmp_path, "prune", "--older-than", "30d")
    assert out.exit_code == 0, out.output
    assert out.stdout.strip() == "deleted 2 run(s), 2 step(s), 1 schedule firing(s), 1 blob(s)"
    left = {r["run_id"] for r in json.loads(cli(tmp_path, "runs", "--json").stdout)}
    assert left == {history["new_shared"], history["new"], history["unfinished"]}
    assert len(list(blobs.iterdir())) == 2  # the shared one stays: a recent run refers to it
    shown = json.loads(cli(tmp_path, "show", history["new_shared"], "--json").stdout)
    assert len(shown["steps"][0]["outputs"]) == 1200000
    db = sqlite3.connect(tmp_path / "s.db")
    assert db.execute("SELECT COUNT(*) FROM steps WHERE run_id IN (?, ?)",
                      (history["old_a"], history["old_shared"])).fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM schedule_firings").fetchone()[0] == 1


def test_prune_twice_deletes_nothing_more(tmp_path, history):
    engine = Engine(tmp_path / "s.db")
    try:
        first, second = prune(engine.store, 30 * DAY), prune(engine.store, 30 * DAY)
    finally:
        engine.close()
    assert first.runs == 2 and (second.runs, second.steps, second.blobs, second.firings) == (0, 0, 0, 0)


def test_prune_deletes_the_files_nodes_kept_for_old_runs_and_keeps_those_a_recent_run_refers_to(tmp_path, history):
    engine = Engine(tmp_path / "s.db")
    try:
        store = engine.store
        files = {name: store.put_file(name.encode()) for name in ("old_a", "new")}
        for name, digest in files.items():
            ref = json.dumps({"file": {"$file": digest, "name": "r.pdf", "contentType": "application/pdf", "size": 3}})
            store.db.execute("UPDATE steps SET outputs = ? WHERE run_id = ?", (ref, history[name]))
        store.flush()
        done = prune(store, 30 * DAY)
    finally:
        engine.close()
    blobs = tmp_path / "s.db.blobs"
    assert not (blobs / f"{files['old_a']}.bin").exists() and (blobs / f"{files['new']}.bin").exists()
    assert done.blobs == 2  # old_a's file and its replaced value's blob


@pytest.mark.parametrize("text, seconds", [("30d", 30 * DAY), ("12h", 43200), ("90m", 5400), ("45s", 45),
                                           ("2w", 14 * DAY), ("P30D", 30 * DAY), ("PT12H", 43200), (" 1.5d ", 1.5 * DAY)])
def test_ages_read_as_a_number_and_a_unit_or_iso_8601(text, seconds):
    assert parse_age(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "d", "-1d", "30 days", "P", "1e9999d", "nan", "\x00"])
def test_a_bad_age_is_one_clear_line(tmp_path, text):
    out = cli(tmp_path, "prune", "--older-than", text)
    assert out.exit_code == 2 and "--older-than" in out.output and "Traceback" not in out.output
