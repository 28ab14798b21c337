"""engine/store.py: runs and steps in SQLite, blobs, redaction on write, lazy Running rows."""
import sqlite3
import time

import pytest

import engine
from engine.store import OutputTooLarge, Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "state.db")
    yield s
    s.close()


def finish(store, run_id, path, *, outputs=None, status="Succeeded", started=1.0, ended=2.0, **kw):
    store.step_finished(run_id, path, path, "Compose", status, attempts=1, inputs=kw.get("inputs"),
                        outputs=outputs, error=kw.get("error"), started=started, ended=ended)
    store.flush()


@pytest.mark.parametrize("value", [None, 0, "text", "", [1, "two", None], {"nested": {"ü": "ñ"}}, 1.5, True])
def test_values_come_back_as_they_were_stored(store, value):
    assert store.decode(store.encode(value)) == value


def test_values_over_the_threshold_go_to_one_content_addressed_blob(tmp_path):
    store = Store(tmp_path / "state.db", blob_threshold=100)
    big = "x" * 1000
    first, second = store.encode(big), store.encode(big)
    assert first == second and len(first) < 100
    assert len(list(store.blobs.glob("*.json"))) == 1
    assert store.decode(first) == big


def test_values_over_the_hard_cap_are_refused_not_truncated(tmp_path):
    store = Store(tmp_path / "state.db", blob_threshold=10, blob_cap=100)
    with pytest.raises(OutputTooLarge):
        store.encode("x" * 1000)


def test_everything_written_passes_through_the_redactor(tmp_path):
    store = Store(tmp_path / "state.db", redact=lambda s: s.replace("s3cret-value", "***"))
    store.create_run({"id": "r", "flow": "f", "status": "Queued", "payload": {"token": "s3cret-value"}})
    finish(store, "r", "a", inputs={"auth": "Bearer s3cret-value"}, outputs="s3cret-value",
           error={"message": "bad s3cret-value"})
    store.close()
    dump = "\n".join(sqlite3.connect(tmp_path / "state.db").iterdump())
    assert "s3cret-value" not in dump and "***" in dump


def test_steps_come_back_in_the_order_they_finished(store):
    for path in ["b", "a", "loop[1]/x", "loop[0]/x"]:
        finish(store, "r", path, outputs=path)
    assert [s.path for s in store.steps("r")] == ["b", "a", "loop[1]/x", "loop[0]/x"]
    assert store.steps("r")[0].outputs == "b"


def test_steps_numbered_after_a_resume_follow_the_earlier_ones(tmp_path):
    first = Store(tmp_path / "state.db")
    for i in range(40):
        finish(first, "r", f"s{i}", outputs=i)
    first.close()
    second = Store(tmp_path / "state.db")  # another process
    second.continue_numbering("r")
    finish(second, "r", "late", outputs=0, started=3.0, ended=4.0)
    assert [s.path for s in second.steps("r")][-1] == "late"


def test_an_action_shows_as_running_only_once_it_has_run_for_a_while(store):
    """Fast actions cost no extra write; the Running row appears when the mark comes due."""
    now = time.time()
    store.step_started("r", "old", "old", "Wait", started=now - 10 * store.RUNNING_AFTER)
    store.step_started("r", "young", "young", "Wait", started=now + 3600)
    store.flush()  # what the timer does when a mark comes due
    assert {s.path: s.status for s in store.steps("r")} == {"old": "Running"}


def test_a_finished_step_replaces_its_running_row(store):
    store.step_started("r", "a", "a", "Compose", started=1.0)
    store.flush()
    finish(store, "r", "a", outputs=5)
    (step,) = store.steps("r")
    assert (step.status, step.outputs) == ("Succeeded", 5)


def test_a_final_status_is_not_overwritten_by_a_pending_running_mark(store):
    store.create_run({"id": "r", "flow": "f", "status": "Queued"})
    store.run_started("r", 1.0, 1)          # due at once: started long ago
    store.update_run("r", status="Failed")  # the run ended before the mark was written
    store.flush()                           # what the timer does when the mark comes due
    assert store.get_run("r").status == "Failed"


