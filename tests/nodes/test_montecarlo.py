"""montecarlo.*: the real pycarlo SDK talks to a loopback GraphQL server
(tests/support/montecarlo.py) through Session(endpoint=...); every flow runs through
engine.run_file, and the tests assert on the operations pycarlo actually sent."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import engine
from tests.support.clock import FakeClock
from tests.support.montecarlo import MonteCarloFake

KEY_ID = "mc-key-id-0001"
TOKEN = 'tok"en\\with/+%é-secret'  # quotes, a backslash, / + % and non-ASCII
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def mc():
    with MonteCarloFake() as fake:
        yield fake


@pytest.fixture
def connections(tmp_path, mc, monkeypatch):
    monkeypatch.setenv("MC_ID", KEY_ID)
    monkeypatch.setenv("MC_TOKEN", TOKEN)
    path = tmp_path / "connections.yaml"
    path.write_text(f"""\
connections:
  montecarlo:
    kind: montecarlo
    endpoint: {mc.url}
    secrets: {{api_key_id: MC_ID, api_token: MC_TOKEN}}
""")
    return path


def run_actions(tmp_path: Path, connections: Path, actions: dict, **kw):
    flow = {"triggers": {"manual": {"type": "Manual"}}, "actions": actions}
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump(flow, sort_keys=False))
    return engine.run_file(path, state=tmp_path / "state.db", connections=connections,
                           clock=FakeClock(), **kw)


def breaker(**inputs) -> dict:
    return {"gate": {"type": "montecarlo.CircuitBreaker", "connection": "montecarlo",
                     "inputs": inputs}}


def test_importing_the_module_does_not_import_pycarlo():
    code = "import nodes.montecarlo, sys; assert 'pycarlo' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_a_rule_without_breaches_passes_after_polling_and_pycarlo_sent_the_key(tmp_path, connections, mc):
    mc.rule("7d1b1a52-0000-4000-8000-000000000001", breaches=[0, 0], polls=2)
    run = run_actions(tmp_path, connections, breaker(rule_uuid="7d1b1a52-0000-4000-8000-000000000001",
                                                     runtime_variables={"day": "2024-01-01"}))
    assert run.status == "Succeeded", run.error
    out = run.steps["gate"].outputs
    assert out["breached"] is False and out["breach_count"] == 0 and len(out["job_execution_uuids"]) == 2
    trigger, = mc.calls("triggerCircuitBreakerRuleV2")
    assert trigger.operation == "mutation"
    assert trigger.arguments == {"ruleUuid": "7d1b1a52-0000-4000-8000-000000000001",
                                 "runtimeVariables": [{"name": "day", "value": "2024-01-01"}]}
    assert trigger.headers["x-mcd-id"] == KEY_ID and trigger.headers["x-mcd-token"] == TOKEN
    polls = mc.calls("getCircuitBreakerRuleStateV2")
    assert len(polls) == 3 and polls[0].arguments == {"jobExecutionUuids": out["job_execution_uuids"]}


def test_a_breach_fails_the_action_with_the_breach_details(tmp_path, connections, mc):
    mc.rule("analytics/orders_not_empty", breaches=[3])
    run = run_actions(tmp_path, connections, breaker(rule_name="orders_not_empty", namespace="analytics"))
    step = run.steps["gate"]
    assert run.status == "Failed" and step.error["code"] == "CircuitBreakerBreached"
    assert step.error["details"]["breach_count"] == 3
    assert step.error["details"]["executions"][0]["payload"]["query"].startswith("select")
    assert mc.calls("triggerCircuitBreakerRuleV2")[0].arguments == {
        "namespace": "analytics", "ruleName": "orders_not_empty"}


def test_on_breach_output_succeeds_with_breached_true_so_the_flow_can_branch(tmp_path, connections, mc):
    mc.rule("r", breaches=[1, 0])
    actions = {**breaker(rule_name="r", onBreach="output"),
               "stop": {"type": "If", "runAfter": {"gate": ["Succeeded"]},
                        "expression": "{{ outputs('gate').breached }}",
                        "actions": {"halt": {"type": "Compose", "inputs": "held back"}}}}
    run = run_actions(tmp_path, connections, actions)
    assert run.status == "Succeeded"
    assert run.steps["gate"].outputs["breached"] is True and run.steps["gate"].outputs["breach_count"] == 1
    assert run.steps["stop/halt"].outputs == "held back"


def test_an_execution_that_errored_fails_the_action(tmp_path, connections, mc):
    mc.rule("r", breaches=[0], error="SQL compilation error: table ORDERS does not exist")
    run = run_actions(tmp_path, connections, breaker(rule_name="r"))
    err = run.steps["gate"].error
    assert err["code"] == "circuit_breaker_error" and "ORDERS does not exist" in err["message"]


def test_a_graphql_error_on_trigger_fails_with_its_code_and_no_secret(tmp_path, connections, mc):
    mc.fail("triggerCircuitBreakerRuleV2", f"Rule not found (key {TOKEN})", code="NOT_FOUND")
    run = run_actions(tmp_path, connections, breaker(rule_name="missing"))
    err = run.steps["gate"].error
    assert err["code"] == "NOT_FOUND" and "Rule not found" in err["message"]
    assert TOKEN not in json.dumps(err, ensure_ascii=False) and "***" in err["message"]


def test_the_same_executions_are_polled_until_done_without_a_second_trigger(
        tmp_path, connections, mc):
    mc.rule("r", breaches=[0], polls=5)
    run = run_actions(tmp_path, connections, breaker(rule_name="r"))
    assert run.status == "Succeeded", run.error
    handle = run.steps["gate"].outputs
    polls = mc.calls("getCircuitBreakerRuleStateV2")
    assert len(polls) == 6 and len(mc.calls("triggerCircuitBreakerRuleV2")) == 1
    assert all(p.arguments["jobExecutionUuids"] == handle["job_execution_uuids"] for p in polls)


@pytest.mark.parametrize("inputs, problem", [
    ({}, "rule"), ({"rule_uuid": "a", "rule_name": "b"}, "rule"), ({"rule_name": "r", "onBreach": "ignore"}, "onBreach"),
])
def test_a_circuit_breaker_without_exactly_one_rule_fails_validation(tmp_path, connections, inputs, problem):
    from engine.errors import FlowError

    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump({"triggers": {"manual": {"type": "Manual"}},
                                    "actions": breaker(**inputs)}))
    with pytest.raises(FlowError):
        engine.run_file(path, state=tmp_path / "state.db", connections=connections)


def test_upload_dbt_run_sends_the_artifacts_through_pycarlo_s_importer(tmp_path, connections, mc):
    inv = "0f5c7a8e-1111-4222-8333-444455556666"
    manifest, results = tmp_path / "manifest.json", tmp_path / "run_results.json"
    manifest.write_text(json.dumps({"metadata": {"invocation_id": inv}, "nodes": {}}))
    results.write_text(json.dumps({"metadata": {"invocation_id": inv}, "results": []}))
    run = run_actions(tmp_path, connections, {"upload": {
        "type": "montecarlo.UploadDbtRun", "connection": "montecarlo",
        "inputs": {"artifacts": {"manifest": str(manifest), "run_results": str(results)},
                   "project_name": "shop", "job_name": "nightly"}}})
    assert run.status == "Succeeded", run.error
    assert run.steps["upload"].outputs == {"invocation_id": inv, "project_name": "shop",
                                          "job_name": "nightly", "files": ["manifest.json", "run_results.json"]}
    assert json.loads(mc.uploads[f"{inv}/manifest.json"])["metadata"]["invocation_id"] == inv
    assert f"{inv}/run_results.json" in mc.uploads
    event, = mc.calls("sendDbtArtifactsEvent")
    assert event.name == "sendDbtArtifactsEvent"
    assert event.variables == {"projectName": "shop", "jobName": "nightly", "invocationId": inv,
                               "artifacts": {"manifest": "manifest.json", "runResults": "run_results.json",
                                             "logs": None},
                               "resourceId": mc.warehouses[0]["uuid"]}


def test_upload_dbt_run_with_a_missing_file_fails_before_calling_monte_carlo(tmp_path, connections, mc):
    run = run_actions(tmp_path, connections, {"upload": {
        "type": "montecarlo.UploadDbtRun", "connection": "montecarlo",
        "inputs": {"manifest": str(tmp_path / "nope.json"), "run_results": str(tmp_path / "nope2.json"),
                   "project_name": "p", "job_name": "j"}}})
    assert run.steps["upload"].error["code"] == "ArtifactNotFound" and mc.calls() == []


def test_get_incidents_follows_pages_and_sends_the_filters_as_variables(tmp_path, connections, mc):
    mc.incidents = [{"uuid": f"i-{n}", "name": f"incident {n}", "incidentType": "anomalies",
                     "severity": "SEV-1" if n % 2 else "SEV-3", "tables": ["shop:main.orders"],
                     "createdTime": "2024-01-01T00:00:00Z"} for n in range(150)]
    run = run_actions(tmp_path, connections, {"inc": {
        "type": "montecarlo.GetIncidents", "connection": "montecarlo",
        "inputs": {"tables": ["shop:main.orders"], "severities": ["SEV-1"],
                   "start_time": "2024-01-01T00:00:00Z", "limit": 70}}})
    out = run.steps["inc"].outputs
    assert run.status == "Succeeded", run.error
    assert out["count"] == 70 and out["truncated"] is True
    assert out["incidents"][0]["uuid"] == "i-1" and out["incidents"][0]["severity"] == "SEV-1"
    calls = mc.calls("getIncidents")
    assert calls[0].variables["fullTableIds"] == ["shop:main.orders"]
    assert calls[0].variables["startTime"] == "2024-01-01T00:00:00Z" and calls[0].variables["first"] == 70


def test_query_returns_data_as_written_and_passes_variables(tmp_path, connections, mc):
    run = run_actions(tmp_path, connections, {"q": {
        "type": "montecarlo.Query", "connection": "montecarlo",
        "inputs": {"query": "query t($id: String!) { getTable(fullTableId: $id) { mcon tableId } }",
                   "variables": {"id": "{{ triggerBody().id }}"}}}},
                      input={"id": "shop:main.{{ 7*7 }}"})  # payload data is never a template
    assert run.status == "Succeeded", run.error
    assert run.steps["q"].outputs == {"data": {"getTable": {"mcon": "MCON++shop:main.{{ 7*7 }}",
                                                           "tableId": "shop:main.{{ 7*7 }}"}}}
    call, = mc.calls("getTable")
    assert call.variables == {"id": "shop:main.{{ 7*7 }}"} and call.headers["x-mcd-token"] == TOKEN


def test_query_fails_on_graphql_errors(tmp_path, connections, mc):
    mc.fail("getTable", "Unknown table", code="NOT_FOUND")
    run = run_actions(tmp_path, connections, {"q": {
        "type": "montecarlo.Query", "connection": "montecarlo",
        "inputs": {"query": "mutation { getTable(fullTableId: \"x\") { mcon } }"}}})
    err = run.steps["q"].error
    assert run.status == "Failed" and err["code"] == "NOT_FOUND" and err["message"] == "Unknown table"
    assert len(mc.calls("getTable")) == 1  # pycarlo did not retry by itself


# -- adversarial -----------------------------------------------------------------------------

DEEP = json.dumps([{"stage": "x"}])[:-1] + ", " + "[" * 100_000 + "]" * 100_000 + "]"


@pytest.mark.parametrize("status, body, headers", [
    (200, b"{not json", {}),
    (200, b"", {}),
    (200, b'{"data": {"getCircuitBreakerRuleStateV2": []}}', {}),  # partial: no state yet
    (200, b'{"data": null}', {}),
    (200, b'{"data": {"getCircuitBreakerRuleStateV2": null}, "errors": [{"message": "busy", "extensions": '
          b'{"code": "INTERNAL"}}]}', {}),
    (200, json.dumps({"data": {"getCircuitBreakerRuleStateV2": [{"status": "PROCESSING_COMPLETE",
                                                                 "log": DEEP}]}}).encode(), {}),
    (429, b"{}", {"Retry-After": "999999999999"}),
    (503, b"{}", {"Retry-After": "-5"}),
    (503, b"{}", {"Retry-After": "nan"}),
    (429, b"{}", {"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}),
    (503, b"<html>\x00\xff</html>", {"Retry-After": "1e308"}),
])
def test_a_hostile_poll_answer_never_crashes_the_breaker_nor_passes_it(tmp_path, connections, mc, status, body,
                                                                      headers):
    mc.rule("r", breaches=[2])
    mc.respond("getCircuitBreakerRuleStateV2", status, body, headers)
    gate = breaker(rule_name="r")
    gate["gate"]["retryPolicy"] = {"type": "fixed", "count": 2, "interval": "PT1S"}
    run = run_actions(tmp_path, connections, gate)
    step = run.steps["gate"]
    assert len(mc.calls("triggerCircuitBreakerRuleV2")) == 1  # a retried poll never triggers again
    if step.status == "Failed":
        assert step.error["code"] in ("CircuitBreakerBreached", "circuit_breaker_malformed", "graphql_error",
                                      "INTERNAL", "http_429", "http_503", "malformed_response"), step.error
        assert "Traceback" not in json.dumps(step.error)
    assert step.status != "Succeeded"  # the rule breaches: no answer may make it pass


def test_partial_data_keeps_polling_until_every_execution_reported(tmp_path, connections, mc):
    mc.rule("r", breaches=[0, 5])
    first = json.dumps({"data": {"getCircuitBreakerRuleStateV2": [{"status": "PROCESSING_COMPLETE", "log": json.dumps(
        [{"stage": "PROCESSING_COMPLETE", "payload": {"breach_count": 0}}])}]}}).encode()
    mc.respond("getCircuitBreakerRuleStateV2", 200, first, times=2)
    run = run_actions(tmp_path, connections, breaker(rule_name="r"))
    assert run.steps["gate"].error["code"] == "CircuitBreakerBreached"
    assert run.steps["gate"].error["details"]["breach_count"] == 5
    assert len(mc.calls("getCircuitBreakerRuleStateV2")) == 3


def test_a_breaker_that_never_finishes_times_out_cleanly(tmp_path, connections, mc):
    mc.rule("r", breaches=[0], polls=10**6)
    gate = breaker(rule_name="r")
    gate["gate"]["timeout"] = "PT2S"  # real seconds (the run's clock is fake): the poll loop spins until then
    run = run_actions(tmp_path, connections, gate)
    assert run.steps["gate"].status == "TimedOut"
    assert len(mc.calls("triggerCircuitBreakerRuleV2")) == 1


@pytest.mark.parametrize("query", [
    'query { getTable(fullTableId: "{{ 7*7 }}") { mcon } }',
    "query { getTable(fullTableId: \"\\u0000 ' ; -- \") { mcon } }",
])
def test_hostile_query_text_is_sent_as_written(tmp_path, connections, mc, query):
    run = run_actions(tmp_path, connections, {"q": {
        "type": "montecarlo.Query", "connection": "montecarlo",
        "inputs": {"query": "{{ triggerBody().q }}"}}}, input={"q": query})
    assert run.status == "Succeeded", run.error
    call, = mc.calls("getTable")
    assert "{{ 7*7 }}" not in query or call.arguments == {"fullTableId": "{{ 7*7 }}"}


def test_no_form_of_the_token_reaches_the_state_db(tmp_path, connections, mc):
    import base64
    from urllib.parse import quote

    mc.fail("getTable", f"bad key {TOKEN} / {json.dumps(TOKEN)} / {quote(TOKEN)}")
    run_actions(tmp_path, connections, {"q": {"type": "montecarlo.Query", "connection": "montecarlo",
                                              "inputs": {"query": "query { getTable(fullTableId: \"x\") { mcon } }"}}})
    data = (tmp_path / "state.db").read_bytes()
    for form in (TOKEN, json.dumps(TOKEN)[1:-1], json.dumps(json.dumps(TOKEN)[1:-1])[1:-1], quote(TOKEN, safe=""),
                 base64.b64encode(TOKEN.encode()).decode(), TOKEN.encode().hex()):
        assert form.encode() not in data, form


def test_a_traced_run_sends_the_attempt_spans_traceparent_with_its_queries_beside_pycarlos_headers(tmp_path, connections, mc):
    from tests.support.tracing import traceparent, traced

    mc.rule("7d1b1a52-0000-4000-8000-000000000001", breaches=[0], polls=1)
    with traced() as spans:
        run = run_actions(tmp_path, connections, breaker(rule_uuid="7d1b1a52-0000-4000-8000-000000000001"))
    assert run.status == "Succeeded", run.error
    [gate] = spans.named("gate")
    polls = mc.calls("getCircuitBreakerRuleStateV2")  # flowrun's own queries (the trigger is pycarlo's service)
    assert polls and all(c.headers["traceparent"] == traceparent(gate) for c in polls)
    assert all(c.headers["x-mcd-id"] == KEY_ID for c in polls)  # pycarlo's own headers are kept
