"""flowrun convert: a Logic Apps definition as flowrun YAML, names and @ expressions kept,
--to-jinja only where the Jinja is exactly equivalent, comments where there is no equivalent."""
from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from engine.cli import main
from engine.convert import convert, jinja
from engine.errors import FlowError
from engine.loader import load_text

SCHEMA = "https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#"
DEFINITION = {
    "$schema": SCHEMA, "contentVersion": "1.0.0.0",
    "triggers": {"manual": {"type": "Request", "kind": "Http", "splitOn": "@triggerBody()?['rows']"}},
    "actions": {
        "Get": {"type": "Http", "runAfter": {}, "operationOptions": "DisableAsyncPattern",
                "inputs": {"method": "GET", "uri": "https://example.invalid/@{triggerBody()['id']}"},
                "trackedProperties": {"id": "@triggerBody()?['id']"}},
        "Send": {"type": "ApiConnection", "runAfter": {"Get": ["Succeeded"]},
                 "inputs": {"host": {"connection": {"name": "@parameters('$connections')['office365']['connectionId']"}}}},
        "Note": {"type": "Compose", "runAfter": {"Get": ["Succeeded"]}, "inputs": {"a": "@body('Get')['x'][0]", "b": "@length('x')",
                                                               "c": "@@literal", "d": "yes", "e": "1.5", "f": True}},
    },
}


@pytest.mark.parametrize("wdl, expected", [
    ("@triggerBody()", "{{ triggerBody() }}"),
    ("@body('Get')['id']", '{{ body("Get")["id"] }}'),
    ("@body('Get').id[0]", '{{ body("Get").id[0] }}'),
    ("@variables('it''s')", '{{ variables("it\'s") }}'),
    ("Order @{triggerBody()['id']} of @{parameters('shop')}", 'Order {{ triggerBody()["id"] }} of {{ parameters("shop") }}'),
    ("@body('Get')?['id']", None),  # null-safe: no Jinja equivalent
    ("@concat('a', 'b')", None),  # WDL typing rules: kept
    ("@@literal", None),
    ("plain text", None),
    ("@{triggerBody()} and @{guid()}", None),
])
def test_to_jinja_rewrites_only_exact_equivalents(wdl, expected):
    assert jinja(wdl) == expected


def test_the_yaml_keeps_names_and_expressions_and_marks_what_has_no_equivalent():
    text = convert(json.dumps(DEFINITION), "orders.json")
    data = yaml.safe_load(text)
    assert data["name"] == "orders" and list(data["actions"]) == ["Get", "Send", "Note"]
    assert data["actions"]["Note"]["inputs"] == DEFINITION["actions"]["Note"]["inputs"]
    assert data["triggers"]["manual"]["auth"] == {"type": "sas"}
    assert "# flowrun: no flowrun equivalent: Logic Apps type 'ApiConnection'" in text
    assert "# flowrun: one run per item; the caller gets 202 with the run ids" in text
    assert "# flowrun: no effect: flowrun's Http never follows the async 202 pattern" in text
    assert "# flowrun: evaluated after the action and stored with its step" in text


def test_the_converted_yaml_of_a_runnable_definition_validates():
    d = dict(DEFINITION, actions={k: v for k, v in DEFINITION["actions"].items() if k != "Send"})
    d["triggers"] = {"manual": {"type": "Request", "kind": "Http"}}
    flow = load_text(convert(json.dumps(d), "orders.json", to_jinja=True), "orders.yaml")
    assert flow.actions["Get"].inputs["uri"] == 'https://example.invalid/{{ triggerBody()["id"] }}'


def test_convert_writes_the_file_whole_or_says_why_not(tmp_path):
    source = tmp_path / "w.json"
    source.write_text(json.dumps({"definition": DEFINITION, "kind": "Stateful"}))
    out = tmp_path / "w.yaml"
    result = CliRunner().invoke(main, ["convert", str(source), "-o", str(out)])
    assert result.exit_code == 0 and yaml.safe_load(out.read_text())["name"] == "w"
    source.write_text("actions: {}\n")
    result = CliRunner().invoke(main, ["convert", str(source)])
    assert result.exit_code != 0 and "not a Logic Apps definition" in result.output
    assert "Traceback" not in result.output


def test_a_broken_definition_is_reported_not_converted():
    with pytest.raises(FlowError):
        convert('{"definition": {"actions": ', "x.json")
