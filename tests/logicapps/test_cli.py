"""The flowrun command on Logic Apps files: validate, run, graph on a definition or an app folder,
--arm-parameters, one line per problem and no traceback."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from engine.cli import main

DEFINITIONS = Path(__file__).parent / "definitions"


def flowrun(*args: str, state: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--state", str(state), *args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_validate_an_app_folder_and_run_one_of_its_workflows(tmp_path):
    app = tmp_path / "app"
    shutil.copytree(DEFINITIONS / "app", app)
    code, out = flowrun("validate", str(app), state=tmp_path / "s.db")
    assert code == 0 and "2 of 2 flow file(s) valid" in out
    code, out = flowrun("run", str(app / "parent" / "workflow.json"), "--json", state=tmp_path / "s.db")
    assert code == 0 and json.loads(out[out.index("{"):])["status"] == "Succeeded"
    code, out = flowrun("graph", str(app / "parent" / "workflow.json"), state=tmp_path / "s.db")
    assert code == 0 and "Call_child" in out


def test_arm_parameters_on_the_command_line(tmp_path, monkeypatch):
    monkeypatch.delenv("FLOWRUN_ARM_PARAMETERS", raising=False)
    schema = "https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#"
    template = tmp_path / "azuredeploy.json"
    template.write_text(json.dumps({
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "parameters": {"who": {"type": "string"}},
        "resources": [{"type": "Microsoft.Logic/workflows", "name": "greeter", "properties": {"definition": {
            "$schema": schema, "triggers": {"manual": {"type": "Request", "kind": "Http"}},
            "actions": {"Hello": {"type": "Compose", "runAfter": {}, "inputs": "[concat('Hello ', parameters('who'))]"}}}}}]}))
    code, out = flowrun("validate", str(template), state=tmp_path / "s.db")
    assert code == 1 and "parameter 'who' has no value" in out
    values = tmp_path / "azuredeploy.parameters.json"
    values.write_text(json.dumps({"parameters": {"who": {"value": "Ada"}}}))
    code, out = flowrun("--arm-parameters", str(values), "run", str(template), "--json", state=tmp_path / "s.db")
    monkeypatch.delenv("FLOWRUN_ARM_PARAMETERS", raising=False)  # the option sets it for the process
    assert code == 0, out
    run = json.loads(out[out.index("{"):])
    assert run["flow"] == "greeter" and run["steps"][0]["outputs"] == "Hello Ada"
