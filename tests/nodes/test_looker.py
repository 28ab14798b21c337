"""looker.*: the real looker-sdk, configured in code per connection, against loopback Looker
API 4.0 servers (tests/support/looker.py); the tests assert on what the SDK sent."""
from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import engine
from tests.support.clock import FakeClock
from tests.support.looker import ROWS, LookerFake
from tests.support.tableau import PDF, PNG
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
SECRET = 'lk"se\'cr\\et/+%é'  # quotes, a backslash, / + % and non-ASCII
OTHER_SECRET = "other-'secret'-2"


@pytest.fixture
def looker():
    with LookerFake(client_id="id-one", client_secret=SECRET) as fake:
        yield fake


@pytest.fixture
def connections(tmp_path, looker, monkeypatch):
    monkeypatch.setenv("LOOKER_ID", "id-one")
    monkeypatch.setenv("LOOKER_SECRET", SECRET)
    for name in ("LOOKERSDK_BASE_URL", "LOOKERSDK_CLIENT_ID", "LOOKERSDK_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    return write_connections(tmp_path, {"looker": looker.url})


def write_connections(tmp_path, endpoints: dict, secrets=("LOOKER_ID", "LOOKER_SECRET")):
    path = tmp_path / "connections.yaml"
    path.write_text(yaml.safe_dump({"connections": {
        name: {"kind": "looker", "endpoint": url, "settings": {"base_url": "https://acme.cloud.looker.com"},
               "secrets": {"client_id": secrets[0], "client_secret": secrets[1]} if name == "looker" else
               {"client_id": "LOOKER2_ID", "client_secret": "LOOKER2_SECRET"}}
        for name, url in endpoints.items()}}))
    return path


def flow_file(tmp_path, actions):
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump({"triggers": {"manual": {"type": "Manual"}}, "actions": actions}, sort_keys=False))
    return path


def run(tmp_path, connections, actions, **kw):
    return engine.run_file(flow_file(tmp_path, actions), state=tmp_path / "state.db", connections=connections,
                           clock=FakeClock(), **kw)


def act(kind, inputs, connection="looker", **extra):
    return {"type": f"looker.{kind}", "connection": connection, "inputs": inputs, **extra}


def test_importing_the_module_does_not_import_looker_sdk():
    code = "import nodes.looker, sys; assert 'looker_sdk' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_run_look_as_json_csv_and_png_logs_in_once_with_the_connections_credentials(tmp_path, connections, looker):
    result = run(tmp_path, connections, {
        "json": act("RunLook", {"lookId": "42", "limit": 1}),
        "csv": act("RunLook", {"lookId": 42, "format": "csv", "filename": "orders.csv"}, runAfter={"json": ["Succeeded"]}),
        "png": act("RunLook", {"lookId": "42", "format": "png", "imageWidth": 800}, runAfter={"csv": ["Succeeded"]})})
    assert result.status == "Succeeded", result.error
    assert result.steps["json"].outputs == {"rows": ROWS[:1], "count": 1}
    csv = result.steps["csv"].outputs
    assert csv["csv"] == "orders.created_date,orders.count\n2024-06-01,42\n2024-06-02,17\n" and csv["count"] == 2
    assert csv["file"]["name"] == "orders.csv" and csv["file"]["contentType"] == "text/csv"
    png = result.steps["png"].outputs["file"]
    assert (tmp_path / "state.db.blobs" / f"{png['$file']}.bin").read_bytes() == PNG
    assert looker.logins == [("id-one", SECRET)]  # one login, the token re-used
    first = looker.requests("GET", "/looks/42/run/json")[0]
    assert first.query == {"limit": ["1"]} and first.header("authorization").startswith("Bearer lk-")
    assert looker.requests("GET", "/run/png")[0].query == {"image_width": ["800"]}
    db = sqlite3.connect(tmp_path / "state.db")
    dump = "\n".join(str(r) for t in ("runs", "steps") for r in db.execute(f"SELECT * FROM {t}"))
    for secret in (SECRET, *looker.tokens):
        assert secret not in dump


