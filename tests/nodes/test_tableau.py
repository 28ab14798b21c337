"""tableau.*: the real tableauserverclient signs in to, refreshes on, polls and exports from a
loopback Tableau REST API (tests/support/tableau.py) at a fixed REST API version; embed tokens
are checked with PyJWT. Every flow runs through the engine; the tests assert on what TSC sent."""
from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import anyio
import jwt
import pytest
import yaml

import engine
from engine.api import Engine
from tests.support.clock import FakeClock
from tests.support.recorder import Recorder
from tests.support.tableau import PDF, SITE_ID, TableauFake

ROOT = Path(__file__).resolve().parents[2]
PAT = 'pa"t\'se\\cr/+%é-et'  # quotes, a backslash, / + % and non-ASCII
APP_SECRET = 'ca"pp\'se\\cr/+%ü-value-long-enough-for-hs256'
CLIENT_ID, SECRET_ID = "8d9c3a1e-client", "1f2e3d4c-secret-id"
VERSION = "3.25"


@pytest.fixture
def tableau():
    with TableauFake(version=VERSION) as fake:
        yield fake


@pytest.fixture
def connections(tmp_path, tableau, monkeypatch):
    monkeypatch.setenv("TABLEAU_PAT", PAT)
    monkeypatch.setenv("TABLEAU_APP_SECRET", APP_SECRET)
    return write_connections(tmp_path, tableau, token_name="flowrun")


def write_connections(tmp_path, tableau, **settings):
    secrets = {"secret_value": "TABLEAU_APP_SECRET"}
    if "token_name" in settings:
        secrets["token_secret"] = "TABLEAU_PAT"
    path = tmp_path / "connections.yaml"
    path.write_text(yaml.safe_dump({"connections": {"tableau": {
        "kind": "tableau", "endpoint": tableau.url,
        "settings": {"server": "https://tableau.acme.example", "site": tableau.site, "api_version": VERSION,
                     "client_id": CLIENT_ID, "secret_id": SECRET_ID, **settings},
        "secrets": secrets}}}))
    return path


def flow_file(tmp_path, actions, triggers=None):
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump({"triggers": triggers or {"manual": {"type": "Manual"}}, "actions": actions},
                                   sort_keys=False))
    return path


def run(tmp_path, connections, actions, **kw):
    return engine.run_file(flow_file(tmp_path, actions), state=tmp_path / "state.db", connections=connections,
                           clock=kw.pop("clock", FakeClock()), **kw)


def act(kind, inputs, **extra):
    return {"type": f"tableau.{kind}", "connection": "tableau", "inputs": inputs, **extra}


def state_text(tmp_path) -> str:
    db = sqlite3.connect(tmp_path / "state.db")
    try:
        return "\n".join(str(row) for table in ("runs", "steps") for row in db.execute(f"SELECT * FROM {table}"))
    finally:
        db.close()


def test_importing_the_module_imports_neither_tsc_nor_pyjwt():
    code = "import nodes.tableau, sys; assert not {'tableauserverclient', 'jwt'} & set(sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_refresh_signs_in_with_the_pat_once_refreshes_and_polls_the_job_to_success(tmp_path, connections, tableau):
    tableau.job_polls = 2
    result = run(tmp_path, connections, {"refresh": act("RefreshExtract", {"datasourceId": "ds-orders"}),
                                         "again": act("RefreshExtract", {"workbookId": "wb-1", "incremental": True},
                                                      runAfter={"refresh": ["Succeeded"]})})
    assert result.status == "Succeeded", result.error
    out = result.steps["refresh"].outputs
    assert out["finishCode"] == 0 and out["jobId"].startswith("job-") and out["completedAt"].startswith("2024-06-03")
    sign_in, = tableau.sign_ins  # one session for both actions
    assert sign_in == {"personalAccessTokenName": "flowrun", "personalAccessTokenSecret": PAT, "site": "acme"}
    assert tableau.refreshes == [("datasources", "ds-orders", False), ("workbooks", "wb-1", True)]
    refresh = tableau.requests("POST", "/datasources/ds-orders/refresh")[0]
    assert refresh.path == f"/api/{VERSION}/sites/{SITE_ID}/datasources/ds-orders/refresh"
    assert ET.fromstring(refresh.body).find("extractRefresh") is not None
    polls = tableau.requests("GET", out["jobId"])
    assert len(polls) == 3 and {p.header("x-tableau-auth") for p in polls} <= tableau.tokens
    session_token = polls[0].header("x-tableau-auth")
    assert session_token not in state_text(tmp_path) and PAT not in state_text(tmp_path)


