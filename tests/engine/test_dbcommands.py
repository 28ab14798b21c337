"""engine/dbcommands.py and the commands that take a PostgreSQL URL: db status/upgrade, run
--queue, runs --status Queued (why a run waits), worker on a SQLite file (refused)."""
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main
from tests.support import postgres

ROOT = Path(__file__).resolve().parents[2]


def cli(state, *args):
    return CliRunner().invoke(main, ["--state", str(state), *args])


@pytest.fixture(params=["sqlite", "postgresql"])
def state(request, tmp_path):
    if request.param == "sqlite":
        yield tmp_path / "state.db"
        return
    if postgres.skip_reason:
        pytest.skip(postgres.skip_reason)
    url, schema = postgres.postgres_url()
    yield url
    postgres.drop(schema)


def test_db_status_says_what_is_pending_and_upgrade_applies_it(state):
    before = json.loads(cli(state, "db", "status", "--json").output)
    assert before["version"] == 0 and before["pending"] > 0
    out = cli(state, "db", "upgrade")
    assert out.exit_code == 0 and "up to date" in out.output
    assert json.loads(cli(state, "db", "status", "--json").output)["pending"] == 0


def test_a_run_queued_for_workers_is_listed_with_why_it_waits(state):
    out = cli(state, "run", str(ROOT / "flows" / "hello.yaml"), "--queue", "--json")
    assert out.exit_code == 0, out.output
    run_id = json.loads(out.output)["id"]
    listed = json.loads(cli(state, "runs", "--status", "queued", "--json").output)
    assert [r["run_id"] for r in listed] == [run_id]
    if not str(state).endswith(".db"):
        assert listed[0]["waiting"] == "waiting for a worker"
        table = cli(state, "runs", "--status", "Queued").output
        assert "waiting" in table and "worker" in table  # the table's column (wrapped at 80 columns here)


def test_a_worker_needs_a_postgresql_state_database(tmp_path):
    out = cli(tmp_path / "state.db", "worker")
    assert out.exit_code == 2 and "needs a PostgreSQL state database" in out.output
    assert "Traceback" not in out.output


def test_a_url_with_a_password_that_cannot_be_reached_is_one_line_without_it(tmp_path):
    pytest.importorskip("psycopg")
    out = cli("postgresql://flowrun:hunter2'\\x@127.0.0.1:1/x?connect_timeout=2", "runs")
    assert out.exit_code == 2 and "hunter2" not in out.output and "Traceback" not in out.output
    assert len(out.output.strip().splitlines()) == 1
