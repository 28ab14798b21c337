"""engine/pgstore.py and engine/pglease.py: what only the PostgreSQL backend does."""
import pytest
from hypothesis import given, settings, strategies as st

import engine
from engine.storage import open_store
from tests.support import postgres

needs_pg = pytest.mark.skipif(postgres.skip_reason is not None, reason=postgres.skip_reason or "")


@pytest.mark.parametrize("password", ["s3cr'et", 's3cr"et\\x', "p@ss:w/rd", "%41%42"])
def test_a_database_that_cannot_be_reached_is_one_line_without_the_password(password):
    pytest.importorskip("psycopg")
    from urllib.parse import quote

    url = f"postgresql://flowrun:{quote(password, safe='')}@127.0.0.1:1/nodb?connect_timeout=2"
    with pytest.raises(engine.FlowrunError) as caught:
        open_store(url)
    message = str(caught.value)
    assert "\n" not in message and "cannot connect to PostgreSQL" in message
    assert password not in message and quote(password, safe="") not in message and "***" in message


def test_a_malformed_url_is_one_line_without_the_password():
    pytest.importorskip("psycopg")
    with pytest.raises(engine.FlowrunError) as caught:
        open_store("postgresql://u:topsecret@127.0.0.1:5432/test?nosuchoption=1&password=topsecret")
    assert "topsecret" not in str(caught.value)


@needs_pg
def test_a_holder_whose_lease_was_taken_over_writes_nothing_more_and_is_told(pg_state):
    from engine.storage import claim

    store = open_store(pg_state)
    other = open_store(pg_state)
    try:
        store.create_run({"id": "r", "flow": "f", "status": "Queued"})
        told = []
        with claim(store, "r", ttl=30) as held:
            held._on_lost = lambda: told.append("lost")
            # another process took it over (our lease expired while this one was stalled)
            other.db.execute("UPDATE run_leases SET token = 'theirs' WHERE run_id = 'r'")
            other.flush()
            store.step_finished("r", "a", "a", "Compose", "Succeeded", attempts=1, inputs=None, outputs=1,
                                error=None, started=1.0, ended=2.0)
            store.update_run("r", status="Succeeded")
            assert held.lost and told
        assert other.steps("r") == [] and other.get_run("r").status == "Queued"
        assert other.db.execute("SELECT token FROM run_leases WHERE run_id = 'r'").fetchone()[0] == "theirs"
    finally:
        store.close()
        other.close()


def _stall_inside_a_transaction(store, run_id):
    """A fenced write sent but not committed (a read sent the batch): where a holder stopped
    with SIGSTOP, or a long synchronous stretch, leaves its transaction; then its lease expires
    on the server's clock while its backend lives on."""
    import time

    from tests.support.waiting import wait_until

    store.step_started(run_id, "a", "a", "Http", time.time(), now=True)
    store.get_run(run_id)
    wait_until(lambda: store.conn.execute("SELECT expires < extract(epoch from clock_timestamp()) FROM run_leases "
                                          "WHERE run_id = %s", (run_id,)).fetchone()[0], "the lease never expired")


