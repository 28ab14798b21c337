"""A run has one executor at a time: two ``flowrun resume`` of one run, a hand resume of a run
``flowrun serve`` is waking, two engines on one state file: the second is refused (RunBusy) and
nothing runs twice; a process killed with SIGKILL leaves its runs claimable."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import anyio
import pytest

import engine
from engine.errors import RunBusy, StoreError
from engine.runlock import RunClaim
from engine.store import RecordedSteps, Store

FLOWRUN = [sys.executable, "-m", "engine.cli"]

WAITS = """
    name: waits
    triggers: {manual: {type: Manual}}
    actions:
      nap: {type: Wait, inputs: {interval: {count: 1, unit: Hour}}}
      after: {type: Compose, inputs: done, runAfter: {nap: [Succeeded]}}
"""


def wait_for(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def busy(state, run_id: str) -> bool:
    store = Store(state)
    try:
        with RunClaim(store, run_id):
            return False
    except RunBusy:
        return True
    finally:
        store.close()


def lease_pid(state, run_id: str) -> int | None:
    """The pid recorded in the run's lease row, read without claiming the run (a claim taken
    here to ask "is it busy?" would itself refuse a holder that is just starting)."""
    import sqlite3

    from engine.runlock import leases

    with sqlite3.connect(state, timeout=10) as db:
        try:
            found = leases(db, [run_id]).get(run_id)
        except sqlite3.OperationalError:  # the table is created by the first claim
            return None
    return found[0] if found else None


def test_a_run_executing_in_one_process_cannot_be_resumed_by_another_until_that_process_dies(tmp_path):
    flow = tmp_path / "waits.yaml"
    flow.write_text(textwrap.dedent(WAITS))
    state = tmp_path / "state.db"
    run_id = "0123456789abcdef0123456789abcdef"
    eng = engine.Engine(state)  # start it here (Queued), execute it in a subprocess
    eng.start(eng.load(flow), run_id=run_id)
    eng.close()
    holder = subprocess.Popen([*FLOWRUN, "--state", str(state), "resume", run_id], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: lease_pid(state, run_id) == holder.pid or holder.poll() is not None,
                 "the first resume to hold the run", timeout=60)
        assert holder.poll() is None, "the first resume exited instead of holding the run"
        assert busy(state, run_id)
        second = subprocess.run([*FLOWRUN, "--state", str(state), "resume", run_id], cwd=tmp_path,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second  # refused: nothing ran
        assert "being executed by another process" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert not busy(state, run_id), "a killed process must not leave its run claimed"


def test_two_engines_in_one_process_never_execute_one_run_at_once(tmp_path, flow_file):
    path = flow_file(WAITS)
    first, second = engine.Engine(tmp_path / "state.db"), engine.Engine(tmp_path / "state.db")
    outcome = {}

    async def main():
        run_id = first.start(first.load(path))
        async with anyio.create_task_group() as tg:
            tg.start_soon(first.execute, run_id)
            while not busy(tmp_path / "state.db", run_id):
                await anyio.sleep(0.01)
            try:
                await second.resume(run_id)
            except RunBusy as exc:
                outcome["refused"] = str(exc)
            tg.cancel_scope.cancel()
    try:
        anyio.run(main)
    finally:
        first.close()
        second.close()
    assert "already being executed" in outcome["refused"]


def test_a_resume_that_finds_the_run_finished_once_it_holds_it_runs_nothing(run_flow, tmp_path):
    done = run_flow("""
        actions:
          a: {type: Compose, inputs: 1}
    """)
    eng = engine.Engine(tmp_path / "state.db")
    try:
        with pytest.raises(StoreError, match="already finished"):
            anyio.run(lambda: eng.execute(done.id, reuse=RecordedSteps(eng.store, done.id)))
    finally:
        eng.close()


# -- the lease: one live owner, visible to every process -----------------------------------------
def _queued(tmp_path, text=WAITS):
    flow = tmp_path / "waits.yaml"
    flow.write_text(textwrap.dedent(text))
    state = tmp_path / "state.db"
    eng = engine.Engine(state)
    run_id = eng.start(eng.load(flow))
    eng.close()
    return state, run_id


def _lease(state, run_id, *, host, expires, pid=4242):
    import sqlite3

    with sqlite3.connect(state) as db:
        db.execute("INSERT OR REPLACE INTO run_leases VALUES (?, ?, ?, 'theirs', 0, ?)", (run_id, pid, host, expires))
        db.execute("UPDATE runs SET status = 'Running' WHERE id = ?", (run_id,))


@pytest.mark.parametrize("host, expires_in, refused", [
    ("other-host", 25, True),      # a live holder elsewhere: its lease is fresh
    ("other-host", -120, False),   # it stopped renewing over a ttl ago: taken over at once
    (None, 60, False),             # this host, holder dead (its kernel lock is free): taken over
])
def test_resume_refuses_a_run_a_live_process_holds_and_takes_over_one_whose_holder_is_dead(
        tmp_path, host, expires_in, refused):
    from engine.runlock import HOST

    state, run_id = _queued(tmp_path, "actions: {a: {type: Compose, inputs: 1}}")
    _lease(state, run_id, host=host or HOST, expires=time.time() + expires_in)
    out = subprocess.run([*FLOWRUN, "--state", str(state), "resume", run_id], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert "Traceback" not in out.stderr
    if refused:
        assert out.returncode == 2 and "other-host" in out.stderr and "pid 4242" in out.stderr
    else:
        assert out.returncode == 0, out.stderr
        eng = engine.Engine(state)
        assert eng.result(run_id).status == "Succeeded"
        assert eng.store.db.execute("SELECT count(*) FROM run_leases").fetchone()[0] == 0  # given back
        eng.close()


def test_a_run_whose_process_died_shows_as_orphaned_in_runs_and_a_live_one_does_not(tmp_path):
    state, run_id = _queued(tmp_path)
    holder = subprocess.Popen([*FLOWRUN, "--state", str(state), "resume", run_id], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def listed():
            eng = engine.Engine(state)
            try:
                return eng.list_runs()[0]
            finally:
                eng.close()
        wait_for(lambda: listed().status == "Running", "the run to be Running")
        assert listed().orphaned is False
        out = subprocess.run([*FLOWRUN, "--state", str(state), "runs"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=60)
        assert "Running" in out.stdout and "orphaned" not in out.stdout
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert listed().orphaned is True
    out = subprocess.run([*FLOWRUN, "--state", str(state), "runs", "--json"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert __import__("json").loads(out.stdout)[0]["orphaned"] is True
    out = subprocess.run([*FLOWRUN, "--state", str(state), "runs"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert "Running (orphaned)" in out.stdout


def test_a_holder_whose_lease_was_taken_over_stops_at_once_and_records_nothing_more(tmp_path):
    import sqlite3

    state, run_id = _queued(tmp_path)
    eng = engine.Engine(state, lease_ttl=0.3)

    async def main():
        async def steal():
            while True:  # once the run holds its lease, another host takes it over
                with sqlite3.connect(state) as db:
                    if db.execute("UPDATE run_leases SET token = 'stolen', host = 'elsewhere' "
                                  "WHERE run_id = ?", (run_id,)).rowcount:
                        return
                await anyio.sleep(0.01)
        async with anyio.create_task_group() as tg:
            tg.start_soon(steal)
            with pytest.raises(RunBusy, match="took its lease over"):
                await eng.execute(run_id)
    try:
        anyio.run(main)
        assert eng.store.get_step(run_id, "nap") is None or eng.store.get_step(run_id, "nap").status == "Running"
        assert eng.store.db.execute("SELECT token FROM run_leases").fetchone()[0] == "stolen"  # left to its owner
    finally:
        eng.close()


# -- hostile lease rows, clock skew, kills during a takeover, racing resumes --------------------------
COMPOSE = "actions: {a: {type: Compose, inputs: 1}}"
# (pid, host, expires) as SQL literals: what a hand, a bug or another version may leave in the row
HOSTILE = [
    ("4242", "'other'", "'NaN'"),
    ("4242", "'other'", "'abc'"),
    ("4242", "'other'", "X'00ff'"),
    ("4242", "'other'", "9e999"),            # +inf
    ("4242", "'other'", "-9e999"),           # -inf
    ("4242", "'other'", "4102444800.0"),     # the year 2100: a clock far ahead, or hostile
    ("4242", "'other'", "-5"),
    ("'x'", "'other'", "-5"),
    ("4242", "X'6869'", "4102444800.0"),     # a host that is a blob
    ("4242", "5", "4102444800.0"),           # a host that is a number
    ("'x'", ":here", "4102444800.0"),        # this host, a pid that is text
    ("9223372036854775807", ":here", "4102444800.0"),
    ("-1", ":here", "4102444800.0"),
    ("4242", "'h''o\"st\\' || char(10) || char(27) || '[31m'", "4102444800.0"),
]


def _raw_lease(state, run_id, pid: str, host: str, expires: str) -> None:
    import sqlite3

    from engine.runlock import HOST

    with sqlite3.connect(state) as db:
        db.execute(f"INSERT OR REPLACE INTO run_leases VALUES (:run, {pid}, {host}, 'theirs', 0, {expires})",
                   {"run": run_id, "here": HOST})
        db.execute("UPDATE runs SET status = 'Running' WHERE id = ?", (run_id,))


@pytest.mark.parametrize("pid, host, expires", HOSTILE)
def test_a_hostile_lease_row_neither_crashes_a_reader_nor_holds_a_run_forever(tmp_path, pid, host, expires):
    state, run_id = _queued(tmp_path, COMPOSE)
    _raw_lease(state, run_id, pid, host, expires)
    eng = engine.Engine(state, lease_ttl=0.2)  # a dead holder's lease is watched for 0.2 s, then taken over
    try:
        assert eng.list_runs()[0].status == "Running"
        assert eng.result(run_id).orphaned in (True, False)
        run = anyio.run(lambda: eng.resume(run_id))
        assert run.status == "Succeeded"
        assert eng.store.db.execute("SELECT count(*) FROM run_leases").fetchone()[0] == 0
    finally:
        eng.close()


def test_runs_lists_hostile_lease_rows_with_no_traceback_and_no_control_characters(tmp_path):
    flow = tmp_path / "f.yaml"
    flow.write_text(COMPOSE)
    state = tmp_path / "state.db"
    eng = engine.Engine(state)
    ids = [eng.start(eng.load(flow)) for _ in HOSTILE]
    eng.close()
    for run_id, row in zip(ids, HOSTILE):
        _raw_lease(state, run_id, *row)
    for args in (["runs"], ["runs", "--json"], ["runs", "--status", "running"]):
        out = subprocess.run([*FLOWRUN, "--state", str(state), *args], cwd=tmp_path, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
        assert sum(i[:8] in out.stdout for i in ids) == len(ids)
        assert "\x1b" not in out.stdout + out.stderr


def test_a_refusal_names_a_hostile_host_in_printable_characters_only(tmp_path):
    state, run_id = _queued(tmp_path, COMPOSE)
    _raw_lease(state, run_id, "4242", "'h''o\"st\\' || char(10) || char(27) || '[31m'", str(time.time() + 20))
    out = subprocess.run([*FLOWRUN, "--state", str(state), "resume", run_id], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "pid 4242 on host h'o\"st\\??[31m" in out.stderr and "\x1b" not in out.stderr


class Renewing:
    """Another host's live holder: renews its lease row from a thread until stopped."""

    def __init__(self, state, run_id):
        import threading

        self.state, self.run_id, self.stop = state, run_id, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import sqlite3

        with sqlite3.connect(self.state, timeout=10) as db:
            while not self.stop.wait(0.01):
                db.execute("UPDATE run_leases SET expires = expires + 0.001 WHERE run_id = ?", (self.run_id,))
                db.commit()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


