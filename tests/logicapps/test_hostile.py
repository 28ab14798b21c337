"""Hostile Logic Apps JSON: any text, definition, ARM template or app folder file is a Flow or
problem lines pointing into the file, never a traceback (hypothesis, a few seconds each)."""
from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from engine.arm import Arm
from engine.convert import convert
from engine.errors import FlowError
from engine.loader import load_text
from engine.model import Flow

DEFINITIONS = Path(__file__).parent / "definitions"
SEEDS = [p.read_text() for p in sorted(DEFINITIONS.glob("*.json"))]
FUZZ = settings(deadline=None, max_examples=int(__import__("os").environ.get("FLOWRUN_FUZZ_EXAMPLES", "300")), suppress_health_check=list(HealthCheck), print_blob=True)
SCHEMA = "https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#"
ARM_SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"


def outcome(text: str, file: str = "fuzz.json") -> list[str]:
    try:
        flow = load_text(text, file)
    except FlowError as exc:
        assert exc.problems
        for p in exc.problems:
            assert p.file == file and p.line >= 1 and p.column >= 1 and p.message, p
            assert "internal error" not in p.message, p
        return [str(p) for p in exc.problems]
    assert isinstance(flow, Flow)
    return []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
    | st.sampled_from(["@", "@@", "@{", "[", "[[x]", "[parameters('a')]", "[concat(", "[variables('v')]",
                       "[parameters('a').b[0]]", "[resourceGroup().id]", "Request", "Http", "Foreach"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["type", "inputs", "runAfter", "actions", "definition", "kind", "resources", "properties",
                         "parameters", "triggers", "staticResults", "runtimeConfiguration", "name", "$schema",
                         "variables", "value", "defaultValue", "cases", "else", "expression", "foreach"])
        | st.text(max_size=8), inner, max_size=5),
    max_leaves=30)


@FUZZ
@given(json_values)
def test_any_json_shape_is_a_flow_or_problems(value):
    for wrapped in (value, {"$schema": SCHEMA, "actions": value, "triggers": value},
                    {"definition": value, "kind": "Stateful"},
                    {"$schema": ARM_SCHEMA, "parameters": value, "variables": value,
                     "resources": [{"type": "Microsoft.Logic/workflows", "name": value,
                                    "properties": {"definition": value, "parameters": value}}]}):
        try:
            text = json.dumps(wrapped)
        except (TypeError, ValueError):
            continue
        outcome(text)


@FUZZ
@given(st.sampled_from(SEEDS), st.integers(0, 10**6), st.integers(1, 40),
       st.sampled_from(["", "{", "}", "[", "]", '"', "\\", ",", ":", "\x00", "\ufeff", "1e999", "-", "@{", "'",
                        "9" * 2000, "[" * 200, "\\ud800"]))
def test_a_damaged_definition_is_problems_not_a_traceback(seed, at, cut, insert):
    at %= len(seed) + 1
    outcome(seed[:at] + insert + seed[at + cut:])


@FUZZ
@given(st.text(max_size=200))
def test_any_arm_expression_resolves_or_is_one_problem(text):
    found = []
    Arm({"a": {"b": [1]}}, {"v": "[variables('v')]"}, lambda *a: found.append(a)).resolve(
        "[" + text + "]", "x")
    assert len(found) <= 1 and all(isinstance(message, str) for _, message in found)


def test_arm_variables_referring_to_themselves_are_a_problem():
    found = []
    arm = Arm({}, {"v": "[variables('v')]"}, lambda *a: found.append(a))
    assert arm.resolve("[variables('v')]", "x") is None and "unknown variable 'v'" in found[0][1]


def test_deeply_nested_arm_expressions_are_a_problem():
    found = []
    arm = Arm({}, {}, lambda *a: found.append(a))
    arm.resolve("[" + "concat(" * 5000 + "'x'" + ")" * 5000 + "]", "x")
    assert "nested too deeply" in found[0][1]


@FUZZ
@given(json_values)
def test_convert_never_raises_anything_but_flow_error(value):
    try:
        text = json.dumps({"$schema": SCHEMA, "triggers": {}, "actions": value})
    except (TypeError, ValueError):
        return
    try:
        convert(text, "x.json", to_jinja=True)
    except FlowError:
        pass


def test_hostile_app_folder_files_are_problems(tmp_path):
    app = tmp_path / "app"
    (app / "w").mkdir(parents=True)
    (app / "host.json").write_text("{}")
    (app / "parameters.json").write_text('{"p": 5, "q": {"type": "String", "value": "@appsetting(\'nope\')"}')
    (app / "local.settings.json").write_text("[" * 10000)
    text = json.dumps({"definition": {"$schema": SCHEMA, "actions": {}}, "kind": "Stateful"})
    found = outcome(text, str(app / "w" / "workflow.json"))
    assert any("parameters.json" in p for p in found) and any("local.settings.json" in p for p in found)


def test_arm_variables_doubling_each_other_stay_linear_and_bounded():
    """v1 = concat(v0, v0), v2 = concat(v1, v1), ...: each variable is resolved once, and what
    concat() builds is bounded (it hung validation, exponential in time and memory)."""
    import time

    variables = {"v0": "x"}
    for i in range(1, 26):
        variables[f"v{i}"] = f"[concat(variables('v{i - 1}'), variables('v{i - 1}'))]"
    found: list = []
    started = time.perf_counter()
    arm = Arm({}, variables, lambda *a: found.append(a))
    assert len(arm.resolve("[variables('v10')]", "x")) == 1024
    assert arm.resolve("[variables('v25')]", "y") is None  # 32 M characters
    assert "longer than 1,000,000 characters" in found[0][1]
    assert time.perf_counter() - started < 2


def test_an_arm_array_concatenated_with_itself_is_bounded_as_text():
    variables = {"a0": "[parameters('big')]"}
    for i in range(1, 40):
        variables[f"a{i}"] = f"[concat(variables('a{i - 1}'), variables('a{i - 1}'))]"
    found: list = []
    arm = Arm({"big": [["x" * 1000] * 100]}, variables, lambda *a: found.append(a))
    assert arm.resolve("[string(variables('a12'))]", "x") is None
    assert "longer than 1,000,000" in found[0][1]


def test_a_long_chain_of_arm_variables_is_a_problem_not_a_recursion_error():
    variables = {"v0": "x"} | {f"v{i}": f"[variables('v{i - 1}')]" for i in range(1, 5000)}
    found: list = []
    assert Arm({}, variables, lambda *a: found.append(a)).resolve("[variables('v4999')]", "x") is None
    assert "nested too deeply" in found[0][1]
