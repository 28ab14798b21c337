"""databricks.* nodes, run by the real databricks-sdk against a stateful loopback workspace
(tests/support/databricks.py); runs advance per poll, and the engine's clock is a FakeClock, so
no test waits on the wall clock (except the kill -9 one, which kills after the first poll)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
import yaml

import engine
from tests.support.clock import FakeClock
from tests.support.databricks import FakeDatabricks, JobSpec, StatementSpec
from tests.support.waiting import wait_until

ROOT = Path(__file__).parents[2]
TOKEN = "dapi'q\"b\\s/+%é-0123456789abcdef"
CLIENT_SECRET = "dose'q\"b\\s/+%ü-secret"


@pytest.fixture
def dbx(recorder, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_DATABRICKS_TOKEN", TOKEN)
    for name in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET",
                 "DATABRICKS_CONFIG_PROFILE", "DATABRICKS_AUTH_TYPE"):
        monkeypatch.delenv(name, raising=False)
    write_connections(tmp_path, recorder.url, {"token": "TEST_DATABRICKS_TOKEN"})
    return FakeDatabricks(recorder)


def write_connections(tmp_path, endpoint, secrets):
    (tmp_path / "connections.yaml").write_text(yaml.safe_dump({"connections": {"databricks": {
        "kind": "databricks", "endpoint": endpoint,
        "settings": {"host": "https://adb-1234567890123456.7.azuredatabricks.net", "retry_timeout_seconds": 0},
        "secrets": secrets}}}))


def write_flow(tmp_path, actions):
    flow = tmp_path / "flow.yaml"
    flow.write_text(yaml.safe_dump({"triggers": {"manual": {"type": "Manual"}}, "actions": actions}, sort_keys=False))
    return flow


def run(tmp_path, actions):
    return engine.run_file(write_flow(tmp_path, actions), state=tmp_path / "state.db",
                           connections=tmp_path / "connections.yaml", clock=FakeClock())


def act(type_, inputs, **extra):
    return {"type": "databricks." + type_, "connection": "databricks", "inputs": inputs, **extra}


NOTEBOOK = {"task_key": "nb", "notebook_task": {"notebook_path": "/Repos/x/nb", "base_parameters": {}},
            "existing_cluster_id": "0923-164208-meows279"}


def test_importing_the_module_does_not_import_the_sdk():
    subprocess.run([sys.executable, "-c", "import nodes.databricks, sys; assert 'databricks.sdk' not in sys.modules"],
                   check=True)


def test_run_job_starts_the_job_once_polls_it_to_success_and_returns_the_notebook_exit_value(dbx, tmp_path):
    dbx.jobs[42] = JobSpec(polls=3, notebook_result='{"rows": 12}')
    result = run(tmp_path, {"j": act("RunJob", {"jobId": 42, "jobParameters": {"date": "2024-01-02", "full": True}})})
    assert result.status == "Succeeded", result.error
    out = result.steps["j"].outputs
    assert out["notebookResult"] == '{"rows": 12}' and out["state"]["result_state"] == "SUCCESS"
    assert out["tasks"][0]["runId"] and out["runPageUrl"].endswith(f"/run/{out['runId']}")
    sent = dbx.seen("run-now")
    assert len(sent) == 1
    body = sent[0].json()
    assert body["job_id"] == 42 and body["job_parameters"] == {"date": "2024-01-02", "full": "true"}
    assert body["idempotency_token"].endswith(":j")
    assert sent[0].header("authorization") == f"Bearer {TOKEN}"
    assert dbx.count("get") == 4  # PENDING, RUNNING, RUNNING, TERMINATED


@pytest.mark.parametrize("result_state", ["FAILED", "TIMEDOUT", "CANCELED", "INTERNAL_ERROR"])
def test_a_run_that_does_not_succeed_fails_with_its_state_message_trace_and_page_url(dbx, tmp_path, result_state):
    trace = "Traceback ...\n" + "x" * 10_000 + "\nValueError: bad row 7"
    dbx.jobs[7] = JobSpec(polls=1, result=result_state, error="ValueError: bad row 7", error_trace=trace,
                          message="Task nb failed with message: bad row 7")
    result = run(tmp_path, {"j": act("RunJob", {"jobId": 7, "notebookParams": {"a": 1}})})
    step = result.steps["j"]
    assert step.status == "Failed"
    assert step.error["code"] == "Run" + ("Failed" if result_state == "INTERNAL_ERROR" else result_state.title())
    assert "bad row 7" in step.error["message"] and "/run/" in step.error["message"]
    task = step.error["details"]["tasks"][0]
    assert task["errorTrace"].endswith("ValueError: bad row 7") and len(task["errorTrace"]) <= 4001
    assert dbx.seen("run-now")[0].json()["notebook_params"] == {"a": "1"}
    assert dbx.count("cancel") == 0


def test_submit_run_sends_the_tasks_and_the_idempotency_token_and_returns_task_outputs(dbx, tmp_path):
    tasks = [{**NOTEBOOK, "notebook_task": {"notebook_path": "/Repos/x/nb", "base_parameters": {"exit": "42"}}},
             {"task_key": "py", "spark_python_task": {"python_file": "dbfs:/x.py"},
              "new_cluster": {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 1}},
             {"task_key": "sql", "sql_task": {"query": {"query_id": "q1"}, "warehouse_id": "w1"}},
             {"task_key": "jar", "spark_jar_task": {"main_class_name": "com.x.Main"}, "existing_cluster_id": "c1"}]
    result = run(tmp_path, {"s": act("SubmitRun", {"runName": "nightly", "tasks": tasks, "timeoutSeconds": 600})})
    assert result.status == "Succeeded", result.error
    body = dbx.seen("submit")[0].json()
    assert body["run_name"] == "nightly" and body["timeout_seconds"] == 600
    assert [t["task_key"] for t in body["tasks"]] == ["nb", "py", "sql", "jar"]
    assert body["tasks"][1]["new_cluster"]["num_workers"] == 1
    assert body["idempotency_token"] == f"{result.run_id}:s"
    out = result.steps["s"].outputs
    assert [t["taskKey"] for t in out["tasks"]] == ["nb", "py", "sql", "jar"]
    assert dbx.count("output") == 4


def test_a_submit_retried_after_a_lost_answer_gets_the_same_run_from_the_token(dbx, tmp_path):
    dbx.api.route("POST", r"/api/2\.[12]/jobs/runs/submit", status=503, json={"error_code": "TEMPORARILY_UNAVAILABLE",
                  "message": "try again"}, times=1)
    with dbx.api._lock:
        dbx.api._routes.insert(0, dbx.api._routes.pop())
    retry = {"type": "fixed", "count": 2, "interval": "PT0.01S"}
    result = run(tmp_path, {"s": act("SubmitRun", {"tasks": [NOTEBOOK]}, retryPolicy=retry)})
    assert result.status == "Succeeded", result.error
    tokens = {r.json()["idempotency_token"] for r in dbx.seen("submit")}
    assert dbx.count("submit") == 2 and len(tokens) == 1 and len(dbx.runs) == 1


def test_a_timeout_cancels_the_run_and_the_workspace_sees_the_cancel(dbx, tmp_path):
    import databricks.sdk  # noqa: F401  (imported first: a cold import alone can outlast the timeout)

    dbx.jobs[9] = JobSpec(polls=10 ** 6)
    result = engine.run_file(write_flow(tmp_path, {"j": act("RunJob", {"jobId": 9}, timeout="PT1S")}),
                             state=tmp_path / "state.db", connections=tmp_path / "connections.yaml")
    assert result.steps["j"].status == "TimedOut"
    run_id = dbx.seen("run-now") and next(iter(dbx.runs))
    assert [r.json() for r in dbx.seen("cancel")] == [{"run_id": run_id}]
    assert dbx.runs[run_id]["result"] == "CANCELED"


class GatedClock(FakeClock):
    """Short sleeps (job polls) pass at once; one of an hour or more (the flow's Wait) lasts
    until ``ready()`` holds, so what follows the Wait happens after an event, not a race."""

    def __init__(self, ready):
        super().__init__()
        self.ready = ready

    async def sleep(self, seconds: float) -> None:
        if seconds >= 3600:
            with anyio.fail_after(60):  # a safety net only: a passing test never waits for it
                while not self.ready():
                    await anyio.sleep(0.005)
        await super().sleep(seconds)


def test_terminate_cancels_the_run(dbx, tmp_path):
    dbx.jobs[9] = JobSpec(polls=10 ** 6)
    flow = write_flow(tmp_path, {
        "j": act("RunJob", {"jobId": 9}),
        "wait": {"type": "Wait", "inputs": {"interval": {"count": 1, "unit": "Hour"}}},
        "stop": {"type": "Terminate", "runAfter": {"wait": ["Succeeded"]}, "inputs": {"runStatus": "Cancelled"}}})
    # Terminate comes once the workspace has seen the run polled (the job started), however slow
    clock = GatedClock(lambda: dbx.count("get") >= 1)
    result = engine.run_file(flow, state=tmp_path / "state.db", connections=tmp_path / "connections.yaml",
                             clock=clock)
    assert result.status == "Cancelled"
    assert result.steps["j"].status == "Cancelled"
    assert dbx.count("cancel") == 1


def test_kill_9_while_polling_then_resume_polls_the_same_run_and_never_starts_another(dbx, tmp_path):
    dbx.jobs[5] = JobSpec(polls=4, notebook_result="resumed")
    flow = write_flow(tmp_path, {"j": act("RunJob", {"jobId": 5}),
                                 "after": {"type": "Compose", "inputs": "{{ body('j').notebookResult }}",
                                           "runAfter": {"j": ["Succeeded"]}}})
    state = tmp_path / "state.db"
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "--state", str(state), "--connections",
                             str(tmp_path / "connections.yaml"), "run", str(flow)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: dbx.count("get") >= 1 or proc.poll() is not None, "the run was never polled")
        assert proc.poll() is None, proc.communicate()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    run_id = next(iter(dbx.runs))
    result, steps = resume_the_run(state)
    assert result.status == "Succeeded", result.error
    assert steps["after"].outputs == "resumed"
    assert dbx.count("run-now") == 1 and len(dbx.runs) == 1
    assert {int(r.query["run_id"][0]) for r in dbx.seen("get")} == {run_id}
    assert dbx.count("get") == 5


def test_oauth_m2m_gets_a_token_with_the_client_credentials(dbx, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_DBX_ID", "sp-client-id")
    monkeypatch.setenv("TEST_DBX_SECRET", CLIENT_SECRET)
    write_connections(tmp_path, dbx.url, {"client_id": "TEST_DBX_ID", "client_secret": "TEST_DBX_SECRET"})
    dbx.jobs[1] = JobSpec(polls=0)
    result = run(tmp_path, {"j": act("RunJob", {"jobId": 1})})
    assert result.status == "Succeeded", result.error
    assert dbx.count("token") == 1
    assert dbx.seen("run-now")[0].header("authorization") == "Bearer oauth-access-token"
    assert CLIENT_SECRET.encode() not in (tmp_path / "state.db").read_bytes()


def test_an_unknown_job_fails_at_once_with_databricks_error_code_and_no_secret(dbx, tmp_path):
    result = run(tmp_path, {"j": act("RunJob", {"jobId": 404}, retryPolicy={"type": "fixed", "count": 2,
                                                                             "interval": "PT0.01S"})})
    step = result.steps["j"]
    assert step.status == "Failed" and step.attempts == 1
    assert step.error["code"] == "INVALID_PARAMETER_VALUE" and "404" in step.error["message"]
    assert TOKEN not in json.dumps(step.error)


@pytest.mark.parametrize("secrets", [{}, {"token": "TEST_DATABRICKS_TOKEN", "client_id": "TEST_DATABRICKS_TOKEN"}])
def test_a_connection_needs_exactly_one_way_to_authenticate(dbx, tmp_path, secrets):
    write_connections(tmp_path, dbx.url, secrets)
    result = run(tmp_path, {"j": act("RunJob", {"jobId": 1})})
    assert result.steps["j"].error["code"] == "MissingSetting"
    assert dbx.api.requests == []


# -- ExecuteStatement --------------------------------------------------------------------------

def test_a_statement_binds_named_parameters_polls_and_follows_every_chunk(dbx, tmp_path):
    sql = "SELECT id, amount, big, tags, ok, day FROM orders WHERE region = :region"
    rows = [[str(i), "12.50", "9007199254740993", '["a"]', "true", "2024-01-02"] for i in range(5)]
    rows.append([None, None, None, None, None, None])
    dbx.statements[sql] = StatementSpec(columns=[("id", "INT"), ("amount", "DECIMAL"), ("big", "LONG"),
                                                 ("tags", "ARRAY"), ("ok", "BOOLEAN"), ("day", "DATE")],
                                        rows=rows, chunk=2, polls=2)
    result = run(tmp_path, {"s": act("ExecuteStatement", {"statement": sql, "warehouseId": "w1",
                                                          "parameters": {"region": "EU' OR 1=1"}})})
    assert result.status == "Succeeded", result.error
    out = result.steps["s"].outputs
    assert out["rows"][0] == {"id": 0, "amount": 12.5, "big": "9007199254740993", "tags": ["a"], "ok": True,
                              "day": "2024-01-02"}
    assert out["rows"][-1] == {k: None for k in out["rows"][0]} and out["rowCount"] == 6
    body = dbx.seen("statement")[0].json()
    assert body["statement"] == sql and body["parameters"] == [{"name": "region", "value": "EU' OR 1=1"}]
    assert body["wait_timeout"] == "10s" and body["on_wait_timeout"] == "CONTINUE"
    assert dbx.count("chunk") == 2 and dbx.count("statement-get") == 2


def test_a_failed_statement_fails_the_action_with_its_message(dbx, tmp_path):
    dbx.statements["SELECT nope"] = StatementSpec(columns=[], error="[UNRESOLVED_COLUMN] nope")
    result = run(tmp_path, {"s": act("ExecuteStatement", {"statement": "SELECT nope", "warehouseId": "w1"})})
    assert result.steps["s"].error["code"] == "BAD_REQUEST" and "UNRESOLVED_COLUMN" in result.steps["s"].error["message"]


def test_max_rows_stops_following_chunks(dbx, tmp_path):
    dbx.statements["SELECT i"] = StatementSpec(columns=[("i", "INT")], rows=[[str(i)] for i in range(10)], chunk=3)
    result = run(tmp_path, {"s": act("ExecuteStatement", {"statement": "SELECT i", "warehouseId": "w1", "maxRows": 4})})
    out = result.steps["s"].outputs
    assert [r["i"] for r in out["rows"]] == [0, 1, 2, 3] and out["truncated"] is True
    assert dbx.count("chunk") == 1


# -- adversarial pass: secrets echoed by the peer, hostile peers, crashes, types --------------

import base64  # noqa: E402

from engine.vendor import secret_forms  # noqa: E402
from nodes.databricks.statements import value  # noqa: E402

RUNS_GET = r"/api/2\.[12]/jobs/runs/get"


def leaks(secret: str, data: bytes) -> list[str]:
    """Every form of ``secret`` (plain, JSON-escaped once and twice, repr, URL, base64, hex)
    found in ``data``."""
    forms = secret_forms(secret) | {secret.encode().hex(), secret.encode().hex().upper(),
                                    base64.b64encode(secret.encode()).decode()}
    text = data.decode("utf-8", "replace")
    return sorted(f for f in forms if f in text or f.encode() in data)


def first(dbx, method, path, **answer):
    """A route that answers before the fake's own ones."""
    dbx.api.route(method, path, **answer)
    with dbx.api._lock:
        dbx.api._routes.insert(0, dbx.api._routes.pop())


def echo_401(req):
    """A hostile workspace that echoes the credentials it got (header and body) in its error."""
    got = req.header("authorization") or ""
    body = req.body.decode("utf-8", "replace")
    return 401, {"Content-Type": "application/json"}, json.dumps(
        {"error_code": "UNAUTHENTICATED", "message": f"Invalid credentials: {got} body={body}"}).encode()


@pytest.mark.parametrize("token", [TOKEN, "dapi\"'\\\\/+%==ünï🔑", "dapi%2F%2B+/=="])
def test_a_401_that_echoes_the_pat_leaks_it_nowhere(dbx, tmp_path, monkeypatch, caplog, token):
    monkeypatch.setenv("TEST_DATABRICKS_TOKEN", token)
    first(dbx, "POST", r"/api/2\.[12]/jobs/run-now", handler=echo_401)
    result = run(tmp_path, {"j": act("RunJob", {"jobId": 1})})
    err = result.steps["j"].error
    assert result.status == "Failed"
    if token.encode("utf-8").decode("latin-1").encode("latin-1") and all(ord(c) < 256 for c in token):
        assert err["code"] == "UNAUTHENTICATED" and "Invalid credentials" in err["message"]
        assert dbx.seen("run-now")[0].header("authorization") == f"Bearer {token}"  # it was sent
    else:  # no HTTP header can carry it (not latin-1): refused before sending
        assert err["code"] == "DatabricksConfig" and dbx.count("run-now") == 0
    assert leaks(token, json.dumps(err).encode()) == []
    assert leaks(token, (tmp_path / "state.db").read_bytes()) == []
    assert leaks(token, caplog.text.encode()) == []


def test_a_token_endpoint_that_echoes_the_client_secret_leaks_it_nowhere(dbx, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TEST_DBX_ID", "sp-client-id")
    monkeypatch.setenv("TEST_DBX_SECRET", CLIENT_SECRET)
    write_connections(tmp_path, dbx.url, {"client_id": "TEST_DBX_ID", "client_secret": "TEST_DBX_SECRET"})
    first(dbx, "POST", r"/oidc/v1/token", handler=echo_401)
    result = run(tmp_path, {"j": act("RunJob", {"jobId": 1})})
    assert result.status == "Failed"
    assert dbx.count("token") >= 1 and dbx.count("run-now") == 0
    for data in (json.dumps(result.steps["j"].error).encode(), (tmp_path / "state.db").read_bytes(),
                 caplog.text.encode()):
        assert leaks(CLIENT_SECRET, data) == []


@pytest.mark.parametrize("retry_after", ["NaN", "-5", "99999999999", "Wed, 21 Oct 2015 07:28:00 GMT", "", "1e400"])
def test_a_429_storm_with_hostile_retry_after_values_is_ridden_out(dbx, tmp_path, retry_after):
    dbx.jobs[3] = JobSpec(polls=1)
    first(dbx, "GET", RUNS_GET, status=429, times=3, headers={"Retry-After": retry_after},
          json={"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow down"})
    result = run(tmp_path, {"j": act("RunJob", {"jobId": 3})})
    assert result.status == "Succeeded", result.error
    assert dbx.count("run-now") == 1 and dbx.count("get") == 3 + 2  # three 429s, PENDING, TERMINATED


@pytest.mark.parametrize("status, body", [(200, b"{not json"), (200, b""), (503, b"<html>upstream</html>")])
def test_status_checks_answered_with_garbage_are_ridden_out_without_a_traceback(dbx, tmp_path, status, body):
    dbx.jobs[4] = JobSpec(polls=1, notebook_result="after garbage")
    first(dbx, "GET", RUNS_GET, status=status, body=body, times=2, headers={"Content-Type": "application/json"})
    result = run(tmp_path, {"j": act("RunJob", {"jobId": 4})})
    step = result.steps["j"]
    if step.status == "Succeeded":
        assert step.outputs["notebookResult"] == "after garbage" and dbx.count("run-now") == 1
    else:  # a garbage 200 is no status the engine can act on: a clear failure, the run cancelled
        assert step.error["message"] and "Traceback" not in json.dumps(step.error)
        assert dbx.count("cancel") == 1


def test_kill_9_before_the_run_id_comes_back_then_resume_gets_the_same_run_from_the_token(dbx, tmp_path):
    tasks = [{**NOTEBOOK, "notebook_task": {"notebook_path": "/x", "base_parameters": {"exit": "once"}}}]
    flow = write_flow(tmp_path, {"s": act("SubmitRun", {"tasks": tasks})})
    state = tmp_path / "state.db"
    dbx.stall_submit = True
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "--state", str(state), "--connections",
                             str(tmp_path / "connections.yaml"), "run", str(flow)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: dbx.submit_stalled.is_set() or proc.poll() is not None, "the submit never arrived")
        assert proc.poll() is None, proc.communicate()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        dbx.unstall()
    result, steps = resume_the_run(state)
    assert result.status == "Succeeded", result.error
    assert steps["s"].outputs["notebookResult"] == "once"
    assert dbx.count("submit") == 2 and len(dbx.runs) == 1
    assert len({r.json()["idempotency_token"] for r in dbx.seen("submit")}) == 1


def test_an_exit_value_that_looks_like_a_template_reaches_later_actions_unevaluated(dbx, tmp_path):
    dbx.jobs[8] = JobSpec(polls=0, notebook_result="{{ 1 + 1 }} {{ body('j') }}")
    result = run(tmp_path, {"j": act("RunJob", {"jobId": 8}),
                            "c": {"type": "Compose", "inputs": "{{ body('j').notebookResult }}",
                                  "runAfter": {"j": ["Succeeded"]}}})
    assert result.status == "Succeeded", result.error
    assert result.steps["c"].outputs == "{{ 1 + 1 }} {{ body('j') }}"


@pytest.mark.parametrize("task", [
    {"task_key": "a", "notebook_task": {"notebook_path": "/x"}, "depends_on": ["b"]},
    {"task_key": "a", "notebook_task": {"notebook_path": "/x"}, "libraries": [7]},
])
def test_a_task_the_jobs_api_cannot_read_fails_clearly_before_anything_is_submitted(dbx, tmp_path, task):
    result = run(tmp_path, {"s": act("SubmitRun", {"tasks": [task]})})
    err = result.steps["s"].error
    assert result.status == "Failed" and err["code"] == "InvalidInputs" and "inputs.tasks" in err["message"]
    assert dbx.count("submit") == 0


def test_a_chunk_that_points_back_fails_instead_of_looping_forever(dbx, tmp_path):
    dbx.statements["SELECT loop"] = StatementSpec(columns=[("i", "INT")], rows=[["1"], ["2"], ["3"]], chunk=1,
                                                  next_chunk=0)
    result = run(tmp_path, {"s": act("ExecuteStatement", {"statement": "SELECT loop", "warehouseId": "w1"})})
    assert result.steps["s"].error["code"] == "BadResultChunks"
    assert dbx.count("chunk") == 0


def test_a_row_with_the_wrong_number_of_cells_fails_clearly(dbx, tmp_path):
    dbx.statements["SELECT short"] = StatementSpec(columns=[("a", "INT"), ("b", "INT")], rows=[["1"]])
    result = run(tmp_path, {"s": act("ExecuteStatement", {"statement": "SELECT short", "warehouseId": "w1"})})
    assert result.steps["s"].error["code"] == "BadResultChunks"


def test_a_statement_that_never_ends_is_cancelled_by_the_action_timeout(dbx, tmp_path):
    dbx.statements["SELECT forever"] = StatementSpec(columns=[("i", "INT")], polls=-1)
    flow = write_flow(tmp_path, {"s": act("ExecuteStatement", {"statement": "SELECT forever", "warehouseId": "w1",
                                                               "waitTimeout": 0}, timeout="PT0.5S")})
    result = engine.run_file(flow, state=tmp_path / "state.db", connections=tmp_path / "connections.yaml")
    assert result.steps["s"].status == "TimedOut"
    assert dbx.count("statement") == 1 and dbx.count("statement-cancel") == 1


def test_a_statement_id_the_workspace_no_longer_knows_fails_at_once(dbx, tmp_path):
    dbx.statements["SELECT gone"] = StatementSpec(columns=[("i", "INT")], polls=3)
    first(dbx, "GET", r"/api/2\.0/sql/statements/[^/]+", status=404,
          json={"error_code": "NOT_FOUND", "message": "The statement was not found."})
    result = run(tmp_path, {"s": act("ExecuteStatement", {"statement": "SELECT gone", "warehouseId": "w1"},
                                     retryPolicy={"type": "fixed", "count": 2, "interval": "PT0.01S"})})
    step = result.steps["s"]
    assert step.status == "Failed" and step.error["code"] == "NOT_FOUND" and step.attempts == 1
    assert dbx.count("statement") == 1


@pytest.mark.parametrize("text, type_name, expected", [
    ("99999999999999999999999999999999999999", "DECIMAL", "99999999999999999999999999999999999999"),
    ("0.10000000000000000000000000000000000001", "DECIMAL", "0.10000000000000000000000000000000000001"),
    ("NaN", "DOUBLE", "NaN"), ("-Infinity", "FLOAT", "-Infinity"), ("1e400", "DOUBLE", "1e400"),
    ("0001-01-01", "DATE", "0001-01-01"), ("9999-12-31T23:59:59.999+14:00", "TIMESTAMP", "9999-12-31T23:59:59.999+14:00"),
    ("AP8=", "BINARY", "AP8="), (None, "INT", None), ("[" * 50_000, "ARRAY", "[" * 50_000),
    ("[" * 200 + "]" * 200, "ARRAY", json.loads("[" * 200 + "]" * 200)),
    ('{"k": "{{ x }}"}', "STRUCT", {"k": "{{ x }}"}), ("not a number", "INT", "not a number"),
])
def test_statement_cells_become_exact_json_safe_values(text, type_name, expected):
    got = value(text, type_name)
    assert got == expected
    json.dumps(got, allow_nan=False)


def resume_the_run(state):
    """Resume the one run of ``state`` in a new engine, as `flowrun resume` would after a crash:
    the run, and its steps (read while the engine is open)."""
    eng = engine.Engine(state, clock=FakeClock())
    try:
        result = anyio.run(eng.resume, eng.list_runs()[0].id)
        return result, result.steps
    finally:
        eng.close()


def test_a_traced_run_sends_the_attempt_spans_traceparent_on_every_databricks_request(dbx, tmp_path):
    from tests.support.tracing import traceparent, traced

    dbx.jobs[42] = JobSpec(polls=2)
    dbx.statements["SELECT 1"] = StatementSpec(columns=[("one", "INT")], rows=[["1"]])
    with traced() as spans:
        result = run(tmp_path, {"j": act("RunJob", {"jobId": 42}),
                                "q": act("ExecuteStatement", {"statement": "SELECT 1", "warehouseId": "w1"},
                                         runAfter={"j": ["Succeeded"]})})
    assert result.status == "Succeeded", result.error
    [job] = spans.named("j")
    [query] = spans.named("q")
    job_requests = dbx.seen("run-now") + dbx.seen("get") + dbx.seen("output")
    assert len(job_requests) >= 4 and {r.header("traceparent") for r in job_requests} == {traceparent(job)}
    assert {r.header("traceparent") for r in dbx.seen("statement")} == {traceparent(query)}
    assert all(r.header("authorization") == f"Bearer {TOKEN}" for r in job_requests)


def test_concurrent_jobs_each_send_their_own_attempts_traceparent(dbx, tmp_path):
    from tests.support.tracing import traceparent, traced

    for job_id in range(1, 7):
        dbx.jobs[job_id] = JobSpec(polls=1)
    with traced() as spans:
        result = run(tmp_path, {"each": {"type": "Foreach", "foreach": "{{ range(1, 7) | list }}", "concurrency": 6,
                                         "actions": {"j": act("RunJob", {"jobId": "{{ item() }}"})}}})
    assert result.status == "Succeeded", result.error
    by_iteration = {s.attributes["flowrun.iteration"]: traceparent(s) for s in spans.named("j")}
    assert len(set(by_iteration.values())) == 6
    for req in dbx.seen("run-now"):
        assert req.header("traceparent") == by_iteration[req.json()["job_id"] - 1]


def test_an_untraced_run_sends_no_traceparent_to_databricks(dbx, tmp_path):
    dbx.jobs[42] = JobSpec(polls=1)
    assert run(tmp_path, {"j": act("RunJob", {"jobId": 42})}).status == "Succeeded"
    assert all(r.header("traceparent") is None for r in dbx.api.requests)