def test_a_failed_job_fails_the_action_with_tableaus_notes(tmp_path, connections, tableau):
    tableau.job_finish, tableau.job_notes = 1, "Data source refresh failed: ORDERS table is missing"
    result = run(tmp_path, connections, {"refresh": act("RefreshExtract", {"datasourceId": "ds-orders"})})
    err = result.steps["refresh"].error
    assert result.status == "Failed" and err["code"] == "TableauJobFailed"
    assert "ORDERS table is missing" in err["message"] and err["details"]["finishCode"] == 1


def test_a_refresh_already_queued_is_retryable_and_the_retry_starts_it(tmp_path, connections, tableau):
    tableau.queued_once.add("ds-orders")
    result = run(tmp_path, connections, {"refresh": act("RefreshExtract", {"datasourceId": "ds-orders"},
                                                        retryPolicy={"type": "fixed", "count": 2,
                                                                     "interval": "PT1S"})})
    assert result.status == "Succeeded", result.error
    assert result.steps["refresh"].attempts == 2 and len(tableau.refreshes) == 1


def test_an_expired_session_signs_in_again_once_and_the_call_goes_on(tmp_path, connections, tableau):
    tableau.job_polls = 3
    clock = FakeClock()
    expired = []

    async def expire_after_first_poll(seconds):  # the session times out while the job runs
        if not expired and tableau.requests("GET", "/jobs/" + next(iter(tableau.jobs), "none")):
            expired.append(True)
            tableau.expire_sessions()
        clock.t += seconds
        await anyio.lowlevel.checkpoint()

    clock.sleep = expire_after_first_poll
    result = run(tmp_path, connections, {"refresh": act("RefreshExtract", {"workbookId": "wb-2"})}, clock=clock)
    assert result.status == "Succeeded", result.error
    assert len(tableau.sign_ins) == 2 and expired
    statuses = [r.header("x-tableau-auth") in tableau.tokens for r in tableau.requests("GET")]
    assert statuses[-1] is True


def test_a_timeout_cancels_the_tableau_job(tmp_path, connections, tableau):
    tableau.job_polls = 10 ** 6
    result = engine.run_file(flow_file(tmp_path, {"refresh": act("RefreshExtract", {"datasourceId": "ds-orders"},
                                                                 timeout="PT0.5S")}),
                             state=tmp_path / "state.db", connections=connections)
    assert result.steps["refresh"].status == "TimedOut"
    assert tableau.cancels == list(tableau.jobs)


def test_a_wrong_pat_fails_at_sign_in_with_tableaus_message_and_no_secret(tmp_path, tableau, monkeypatch):
    monkeypatch.setenv("TABLEAU_PAT", PAT)
    monkeypatch.setenv("TABLEAU_APP_SECRET", APP_SECRET)
    conns = write_connections(tmp_path, tableau, token_name="flowrun")
    tableau.site = "other-site"  # the server knows no site "acme"
    result = run(tmp_path, conns, {"q": act("Query", {"resource": "views"})})
    err = result.steps["q"].error
    assert err["code"] == "TableauSignInFailed" and "Error signing in" in err["message"]
    assert PAT not in json.dumps(err, ensure_ascii=False)


def test_a_connected_app_signs_in_with_a_jwt_pyjwt_can_verify(tmp_path, tableau, monkeypatch):
    monkeypatch.setenv("TABLEAU_APP_SECRET", APP_SECRET)
    conns = write_connections(tmp_path, tableau, username="etl@acme.example")
    result = run(tmp_path, conns, {"q": act("Query", {"resource": "datasources"})})
    assert result.status == "Succeeded", result.error
    token = tableau.sign_ins[0]["jwt"]
    claims = jwt.decode(token, APP_SECRET, algorithms=["HS256"], audience="tableau")
    assert claims["iss"] == CLIENT_ID and claims["sub"] == "etl@acme.example"
    assert jwt.get_unverified_header(token)["kid"] == SECRET_ID
    assert "tableau:content:read" in claims["scp"]
    assert token not in state_text(tmp_path)


