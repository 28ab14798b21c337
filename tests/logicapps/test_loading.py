"""Logic Apps definitions load as they are: a Standard workflow.json, a bare definition and a
Consumption ARM template, each detected by itself, with problems pointing into the JSON file."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from engine.api import run_file
from engine.errors import FlowError
from engine.loader import load_file, load_text

SCHEMA = "https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#"


def definition(**actions) -> dict:
    return {"$schema": SCHEMA, "contentVersion": "1.0.0.0", "parameters": {},
            "triggers": {"manual": {"type": "Request", "kind": "Http", "inputs": {"schema": {}}}},
            "actions": actions or {"Compose": {"type": "Compose", "inputs": "hi", "runAfter": {}}},
            "outputs": {}}


def write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(FlowError) as exc:
        load_file(path)
    return [str(p) for p in exc.value.problems]


def test_a_standard_workflow_json_is_named_after_its_folder(tmp_path):
    flow = load_file(write(tmp_path / "app" / "orders" / "workflow.json",
                           {"definition": definition(), "kind": "Stateful"}))
    assert flow.name == "orders" and list(flow.actions) == ["Compose"]


def test_a_bare_definition_is_named_after_its_file(tmp_path):
    flow = load_file(write(tmp_path / "greet.json", definition()))
    assert flow.name == "greet"


def test_a_definition_request_trigger_without_auth_is_protected_by_sas(tmp_path):
    flow = load_file(write(tmp_path / "greet.json", definition()))
    assert flow.triggers["manual"].raw["auth"] == {"type": "sas"}


def test_json_numbers_keep_their_json_meaning(tmp_path):
    flow = load_file(write(tmp_path / "n.json", definition(C={"type": "Compose", "inputs": [1e3, 2, 0.5]})))
    assert flow.actions["C"].inputs == [1000.0, 2, 0.5]


def test_parameter_declarations_as_logic_apps_writes_them_load(tmp_path):
    d = definition()
    d["parameters"] = {
        "region": {"type": "String", "defaultValue": "west", "allowedValues": ["west", "east"],
                   "metadata": {"description": "where"}, "minLength": 1, "maxLength": 10},
        "count": {"type": "Int", "defaultValue": 3, "minValue": 1, "maxValue": 9},
        "$connections": {"type": "Object", "defaultValue": {}},
        "secret": {"type": "SecureString", "defaultValue": ""},
    }
    flow = load_file(write(tmp_path / "p.json", d))
    assert set(flow.parameters) == {"region", "count", "$connections", "secret"}
    assert flow.parameters["region"].allowed == ["west", "east"]


def test_problems_point_into_the_workflow_json(tmp_path):
    path = tmp_path / "app" / "w" / "workflow.json"
    path.parent.mkdir(parents=True)
    path.write_text(textwrap.dedent("""\
        {
          "definition": {
            "$schema": "%s",
            "triggers": {},
            "actions": {
              "Get": {
                "type": "ApiConnection",
                "inputs": {}
              },
              "Next": {"type": "Compose", "inputs": 1, "runAfter": {"Gett": ["Succeeded"]}}
            }
          },
          "kind": "Stateful"
        }""") % SCHEMA)
    found = problems(path)
    assert f"{path}:7:17 actions.Get.type: Logic Apps type 'ApiConnection' cannot run in flowrun: it is a " \
           f"managed connector call, which runs only in Azure" in found
    assert any(p.startswith(f"{path}:10:") and "Gett" in p for p in found), found


@pytest.mark.parametrize("type_name", ["ApiConnection", "ServiceProvider", "JavaScriptCode", "Function",
                                       "ApiConnectionWebhook"])
def test_types_flowrun_cannot_run_fail_validate_naming_the_type(tmp_path, type_name):
    found = problems(write(tmp_path / "x.json", definition(A={"type": type_name, "inputs": {}})))
    assert len(found) == 1 and f"Logic Apps type '{type_name}' cannot run in flowrun" in found[0]


def test_an_unknown_workflow_json_key_and_kind_are_problems(tmp_path):
    found = problems(write(tmp_path / "a" / "w" / "workflow.json",
                           {"definition": definition(), "kind": "Stately", "extra": 1}))
    assert any("kind 'Stately' is neither Stateful nor Stateless" in p for p in found)
    assert any("unknown key 'extra'" in p for p in found)


def test_malformed_json_is_one_problem_at_its_place(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "definition": {\n    "actions": {,}\n  }\n}')
    (found,) = problems(path)
    assert found.startswith(f"{path}:3:") and "invalid JSON" in found


def test_a_duplicate_key_is_a_problem(tmp_path):
    path = tmp_path / "dup.json"
    path.write_text('{"$schema": "%s", "actions": {"A": {"type": "Compose", "inputs": 1}, '
                    '"A": {"type": "Compose", "inputs": 2}}}' % SCHEMA)
    assert any("duplicate key 'A'" in p for p in problems(path))


def test_a_flowrun_flow_written_as_json_is_still_a_flowrun_flow():
    flow = load_text('{"name": "j", "actions": {"a": {"type": "Compose", "inputs": 1}}}', "j.yaml")
    assert flow.name == "j" and "auth" not in json.dumps(flow.raw)


# -- ARM templates ---------------------------------------------------------------------------------
def arm(definition_: dict, **parameters) -> dict:
    return {"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
            "contentVersion": "1.0.0.0",
            "parameters": {"name": {"type": "string", "defaultValue": "arm-flow"},
                           "greeting": {"type": "string", "defaultValue": "hello"}, **parameters},
            "variables": {"suffix": "[concat('-', parameters('greeting'))]"},
            "resources": [{"type": "Microsoft.Logic/workflows", "apiVersion": "2019-05-01",
                           "name": "[parameters('name')]", "location": "[resourceGroup().location]",
                           "properties": {"definition": definition_,
                                          "parameters": {"greet": {"value": "[parameters('greeting')]"}}}}]}


def arm_definition(**extra) -> dict:
    d = definition(Compose={"type": "Compose", "inputs": "[concat(parameters('greeting'), variables('suffix'))]",
                            "runAfter": {}},
                   Literal={"type": "Compose", "inputs": "[[kept]", "runAfter": {}}, **extra)
    d["parameters"] = {"greet": {"type": "String", "defaultValue": "unset"}}
    return d


def test_an_arm_template_runs_with_its_defaults_and_with_a_parameters_file(tmp_path, monkeypatch):
    template = write(tmp_path / "azuredeploy.json", arm(arm_definition()))
    run = run_file(template, state=tmp_path / "s.db")
    assert run.flow == "arm-flow" and run.status == "Succeeded" and run.params == {"greet": "hello"}
    assert {s.path: s.outputs for s in run.steps.values()} == {"Compose": "hello-hello", "Literal": "[kept]"}
    given = write(tmp_path / "azuredeploy.parameters.json",
                  {"$schema": "x", "parameters": {"greeting": {"value": "bonjour"}}})
    monkeypatch.setenv("FLOWRUN_ARM_PARAMETERS", str(given))
    run = run_file(template, state=tmp_path / "s.db")
    assert run.params == {"greet": "bonjour"}
    assert {s.path: s.outputs for s in run.steps.values()}["Compose"] == "bonjour-bonjour"


def test_an_arm_expression_flowrun_cannot_resolve_is_a_problem_at_its_string(tmp_path):
    d = arm_definition(Where={"type": "Compose", "inputs": "[resourceGroup().location]", "runAfter": {}})
    found = problems(write(tmp_path / "t.json", arm(d)))
    assert len(found) == 1, found  # the resource's own location is not part of the flow
    assert "resources.0.properties.definition.actions.Where.inputs" in found[0]
    assert "resourceGroup() cannot be resolved offline" in found[0]


def test_an_arm_parameter_without_a_value_is_a_problem(tmp_path):
    template = arm(arm_definition())
    del template["parameters"]["greeting"]["defaultValue"]
    found = problems(write(tmp_path / "t.json", template))
    assert any("parameter 'greeting' has no value" in p for p in found)


# -- a Standard app folder ---------------------------------------------------------------------------
def test_app_folder_parameters_and_settings_are_read(tmp_path, monkeypatch):
    app = tmp_path / "app"
    write(app / "host.json", {"version": "2.0"})
    write(app / "parameters.json", {"apiBase": {"type": "String", "value": "@appsetting('API_BASE')"},
                                    "limit": {"type": "Int", "value": 5}})
    write(app / "local.settings.json", {"IsEncrypted": False, "Values": {"API_BASE": "http://local", "Mode": "dev"}})
    write(app / "connections.json", {"serviceProviderConnections": {}, "managedApiConnections": {}})
    monkeypatch.setenv("Mode", "prod")
    flow = load_file(write(app / "wf" / "workflow.json", {"definition": definition(), "kind": "Stateful"}))
    assert flow.parameters["apiBase"].default == "http://local"
    assert flow.parameters["limit"].default == 5
    assert flow.app_settings["API_BASE"] == "http://local" and flow.app_settings["Mode"] == "prod"


def test_flowrun_serve_and_validate_find_each_workflow_folder_of_an_app(tmp_path):
    from engine.listener.triggers import flow_files

    app = tmp_path / "app"
    write(app / "host.json", {})
    write(app / "connections.json", {})
    write(app / "a" / "workflow.json", {"definition": definition(), "kind": "Stateful"})
    write(app / "b" / "workflow.json", {"definition": definition(), "kind": "Stateless"})
    assert [p.relative_to(app).as_posix() for p in flow_files(app)] == ["a/workflow.json", "b/workflow.json"]


def test_a_service_provider_action_of_a_service_flowrun_has_maps_to_its_node(tmp_path):
    (tmp_path / "connections.yaml").write_text(
        "connections:\n  eventgrid: {kind: eventgrid, settings: {topic_endpoint: 'https://t.example/api/events'},"
        " secrets: {topic_key: EG_TOPIC_KEY}}\n")
    publish = {"type": "ServiceProvider", "runAfter": {}, "inputs": {
        "parameters": {"events": [{"type": "Shop.Paid", "source": "/shop", "data": {"id": 1}}]},
        "serviceProviderConfiguration": {"connectionName": "eventgrid", "operationId": "publishEvents",
                                         "serviceProviderId": "/serviceProviders/eventGridPublisher"}}}
    other = {"type": "ServiceProvider", "runAfter": {}, "inputs": {
        "parameters": {"queueName": "q"},
        "serviceProviderConfiguration": {"connectionName": "sb", "operationId": "sendMessage",
                                         "serviceProviderId": "/serviceProviders/serviceBus"}}}
    from engine import connections

    conns = connections.Connections.load(tmp_path / "connections.yaml", __import__("engine.registry", fromlist=["x"]).default_registry())
    flow = load_file(write(tmp_path / "p.json", definition(Publish=publish)), connections=conns)
    assert flow.actions["Publish"].type == "azure.eventgrid.Publish" and flow.actions["Publish"].connection == "eventgrid"
    found = problems(write(tmp_path / "o.json", definition(Send=other)))
    assert "Logic Apps type 'ServiceProvider' cannot run in flowrun" in found[0]


def test_a_recurrence_in_a_windows_time_zone_loads_and_an_unknown_zone_is_named(tmp_path):
    from engine.validation import check_file
    from engine.registry import default_registry

    d = definition()
    d["triggers"] = {"Every_morning": {"type": "Recurrence", "recurrence": {
        "frequency": "Day", "interval": 1, "timeZone": "W. Europe Standard Time",
        "schedule": {"hours": [9], "minutes": [0]}}, "evaluatedRecurrence": {"frequency": "Day", "interval": 1}}}
    assert check_file(write(tmp_path / "r.json", d), default_registry(), None).errors == []
    d["triggers"]["Every_morning"]["recurrence"]["timeZone"] = "Mars Standard Time"
    (found,) = check_file(write(tmp_path / "r.json", d), default_registry(), None).errors
    assert "unknown time zone 'Mars Standard Time'" in str(found) and ":7:" not in str(found)


def test_an_expression_problem_points_inside_the_json_string(tmp_path):
    path = tmp_path / "e.json"
    path.write_text('{"$schema": "%s",\n "actions": {"A": {"type": "Compose", "inputs": "@body(\'Nope\')"}}}' % SCHEMA)
    (found,) = problems(path)
    assert found.startswith(f"{path}:2:") and "Nope" in found


def test_an_app_setting_named_like_a_secret_is_stored_masked(tmp_path):
    app = tmp_path / "app"
    write(app / "host.json", {})
    write(app / "local.settings.json", {"Values": {"PartnerApiKey": "pk-Live-'q\"uote\\d-123", "Region": "west"}})
    flow = write(app / "w" / "workflow.json", {"kind": "Stateful", "definition": definition(
        Use={"type": "Compose", "runAfter": {}, "inputs": {"key": "@appsetting('PartnerApiKey')",
                                                           "region": "@appsetting('Region')"}})})
    run = run_file(flow, state=tmp_path / "s.db")
    assert run.steps["Use"].outputs == {"key": "***", "region": "west"}
    assert b"pk-Live" not in (tmp_path / "s.db").read_bytes()


def test_the_shells_working_directory_variables_are_not_secrets(tmp_path, monkeypatch):
    """PWD and OLDPWD hold "pwd" in their names: loading an app folder once masked the current
    directory, so every path under it printed as ***. A setting named SqlPwd still is a secret."""
    from engine.connections import PROCESS_REDACTOR

    monkeypatch.setenv("PWD", str(tmp_path / "here"))
    monkeypatch.setenv("OLDPWD", str(tmp_path / "before"))
    app = tmp_path / "app"
    write(app / "host.json", {})
    write(app / "local.settings.json", {"Values": {"SqlPwd": "pw-'q\"uote-77"}})
    flow = write(app / "w" / "workflow.json", {"kind": "Stateful", "definition": definition(
        Use={"type": "Compose", "runAfter": {}, "inputs": "@appsetting('SqlPwd')"})})
    assert run_file(flow, state=tmp_path / "s.db").steps["Use"].outputs == "***"
    assert PROCESS_REDACTOR(f"{tmp_path}/here/flows and {tmp_path}/before") == f"{tmp_path}/here/flows and {tmp_path}/before"


def test_an_unreadable_arm_parameters_file_is_one_problem(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWRUN_ARM_PARAMETERS", str(tmp_path / "missing.parameters.json"))
    found = problems(write(tmp_path / "t.json", arm(arm_definition())))
    assert len(found) == 1 and "cannot read the ARM parameters file" in found[0]


def test_tracked_properties_as_logic_apps_writes_them_load(tmp_path):
    flow = load_file(write(tmp_path / "t.json", definition(A={
        "type": "Compose", "runAfter": {}, "inputs": 1,
        "trackedProperties": {"status": "@action()['outputs']", "id": "@{triggerBody()?['id']}"}})))
    assert flow.actions["A"].raw["trackedProperties"]["status"] == "@action()['outputs']"


def test_a_polling_http_trigger_is_named_as_not_supported(tmp_path):
    d = definition()
    d["triggers"] = {"poll": {"type": "Http", "inputs": {"method": "GET", "uri": "https://x.invalid"},
                              "recurrence": {"frequency": "Minute", "interval": 1}}}
    found = problems(write(tmp_path / "p.json", d))
    assert any("triggers.poll.type: Logic Apps type 'Http' cannot run in flowrun: it is a polling HTTP trigger"
               in p for p in found), found