@needs_pg
def test_no_one_takes_a_run_over_while_its_stalled_holder_has_fenced_writes_uncommitted_and_may_once_they_commit(
        pg_state):
    """A fence checked when a write is sent is not enough: the holder commits later. Taken over
    meanwhile, its commit landed over the new owner's rows (a Succeeded run with a Running
    step). The fence holds the lease row (FOR SHARE) until the commit, and a taker finds the
    run busy then, never waiting on a stalled process."""
    from engine.errors import RunBusy
    from engine.storage import claim

    store, other = open_store(pg_state), open_store(pg_state)
    try:
        other.conn.execute("SET lock_timeout = '3s'")  # a taker that waits on the stalled one fails here
        store.create_run({"id": "r", "flow": "f", "status": "Queued"})
        with claim(store, "r", ttl=1):
            _stall_inside_a_transaction(store, "r")
            with pytest.raises(RunBusy):
                with claim(other, "r", ttl=30):
                    other.run_finished("r", status="Succeeded", ended=2.0)
            store.flush()  # the stalled one goes on: what it wrote while it held the run commits
            with claim(other, "r", ttl=30):  # and now the run is free (expired) for the next
                other.step_finished("r", "a", "a", "Http", "Succeeded", attempts=2, inputs=None, outputs=1,
                                    error=None, started=1.0, ended=2.0)
                other.run_finished("r", status="Succeeded", ended=2.0)
            other.flush()
            store.step_finished("r", "b", "b", "Compose", "Succeeded", attempts=1, inputs=None, outputs=1,
                                error=None, started=1.0, ended=2.0)
            store.flush()  # fenced off: nothing
        assert {s.path: s.status for s in other.steps("r")} == {"a": "Succeeded"}
        assert other.get_run("r").status == "Succeeded"
    finally:
        store.close()
        other.close()


@needs_pg
def test_a_holders_fenced_writes_and_a_claim_of_the_same_run_never_wait_for_each_other_in_a_cycle(pg_state):
    """A worker's claim locks a candidate run's row (FOR UPDATE SKIP LOCKED), then writes its
    lease row (ON CONFLICT: it waits for whoever holds that row). A claim whose snapshot
    predates the holder's lease takes the run's row in between. A fence that held the lease
    row before the run's row waited for the claim while the claim waited for it: "deadlock
    detected", a commit failed, and the runs in it recorded Failed (seen in chaos runs)."""
    import threading

    import psycopg

    from engine.storage import claim
    from tests.support.waiting import wait_until

    store = open_store(pg_state)
    claimer = psycopg.connect(pg_state)
    try:
        claimer.execute("SET lock_timeout = '5s'")
        store.create_run({"id": "r", "flow": "f", "status": "Queued"})
        with claim(store, "r", ttl=30):
            claimer.execute("SELECT id FROM runs WHERE id = 'r' FOR UPDATE")  # (the claim's candidates)
            failed = []

            def holder():
                try:
                    store.step_started("r", "a", "a", "Http", 1.0, now=True)
                    store.update_run("r", status="Running")  # (its held-back Running mark)
                except Exception as exc:  # noqa: BLE001
                    failed.append(exc)
            thread = threading.Thread(target=holder)
            thread.start()
            pid = store._conn.info.backend_pid
            wait_until(lambda: claimer.execute("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
                                               (pid,)).fetchone()[0], "the holder never waited for the claim")
            claimer.execute("INSERT INTO run_leases AS l (run_id, owner, pid, host, token, acquired, expires) "
                            "VALUES ('r', 'w', 1, 'h', 'theirs', 0, 0) ON CONFLICT (run_id) DO UPDATE SET "
                            "token = EXCLUDED.token WHERE l.expires < 0")  # (live: not taken)
            claimer.commit()
            thread.join(10)
            assert not thread.is_alive() and failed == []
        assert {s.path: s.status for s in store.steps("r")} == {"a": "Running"}
        assert store.get_run("r").status == "Running"
    finally:
        claimer.close()
        store.close()


def _writes_for_a_run():
    """Every write the engine makes for a run it executes, as (name, write(store))."""
    import time

    from engine import concurrency

    step = dict(attempts=1, inputs=None, outputs=1, error=None, started=1.0, ended=2.0)
    return [
        ("update_run", lambda s: s.update_run("r", status="Failed")),
        ("run_finished", lambda s: s.run_finished("r", status="Succeeded", ended=2.0)),
        ("step_finished", lambda s: s.step_finished("r", "a", "a", "Compose", "Succeeded", **step)),
        ("step_started now", lambda s: s.step_started("r", "a", "a", "Http", time.time(), now=True)),
        ("step_started, then its execution ended", lambda s: (s.step_started("r", "a", "a", "Http", 1.0),
                                                              s.execution_ended("r"))),
        ("run_started, due", lambda s: (s.run_started("r", 1.0, 2), setattr(s, "RUNNING_AFTER", -1e9))),
        ("step_mark", lambda s: s.step_mark("r", "a", "a", "Http", attempts=1, started=1.0, handle={"h": 1},
                                            wake=None)),
        ("park_run", lambda s: s.park_run("r", 5.0, "Waiting")),
        ("attempt_finished", lambda s: s.attempt_finished("r", "a", 2, status="Failed", started=1.0, ended=2.0)),
        ("step_tracked", lambda s: s.step_tracked("r", "old", {"values": {"x": 1}})),
        ("the run's concurrency slot released", lambda s: concurrency.release(s, "r")),
    ]