@pytest.mark.parametrize("skew", [
    3600.0,   # the holder's clock is an hour ahead: its lease looks valid for an hour
    -0.15,    # its clock is behind: its live lease looks just expired
])
@pytest.mark.parametrize("alive", [True, False])
def test_clock_skew_between_hosts_neither_runs_a_live_holders_run_twice_nor_strands_a_dead_ones(
        tmp_path, skew, alive):
    import contextlib

    state, run_id = _queued(tmp_path, COMPOSE)
    # A live holder is seen by its first renewal (Renewing writes every 10 ms), so its ttl is only
    # the longest the watch may last: generous, never waited out. A dead one's ttl is waited out.
    ttl = 30.0 if alive else 0.3
    _lease(state, run_id, host="other-host", expires=time.time() + skew)
    eng = engine.Engine(state, lease_ttl=ttl)
    try:
        with Renewing(state, run_id) if alive else contextlib.nullcontext():
            if alive:
                with pytest.raises(RunBusy, match="renewed its lease"):
                    anyio.run(lambda: eng.resume(run_id))
            else:
                assert anyio.run(lambda: eng.resume(run_id)).status == "Succeeded"
        if alive:
            assert eng.store.get_step(run_id, "a") is None  # nothing ran here
    finally:
        eng.close()