def test_export_view_pdf_with_filters_lands_in_the_blob_store_and_sendgrid_attaches_it(tmp_path, connections,
                                                                                       tableau, monkeypatch):
    monkeypatch.setenv("SG_KEY", "SG.k'e\"y\\/+%")
    with Recorder() as sendgrid:
        sendgrid.route("POST", "/v3/mail/send", status=202, headers={"X-Message-Id": "m-1"})
        conns = yaml.safe_load(connections.read_text())
        conns["connections"]["sendgrid"] = {"kind": "sendgrid", "endpoint": sendgrid.url,
                                            "secrets": {"api_key": "SG_KEY"}}
        connections.write_text(yaml.safe_dump(conns))
        result = run(tmp_path, connections, {
            "export": act("ExportView", {"viewName": "Sales Overview", "orientation": "landscape", "pageType": "a4",
                                         "filters": {"Region": ["East", "West"], "Year": 2024},
                                         "filename": "sales.pdf"}),
            "mail": {"type": "sendgrid.SendEmail", "connection": "sendgrid", "runAfter": {"export": ["Succeeded"]},
                     "inputs": {"to": "cfo@acme.example", "from": "bi@acme.example", "subject": "Sales",
                                "text": "Attached.", "attachments": [{"file": "{{ outputs('export').file }}"}]}}})
        assert result.status == "Succeeded", result.error
        ref = result.steps["export"].outputs["file"]
        assert ref["name"] == "sales.pdf" and ref["contentType"] == "application/pdf" and ref["size"] == len(PDF)
        assert (tmp_path / "state.db.blobs" / f"{ref['$file']}.bin").read_bytes() == PDF
        export = tableau.requests("GET", "/views/v-sales-0001/pdf")[0]
        assert export.query == {"vf_Region": ["East,West"], "vf_Year": ["2024"], "type": ["a4"],
                                "orientation": ["landscape"]}
        attachment, = sendgrid.requests[0].json()["attachments"]
        assert base64.b64decode(attachment["content"]) == PDF
        assert attachment["filename"] == "sales.pdf" and attachment["type"] == "application/pdf"

        # another run, whose payload names that run's file reference (seen in flowrun show, a
        # log, a reply), attaches nothing: the file was not kept by it or a run of its family
        stolen = run(tmp_path, connections, {
            "mail": {"type": "sendgrid.SendEmail", "connection": "sendgrid",
                     "inputs": {"to": "thief@evil.example", "from": "bi@acme.example", "subject": "x", "text": "x",
                                "attachments": [{"file": "{{ triggerBody().ref }}"}]}}}, input={"ref": ref})
        assert stolen.status == "Failed" and stolen.steps["mail"].error["code"] == "FileNotFound"
        assert len(sendgrid.requests) == 1


def test_export_csv_and_png_by_view_id(tmp_path, connections, tableau):
    result = run(tmp_path, connections, {
        "csv": act("ExportView", {"viewId": "v-churn-0002", "format": "csv", "filters": {"Region": "North"}}),
        "png": act("ExportView", {"viewId": "v-churn-0002", "format": "png", "highResolution": True})})
    assert result.status == "Succeeded", result.error
    csv_ref = result.steps["csv"].outputs["file"]
    assert (tmp_path / "state.db.blobs" / f"{csv_ref['$file']}.bin").read_bytes() == b"Region,Sales\nNorth,100\n"
    assert csv_ref["name"] == "v-churn-0002.csv"
    assert tableau.requests("GET", "/image")[0].query == {"resolution": ["high"]}


def test_an_unknown_view_fails_with_tableaus_404_code(tmp_path, connections, tableau):
    result = run(tmp_path, connections, {"x": act("ExportView", {"viewId": "nope"})})
    err = result.steps["x"].error
    assert err["code"] == "404011" and "could not be found" in err["message"]


