"""The web UI's tests: a flow with a Foreach inside a Scope that fails one iteration, and a
real Chromium (Debian's package, driven by Playwright) for the browser tests."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import postgres

ROOT = Path(__file__).resolve().parents[3]
ADMIN = "adm1n-Token-f00dbabe42"  # tests/listener/conftest.py's FLOWRUN_ADMIN_TOKEN

# Item 0 makes `divide` fail in iteration 2: the Foreach fails, so the Scope `work` fails, so
# `report` is Skipped and the run Failed. FIXED divides by (item() or 1): a rerun succeeds.
BATCH = """\
name: batch
triggers:
  manual: {type: Request, auth: {type: none}}
actions:
  start:
    type: Compose
    inputs: "{{ triggerBody()['items'] | length }}"
  work:
    type: Scope
    runAfter: {start: [Succeeded]}
    actions:
      each:
        type: Foreach
        foreach: "{{ triggerBody()['items'] }}"
        concurrency: 1
        actions:
          divide:
            type: Compose
            inputs: "{{ 100 / item() }}"
  report:
    type: Compose
    runAfter: {work: [Succeeded]}
    inputs: "done"
"""
FIXED = BATCH.replace("{{ 100 / item() }}", "{{ 100 / (item() or 1) }}")
ITEMS = {"items": [1, 2, 0, 4, 5]}


def artifacts() -> Path:
    """Where screenshots go: $FLOWRUN_ARTIFACTS, else tests/artifacts (gitignored)."""
    path = Path(os.environ.get("FLOWRUN_ARTIFACTS") or ROOT / "tests" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def find_chromium() -> str | None:
    """Debian's chromium; installed with apt-get when it is missing and this user may."""
    found = shutil.which("chromium")
    if found or not shutil.which("apt-get") or os.geteuid() != 0:
        return found
    for cmd in (["apt-get", "install", "-y", "chromium"], ["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900, check=False)
        found = shutil.which("chromium")
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium (Playwright over Debian's package); skipped, saying why, only when
    it cannot be installed. Module-scoped: Playwright's sync API holds an asyncio loop in this
    thread while it runs, so it must stop before other modules' tests call anyio.run."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    path = find_chromium()
    if path is None:
        pytest.skip("Debian's chromium is not installed and could not be (apt-get install -y chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=["--no-sandbox"] if os.geteuid() == 0 else [])
        yield b
        b.close()


@pytest.fixture(params=postgres.BACKENDS)
def state(request, tmp_path):
    """The UI's pages over HTTP are read from SQLite and from PostgreSQL (a schema of its own)."""
    yield from postgres.backend_state(request.param, tmp_path)
