"""Action shapes as Logic Apps writes them, run for real: Http with its own query string and
`authentication`, Table, Workflow naming a sibling, static results and secure data."""
from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

import pytest

from engine.api import run_file
from engine.errors import FlowError
from engine.loader import load_file
from tests.support.recorder import Recorder

SCHEMA = "https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#"
PASSWORD = 'pa"ss\\word-0xBEEF'


def write(path: Path, actions: dict, **extra) -> Path:
    path.write_text(json.dumps({"$schema": SCHEMA, "contentVersion": "1.0.0.0",
                                "triggers": {"manual": {"type": "Request", "kind": "Http"}},
                                "actions": actions, **extra}))
    return path


def stored(state: Path) -> str:
    with sqlite3.connect(state) as con:
        return json.dumps([list(map(str, r)) for t in ("runs", "steps") for r in con.execute(f"SELECT * FROM {t}")])


def test_http_keeps_the_uris_query_string_and_sends_basic_authentication(tmp_path):
    with Recorder() as api:
        api.route("GET", r"/items", json={"items": [1, 2]})
        flow = write(tmp_path / "h.json", {"Get": {"type": "Http", "runAfter": {}, "inputs": {
            "method": "GET", "uri": f"{api.url}/items?api-version=2016-10-01&$top=5",
            "authentication": {"type": "Basic", "username": "ada", "password": PASSWORD}}}})
        run = run_file(flow, state=tmp_path / "s.db")
        assert run.status == "Succeeded", run.steps["Get"].error
        (request,) = api.requests
        assert request.query == {"api-version": ["2016-10-01"], "$top": ["5"]}
        token = base64.b64encode(f"ada:{PASSWORD}".encode()).decode()
        assert request.headers["authorization"] == f"Basic {token}"
    text = stored(tmp_path / "s.db")
    assert PASSWORD not in text and json.dumps(PASSWORD)[1:-1] not in text and token not in text


def test_http_authentication_through_azure_is_named_at_validate(tmp_path):
    flow = write(tmp_path / "h.json", {"Get": {"type": "Http", "runAfter": {}, "inputs": {
        "method": "GET", "uri": "https://example.invalid", "authentication": {"type": "ManagedServiceIdentity"}}}})
    with pytest.raises(FlowError) as exc:
        load_file(flow)
    assert "authentication type 'ManagedServiceIdentity' needs Azure" in str(exc.value)


def test_table_without_columns_takes_the_property_names_in_order(tmp_path):
    rows = [{"ID": 0, "Name": "Apples"}, {"ID": 1, "Name": 'say "hi"', "Extra": None}]
    flow = write(tmp_path / "t.json", {
        "Csv": {"type": "Table", "runAfter": {}, "inputs": {"format": "CSV", "from": rows}},
        "Html": {"type": "Table", "runAfter": {}, "inputs": {"format": "HTML", "from": [{"a": "<b>&"}]}}})
    run = run_file(flow, state=tmp_path / "s.db")
    assert run.steps["Csv"].outputs == 'ID,Name,Extra\r\n0,Apples,\r\n1,"say ""hi""",\r\n'
    assert run.steps["Html"].outputs == ("<table><thead><tr><th>a</th></tr></thead><tbody>"
                                         "<tr><td>&lt;b&gt;&amp;</td></tr></tbody></table>")


def test_a_static_result_that_failed_fails_the_action_with_its_outputs(tmp_path):
    flow = write(tmp_path / "s.json", {
        "Get": {"type": "Http", "runAfter": {}, "inputs": {"method": "GET", "uri": "https://example.invalid"},
                "runtimeConfiguration": {"staticResult": {"name": "Get0", "staticResultOptions": "Enabled"}}},
        "Off": {"type": "Http", "runAfter": {"Get": ["Failed"]},
                "inputs": {"method": "GET", "uri": "http://127.0.0.1:9/never"},
                "runtimeConfiguration": {"staticResult": {"name": "Get0", "staticResultOptions": "Disabled"}},
                "retryPolicy": {"type": "none"}}},
        staticResults={"Get0": {"status": "Failed", "outputs": {"statusCode": 404, "body": {"error": "no"}}}})
    run = run_file(flow, state=tmp_path / "s.db")
    get = run.steps["Get"]
    assert get.status == "Failed" and get.outputs == {"statusCode": 404, "body": {"error": "no"}}
    assert get.error["code"] == "Http404"
    assert run.steps["Off"].status == "Failed" and run.steps["Off"].error["code"] == "HttpConnectionError"