def test_an_inline_query_sends_model_view_fields_filters_sorts_and_limit(tmp_path, connections, looker):
    result = run(tmp_path, connections, {"q": act("RunInlineQuery", {
        "model": "thelook", "view": "orders", "fields": ["orders.created_date", "orders.count"],
        "filters": {"orders.created_date": "7 days", "orders.paid": True}, "sorts": ["orders.count desc"],
        "limit": 10})})
    assert result.status == "Succeeded", result.error
    assert result.steps["q"].outputs == {"rows": ROWS, "count": 2}
    sent, = looker.requests("POST", "/queries/run/json")
    assert sent.json() == {"model": "thelook", "view": "orders", "fields": ["orders.created_date", "orders.count"],
                           "filters": {"orders.created_date": "7 days", "orders.paid": "true"},
                           "sorts": ["orders.count desc"], "limit": "10"}


def test_a_query_error_inside_a_200_fails_with_lookers_message(tmp_path, connections, looker):
    looker.query_error = "Unknown field orders.nope"
    result = run(tmp_path, connections, {"q": act("RunInlineQuery", {"model": "m", "view": "v", "fields": ["x"]})})
    err = result.steps["q"].error
    assert err["code"] == "LookerQueryError" and "orders.nope" in err["message"]


def test_render_dashboard_polls_the_task_durably_and_stores_the_pdf(tmp_path, connections, looker):
    looker.render_polls = 3
    result = run(tmp_path, connections, {"r": act("RenderDashboard", {
        "dashboardId": 17, "filters": {"Region": "EMEA", "Year": 2024}, "style": "single_column",
        "paperSize": "a4", "landscape": True, "filename": "weekly.pdf"})})
    assert result.status == "Succeeded", result.error
    out = result.steps["r"].outputs
    assert out["file"]["name"] == "weekly.pdf" and out["size"] == len(PDF)
    assert (tmp_path / "state.db.blobs" / f"{out['file']['$file']}.bin").read_bytes() == PDF
    create, = looker.requests("POST", "/render_tasks/dashboards/17/pdf")
    assert create.query == {"width": ["1280"], "height": ["1024"], "pdf_paper_size": ["a4"], "pdf_landscape": ["true"]}
    assert create.json() == {"dashboard_filters": "Region=EMEA&Year=2024", "dashboard_style": "single_column"}
    assert len(looker.requests("GET", f"/render_tasks/{out['taskId']}")) == 5  # 4 polls + the results


def test_a_failed_render_fails_the_action_with_lookers_status_detail(tmp_path, connections, looker):
    looker.render_fails = "Dashboard query timed out"
    result = run(tmp_path, connections, {"r": act("RenderDashboard", {"dashboardId": "17", "format": "png"})})
    err = result.steps["r"].error
    assert err["code"] == "RenderFailed" and "query timed out" in err["message"]