@needs_pg
@pytest.mark.parametrize("name, write", _writes_for_a_run(), ids=[n for n, _ in _writes_for_a_run()])
def test_no_write_for_a_run_lands_once_its_lease_was_taken_over(pg_state, name, write):
    """The class of ``test_a_holder_whose_lease_was_taken_over_writes_nothing_more``: whatever
    the write (a step's tracked properties, the run's concurrency slot, held-back marks), a
    stalled holder's changes nothing the new owner holds. A slot released so let a second run
    of a key limited to one start beside the one still executing."""
    from engine import concurrency
    from engine.storage import claim

    store, other = open_store(pg_state), open_store(pg_state)
    tables = ("runs", "steps", "parked_runs", "step_attempts", concurrency.TABLE)

    def everything():
        out = {t: sorted(map(repr, other.db.execute(f"SELECT * FROM {t}").fetchall())) for t in tables}
        other.flush()
        return out
    try:
        concurrency._ensure(store)
        store.ensure_table("step_attempts", store.ATTEMPTS_DDL)
        store.create_run({"id": "r", "flow": "f", "status": "Running"})
        store.db.execute(f"INSERT INTO {concurrency.TABLE} (run_id, slot_key, slot_limit, held, since) "
                         "VALUES ('r', 'k', 1, 1, 0)")
        store.step_finished("r", "old", "old", "Compose", "Succeeded", attempts=1, inputs=None, outputs=1,
                            error=None, started=1.0, ended=2.0)
        store.flush()
        with claim(store, "r", ttl=30):
            other.db.execute("UPDATE run_leases SET token = 'theirs' WHERE run_id = 'r'")  # taken over
            other.flush()
            before = everything()
            write(store)
            store.flush()
            assert everything() == before, name
    finally:
        store.close()
        other.close()


@needs_pg
def test_a_renewal_due_after_the_runs_outcome_is_written_finds_nothing_to_renew_not_a_takeover(pg_state):
    """The outcome deletes the lease in its statement; a renewal timer firing before the
    outcome's commit (the run awaits it) updated no row and called that a takeover: the run
    ended Succeeded while its execute raised RunBusy ("stalled"), under load now and then."""
    from engine.storage import claim

    store = open_store(pg_state)
    try:
        store.create_run({"id": "r", "flow": "f", "status": "Running"})
        with claim(store, "r", ttl=30) as held:
            store.run_finished("r", status="Succeeded", ended=2.0)
            assert held.renew() and not held.lost
        store.flush()
        assert store.get_run("r").status == "Succeeded" and store.leases(["r"]) == {}
    finally:
        store.close()