def test_a_static_result_name_the_definition_lacks_is_a_problem(tmp_path):
    flow = write(tmp_path / "s.json", {"Get": {
        "type": "Compose", "runAfter": {}, "inputs": 1,
        "runtimeConfiguration": {"staticResult": {"name": "Nope", "staticResultOptions": "Enabled"}}}},
        staticResults={"Get0": {"status": "Succeeded"}})
    with pytest.raises(FlowError) as exc:
        load_file(flow)
    assert "no staticResults entry 'Nope' in the definition; defined: Get0" in str(exc.value)


def test_secure_data_is_not_stored_yet_dependents_read_it(tmp_path):
    flow = write(tmp_path / "d.json", {
        "Secret": {"type": "Compose", "runAfter": {}, "inputs": {"card": "4111-0000-SECRET"},
                   "runtimeConfiguration": {"secureData": {"properties": ["outputs"]}}},
        "Shape": {"type": "Select", "runAfter": {"Secret": ["Succeeded"]},
                  "inputs": {"from": [1], "select": "done"}}})
    run = run_file(flow, state=tmp_path / "s.db")
    assert run.status == "Succeeded"
    assert run.steps["Secret"].outputs == {"secured": "runtimeConfiguration.secureData: not stored"}
    assert run.steps["Secret"].inputs == {"card": "4111-0000-SECRET"}  # only outputs were listed


def test_a_workflow_action_names_a_sibling_workflow_folder(tmp_path):
    app = tmp_path / "app"
    (app / "parent").mkdir(parents=True)
    (app / "child").mkdir()
    (app / "host.json").write_text("{}")
    (app / "child" / "workflow.json").write_text(json.dumps({"kind": "Stateful", "definition": {
        "$schema": SCHEMA, "triggers": {"manual": {"type": "Request", "kind": "Http"}},
        "actions": {"Response": {"type": "Response", "kind": "Http", "runAfter": {},
                                 "inputs": {"statusCode": 200, "body": {"child": True}}}}}}))
    (app / "parent" / "workflow.json").write_text(json.dumps({"kind": "Stateful", "definition": {
        "$schema": SCHEMA, "triggers": {"manual": {"type": "Request", "kind": "Http"}},
        "actions": {"Call": {"type": "Workflow", "runAfter": {}, "inputs": {
            "host": {"triggerName": "manual", "workflow": {
                "id": "/subscriptions/x/resourceGroups/y/providers/Microsoft.Logic/workflows/child"}}}},
            "Missing": {"type": "Workflow", "runAfter": {}, "inputs": {
                "host": {"triggerName": "manual", "workflow": {"id": "nothere"}}}}}}}))
    run = run_file(app / "parent" / "workflow.json", state=tmp_path / "s.db")
    assert run.steps["Call"].status == "Succeeded" and run.steps["Call"].outputs["body"] == {"child": True}
    assert run.steps["Missing"].status == "Failed" and run.steps["Missing"].error["code"] == "InvalidChildFlow"


