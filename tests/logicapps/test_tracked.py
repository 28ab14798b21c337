"""trackedProperties: evaluated once their action has finished, with ``action()`` giving that
action's own result; stored with the step (secrets masked), shown by ``flowrun show``. A
property that fails is recorded as an error without failing the action. ``action()``
anywhere else is a validate problem at its line. Hostile properties stay within the budget."""
from __future__ import annotations

import json
import textwrap

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.cli import main

SCHEMA = "https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#"


def cli(tmp_path, *args):
    return CliRunner().invoke(main, ["--state", str(tmp_path / "s.db"), *args])


def definition(actions: dict) -> dict:
    return {"definition": {"$schema": SCHEMA, "triggers": {}, "actions": actions}, "kind": "Stateful"}


def run_shown(tmp_path, flow_file):
    got = cli(tmp_path, "run", str(flow_file), "--json")
    assert got.exit_code in (0, 1), got.output
    run_id = json.loads(got.stdout)["run_id"]
    shown = json.loads(cli(tmp_path, "show", run_id, "--json").stdout)
    return {s["path"]: s for s in shown["steps"]}, cli(tmp_path, "show", run_id).stdout


def test_tracked_properties_read_the_actions_own_result_and_are_shown(tmp_path, monkeypatch):
    monkeypatch.setenv("PARTNER_API_KEY", 'sk-"quoted\\secret')
    flow = tmp_path / "wf.json"
    flow.write_text(json.dumps(definition({
        "Order": {"type": "Compose", "runAfter": {}, "inputs": {"id": 42, "total": 9.5, "key": "@appsetting('PARTNER_API_KEY')"},
                  "trackedProperties": {"orderId": "@action()['outputs']['id']",
                                        "status": "@action().status",
                                        "label": "order @{action()?['outputs']?['id']} for @{workflow().name}",
                                        "key": "@action().outputs.key",
                                        "missing": "@action().outputs.nope"}},
        "Later": {"type": "Compose", "runAfter": {"Order": ["Succeeded"]}, "inputs": "@outputs('Order')?['total']",
                  "trackedProperties": {"total": "@outputs('Later')", "fromOrder": "@body('Order')['id']"}}})))
    steps, text = run_shown(tmp_path, flow)
    order = steps["Order"]
    assert order["status"] == "Succeeded"  # a failing property does not fail the action
    assert order["trackedProperties"] == {"orderId": 42, "status": "Succeeded", "label": "order 42 for wf",
                                          "key": "***"}
    assert "missing" in order["trackedPropertiesErrors"]
    assert steps["Later"]["trackedProperties"] == {"total": 9.5, "fromOrder": 42}
    assert 'tracked: {"orderId": 42' in text and "tracked missing:" in text
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("s.db*")).decode("utf-8", "replace")
    assert "quoted" not in raw


def test_tracked_properties_in_a_yaml_flow_with_jinja(tmp_path):
    flow = tmp_path / "flow.yaml"
    flow.write_text(textwrap.dedent("""
        name: tracked
        actions:
          a:
            type: Compose
            inputs: {n: 3}
            trackedProperties: {n: "{{ action().outputs.n * 2 }}", s: "{{ action().status }}"}
    """))
    steps, _ = run_shown(tmp_path, flow)
    assert steps["a"]["trackedProperties"] == {"n": 6, "s": "Succeeded"}


@pytest.mark.parametrize("where, actions", [
    ("inputs", {"a": {"type": "Compose", "runAfter": {}, "inputs": "@action()"}}),
    ("inputs", {"a": {"type": "Compose", "runAfter": {}, "inputs": {"x": "@{action()?['status']}"}}}),
    ("expression", {"a": {"type": "If", "runAfter": {}, "expression": "@equals(action().status, 'x')",
                          "actions": {}}}),
])
def test_action_outside_tracked_properties_is_a_validate_problem_at_its_line(tmp_path, where, actions):
    flow = tmp_path / "wf.json"
    flow.write_text(json.dumps(definition(actions), indent=2))
    got = cli(tmp_path, "validate", str(flow))
    assert got.exit_code != 0
    assert "action() is only available in trackedProperties" in got.output
    assert f"wf.json:" in got.output and where in got.output and "Traceback" not in got.output


def test_action_in_a_jinja_input_is_a_validate_problem(tmp_path):
    flow = tmp_path / "flow.yaml"
    flow.write_text("name: bad\nactions:\n  a: {type: Compose, inputs: \"{{ action().status }}\"}\n")
    got = cli(tmp_path, "validate", str(flow))
    assert got.exit_code != 0 and "flow.yaml:3" in got.output and "only available in trackedProperties" in got.output


def test_tracked_properties_may_name_their_own_action_but_not_one_that_runs_later(tmp_path):
    flow = tmp_path / "wf.json"
    flow.write_text(json.dumps(definition({
        "a": {"type": "Compose", "runAfter": {}, "inputs": 1, "trackedProperties": {"b": "@outputs('b')"}},
        "b": {"type": "Compose", "runAfter": {"a": ["Succeeded"]}, "inputs": 2}}), indent=2))
    got = cli(tmp_path, "validate", str(flow))
    assert got.exit_code != 0 and "'b' is not guaranteed to have finished" in got.output


def test_hostile_tracked_properties_are_bounded_and_recorded_as_errors(tmp_path):
    """One budget for all of an action's properties; more than 16,000 characters are not kept."""
    big = "@{concat(" + ", ".join(["string(range(0, 100000))"] * 30) + ")}"
    flow = tmp_path / "wf.json"
    flow.write_text(json.dumps(definition({
        "a": {"type": "Compose", "runAfter": {}, "inputs": "x",
              "trackedProperties": {"fine": "@action().outputs", "huge": big,
                                    "deep": "@" + "createArray(" * 60 + "int('x')" + ")" * 60}},
        "b": {"type": "Compose", "runAfter": {}, "inputs": "y",
              "trackedProperties": {f"p{i}": "@{string(range(0, 2000))}" for i in range(20)}}})))
    steps, _ = run_shown(tmp_path, flow)
    assert steps["a"]["status"] == "Succeeded" and steps["b"]["status"] == "Succeeded"
    a = steps["a"]
    assert a["trackedProperties"] == {"fine": "x"} and set(a["trackedPropertiesErrors"]) == {"huge", "deep"}
    assert set(steps["b"]["trackedPropertiesErrors"]) == {"*"} and steps["b"]["trackedProperties"] == {}
    assert "at most 16000 are kept" in steps["b"]["trackedPropertiesErrors"]["*"]


@settings(max_examples=30, deadline=None)
@given(props=st.dictionaries(st.text(min_size=1, max_size=8),
                             st.one_of(st.text(max_size=30).map(lambda t: "@" + t),
                                       st.text(max_size=30).map(lambda t: "@{" + t + "}"),
                                       st.sampled_from(["@action()", "@action()['outputs']", "@action().nope",
                                                        "{{ action() }}", "{{ action().x.y }}", "@@x", "plain"])),
                             max_size=5))
def test_any_tracked_properties_either_fail_validate_cleanly_or_run(tmp_path_factory, props):
    tmp = tmp_path_factory.mktemp("fuzz")
    flow = tmp / "wf.json"
    flow.write_text(json.dumps(definition({"a": {"type": "Compose", "runAfter": {}, "inputs": 1,
                                                 "trackedProperties": props}})))
    got = cli(tmp, "run", str(flow), "--json")
    assert "Traceback" not in got.output and got.exception is None or isinstance(got.exception, SystemExit)
    if got.exit_code == 0:
        assert json.loads(got.stdout)["status"] == "Succeeded"