@needs_pg
def test_a_lease_is_judged_on_the_servers_clock_and_by_its_backend_not_by_the_row_alone(pg_state):
    from engine.errors import RunBusy
    from engine.storage import claim

    store = open_store(pg_state)
    try:
        store.create_run({"id": "r", "flow": "f", "status": "Running"})
        # a lease far in the future, written by a backend that no longer exists: free
        store.db.execute("INSERT INTO run_leases (run_id, owner, pid, host, token, backend, backend_start, acquired, "
                         "expires) VALUES ('r', 'gone', 1, 'elsewhere', 't', 1, now(), 0, 1e12)")
        store.flush()
        with claim(store, "r", ttl=30):
            pass
        # an expired lease of a live backend: free too
        other = open_store(pg_state)
        try:
            other.db.execute("INSERT INTO run_leases (run_id, owner, pid, host, token, backend, backend_start, "
                             "acquired, expires) SELECT 'r', 'other', 1, 'h', 't2', pg_backend_pid(), backend_start, "
                             "0, 1 FROM pg_stat_activity WHERE pid = pg_backend_pid() ON CONFLICT (run_id) DO UPDATE "
                             "SET backend = EXCLUDED.backend, backend_start = EXCLUDED.backend_start, "
                             "expires = EXCLUDED.expires, token = EXCLUDED.token")
            other.flush()
            with claim(store, "r", ttl=30):
                pass
            # a live backend within its expiry: busy
            with claim(other, "r", ttl=30):
                with pytest.raises(RunBusy, match="being executed by"):
                    with claim(store, "r", ttl=30):
                        pass
        finally:
            other.close()
    finally:
        store.close()


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_sqlite_placeholders_become_postgresql_ones_and_a_percent_sign_never_does(text):
    pytest.importorskip("psycopg")
    from engine.pgconn import translate

    source = f"SELECT ? WHERE x = {text!r}"
    bare = translate(source).replace("%%", "")
    assert bare.count("%") == bare.count("%s") == source.count("?")


@needs_pg
def test_files_and_the_node_cache_live_in_the_database_and_the_cache_is_redacted(pg_state):
    store = open_store(pg_state, redact=lambda s: s.replace("tok-123", "***"))
    try:
        digest = store.put_file(b"%PDF-1.7 \x00\xff")
        assert store.put_file(b"%PDF-1.7 \x00\xff") == digest
        assert store.get_file(digest) == b"%PDF-1.7 \x00\xff"
        with pytest.raises(engine.FlowrunError, match="not a file reference"):
            store.get_file("../../etc/passwd")
        store.cache_put("geo", "paris", {"lat": 48.85, "token": "tok-123"}, ttl=60, now=1000.0)
        store.flush()
        assert store.cache_get("geo", "paris", now=1030.0) == {"lat": 48.85, "token": "***"}
        assert store.cache_get("geo", "paris", now=1061.0) is None
    finally:
        store.close()


def test_a_prune_never_deletes_a_blob_a_run_still_writing_refers_to(pg_state):
    """Another process reuses a stored blob in a transaction not committed yet while a prune
    finds no committed reference to it: the prune waits for that commit and keeps the blob."""
    import threading
    import time

    import psycopg

    from engine.retention import prune

    big = {"rows": ["q" * 50] * 10}
    pruner, writer = open_store(pg_state, blob_threshold=100), open_store(pg_state, blob_threshold=100)
    try:
        pruner.create_run({"id": "old", "flow": "f", "status": "Succeeded", "created": 1.0, "ended": 2.0})
        pruner.step_finished("old", "a", "a", "Compose", "Succeeded", attempts=1, inputs=None, outputs=big,
                             error=None, started=1.0, ended=2.0)
        pruner.flush()
        writer.create_run({"id": "live", "flow": "f", "status": "Running", "created": time.time()}, commit=False)
        writer.step_finished("live", "a", "a", "Compose", "Succeeded", attempts=1, inputs=None, outputs=big,
                             error=None, started=1.0, ended=2.0, commit=False)
        writer.conn  # the batch sent, its transaction open
        backend = pruner.conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        done = []
        thread = threading.Thread(target=lambda: done.append(prune(pruner, 3600)))
        thread.start()
        with psycopg.connect(postgres.SERVER, autocommit=True) as watch:
            deadline = time.monotonic() + 30
            while not watch.execute("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
                                    (backend,)).fetchone()[0]:
                assert time.monotonic() < deadline, "the prune never waited for the writer"
                time.sleep(0.01)
        writer.flush()
        thread.join(30)
        assert done and (done[0].runs, done[0].blobs) == (1, 0)
        assert writer.get_step("live", "a").outputs == big
    finally:
        writer.close()
        pruner.close()


