"""A trigger's conditions, splitOn and SingleInstance, as Logic Apps runs them (engine.firing):
a false condition starts no run (202 Skipped); splitOn starts one run per item, each with its
own id and the item as triggerBody(), answered at once with the run ids; SingleInstance runs
one at a time. Hostile payloads never crash the server, never start half a split."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from urllib.parse import urlsplit

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.cli import main
from tests.listener.inprocess import serving, wait_for
from tests.support.recorder import Recorder

SCHEMA = "https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#"


def app(tmp_path: Path, workflows: dict[str, dict]) -> Path:
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "host.json").write_text("{}")
    (folder / "connections.yaml").write_text("connections: {}\n")
    for name, definition in workflows.items():
        (folder / name).mkdir()
        (folder / name / "workflow.json").write_text(json.dumps(
            {"kind": "Stateful", "definition": {"$schema": SCHEMA, **definition}}, indent=2))
    return folder


def url(served, flow: str, trigger: str = "manual") -> str:
    parts = urlsplit(served.listener.table.request(flow, trigger).callback_url(""))
    return f"{parts.path}?{parts.query}"


def request_trigger(**extra) -> dict:
    return {"manual": {"type": "Request", "kind": "Http", "inputs": {"method": "POST"}, **extra}}


ECHO = {"Echo": {"type": "Compose", "runAfter": {}, "inputs": "@triggerBody()"}}


def steps(served, run_id: str) -> dict:
    with served.db() as con:
        return {r["path"]: json.loads(r["outputs"]) if r["outputs"] else None
                for r in con.execute("SELECT path, outputs FROM steps WHERE run_id = ?", (run_id,))}


def test_a_false_condition_starts_no_run_and_a_true_one_does(tmp_path):
    folder = app(tmp_path, {"gated": {"triggers": request_trigger(conditions=[
        {"expression": "@contains(createArray('new', 'open'), triggerBody()?['status'])"},
        {"expression": "@equals(triggers().outputs.body?['priority'], 'P1')"}]), "actions": ECHO}})
    with serving(folder, state=tmp_path / "s.db") as served:
        no = served.client.post(url(served, "gated"), json={"status": "closed", "priority": "P1"})
        half = served.client.post(url(served, "gated"), json={"status": "new", "priority": "P2"})
        missing = served.client.post(url(served, "gated"), json={})
        assert no.status_code == half.status_code == missing.status_code == 202
        assert no.json()["status"] == "Skipped" and "runId" not in no.json()
        assert served.runs("gated") == []
        yes = served.client.post(url(served, "gated"), json={"status": "open", "priority": "P1"})
        assert yes.status_code == 202 and yes.json()["runId"]
        wait_for(lambda: [r["status"] for r in served.runs("gated")] == ["Succeeded"])


def test_split_on_starts_one_run_per_item_each_with_its_own_id(tmp_path):
    folder = app(tmp_path, {"rows": {"triggers": request_trigger(splitOn="@triggerBody()?['Rows']"),
                                     "actions": {**ECHO, "Response": {"type": "Response", "kind": "Http",
                                                                      "runAfter": {"Echo": ["Succeeded"]},
                                                                      "inputs": {"statusCode": 200}}}}})
    with serving(folder, state=tmp_path / "s.db") as served:
        got = served.client.post(url(served, "rows"), json={"Rows": [{"id": 1}, {"id": 2}, "three"]})
        assert got.status_code == 202  # a split run's Response cannot answer the caller
        ids = got.json()["runIds"]
        assert len(set(ids)) == 3
        wait_for(lambda: all(r["status"] == "Succeeded" for r in served.runs("rows")) and len(served.runs("rows")) == 3)
        assert [steps(served, i)["Echo"] for i in ids] == [{"id": 1}, {"id": 2}, "three"]
        empty = served.client.post(url(served, "rows"), json={"Rows": []})
        assert empty.status_code == 202 and empty.json()["status"] == "Skipped"
        wrong = served.client.post(url(served, "rows"), json={"Rows": {"id": 1}})
        assert wrong.status_code == 400 and "must give an array, not an object" in wrong.json()["error"]
        assert len(served.runs("rows")) == 3


def test_split_on_with_conditions_checks_each_item(tmp_path):
    folder = app(tmp_path, {"big": {"triggers": request_trigger(
        splitOn="@triggerBody()", conditions=[{"expression": "@greater(triggerBody(), 10)"}]), "actions": ECHO}})
    with serving(folder, state=tmp_path / "s.db") as served:
        got = served.client.post(url(served, "big"), json=[5, 50, 7, 70])
        ids = got.json()["runIds"]
        wait_for(lambda: len(served.runs("big")) == 2 and all(r["status"] == "Succeeded" for r in served.runs("big")))
        assert sorted(steps(served, i)["Echo"] for i in ids) == [50, 70]


def test_single_instance_runs_one_at_a_time(tmp_path):
    release = threading.Event()
    calls: list[str] = []

    def slow(req):
        calls.append(req.body.decode())
        release.wait(20)
        return 200, {"Content-Type": "application/json"}, b"{}"

    with Recorder() as upstream:
        upstream.route("POST", r"/work", handler=slow)
        folder = app(tmp_path, {"one": {
            "triggers": request_trigger(operationOptions="SingleInstance"),
            "actions": {"Call": {"type": "Http", "runAfter": {},
                                 "inputs": {"method": "POST", "uri": f"{upstream.url}/work", "body": "@triggerBody()"}}}}})
        with serving(folder, state=tmp_path / "s.db") as served:
            first = served.client.post(url(served, "one"), json={"n": 1}).json()["runId"]
            wait_for(lambda: len(calls) == 1, "the first run's call")
            second = served.client.post(url(served, "one"), json={"n": 2}).json()["runId"]
            statuses = {r["id"]: r["status"] for r in served.runs("one")}
            assert statuses[second] == "Queued" and len(calls) == 1  # waits for the first
            release.set()
            wait_for(lambda: all(r["status"] == "Succeeded" for r in served.runs("one")) and len(served.runs("one")) == 2)
            assert [json.loads(c)["n"] for c in calls] == [1, 2]
            assert first != second


def test_conditions_and_split_on_are_checked_at_validate(tmp_path):
    folder = app(tmp_path, {"bad": {"triggers": request_trigger(
        conditions=[{"expression": "@equals(body('Echo'), 1)"}, {"expresion": "@true"}, "x"],
        splitOn="triggerBody()", operationOptions="Sometimes"), "actions": ECHO}})
    got = CliRunner().invoke(main, ["--state", str(tmp_path / "s.db"), "validate", str(folder / "bad" / "workflow.json")])
    out = got.output
    assert got.exit_code != 0 and "Traceback" not in out
    assert "body() is not available here" in out
    assert "triggers.manual.conditions.1" in out and "triggers.manual.conditions.2" in out
    assert "splitOn must be an expression" in out and "unknown trigger operationOptions 'Sometimes'" in out
    assert "workflow.json:" in out


PAYLOADS = st.recursive(st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=False, allow_infinity=False)
                        | st.text(max_size=20),
                        lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=6),
                        max_leaves=30)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.dictionaries(st.sampled_from(["Rows", "status", "x", "@{guid()}"]), PAYLOADS, max_size=4))
def test_hostile_payloads_never_crash_a_split_or_a_condition(tmp_path_factory, body):
    tmp = tmp_path_factory.mktemp("fuzz")
    folder = app(tmp, {"fz": {"triggers": request_trigger(
        splitOn="@triggerBody()?['Rows']", conditions=[{"expression": "@not(equals(triggerBody(), 'stop'))"}]),
        "actions": ECHO}})
    with serving(folder, state=tmp / "s.db") as served:
        got = served.client.post(url(served, "fz"), content=json.dumps(body), headers={"content-type": "application/json"})
        assert got.status_code in (202, 400), got.text
        rows = body.get("Rows")
        if got.status_code == 400:
            assert rows is not None and not isinstance(rows, list) and served.runs("fz") == []
        elif isinstance(rows, list):
            expected = [r for r in rows if r != "stop"]
            if expected:
                assert len(got.json()["runIds"]) == len(expected)
                wait_for(lambda: len(served.runs("fz")) == len(expected))
                for run_id in got.json()["runIds"]:
                    assert "@{guid()}" not in json.dumps(steps(served, run_id)) or "@{guid()}" in json.dumps(rows)
        else:
            assert got.json()["status"] == "Skipped" and served.runs("fz") == []


def test_conditions_on_a_trigger_that_is_not_http_are_a_validate_problem(tmp_path):
    flow = tmp_path / "rec.yaml"
    flow.write_text("name: rec\ntriggers:\n  every:\n    type: Recurrence\n    recurrence: {frequency: Day, interval: 1}\n"
                    "    conditions: [{expression: \"@true\"}]\nactions:\n  a: {type: Compose, inputs: 1}\n")
    got = CliRunner().invoke(main, ["--state", str(tmp_path / "s.db"), "validate", str(flow)])
    assert got.exit_code != 0 and "rec.yaml:6" in got.output
    assert "evaluated on HTTP (Request) triggers only" in got.output


def test_a_split_bigger_than_max_in_flight_commits_every_run_and_starts_them_as_room_frees(tmp_path):
    folder = app(tmp_path, {"many": {"triggers": request_trigger(splitOn="@triggerBody()"), "actions": ECHO}})
    with serving(folder, state=tmp_path / "s.db", max_in_flight=2) as served:
        got = served.client.post(url(served, "many"), json=list(range(9)))
        assert got.status_code == 202 and len(got.json()["runIds"]) == 9
        assert len(served.runs("many")) == 9  # all committed before the answer
        wait_for(lambda: all(r["status"] == "Succeeded" for r in served.runs("many")))
        assert sorted(steps(served, i)["Echo"] for i in got.json()["runIds"]) == list(range(9))


def test_replaying_one_run_of_a_split_replays_its_item(tmp_path):
    from engine.listener.replay import start_replay

    folder = app(tmp_path, {"rows": {"triggers": request_trigger(splitOn="@triggerBody()?['Rows']"), "actions": ECHO}})
    with serving(folder, state=tmp_path / "s.db") as served:
        ids = served.client.post(url(served, "rows"), json={"Rows": ["a", "b"]}).json()["runIds"]
        wait_for(lambda: all(r["status"] == "Succeeded" for r in served.runs("rows")) and len(served.runs("rows")) == 2)
        _, new_id = start_replay(served.listener.engine, ids[1])
        assert served.listener.engine.get_run(new_id).payload["body"] == "b"


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=12)
                       | st.sampled_from(["@", "@@", "@{", "@triggerBody()", "@{triggerBody()}", "@body('x')",
                                          "@equals(1", "{{ triggerBody() }}", "@action()"]),
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                           st.sampled_from(["expression", "x", "expresion"]), inner, max_size=3), max_leaves=12)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(conditions=JSONISH, split=JSONISH, option=st.one_of(st.none(), st.text(max_size=12), st.integers()))
def test_any_conditions_or_split_on_is_valid_or_named_problems_never_a_traceback(tmp_path_factory, conditions,
                                                                                  split, option):
    tmp = tmp_path_factory.mktemp("defs")
    trigger = {"type": "Request", "kind": "Http", "conditions": conditions, "splitOn": split}
    if option is not None:
        trigger["operationOptions"] = option
    flow = tmp / "wf.json"
    flow.write_text(json.dumps({"$schema": SCHEMA, "triggers": {"manual": trigger}, "actions": ECHO}))
    got = CliRunner().invoke(main, ["--state", str(tmp / "s.db"), "validate", str(flow)])
    assert got.exit_code in (0, 1), got.output
    assert "Traceback" not in got.output and (got.exception is None or isinstance(got.exception, SystemExit))
