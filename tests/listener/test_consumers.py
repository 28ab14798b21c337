"""Pull triggers inside `flowrun serve`, with a third-party plugin (tests/plugins/flowrun_testplugin):
the server starts and stops them, every message becomes exactly one committed run, the
checkpoint survives a restart, and kill -9 mid-consumption loses nothing and doubles nothing."""
from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

from .conftest import ROOT, Server, write_flows
from .inprocess import registry_with, serving, wait_for

PLUGINS = ROOT / "tests" / "plugins"
FEED = """\
name: feed
triggers:
  orders:
    type: testplugin.FileFeed
    path: {path}
    pace: {pace}
actions:
  note:
    type: Compose
    inputs: "order {{{{ triggerBody().id }}}}"
outputs:
  note: {{value: "{{{{ outputs('note') }}}}"}}
"""


def feed(tmp_path: Path, ids: list, pace: float = 0) -> tuple[Path, dict]:
    source = tmp_path / "feed.jsonl"
    source.write_text("".join(json.dumps({"id": i}) + "\n" for i in ids))
    return source, {"feed.yaml": FEED.format(path=source, pace=pace)}


def lifecycle(source: Path) -> list[str]:
    marks = Path(str(source) + ".lifecycle")
    return marks.read_text().split() if marks.exists() else []


def finished(app_or_server, n: int) -> bool:
    runs = app_or_server.runs("feed")
    return len(runs) >= n and all(r["status"] == "Succeeded" for r in runs)


def checkpoint(state: Path) -> int | None:
    with contextlib.closing(sqlite3.connect(str(state))) as con:
        row = con.execute("SELECT value FROM trigger_checkpoints WHERE flow = 'feed' AND trigger = 'orders' "
                          "AND key = 'offset'").fetchone()
    return None if row is None else json.loads(row[0])


def test_serve_starts_a_plugin_pull_trigger_before_it_is_ready_and_stops_it_on_shutdown(tmp_path, monkeypatch):
    source, flows = feed(tmp_path, [])
    reg = registry_with("tests.plugins.flowrun_testplugin")
    with serving(tmp_path / "flows", flows, state=tmp_path / "state.db", registry=reg, monkeypatch=monkeypatch) as app:
        assert lifecycle(source) == ["started"]
        assert app.client.get("/readyz").status_code == 200
    assert lifecycle(source) == ["started", "stopped"]


def test_each_message_is_one_run_and_a_repeated_id_starts_nothing(tmp_path, monkeypatch):
    source, flows = feed(tmp_path, ["a", "b", "a", "c"])
    reg = registry_with("tests.plugins.flowrun_testplugin")
    with serving(tmp_path / "flows", flows, state=tmp_path / "state.db", registry=reg, monkeypatch=monkeypatch) as app:
        wait_for(lambda: checkpoint(tmp_path / "state.db") == 4, "the whole feed")
        wait_for(lambda: finished(app, 3), "three runs")
        runs = app.runs("feed")
        assert [json.loads(r["outputs"]) for r in runs] == [{"note": "order a"}, {"note": "order b"},
                                                              {"note": "order c"}]
        assert [r["dedupe_key"] for r in runs] == ["orders:a", "orders:b", "orders:c"]
        assert [json.loads(r["request"])["via"] for r in runs] == ["trigger"] * 3
        metrics = app.client.get("/metrics").text
    assert 'flowrun_triggers_duplicate_total{flow="feed",trigger="orders"} 1.0' in metrics
    assert 'flowrun_triggers_accepted_total{flow="feed",trigger="orders"} 3.0' in metrics


def test_the_checkpoint_survives_a_restart_and_consumption_goes_on_from_it(tmp_path, monkeypatch):
    source, flows = feed(tmp_path, [1, 2])
    state, folder = tmp_path / "state.db", tmp_path / "flows"
    reg = registry_with("tests.plugins.flowrun_testplugin")
    with serving(folder, flows, state=state, registry=reg, monkeypatch=monkeypatch) as app:
        wait_for(lambda: finished(app, 2), "the first two")
    with source.open("a") as f:
        f.write(json.dumps({"id": 3}) + "\n")
    with serving(folder, state=state, registry=reg, monkeypatch=monkeypatch) as again:
        wait_for(lambda: finished(again, 3), "the third")
        assert again.listener.engine.checkpoint("feed", "orders", "offset") == 3
        assert [r["dedupe_key"] for r in again.runs("feed")] == ["orders:1", "orders:2", "orders:3"]