def test_upgrades_at_once_where_one_is_killed_mid_migration_leave_the_schema_whole(pg_state, tmp_path):
    """Two `flowrun db upgrade` of a version-1 database at once; the one migrating (it holds the
    migration lock, blocked inside its transaction) is killed -9: the other migrates, once."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    import psycopg

    from engine.pgstore import VERSION

    open_store(pg_state).close()
    with psycopg.connect(pg_state, autocommit=True) as conn:  # back to version 1: no runs.trace yet
        conn.execute("ALTER TABLE runs DROP COLUMN trace")
        conn.execute("DELETE FROM flowrun_schema WHERE version > 1")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-m", "engine.cli", "--state", pg_state, "db", "upgrade", "--json"]
    with psycopg.connect(pg_state) as holder:
        holder.execute("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")  # the first ALTER waits here
        first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        with psycopg.connect(postgres.SERVER, autocommit=True) as watch:
            def waiting(kind):
                return watch.execute("SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                     "AND query LIKE %s", (kind,)).fetchone()[0]
            deadline = time.monotonic() + 60
            while not waiting("ALTER TABLE runs%"):
                assert time.monotonic() < deadline and first.poll() is None, first.stderr.read() if first.poll() else ""
                time.sleep(0.02)
            second = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            while not waiting("SELECT pg_advisory_xact_lock%"):
                assert time.monotonic() < deadline and second.poll() is None
                time.sleep(0.02)
            first.send_signal(signal.SIGKILL)
            first.wait(30)
        holder.rollback()  # the table lock goes: the killed one's backend ends, then the other runs
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err.decode()
    assert json.loads(out)["version"] == VERSION and json.loads(out)["pending"] == 0
    with psycopg.connect(pg_state) as conn:
        assert [r[0] for r in conn.execute("SELECT version FROM flowrun_schema ORDER BY version")] == \
               list(range(1, VERSION + 1))
        assert conn.execute("SELECT trace FROM runs LIMIT 1").fetchall() == []


@settings(max_examples=80, deadline=None)
@given(password=st.text(st.sampled_from("QXZ'\"\\@%:/?#&= ;$"), min_size=4, max_size=16)
       .filter(lambda p: any(c in p for c in "QXZ")), encoded=st.booleans(),
       where=st.sampled_from(["authority", "query"]))
def test_no_piece_of_a_password_is_ever_in_a_connection_error_or_a_shown_url(password, encoded, where):
    """Written percent-encoded or not, in the authority or as ?password=: neither the message of a
    failed connection nor the URL as shown holds four characters of the password in a row."""
    pytest.importorskip("psycopg")
    from urllib.parse import quote

    from engine.pgconn import shown

    written = quote(password, safe="") if encoded else password
    url = (f"postgresql://flowrun:{written}@127.0.0.1:1/nodb?connect_timeout=1" if where == "authority" else
           f"postgresql://flowrun@127.0.0.1:1/nodb?connect_timeout=1&password={written}")
    with pytest.raises(engine.FlowrunError) as caught:
        open_store(url)
    pieces = {p[i:i + 4] for p in (password, written) for i in range(len(p) - 3)}
    for text in (str(caught.value), shown(url)):
        assert "\n" not in text
        assert not [p for p in pieces if any(c in p for c in "QXZ") and p in text], text


@pytest.mark.parametrize("old_version", [1, 2, 3])
def test_a_database_of_an_older_version_upgrades_while_an_old_process_writes_and_keeps_its_rows(
        pg_state, old_version):
    """`flowrun db upgrade` on a live deployment: an old worker (its schema) has a transaction
    open on the tables being altered; the upgrade waits for it, applies every pending step once,
    keeps the rows, and the old worker's later writes (naming their columns) still go in."""
    import threading

    import psycopg

    from engine.pgstore import MIGRATIONS, VERSION
    from engine.storage import status, upgrade

    with psycopg.connect(pg_state, autocommit=True) as setup:
        setup.execute("CREATE TABLE flowrun_schema (version INTEGER PRIMARY KEY, applied DOUBLE PRECISION NOT NULL)")
        for i in range(old_version):
            setup.execute(MIGRATIONS[i])
            setup.execute("INSERT INTO flowrun_schema VALUES (%s, 0)", (i + 1,))
        setup.execute("INSERT INTO runs (id, flow, status, created) VALUES ('w', 'f', 'Waiting', 1)")
        setup.execute("INSERT INTO parked_runs (run_id, wake, parked) VALUES ('w', 5, 1)")
    assert status(pg_state)["version"] == old_version and status(pg_state)["pending"] == VERSION - old_version
    old = psycopg.connect(pg_state)  # an old worker mid-transaction on the tables being altered
    old.execute("INSERT INTO runs (id, flow, status, created) VALUES ('q', 'f', 'Waiting', 2)")
    old.execute("INSERT INTO parked_runs (run_id, wake, parked) VALUES ('q', 6, 2)")
    old.execute("INSERT INTO steps (run_id, path, action, status) VALUES ('q', 'a', 'a', 'Running')")
    done = []
    upgrading = threading.Thread(target=lambda: done.append(upgrade(pg_state)))
    upgrading.start()
    with psycopg.connect(pg_state, autocommit=True) as look:  # the upgrade waits for the old transaction
        for _ in range(500):
            waiting = look.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                   "AND datname = current_database()").fetchone()[0]
            if waiting:
                break
            threading.Event().wait(0.01)
    assert not done
    old.commit()
    upgrading.join(30)
    assert done and done[0]["version"] == VERSION and done[0]["pending"] == 0
    old.execute("INSERT INTO parked_runs (run_id, wake, parked) VALUES ('r', 7, 3)")  # old code, new schema
    old.commit()
    old.close()
    assert status(pg_state)["version"] == VERSION
    store = open_store(pg_state)
    try:
        assert sorted(r[0] for r in store.conn.execute("SELECT run_id FROM parked_runs")) == ["q", "r", "w"]
        assert [s.path for s in store.steps("q")] == ["a"]
        assert [v for (v,) in store.conn.execute("SELECT version FROM flowrun_schema ORDER BY version")] == \
            list(range(1, VERSION + 1))  # each step once
        store.flush()
    finally:
        store.close()