def test_query_pages_through_workbooks_with_a_filter(tmp_path, connections, tableau):
    result = run(tmp_path, connections, {
        "all": act("Query", {"resource": "workbooks", "limit": 4}),
        "finance": act("Query", {"resource": "workbooks", "filter": {"projectName": "Finance"}}),
        "named": act("Query", {"resource": "views", "filter": {"name": ["Churn", "Missing"]}})})
    assert result.status == "Succeeded", result.error
    assert [w["id"] for w in result.steps["all"].outputs["items"]] == ["wb-1", "wb-2", "wb-3", "wb-4"]
    assert result.steps["all"].outputs["totalAvailable"] == 5
    assert [w["name"] for w in result.steps["finance"].outputs["items"]] == ["Workbook 1", "Workbook 3", "Workbook 5"]
    assert result.steps["finance"].outputs["items"][0]["projectName"] == "Finance"
    assert [v["id"] for v in result.steps["named"].outputs["items"]] == ["v-churn-0002"]
    filters = sorted(str(r.query.get("filter")) for r in tableau.requests("GET", "/workbooks"))
    assert filters == ["None", "['projectName:eq:Finance']"]


# -- embed tokens --------------------------------------------------------------------------

EMBED_FLOW = {
    "mint": act("EmbedToken", {"user": "{{ triggerBody().user }}", "view": "Sales/Overview",
                               "attributes": {"Customer": "{{ triggerBody().customer }}", "Region": ["East", "West"]},
                               "expiresIn": 300}),
    "log": {"type": "Compose", "runAfter": {"mint": ["Succeeded"]}, "inputs": "token is {{ outputs('mint').token }}"},
    "reply": {"type": "Response", "runAfter": {"log": ["Succeeded"]},
              "inputs": {"statusCode": 200, "body": {"token": "{{ outputs('mint').token }}",
                                                     "url": "{{ outputs('mint').embedUrl }}?t={{ outputs('mint').token }}"}}}}


def test_embed_token_claims_expiry_and_signature_check_out_with_pyjwt_and_only_the_reply_holds_it(
        tmp_path, connections, tableau):
    clock = FakeClock()
    replies = []
    eng = Engine(tmp_path / "state.db", connections=connections, clock=clock)
    try:
        run_ = anyio.run(lambda: eng.run(flow_file(tmp_path, EMBED_FLOW, {"manual": {"type": "Request",
                                                                                       "auth": {"type": "none"}}}),
                                         input={"user": "ana@customer.example", "customer": "C-42"},
                                         on_response=replies.append))
        logged = run_.steps["log"].outputs
    finally:
        eng.close()
    assert run_.status == "Succeeded", run_.error
    token = replies[0]["body"]["token"]
    claims = jwt.decode(token, APP_SECRET, algorithms=["HS256"], audience="tableau",
                        options={"verify_exp": False})  # the fake clock is not the wall clock
    assert claims["iss"] == CLIENT_ID and claims["sub"] == "ana@customer.example" and claims["aud"] == "tableau"
    assert claims["scp"] == ["tableau:views:embed"]
    assert claims["Customer"] == "C-42" and claims["Region"] == ["East", "West"]
    assert int(clock.t) < claims["exp"] <= int(clock.t) + 300 and len(claims["jti"]) == 36
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT", "kid": SECRET_ID, "iss": CLIENT_ID}
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, APP_SECRET + "x", algorithms=["HS256"], audience="tableau")
    assert replies[0]["body"]["url"] == f"https://tableau.acme.example/t/acme/views/Sales/Overview?t={token}"
    stored = state_text(tmp_path)
    assert token not in stored and token.split(".")[2] not in stored and "flowrun-sealed:" in stored
    assert logged.startswith("token is flowrun-sealed:")
    assert not tableau.recorder.requests  # minting sends nothing to Tableau


def test_each_embed_token_has_its_own_jti_and_stand_in(tmp_path, connections):
    result = run(tmp_path, connections, {"a": act("EmbedToken", {"user": "u"}), "b": act("EmbedToken", {"user": "u"})})
    a, b = result.steps["a"].outputs, result.steps["b"].outputs
    assert a["jti"] != b["jti"] and a["token"] != b["token"] and a["embedUrl"] is None


