"""examples/bi_refresh: one command refreshes the extract on the loopback Tableau, exports the
dashboard PDF and mails it through the SendGrid sandbox; hostile secrets reach nothing stored."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {"TABLEAU_PAT_SECRET": "ta'b\"l\\e/+%é-pat", "SENDGRID_API_KEY": "SG.s'e\"n\\d/+%ñ"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    work = tmp_path_factory.mktemp("bi")
    done = subprocess.run([sys.executable, "examples/bi_refresh/demo.py", "--work", str(work)], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, **SECRETS}, timeout=300)
    return done, work


def test_the_command_exits_0_after_the_refresh_export_and_mail(demo):
    done, _ = demo
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].endswith(": Succeeded")
    assert [line.split()[1] for line in lines[1:5]] == ["build", "refresh", "export", "email"]
    assert "Traceback" not in done.stderr
    assert "/datasources/ds-orders/refresh" in done.stdout and "/views/v-sales-0001/pdf" in done.stdout
    assert "attachments ['sales-" in done.stdout and "application/pdf" in done.stdout


def test_the_run_recorded_the_job_and_the_file_reference_and_no_secret(demo):
    done, work = demo
    db = sqlite3.connect(work / "state.db")
    outputs = json.loads(db.execute("SELECT outputs FROM runs").fetchone()[0])
    assert outputs["job"].startswith("job-") and outputs["pdf"]["contentType"] == "application/pdf"
    assert (work / "state.db.blobs" / f"{outputs['pdf']['$file']}.bin").read_bytes().startswith(b"%PDF")
    dump = "\n".join(str(r) for t in ("runs", "steps") for r in db.execute(f"SELECT * FROM {t}"))
    for secret in SECRETS.values():
        assert secret not in dump and json.dumps(secret)[1:-1] not in dump and secret not in done.stdout
    assert "sess|" not in dump  # the Tableau session token (the fake's tokens start so)
