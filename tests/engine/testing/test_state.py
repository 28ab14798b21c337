"""`flowrun test` and `flowrun plan` on a project whose state is PostgreSQL: each test is still
a run on a throw-away SQLite database, and the configured database is never opened (not even
imported: a CI job needs no PostgreSQL to test its flows)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import postgres

ROOT = Path(__file__).parents[3]
UNREACHABLE = "postgresql://flowrun@127.0.0.1:1/nowhere?connect_timeout=1"
# run the CLI, then say whether psycopg was ever imported
SCRIPT = """\
import sys
from engine.cli import main
try:
    main(sys.argv[1:], prog_name="flowrun")
except SystemExit as exc:
    code = exc.code
print("psycopg imported:", "psycopg" in sys.modules)
sys.exit(code)
"""
TESTS = [str(ROOT / "flows/hello.test.yaml"), str(ROOT / "examples/logic_app"), str(ROOT / "examples/geo_enrich")]


def flowrun(*args: str, state: str, cwd: Path, flag: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "FLOWRUN_STATE": state}
    argv = ["--state", state, *args] if flag else list(args)
    return subprocess.run([sys.executable, "-c", SCRIPT, *argv], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


@pytest.mark.parametrize("flag", [False, True], ids=["FLOWRUN_STATE", "--state"])
def test_flowrun_test_never_opens_a_configured_postgresql_state(tmp_path, flag):
    done = flowrun("test", *TESTS, state=UNREACHABLE, cwd=tmp_path, flag=flag)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 failed" in done.stdout + done.stderr and "psycopg imported: False" in done.stdout
    assert list(tmp_path.iterdir()) == []  # and no .flowrun/ SQLite file in the working directory


def test_flowrun_plan_never_opens_a_configured_postgresql_state(tmp_path):
    done = flowrun("plan", str(ROOT / "examples/bi_refresh/flow.yaml"), state=UNREACHABLE, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "would start a full extract refresh" in done.stdout and "psycopg imported: False" in done.stdout


@pytest.mark.skipif(postgres.skip_reason is not None, reason=postgres.skip_reason or "")
def test_a_reachable_postgresql_state_is_left_empty_by_flowrun_test(tmp_path):
    import psycopg

    url, schema = postgres.postgres_url()
    try:
        done = flowrun("test", *TESTS, state=url, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        with psycopg.connect(postgres.SERVER) as conn:
            tables = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                                  (schema,)).fetchall()
        assert tables == []
    finally:
        postgres.drop(schema)