def test_kill_9_mid_consumption_loses_no_message_and_runs_none_twice(tmp_path):
    n = 300
    source, flows = feed(tmp_path, list(range(n)), pace=0.004)
    folder, state = write_flows(tmp_path / "flows", flows), tmp_path / "state.db"
    env = {"PYTHONPATH": f"{ROOT}:{PLUGINS}"}  # the plugin's dist-info registers it (entry point)
    server = Server(folder, state, env=env).start()
    try:
        wait_for(lambda: len(server.runs("feed")) >= 20, "consumption to be under way")
        server.kill9()
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
    taken = len(server.runs("feed"))
    assert 20 <= taken < n  # killed mid-consumption
    assert checkpoint(state) == taken  # the checkpoint committed with exactly the runs it covers

    again = Server(folder, state, env=env).start()
    try:
        wait_for(lambda: finished(again, n), "every message to have run", timeout=60)
        again.stop()
    finally:
        if again.proc.poll() is None:
            again.proc.kill()
    runs = again.runs("feed")
    assert len(runs) == n
    assert sorted(r["dedupe_key"] for r in runs) == sorted(f"orders:{i}" for i in range(n))
    assert sorted(json.loads(r["outputs"])["note"] for r in runs) == sorted(f"order {i}" for i in range(n))
    assert checkpoint(state) == n
    assert lifecycle(source) == ["started", "started", "stopped"]  # the killed one never stopped


MAILBOX = """\
name: mailbox
triggers:
  inbox: {type: testplugin.Mailbox, connection: inbox}
actions:
  check:
    type: Compose
    inputs: "{{ triggerBody().n }}"
  fail:
    type: Terminate
    runAfter: {check: [Succeeded]}
    inputs: {runStatus: "{{ 'Failed' if triggerBody().n == 2 else 'Succeeded' }}"}
"""


def mailbox(tmp_path: Path, monkeypatch, n: int) -> tuple[Path, Path]:
    box, folder = tmp_path / "box", tmp_path / "flows"
    box.mkdir()
    for i in range(n):
        (box / f"m{i}.json").write_text(json.dumps({"n": i}))
    secret = 'q"uo\\te/+%é'
    monkeypatch.setenv("TEST_MAILBOX_TOKEN", secret)
    write_flows(folder, {"mailbox.yaml": MAILBOX},
                connections=f"connections:\n  inbox:\n    kind: testplugin.mailbox\n    settings: {{folder: '{box}'}}\n"
                            f"    secrets: {{token: TEST_MAILBOX_TOKEN}}\n")
    return box, folder


def test_a_pull_trigger_reads_through_its_connection_and_settles_each_message_after_its_run(tmp_path, monkeypatch):
    box, folder = mailbox(tmp_path, monkeypatch, 4)
    reg = registry_with("tests.plugins.flowrun_testplugin")
    with serving(folder, state=tmp_path / "state.db", registry=reg, monkeypatch=monkeypatch, max_in_flight=1) as app:
        wait_for(lambda: len(list(box.glob("*.done"))) + len(list(box.glob("*.failed"))) == 4, "every message settled")
        statuses = [r["status"] for r in app.runs("mailbox")]
    assert sorted(p.name for p in box.glob("*.failed")) == ["m2.failed"]  # kept for a retry or a DLQ
    assert len(list(box.glob("*.done"))) == 3 and statuses.count("Failed") == 1
    marks = (box / "marks").read_text().split("\n")
    assert marks[0] == f"token {len(chr(34) + 'uo' + chr(92) + 'te/+%é') + 1}"
    assert "paused" in marks  # one run in flight at most: the trigger waited for room


def test_a_pull_trigger_naming_an_unknown_or_wrong_connection_is_a_validation_problem(tmp_path):
    from engine.errors import FlowError
    from engine.connections import Connections
    from engine.loader import load_text

    reg = registry_with("tests.plugins.flowrun_testplugin")
    conns_file = tmp_path / "connections.yaml"
    conns_file.write_text("connections:\n  web: {kind: http}\n  inbox: {kind: testplugin.mailbox, settings: {folder: x}, "
                          "secrets: {token: T}}\n")
    conns = Connections.load(conns_file, reg)
    load_text(MAILBOX, "m.yaml", registry=reg, connections=conns)  # the right kind: no problem
    for name, message in [("inbux", "unknown connection 'inbux' (did you mean 'inbox'?)"),
                          ("web", "connection 'web' is of kind 'http', trigger 'testplugin.Mailbox' needs "
                                  "'testplugin.mailbox'")]:
        try:
            load_text(MAILBOX.replace("connection: inbox", f"connection: {name}"), "m.yaml", registry=reg,
                      connections=conns)
        except FlowError as exc:
            assert message in str(exc) and "triggers.inbox.connection" in str(exc)
        else:
            raise AssertionError("no problem reported")
    try:
        load_text(MAILBOX.replace(", connection: inbox", ""), "m.yaml", registry=reg, connections=conns)
    except FlowError as exc:
        assert "triggers.inbox: 'connection' is required" in str(exc)
    else:
        raise AssertionError("no problem reported")