@pytest.mark.parametrize("flow, status, expected", [
    (None, None, ["r3", "r2", "r1"]),
    ("orders", None, ["r3", "r1"]),
    (None, "Failed", ["r2"]),
    ("orders", "Succeeded", ["r1"]),
])
def test_runs_are_listed_newest_first_and_filtered(store, flow, status, expected):
    for i, (f, s) in enumerate([("orders", "Succeeded"), ("billing", "Failed"), ("orders", "Running")], 1):
        store.create_run({"id": f"r{i}", "flow": f, "status": s, "created": float(i)})
    assert [r.id for r in store.list_runs(flow=flow, status=status)] == expected


def test_unfinished_runs_are_the_queued_and_running_ones(store):
    for run_id, status in [("a", "Queued"), ("b", "Running"), ("c", "Succeeded"), ("d", "Failed")]:
        store.create_run({"id": run_id, "flow": "f", "status": status})
    assert sorted(store.unfinished_runs()) == ["a", "b"]


def test_a_newer_schema_version_is_refused(tmp_path):
    path = tmp_path / "state.db"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(engine.FlowrunError, match="newer than this flowrun"):
        Store(path)


def test_a_database_that_cannot_be_opened_is_one_clear_error(tmp_path):
    (tmp_path / "state.db").mkdir()  # a folder where the file should be
    with pytest.raises(engine.FlowrunError, match="cannot open state database"):
        Store(tmp_path / "state.db")


# -- many processes on one state file ------------------------------------------------------------
def _open_at_once(path: str, go, out) -> None:
    from engine.store import Store

    go.wait(30)
    try:
        Store(path).close()
        out.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        out.put(f"{type(exc).__name__}: {exc}")


def test_160_processes_opening_a_new_state_file_at_once_all_succeed_and_migrate_it_once(tmp_path):
    import multiprocessing
    import sqlite3

    from engine.store import MIGRATIONS

    ctx = multiprocessing.get_context("fork")  # real processes, started cheaply
    go, out = ctx.Event(), ctx.Queue()
    path = str(tmp_path / "new.db")
    procs = [ctx.Process(target=_open_at_once, args=(path, go, out)) for _ in range(160)]
    for p in procs:
        p.start()
    go.set()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert [r for r in results if r != "ok"] == []
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'runs'").fetchone()[0] == 1


def test_a_write_lock_held_past_the_busy_timeout_is_a_store_error_not_a_traceback(tmp_path, flow_file):
    import sqlite3
    import subprocess
    import sys

    from engine.store import Store

    flow = flow_file("actions: {a: {type: Compose, inputs: 1}}")
    state = tmp_path / "state.db"
    Store(state).close()
    holder = sqlite3.connect(state)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock, for longer than we wait
    try:
        out = subprocess.run([sys.executable, "-c", "import sys, engine.store as s; s.Store.BUSY_TIMEOUT = 0.2; "
                              "from engine.cli import main; sys.argv[0] = 'flowrun'; main()",
                              "--state", str(state), "run", str(flow)], capture_output=True, text=True, timeout=60)
    finally:
        holder.rollback()
        holder.close()
    assert out.returncode != 0
    assert "locked" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_no_write_transaction_stays_open_while_a_loop_evaluates_its_next_iteration(tmp_path, flow_file, monkeypatch):
    """While a Foreach evaluates heavy templates, another connection takes the write lock at once."""
    from engine.loader import tools
    from engine.registry import default_registry
    from engine.sandbox import Limits
    # heavy on purpose: a loaded machine must not fail it (the evaluator is built once per registry)
    monkeypatch.setattr(tools(default_registry())[1], "limits", Limits(seconds=60))
    import sqlite3
    import threading

    flow = flow_file("""
        actions:
          loop:
            type: Foreach
            foreach: "{{ range(4) | list }}"
            concurrency: 1
            actions:
              heavy: {type: Compose, inputs: "{{ (range(90000) | map('string') | join(',') | length) + (range(90000) | map('string') | join(';') | length) }}"}
    """)
    state = tmp_path / "state.db"
    Store(state).close()
    tries, stop = [], threading.Event()

    def other_writer():
        # timeout=0: a busy database fails the attempt at once. A write transaction held across
        # an evaluation would fail most attempts; short commits fail only a few. Counting, not
        # timing, so a loaded machine does not change the answer.
        db = sqlite3.connect(state, timeout=0)
        while not stop.is_set():
            try:
                db.execute("BEGIN IMMEDIATE")
                db.rollback()
                tries.append(True)
            except sqlite3.OperationalError:
                tries.append(False)
            time.sleep(0.002)
        db.close()
    t = threading.Thread(target=other_writer)
    t.start()
    try:
        result = engine.run_file(flow, state=state)
    finally:
        stop.set()
        t.join()
    assert result.status == "Succeeded"
    busy = tries.count(False) / len(tries)
    print("attempts:", len(tries), "busy:", busy)
    assert len(tries) > 20 and busy < 0.25, (len(tries), busy)