def test_another_hosts_lease_expired_over_a_ttl_ago_is_taken_over_without_watching(tmp_path, caplog):
    state, run_id = _queued(tmp_path, COMPOSE)
    _lease(state, run_id, host="other-host", expires=time.time() - 120)
    eng = engine.Engine(state)  # the default ttl: a watch would last 30 s
    try:
        assert anyio.run(lambda: eng.resume(run_id)).status == "Succeeded"
    finally:
        eng.close()
    assert "watching" not in caplog.text


def test_a_process_killed_in_the_middle_of_a_lease_takeover_leaves_the_run_resumable(tmp_path):
    state, run_id = _queued(tmp_path, COMPOSE)
    _lease(state, run_id, host="other-host", expires=time.time() - 120)
    taker = subprocess.Popen([sys.executable, "-c", f"""
import sqlite3, sys, time
db = sqlite3.connect({str(state)!r}, isolation_level=None)
db.execute("BEGIN IMMEDIATE")
db.execute("INSERT OR REPLACE INTO run_leases VALUES (?, 1, 'half-way', 'mine', 0, 4102444800.0)", ({run_id!r},))
print("inside", flush=True)
time.sleep(600)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert taker.stdout.readline().strip() == "inside"  # holds the write lock, the row not committed
    finally:
        taker.send_signal(signal.SIGKILL)
        taker.wait()
    out = subprocess.run([*FLOWRUN, "--state", str(state), "resume", run_id], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    eng = engine.Engine(state)
    try:
        assert eng.result(run_id).status == "Succeeded"
    finally:
        eng.close()


def test_resumes_racing_on_one_run_execute_it_once(tmp_path, recorder):
    recorder.route("POST", "/once", json={"ok": True})
    state, run_id = _queued(tmp_path, f"""
        actions:
          send: {{type: Http, inputs: {{method: POST, uri: "{recorder.url}/once", idempotencyKey: true}}}}
    """)
    procs = [subprocess.Popen([*FLOWRUN, "--state", str(state), "resume", run_id], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(p.wait(60), p.stderr.read()) for p in procs]
    for p in procs:
        p.stderr.close()
    assert sorted(code for code, _ in results) == [0, 2, 2, 2], results
    for code, err in results:
        assert "Traceback" not in err and "database is locked" not in err
        if code:
            assert len(err.strip().splitlines()) == 1
            assert "being executed by" in err or "already finished" in err, err
    assert len(recorder.requests) == 1


def test_any_values_in_a_lease_row_are_read_judged_and_claimed_without_an_unexpected_error(tmp_path):
    import sqlite3

    from hypothesis import HealthCheck, given, settings, strategies as st

    from engine.runlock import HOST, holder_alive, judge, leases

    state, run_id = _queued(tmp_path, COMPOSE)
    anything = st.one_of(st.integers(min_value=-2 ** 63, max_value=2 ** 63 - 1), st.floats(allow_nan=False),
                         st.text(max_size=30), st.binary(max_size=10), st.just(HOST))
    store = Store(state)
    writer = sqlite3.connect(state, isolation_level=None)
    writer.execute("PRAGMA synchronous=OFF")

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(pid=anything, host=anything, expires=anything)
    def check(pid, host, expires):
        writer.execute("INSERT OR REPLACE INTO run_leases VALUES (?, ?, ?, 'theirs', 0, ?)",
                       (run_id, pid, host, expires))
        lease = leases(store.db, [run_id])[run_id]
        assert isinstance(holder_alive(*lease), bool)
        assert judge(lease[2], time.time(), 0.01) in ("live", "free", "watch")
        claim = RunClaim(store, run_id, ttl=0.01)
        try:
            anyio.run(lambda: claim.settle(interval=0.002))
            with claim:
                pass
        except RunBusy as exc:
            assert str(exc).isprintable()
    try:
        check()
    finally:
        writer.close()
        store.close()


def test_without_the_kernel_lock_a_live_pid_on_this_host_still_holds_its_run(tmp_path):
    from engine import runlock

    state, run_id = _queued(tmp_path, COMPOSE)
    (tmp_path / "state.db.runs.lock").mkdir()  # the lock file cannot be opened
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        _lease(state, run_id, host=runlock.HOST, pid=holder.pid, expires=time.time() + 20)
        assert busy(state, run_id)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert not busy(state, run_id)  # its pid is gone: taken over
