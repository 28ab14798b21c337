"""`flowrun serve --retention AGE` prunes finished runs older than AGE at start and again every
--retention-interval, while it serves."""
import sqlite3
import time

from click.testing import CliRunner

from engine.api import Engine
from engine.cli import main

from .inprocess import serving, wait_for

DAY = 86400


def old_run(state, run_id, status="Succeeded"):
    db = sqlite3.connect(state)
    with db:
        db.execute("INSERT INTO runs (id, flow, status, created, ended) VALUES (?, 'f', ?, ?, ?)",
                   (run_id, status, time.time() - 40 * DAY, time.time() - 40 * DAY))
        db.execute("INSERT INTO steps (run_id, path, action, status, seq) VALUES (?, 'a', 'a', 'Succeeded', 1)",
                   (run_id,))
    db.close()


def ids(state):
    db = sqlite3.connect(state)
    try:
        return {r[0] for r in db.execute("SELECT id FROM runs")}
    finally:
        db.close()


def test_serve_prunes_old_runs_at_start_and_again_while_it_serves(tmp_path):
    state = tmp_path / "s.db"
    Engine(state).close()  # the schema
    old_run(state, "before-start")
    old_run(state, "old-but-running", status="Running")
    (tmp_path / "flows").mkdir()
    with serving(tmp_path / "flows", {}, state=state, retention=30 * DAY, retention_interval=0.05) as app:
        wait_for(lambda: "before-start" not in ids(state), "the prune at start")
        old_run(state, "while-serving")
        wait_for(lambda: "while-serving" not in ids(state), "the periodic prune")
        assert app.client.get("/healthz").status_code == 200
    assert ids(state) == {"old-but-running"}


def test_a_bad_retention_is_one_clear_line(tmp_path):
    (tmp_path / "flows").mkdir()
    for args in (["--retention", "soon"], ["--retention", "30d", "--retention-interval", "0s"]):
        out = CliRunner().invoke(main, ["--state", str(tmp_path / "s.db"), "serve", "--flows", str(tmp_path / "flows"),
                                        *args])
        assert out.exit_code == 2 and "--retention" in out.output and "Traceback" not in out.output