def test_a_state_file_from_before_traces_gets_the_runs_trace_column_and_keeps_its_runs(tmp_path, flow_file):
    import sqlite3

    import engine

    state = tmp_path / "state.db"
    old = engine.run_file(flow_file("actions: {a: {type: Compose, inputs: 1}}"), state=state)
    with sqlite3.connect(state) as db:
        db.execute("ALTER TABLE runs DROP COLUMN trace")  # as a state file written before it existed
    again = engine.run_file(flow_file("actions: {a: {type: Compose, inputs: 2}}"), state=state)
    with sqlite3.connect(state) as db:
        assert "trace" in {r[1] for r in db.execute("PRAGMA table_info(runs)")}
    store = Store(state)
    try:
        assert [store.get_run(r.id).status for r in (old, again)] == ["Succeeded", "Succeeded"]
        assert store.get_run(old.id).trace is None
    finally:
        store.close()


# -- files nodes keep, and the node cache --------------------------------------------------

def test_a_file_is_kept_once_by_its_sha256_and_read_back_whole(store):
    digest = store.put_file(b"%PDF-1.7 report")
    assert store.put_file(b"%PDF-1.7 report") == digest and len(digest) == 64
    assert store.get_file(digest) == b"%PDF-1.7 report"
    assert [p.name for p in store.blobs.iterdir()] == [f"{digest}.bin"]


@pytest.mark.parametrize("ref", [None, "", "../state.db", "A" * 64, "0" * 63, {"$file": "x"}, "0" * 64])
def test_a_reference_that_is_no_kept_file_fails_with_file_not_found_and_builds_no_path(store, ref):
    with pytest.raises(engine.errors.ActionError) as caught:
        store.get_file(ref)
    assert caught.value.code == "FileNotFound"


def test_a_file_over_the_cap_is_refused(tmp_path):
    store = Store(tmp_path / "state.db", blob_cap=10)
    with pytest.raises(OutputTooLarge):
        store.put_file(b"x" * 11)
    store.close()


def test_the_cache_keeps_a_value_until_its_ttl_and_namespaces_do_not_mix(store):
    store.cache_put("geo:mapbox", "berlin", {"lat": 52.5}, ttl=60, now=1000.0)
    assert store.cache_get("geo:mapbox", "berlin", now=1059.9) == {"lat": 52.5}
    assert store.cache_get("geo:google", "berlin", now=1000.0) is None
    assert store.cache_get("geo:mapbox", "berlin", now=1060.0) is None


def test_the_cache_is_redacted_on_write_and_expired_rows_go(tmp_path):
    store = Store(tmp_path / "state.db", redact=lambda text: text.replace("s3cret", "***"))
    store.cache_put("n", "old", 1, ttl=1, now=0.0)
    store.cache_put("n", "k", {"note": "key s3cret"}, ttl=10, now=5.0)
    store.flush()
    assert store.cache_get("n", "k", now=6.0) == {"note": "key ***"}
    assert store.db.execute("SELECT key FROM node_cache").fetchall() == [("k",)]
    store.close()
