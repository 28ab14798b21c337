"""A real `flowrun serve` in a subprocess on 127.0.0.1 (port 0: the log says which), and
helpers to write flows, read its JSON logs and look into its state database."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]

SECRETS = {
    "TEST_INBOUND_KEY": "k3y-Inbound-0d9f8e7a6b",
    "TEST_HMAC_SECRET": "hm4c-Secret-51a2b3c4d5",
    "TEST_STRIPE_WHSEC": "whsec_test_9c8b7a6f5e4d3c2b1a",
    "TEST_TWILIO_TOKEN": "tw1lio-Token-aa11bb22cc33",
    "TEST_EG_KEY": "eg-Delivery-Key-77e66d55c4",
    "FLOWRUN_ADMIN_TOKEN": "adm1n-Token-f00dbabe42",
}

CONNECTIONS = """\
connections:
  inbound: {kind: http, secrets: {token: TEST_INBOUND_KEY}}
  github: {kind: http, secrets: {token: TEST_HMAC_SECRET}}
  stripe: {kind: stripe, secrets: {webhook_secret: TEST_STRIPE_WHSEC}}
  twilio: {kind: twilio, settings: {account_sid: AC0123456789abcdef}, secrets: {auth_token: TEST_TWILIO_TOKEN}}
  eventgrid: {kind: eventgrid, secrets: {webhook_key: TEST_EG_KEY}}
"""


class Server:
    """`python -m engine.cli serve` with its stderr (JSON lines) collected."""

    def __init__(self, flows: Path, state: Path, *args: str, env: dict | None = None):
        self.flows, self.state, self.args = flows, state, args
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **SECRETS, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []
        self.url = ""

    def start(self, timeout: float = 60) -> "Server":  # (a deadline: ready is seen at once)
        self.lines = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "--state", str(self.state), "serve", "--flows", str(self.flows),
             "--port", "0", *self.args], cwd=self.flows.parent, env=self.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()
        deadline = time.time() + timeout
        while time.time() < deadline:
            for rec in self.logs():
                if rec.get("event") == "listening":
                    self.url = rec["url"]
                    return self
            if self.proc.poll() is not None:
                time.sleep(0.2)
                raise RuntimeError("flowrun serve exited:\n" + "\n".join(self.lines[-30:]))
            time.sleep(0.05)
        raise RuntimeError("flowrun serve did not start:\n" + "\n".join(self.lines[-30:]))

    def _drain(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def logs(self) -> list[dict]:
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"raw": line})
        return out

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 15), **kw)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        time.sleep(0.05)
        return code

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL
        self.proc.wait(10)

    # -- the state database --------------------------------------------------------------------
    def db(self) -> sqlite3.Connection:
        con = sqlite3.connect(str(self.state), timeout=10)
        con.row_factory = sqlite3.Row
        return con

    def runs(self, flow: str) -> list[dict]:
        with self.db() as con:
            rows = con.execute("SELECT * FROM runs WHERE flow = ? ORDER BY created", (flow,)).fetchall()
        return [dict(r) for r in rows]

    def run(self, run_id: str) -> dict:
        with self.db() as con:
            return dict(con.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone())

    def steps(self, run_id: str) -> list[dict]:
        with self.db() as con:
            return [dict(r) for r in con.execute("SELECT * FROM steps WHERE run_id = ? ORDER BY seq", (run_id,))]

    def wait_run(self, run_id: str, timeout: float = 15) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            run = self.run(run_id)
            if run["status"] not in ("Queued", "Running"):
                return run
            time.sleep(0.05)
        raise AssertionError(f"run {run_id} did not finish: {self.run(run_id)['status']}")


def write_flows(folder: Path, flows: dict[str, str], connections: str = CONNECTIONS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "connections.yaml").write_text(connections)
    for name, text in flows.items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture
def make_server(tmp_path: Path):
    """make_server(flows: {file: yaml}, *serve_args) -> a started Server (stopped after the test)."""
    started: list[Server] = []

    def make(flows: dict[str, str], *args: str, state: Path | None = None, folder: str = "flows",
             env: dict | None = None) -> Server:
        path = write_flows(tmp_path / folder, flows)
        server = Server(path, state or tmp_path / "state.db", *args, env=env)
        started.append(server)
        return server.start()

    yield make
    for s in started:
        if s.proc is not None and s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(10)


def stop_all(servers: list[Server]) -> None:
    for s in servers:
        if s.proc is not None and s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """The shared server: every flow of tests/listener/flows.py, small limits, an admin token."""
    from .flows import ALL

    tmp = tmp_path_factory.mktemp("serve")
    s = Server(write_flows(tmp / "flows", ALL), tmp / "state.db", "--max-body", "65536", "--sync-timeout", "1")
    s.start()
    yield s
    stop_all([s])