@pytest.mark.parametrize("inputs, message", [
    ({"user": "u", "attributes": {"exp": "9999999999"}}, "attributes"),
    ({"user": "u", "expiresIn": 3600}, "expiresIn"),
    ({"user": ""}, "user"),
    ({"user": "u", "scopes": ["admin"]}, "scopes"),
])
def test_embed_inputs_that_tableau_would_refuse_fail_at_validate(tmp_path, connections, inputs, message):
    path = flow_file(tmp_path, {"m": act("EmbedToken", inputs)})
    done = subprocess.run([sys.executable, "-m", "engine.cli", "--connections", str(connections), "validate",
                           str(path)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 1 and message in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_the_error_table_maps_every_tsc_exception_class():
    from tableauserverclient.server import exceptions as server_errors
    from tableauserverclient.server.endpoint import exceptions as e

    from nodes.tableau import TABLEAU
    from tests.support.sdk import exception_classes, unmapped

    classes = [c for c in exception_classes(e.TableauError) if c.__module__.startswith("tableauserverclient")]
    classes += [server_errors.EndpointUnavailableError, server_errors.ServerInfoEndpointNotFoundError]
    assert unmapped(TABLEAU, classes) == [
        "tableauserverclient.server.endpoint.exceptions.FlowRunCancelledException",
        "tableauserverclient.server.endpoint.exceptions.FlowRunFailedException",
        "tableauserverclient.server.endpoint.exceptions.GraphQLError",
        "tableauserverclient.server.endpoint.exceptions.JobCancelledException",
        "tableauserverclient.server.endpoint.exceptions.JobFailedException",
    ]  # raised only by TSC's own wait_for_job / flow runs and the Metadata API, which no node calls


@pytest.mark.parametrize("status, body", [(200, b"<html>a proxy's login page</html>"), (200, b""),
                                          (502, b"Bad Gateway"), (200, b"<tsResponse xmlns='http://tableau.com/api'/>")])
def test_status_checks_answered_with_garbage_are_retried_then_fail_clearly_and_cancel_the_job(
        tmp_path, connections, tableau, status, body):
    tableau.job_polls = 10 ** 6
    tableau.recorder.route("GET", r"/api/.*/jobs/[^/]+", status=status, body=body,
                           headers={"Content-Type": "text/html"})
    tableau.recorder._routes.insert(0, tableau.recorder._routes.pop())  # ahead of the fake's own route
    result = run(tmp_path, connections, {"refresh": act("RefreshExtract", {"datasourceId": "ds-orders"})})
    err = result.steps["refresh"].error
    assert result.status == "Failed" and err["code"] != "NodeError", err
    assert tableau.cancels == list(tableau.jobs)  # the job was told to stop


def test_kill_9_while_polling_then_resume_polls_the_same_job_and_never_refreshes_twice(tmp_path, connections,
                                                                                       tableau):
    import signal

    from tests.support.waiting import wait_until

    tableau.job_polls = 10 ** 6
    flow = flow_file(tmp_path, {"refresh": act("RefreshExtract", {"workbookId": "wb-3"})})
    state = tmp_path / "state.db"
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "--state", str(state), "--connections",
                             str(connections), "run", str(flow)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: tableau.requests("GET", "/jobs/" + next(iter(tableau.jobs), "-")) or proc.poll() is not None,
                   "the job was never polled")
        assert proc.poll() is None, proc.communicate()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    job, = tableau.jobs.values()
    job.polls_left = 0
    run_id = sqlite3.connect(state).execute("SELECT id FROM runs").fetchone()[0]
    done = subprocess.run([sys.executable, "-m", "engine.cli", "--state", str(state), "--connections",
                           str(connections), "resume", "--json", run_id], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "Succeeded"
    assert tableau.refreshes == [("workbooks", "wb-3", False)] and len(tableau.jobs) == 1


def test_a_finish_code_tableau_does_not_document_is_no_endless_wait(tmp_path, connections, tableau):
    tableau.job_polls, tableau.job_finish = 0, 7
    result = run(tmp_path, connections, {"refresh": act("RefreshExtract", {"datasourceId": "ds-orders"})})
    assert result.status == "Failed" and result.steps["refresh"].error["code"] != "NodeError"
    assert tableau.cancels == list(tableau.jobs)


def test_another_run_that_echoes_a_stand_in_sends_the_stand_in_not_the_token(tmp_path, connections):
    replies: list = []
    eng = Engine(tmp_path / "state.db", connections=connections, clock=FakeClock())
    request = {"manual": {"type": "Request", "auth": {"type": "none"}}}
    try:
        minted = anyio.run(lambda: eng.run(flow_file(tmp_path, EMBED_FLOW, request),
                                           input={"user": "u", "customer": "C"}, on_response=replies.append))
        stand_in = minted.steps["mint"].outputs["token"]
        echo = {"reply": {"type": "Response", "inputs": {"statusCode": 200, "body": "{{ triggerBody() }}"}}}
        anyio.run(lambda: eng.run(flow_file(tmp_path, echo, request), input={"stolen": stand_in},
                                  on_response=replies.append))
    finally:
        eng.close()
    assert replies[0]["body"]["token"].count(".") == 2  # the minting run's own reply: the JWT
    assert replies[1]["body"] == {"stolen": stand_in}


@pytest.mark.parametrize("where", ["/auth/signin", "/jobs"])
def test_a_redirect_to_another_host_is_refused_and_carries_neither_the_pat_nor_the_session_token(
        tmp_path, tableau, monkeypatch, where):
    """TSC follows redirects itself and forwards X-Tableau-Auth and the sign-in body to any host;
    the connection's session sends nothing to a host other than the server's: the action fails
    with TableauRedirect (not retried) and the other host receives no request."""
    monkeypatch.setenv("TABLEAU_PAT", PAT)
    monkeypatch.setenv("TABLEAU_APP_SECRET", APP_SECRET)
    with Recorder() as evil:
        evil.route("POST", r"/.*", status=200, body=b"<tsResponse/>")
        tableau.recorder.route("POST" if where == "/auth/signin" else "GET", rf"/api/{VERSION}.*{where}.*",
                               status=307, headers={"Location": f"{evil.url}/steal"})
        tableau.recorder._routes.insert(0, tableau.recorder._routes.pop())  # before the fake's own route
        conns = write_connections(tmp_path, tableau, token_name="flowrun")
        result = run(tmp_path, conns, {"r": act("RefreshExtract", {"workbookId": "wb-2"},
                                                retryPolicy={"type": "fixed", "count": 2, "interval": "PT1S"})})
        assert result.status == "Failed" and result.steps["r"].error["code"] == "TableauRedirect"
        assert "Tableau: refused to send a request" in result.steps["r"].error["message"]
        assert evil.requests == []


# -- tracing: TSC's requests (one session per thread, from our session_factory) carry traceparent
def test_a_traced_run_sends_the_attempt_spans_traceparent_on_every_tableau_request(tmp_path, connections, tableau):
    from tests.support.tracing import traceparent, traced

    tableau.job_polls = 1
    with traced() as spans:
        result = run(tmp_path, connections, {
            "refresh": act("RefreshExtract", {"datasourceId": "ds-orders"}),
            "export": act("ExportView", {"viewId": "v-sales-0001", "format": "csv"}, runAfter={"refresh": ["Succeeded"]})})
    assert result.status == "Succeeded", result.error
    refresh_parents = {traceparent(s) for s in spans.named("refresh")}
    [export] = spans.named("export")
    sent = tableau.recorder.requests
    assert sent and all(r.header("traceparent") for r in sent)
    job = result.steps["refresh"].outputs["jobId"]
    for r in sent:
        if r.path.endswith("/refresh") or job in r.path or r.path.endswith("/signin"):
            assert r.header("traceparent") in refresh_parents, r.path
        else:
            assert r.header("traceparent") == traceparent(export), r.path


def test_an_untraced_run_sends_no_traceparent_to_tableau(tmp_path, connections, tableau):
    result = run(tmp_path, connections, {"export": act("ExportView", {"viewId": "v-sales-0001", "format": "csv"})})
    assert result.status == "Succeeded", result.error
    assert [r.header("traceparent") for r in tableau.recorder.requests] == [None] * len(tableau.recorder.requests)