def test_kill_9_while_rendering_then_resume_polls_the_same_task_and_creates_no_other(tmp_path, connections, looker):
    looker.render_polls = 10 ** 6
    flow = flow_file(tmp_path, {"r": act("RenderDashboard", {"dashboardId": "17"})})
    state = tmp_path / "state.db"
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "--state", str(state), "--connections",
                             str(connections), "run", str(flow)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: looker.tasks and looker.requests("GET", "/render_tasks/") or proc.poll() is not None,
                   "the task was never polled")
        assert proc.poll() is None, proc.communicate()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    task, = looker.tasks.values()
    task["polls"] = 0
    done = subprocess.run([sys.executable, "-m", "engine.cli", "--state", str(state), "--connections",
                           str(connections), "resume", "--json",
                           sqlite3.connect(state).execute("SELECT id FROM runs").fetchone()[0]],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "Succeeded"
    assert len(looker.tasks) == 1 and len(looker.requests("POST", "/render_tasks/dashboards")) == 1


@pytest.mark.parametrize("setup, action, code, retryable", [
    (lambda f: None, {"lookId": "404"}, "LookerNotFound", False),
    (lambda f: setattr(f, "throttle", 5), {"lookId": "42"}, "LookerRateLimited", True),
])
def test_looker_errors_map_to_terminal_or_retryable_with_lookers_message(tmp_path, connections, looker, setup,
                                                                         action, code, retryable):
    setup(looker)
    result = run(tmp_path, connections, {"l": act("RunLook", action, retryPolicy={"type": "fixed", "count": 1,
                                                                                  "interval": "PT1S"})})
    err = result.steps["l"].error
    assert err["code"] == code and result.steps["l"].attempts == (2 if retryable else 1)
    assert ("Not found" in err["message"]) if code == "LookerNotFound" else ("Too many requests" in err["message"])
    if code == "LookerNotFound":
        assert err["details"]["documentationUrl"].endswith("/404/get/looks/:look_id/run/:result_format")


def test_a_422_keeps_each_error_detail_and_is_not_retried(tmp_path, connections, looker):
    result = run(tmp_path, connections, {"q": act("RunInlineQuery", {"model": "no_such_model", "view": "v",
                                                                     "fields": ["x"]},
                                                  retryPolicy={"type": "fixed", "count": 2, "interval": "PT1S"})})
    err = result.steps["q"].error
    assert err["code"] == "LookerInvalidRequest" and result.steps["q"].attempts == 1
    assert "Validation Failed" in err["message"] and "model: This field is required." in err["message"]
    assert err["details"]["errors"] == [{"field": "model", "code": "missing", "message": "This field is required."}]


def test_bad_credentials_fail_at_login_terminally_and_leak_nothing(tmp_path, looker, monkeypatch):
    monkeypatch.setenv("LOOKER_ID", "id-one")
    monkeypatch.setenv("LOOKER_SECRET", "wrong'\"\\secret")
    conns = write_connections(tmp_path, {"looker": looker.url})
    result = run(tmp_path, conns, {"l": act("RunLook", {"lookId": "42"},
                                            retryPolicy={"type": "fixed", "count": 3, "interval": "PT1S"})})
    err = result.steps["l"].error
    assert err["code"] == "LookerNotFound" and result.steps["l"].attempts == 1
    assert "wrong" not in json.dumps(err)


def test_two_looker_connections_coexist_each_with_its_own_instance_and_credentials(tmp_path, looker, monkeypatch):
    monkeypatch.setenv("LOOKER_ID", "id-one")
    monkeypatch.setenv("LOOKER_SECRET", SECRET)
    monkeypatch.setenv("LOOKER2_ID", "id-two")
    monkeypatch.setenv("LOOKER2_SECRET", OTHER_SECRET)
    monkeypatch.setenv("LOOKERSDK_BASE_URL", "http://127.0.0.1:9")  # the SDK's own variables are ignored
    monkeypatch.setenv("LOOKERSDK_CLIENT_ID", "from-env")
    (tmp_path / "looker.ini").write_text("[Looker]\nbase_url=http://127.0.0.1:9\nclient_id=from-ini\n")
    monkeypatch.chdir(tmp_path)
    with LookerFake(client_id="id-two", client_secret=OTHER_SECRET) as second:
        second.looks = {"7": [{"a": 1}]}
        conns = write_connections(tmp_path, {"looker": looker.url, "looker_eu": second.url})
        result = run(tmp_path, conns, {"us": act("RunLook", {"lookId": "42"}),
                                       "eu": act("RunLook", {"lookId": "7"}, connection="looker_eu")})
    assert result.status == "Succeeded", result.error
    assert result.steps["eu"].outputs["rows"] == [{"a": 1}] and result.steps["us"].outputs["count"] == 2
    assert looker.logins == [("id-one", SECRET)] and second.logins == [("id-two", OTHER_SECRET)]


def test_the_error_table_maps_every_looker_sdk_exception_class():
    from looker_sdk import error
    from looker_sdk.rtl import serialize

    from nodes.looker import LOOKER
    from tests.support.sdk import unmapped

    assert unmapped(LOOKER, [error.SDKError, serialize.DeserializeError]) == []


@pytest.mark.parametrize("status, body", [(200, b"<html>proxy</html>"), (200, b""), (502, b"Bad Gateway"),
                                          (200, b'{"status": 5}'), (200, b"[1, 2]")])
def test_render_status_checks_answered_with_garbage_fail_clearly_without_a_traceback(tmp_path, connections, looker,
                                                                                    status, body):
    looker.recorder.route("GET", r"/api/4\.0/render_tasks/[^/]+", status=status, body=body,
                          headers={"Content-Type": "application/json"})
    looker.recorder._routes.insert(0, looker.recorder._routes.pop())  # ahead of the fake's own route
    result = run(tmp_path, connections, {"r": act("RenderDashboard", {"dashboardId": "17"})})
    err = result.steps["r"].error
    assert result.status == "Failed" and err["code"] != "NodeError", err


@pytest.mark.parametrize("body", [b"<html>", b'{"rows": 1}', b"", b'{"looker_error": "bad field"}'])
def test_a_look_answer_that_is_not_rows_fails_clearly(tmp_path, connections, looker, body):
    looker.recorder.route("GET", r"/api/4\.0/looks/42/run/json", body=body, headers={"Content-Type": "application/json"})
    looker.recorder._routes.insert(0, looker.recorder._routes.pop())
    result = run(tmp_path, connections, {"l": act("RunLook", {"lookId": "42"})})
    err = result.steps["l"].error
    assert err["code"] in ("LookerBadAnswer", "LookerQueryError"), err


@pytest.mark.parametrize("method, where", [("POST", r"/api/4\.0/login"), ("GET", r"/api/4\.0/looks/.*")])
def test_a_redirect_to_another_host_is_refused_and_carries_neither_the_client_secret_nor_the_token(
        tmp_path, connections, looker, method, where):
    """requests follows a 307 keeping the login body (the client secret) for any host, and the
    Authorization header rides along inside one host: the connection's session sends nothing
    to a host other than its base URL's (LookerRedirect, not retried), so the other host hears nothing."""
    from tests.support.recorder import Recorder

    with Recorder() as evil:
        evil.route("POST", r"/.*", status=200, json={"access_token": "x", "expires_in": 3600})
        evil.route("GET", r"/.*", status=200, json=[])
        looker.recorder.route(method, where, status=307, headers={"Location": f"{evil.url}/steal"})
        looker.recorder._routes.insert(0, looker.recorder._routes.pop())  # before the fake's own route
        result = run(tmp_path, connections, {"look": act("RunLook", {"lookId": 42},
                                                         retryPolicy={"type": "fixed", "count": 2, "interval": "PT1S"})})
        assert result.status == "Failed" and result.steps["look"].error["code"] == "LookerRedirect"
        assert "refused to send a request" in result.steps["look"].error["message"]
        assert evil.requests == []


# -- tracing: the SDK's requests session (ours) carries the attempt span's traceparent ---------
def test_a_traced_run_sends_the_attempt_spans_traceparent_on_every_looker_request(tmp_path, connections, looker):
    from tests.support.tracing import traceparent, traced

    with traced() as spans:
        result = run(tmp_path, connections, {
            "look": act("RunLook", {"lookId": "42"}),
            "render": act("RenderDashboard", {"dashboardId": "17"}, runAfter={"look": ["Succeeded"]})})
    assert result.status == "Succeeded", result.error
    [look] = spans.named("look")
    renders = {traceparent(s) for s in spans.named("render")}
    sent = looker.recorder.requests
    assert sent and all(r.header("traceparent") for r in sent)
    for r in sent:
        if "/looks/" in r.path or r.path.endswith("/login"):  # the login happens in the first action
            assert r.header("traceparent") == traceparent(look), r.path
        else:
            assert r.header("traceparent") in renders, r.path


def test_an_untraced_run_sends_no_traceparent_to_looker(tmp_path, connections, looker):
    assert run(tmp_path, connections, {"look": act("RunLook", {"lookId": "42"})}).status == "Succeeded"
    assert {r.header("traceparent") for r in looker.recorder.requests} == {None}
