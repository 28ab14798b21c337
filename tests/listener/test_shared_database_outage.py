"""`flowrun serve` on PostgreSQL while the database goes away (engine/listener with engine/pgstore):
trigger requests answer 503 with Retry-After, readiness says why, and both work again once it
is back; a leased pull trigger stops consuming when the connection holding its lease is lost
and takes the lease again afterwards, missing and doubling no message.

The database "goes away" as a TCP proxy in front of the real server going down (every socket
reset, new ones refused), or as the server ending the writer's backend (pg_terminate_backend).
"""
from __future__ import annotations

import json

import psycopg
import pytest

from tests.support import postgres
from tests.support.tcpproxy import TcpProxy

from .inprocess import registry_with, serving, wait_for

pytestmark = pytest.mark.skipif(postgres.skip_reason is not None, reason=postgres.skip_reason or "")

HOOK = """\
name: hook
triggers:
  manual: {type: Request, auth: {type: none}}
actions:
  seen: {type: Compose, inputs: "{{ triggerBody().n }}"}
"""
FEED = """\
name: feed
triggers:
  lines: {{type: testplugin.FileFeed, path: "{path}", poll: 0.01}}
actions:
  seen: {{type: Compose, inputs: "{{{{ triggerBody().id }}}}"}}
"""


def count(url: str, sql: str, *args) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, args).fetchone()[0]


def test_trigger_requests_answer_503_with_retry_after_while_postgresql_is_away_and_202_once_it_is_back(
        tmp_path, monkeypatch, pg_state):
    with TcpProxy(5432) as proxy, serving(tmp_path / "flows", {"hook.yaml": HOOK}, state=proxy.url(pg_state),
                                          monkeypatch=monkeypatch) as app:
        post = lambda n: app.client.post("/flows/hook/triggers/manual", json={"n": n})  # noqa: E731
        assert post(1).status_code == 202
        proxy.down()
        for n in (2, 3, 4):
            away = post(n)
            assert away.status_code == 503, away.text
            assert away.headers["Retry-After"].isdigit()
            assert "cannot be reached" in away.json()["error"]
        ready = app.client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "store unavailable"
        proxy.up()
        back = wait_for(lambda: (r := post(5)).status_code == 202 and r, "a request accepted again", timeout=30)
        assert back.json()["runId"]
        assert app.client.get("/readyz").status_code == 200
        assert not [r for r in app.records.records if r["exc"]]  # no traceback in the log
    assert count(pg_state, "SELECT count(*) FROM runs WHERE flow = 'hook'") == 2  # 1 and 5: nothing half-kept


def test_a_terminated_writer_backend_costs_no_request(tmp_path, monkeypatch, pg_state):
    with serving(tmp_path / "flows", {"hook.yaml": HOOK}, state=pg_state, monkeypatch=monkeypatch) as app:
        post = lambda n: app.client.post("/flows/hook/triggers/manual", json={"n": n})  # noqa: E731
        assert post(1).status_code == 202
        for n in (2, 3, 4):
            pid = app.listener.engine.store._conn.info.backend_pid
            with psycopg.connect(postgres.SERVER, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                    admin.execute("SELECT pg_sleep(0.01)")
            assert post(n).status_code == 202
    assert count(pg_state, "SELECT count(*) FROM runs WHERE flow = 'hook'") == 4


def test_a_leased_pull_trigger_stops_when_its_connection_is_lost_and_takes_its_lease_again_when_it_is_back(
        tmp_path, monkeypatch, pg_state):
    source = tmp_path / "feed.jsonl"
    source.write_text("".join(json.dumps({"id": i}) + "\n" for i in range(5)))
    reg = registry_with("tests.plugins.flowrun_testplugin")
    runs = lambda: count(pg_state, "SELECT count(*) FROM runs WHERE flow = 'feed'")  # noqa: E731
    with TcpProxy(5432) as proxy, serving(tmp_path / "flows", {"feed.yaml": FEED.format(path=source)},
                                          state=proxy.url(pg_state), registry=reg, monkeypatch=monkeypatch) as app:
        wait_for(lambda: runs() == 5, "the first five messages")
        proxy.down()
        with source.open("a") as f:  # arrives while the database is away
            f.write("".join(json.dumps({"id": i}) + "\n" for i in range(5, 10)))
        wait_for(lambda: app.records.events("trigger_lease_lost") or app.records.events("trigger_paused"),
                 "the trigger to notice")
        proxy.up()
        wait_for(lambda: runs() == 10, "the other five, once the database is back", timeout=60)
        lifecycle = (tmp_path / "feed.jsonl.lifecycle").read_text().split()
        assert lifecycle.count("started") >= 2  # started again after the outage
        assert not [r for r in app.records.records if r["exc"]]
        # the lease is held again, by this instance's live connection
        assert count(pg_state, "SELECT count(*) FROM trigger_leases l JOIN pg_stat_activity a "
                               "ON a.pid = l.backend AND a.backend_start = l.backend_start") == 1
    keys = [r[0] for r in psycopg.connect(pg_state).execute("SELECT dedupe_key FROM runs WHERE flow = 'feed'")]
    assert sorted(keys) == sorted(f"lines:{i}" for i in range(10))


CHARGE = """\
name: charge
parameters:
  api: {{type: string, default: "{api}"}}
triggers:
  manual: {{type: Request, auth: {{type: none}}}}
actions:
  first:
    type: Http
    inputs: {{method: POST, uri: "{{{{ parameters('api') }}}}/charge", body: {{n: 1}}, idempotencyKey: true}}
  second:
    type: Http
    inputs: {{method: POST, uri: "{{{{ parameters('api') }}}}/charge", body: {{n: 2}}, idempotencyKey: true}}
    runAfter: {{first: [Succeeded]}}
"""


def test_serve_worker_resumes_a_run_whose_connection_died_mid_action_and_it_succeeds_not_failed(
        tmp_path, monkeypatch, pg_state, recorder):
    keys: list[str] = []
    app_box: list = []

    def charge(req):
        keys.append(req.header("idempotency-key"))
        if len(keys) == 1:  # the first call: the writer's backend ends while the run waits for it
            pid = app_box[0].listener.engine.store._conn.info.backend_pid
            with psycopg.connect(postgres.SERVER, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                    admin.execute("SELECT pg_sleep(0.01)")
        return 200, {"Content-Type": "application/json"}, b'{"ok": true}'
    recorder.route("POST", "/charge", handler=charge)
    with serving(tmp_path / "flows", {"charge.yaml": CHARGE.format(api=recorder.url)}, state=pg_state,
                 monkeypatch=monkeypatch, worker=True) as app:
        app_box.append(app)
        accepted = app.client.post("/flows/charge/triggers/manual", json={})
        assert accepted.status_code == 202, accepted.text
        run_id = accepted.json()["runId"]
        status = wait_for(lambda: (s := app.runs("charge")[0]["status"]) in ("Succeeded", "Failed") and s,
                          "the run to end", timeout=60)
        assert app.records.events("run_dropped")  # stopped where the lease died, quietly
        assert not [r for r in app.records.records if r["exc"]]
    assert status == "Succeeded"
    assert [k.rsplit(":", 1)[1] for k in keys] == ["first", "first", "second"]  # the one in flight, again
    assert all(k.startswith(run_id) for k in keys)