def test_http_takes_its_retry_policy_from_its_inputs_as_logic_apps_writes_it(tmp_path):
    with Recorder() as api:
        api.route("GET", r"/flaky", status=503, json={"error": "busy"})
        flow = write(tmp_path / "r.json", {"Get": {"type": "Http", "runAfter": {}, "inputs": {
            "method": "GET", "uri": f"{api.url}/flaky",
            "retryPolicy": {"type": "fixed", "count": 2, "interval": "PT0.01S"}}}})
        run = run_file(flow, state=tmp_path / "s.db")
        assert run.steps["Get"].status == "Failed" and run.steps["Get"].attempts == 3
        assert len(api.requests) == 3
    bad = write(tmp_path / "b.json", {"Get": {"type": "Http", "runAfter": {}, "inputs": {
        "method": "GET", "uri": "http://x.invalid", "retryPolicy": {"type": "fixed", "interval": "soon"}}}})
    with pytest.raises(FlowError) as exc:
        load_file(bad)
    assert "actions.Get.inputs.retryPolicy" in str(exc.value)


def test_a_workflow_actions_headers_reach_the_childs_trigger_outputs(tmp_path):
    app = tmp_path / "app"
    (app / "parent").mkdir(parents=True)
    (app / "child").mkdir()
    (app / "host.json").write_text("{}")
    (app / "child" / "workflow.json").write_text(json.dumps({"kind": "Stateful", "definition": {
        "$schema": SCHEMA, "triggers": {"manual": {"type": "Request", "kind": "Http"}},
        "actions": {"Response": {"type": "Response", "kind": "Http", "runAfter": {}, "inputs": {
            "statusCode": 200, "body": {"correlation": "@triggerOutputs()['headers']['x-correlation-id']",
                                        "count": "@triggerOutputs()?['headers']?['X-Count']",
                                        "order": "@triggerBody()?['order']"}}}}}}))
    (app / "parent" / "workflow.json").write_text(json.dumps({"kind": "Stateful", "definition": {
        "$schema": SCHEMA, "triggers": {"manual": {"type": "Request", "kind": "Http"}},
        "actions": {"Call": {"type": "Workflow", "runAfter": {}, "inputs": {
            "host": {"triggerName": "manual", "workflow": {"id": "child"}},
            "headers": {"X-Correlation-Id": "abc-123", "X-Count": 3}, "body": {"order": 7}}}}}}))
    run = run_file(app / "parent" / "workflow.json", state=tmp_path / "s.db")
    assert run.steps["Call"].status == "Succeeded", run.steps["Call"].error
    assert run.steps["Call"].outputs["body"] == {"correlation": "abc-123", "count": "3", "order": 7}


def test_a_foreach_inside_a_foreach_runs_its_iterations_one_at_a_time(tmp_path):
    import threading

    arrived = threading.Barrier(3, timeout=20)

    def together(req):  # answers only once three calls are in flight at once
        arrived.wait()
        return 200, {"Content-Type": "application/json"}, b"{}"

    with Recorder() as api:
        api.route("POST", r"/seq", json={})
        api.route("POST", r"/par", handler=together)
        inner = {"type": "Foreach", "foreach": "@createArray(1, 2, 3)", "actions": {
            "Call": {"type": "Http", "runAfter": {}, "inputs": {"method": "POST", "uri": f"{api.url}/seq",
                                                                "body": "@item()"}}}}
        flow = write(tmp_path / "n.json", {
            "Outer": {"type": "Foreach", "runAfter": {}, "foreach": "@createArray('a')",
                      "actions": {"Inner": {**inner, "runtimeConfiguration": {"concurrency": {"repetitions": 3}}}}},
            "Explicit": {"type": "Foreach", "runAfter": {}, "foreach": "@createArray('a')",
                         "actions": {"Inner2": {**inner, "concurrency": 3, "actions": {"Call2": {
                             "type": "Http", "runAfter": {}, "inputs": {"method": "POST", "uri": f"{api.url}/par",
                                                                        "body": "@item()"}}}}}}})
        run = run_file(flow, state=tmp_path / "s.db")
    assert run.status == "Succeeded"  # flowrun's own `concurrency` field still runs them together
    with sqlite3.connect(tmp_path / "s.db") as con:
        spans = sorted(con.execute("SELECT started, ended FROM steps WHERE action = 'Call'").fetchall())
    assert len(spans) == 3
    assert all(prev[1] <= nxt[0] for prev, nxt in zip(spans, spans[1:]))  # never overlapping