@pytest.mark.parametrize("schema", ["t_abc", "T_ABC", 'we"ird sch-ema', "ü" * 31, "x" * 63, "public2"])
def test_a_schemas_notify_channels_are_short_plain_identifiers_of_its_own(schema):
    from engine.pgstore import channels

    mine = channels(schema)
    assert len(set(mine)) == 3 and set(mine).isdisjoint(channels("public")) and set(mine).isdisjoint(channels("t_x"))
    for name in mine:
        assert name.isascii() and name.replace("_", "").isalnum() and name == name.lower() and len(name) < 63


def test_the_public_schema_keeps_the_plain_channel_names():
    from engine.pgstore import channels

    assert channels("public") == ("flowrun_runs", "flowrun_done", "flowrun_reply")


@needs_pg
def test_a_run_queued_in_another_schema_of_the_database_wakes_no_listener_of_this_one(pg_state):
    import psycopg

    other_url, other_schema = postgres.postgres_url()
    here, there = open_store(pg_state), open_store(other_url)
    try:
        with psycopg.connect(pg_state, autocommit=True) as listener:
            listener.execute(f"LISTEN {here.channel}")
            there.create_run({"id": "theirs", "flow": "f", "status": "Queued"})  # commits first
            here.create_run({"id": "ours", "flow": "f", "status": "Queued"})
            # notifications come in commit order: had theirs reached this channel, it would come first
            notes = list(listener.notifies(timeout=30, stop_after=1))
        assert [(n.channel, n.pid) for n in notes] == [(here.channel, here._conn.info.backend_pid)]
    finally:
        here.close()
        there.close()
        postgres.drop(other_schema)
