"""dbt.*: real dbt-core with dbt-duckdb on the project in tests/nodes/dbt_project, run through
flows. dbt takes seconds to start, so one session flow runs the shared invocations (build,
a selected run, a run whose error quotes a secret) and most tests read its steps."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import engine
from nodes.dbt.artifacts import SelectionError, lineage, summarize
from nodes.dbt.command import dbt_args, option_problems
from nodes.dbt.connection import DbtProject

ROOT = Path(__file__).resolve().parents[2]
PROJECT = Path(__file__).resolve().parent / "dbt_project"
SECRET = 'p@ss"w\\o/rd+%é-dbt'  # quotes, a backslash, / + % and non-ASCII
FAILING_TEST = "test.flowrun_shop.accepted_range_below_customer_totals_total__300.4aab731e8a"


def write_connections(folder: Path, project: Path, grace: float = 10) -> Path:
    path = folder / "connections.yaml"
    path.write_text(yaml.safe_dump({"connections": {"dbt": {
        "kind": "dbt",
        "settings": {"project_dir": str(project), "profiles_dir": str(project),
                     "artifacts_dir": str(folder / "artifacts"), "cancel_grace": grace,
                     "env": {"SHOP_DUCKDB_PATH": str(folder / "shop.duckdb")}},
        "secrets": {"password": "DBT10_TEST_PASSWORD"}}}}))
    return path


def write_flow(folder: Path, actions: dict) -> Path:
    path = folder / "flow.yaml"
    path.write_text(yaml.safe_dump({"triggers": {"manual": {"type": "Manual"}},
                                    "actions": actions}, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def shop(tmp_path_factory):
    """A copy of the project and its connections (the secret set in the environment)."""
    folder = tmp_path_factory.mktemp("dbt")
    project = folder / "project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("target", "logs"))
    os.environ["DBT10_TEST_PASSWORD"] = SECRET
    os.environ["SHOP_LEAK"] = SECRET  # the leaky model's error quotes it
    return folder, project, write_connections(folder, project)


@pytest.fixture(scope="session")
def session_run(shop):
    folder, project, connections = shop
    flow = write_flow(folder, {
        "build": {"type": "dbt.Command", "connection": "dbt",
                  "inputs": {"command": "build", "exclude": "tag:slow tag:leaky"}},
        "lineage": {"type": "dbt.Lineage", "runAfter": {"build": ["Failed"]},
                    "inputs": {"manifest": "{{ actions('build').error.details.artifacts.manifest }}",
                               "select": "+customer_totals+"}},
        "stg": {"type": "dbt.Command", "connection": "dbt", "runAfter": {"build": ["Failed"]},
                "inputs": {"command": "run", "select": ["stg_orders"], "vars": {"min_amount": 100},
                           "threads": 1}},
        "leaky": {"type": "dbt.Command", "connection": "dbt", "runAfter": {"stg": ["Succeeded"]},
                  "inputs": {"command": "run", "select": "tag:leaky"}},
    })
    run = engine.run_file(flow, state=folder / "state.db", connections=connections)
    return run, folder / "state.db"


def test_a_failing_test_fails_build_with_the_list_of_what_failed(session_run):
    run, _ = session_run
    err = run.steps["build"].error
    assert err["code"] == "DbtFailed"
    assert "test accepted_range_below_customer_totals_total__300 (fail)" in err["message"]
    details = err["details"]
    assert [f["unique_id"] for f in details["failed"]] == [FAILING_TEST]
    assert details["failed"][0]["failures"] == 1
    assert details["failed"][0]["message"] == "Got 1 result, configured to fail if != 0"


def test_warn_does_not_fail_and_counts_are_by_status(session_run):
    details = session_run[0].steps["build"].error["details"]
    assert details["counts"] == {"fail": 1, "no-op": 1, "pass": 3, "success": 5, "warn": 1}
    assert [w["name"] for w in details["warned"]] == ["accepted_range_below_customer_totals_total__100"]


def test_outputs_hold_each_node_s_result_and_the_artifacts(session_run):
    out = session_run[0].steps["build"].error["details"]
    by_id = {r["unique_id"]: r for r in out["results"]}
    seed = by_id["seed.flowrun_shop.raw_orders"]
    assert seed["resource_type"] == "seed" and seed["status"] == "success"
    assert seed["rows_affected"] == 4 and set(seed["timing"]) == {"compile", "execute"}
    assert len(out["invocation_id"]) == 36
    arts = out["artifacts"]
    assert json.loads(Path(arts["run_results"]).read_text())["metadata"]["invocation_id"] == out["invocation_id"]
    assert Path(arts["manifest"]).is_file() and Path(arts["log"]).is_file()


def test_a_selected_run_with_vars_succeeds(session_run):
    step = session_run[0].steps["stg"]
    assert step.status == "Succeeded", step.error
    assert step.outputs["success"] is True and step.outputs["counts"] == {"success": 2}
    assert [(r["resource_type"], r["name"]) for r in step.outputs["results"]] == [
        ("operation", "flowrun_shop-on-run-start-0"), ("model", "stg_orders")]
    assert step.outputs["failed"] == []


def test_each_action_writes_its_own_artifacts_folder(session_run):
    steps = session_run[0].steps
    build = steps["build"].error["details"]["artifacts"]["target_path"]
    assert build != steps["stg"].outputs["artifacts"]["target_path"]


def test_lineage_returns_parents_children_sources_and_exposures(session_run):
    out = session_run[0].steps["lineage"].outputs
    totals = out["nodes"]["model.flowrun_shop.customer_totals"]
    assert totals["parents"] == ["model.flowrun_shop.stg_orders"]
    assert "exposure.flowrun_shop.revenue_dashboard" in totals["children"]
    assert "seed.flowrun_shop.raw_orders" in out["nodes"]
    assert list(out["exposures"]) == ["exposure.flowrun_shop.revenue_dashboard"]
    assert "model.flowrun_shop.stg_payments" not in out["nodes"]


def test_a_secret_quoted_by_a_database_error_is_masked_everywhere(session_run):
    run, state = session_run
    err = run.steps["leaky"].error
    assert err["code"] == "DbtFailed" and "***" in json.dumps(err)
    data = state.read_bytes()
    for form in (SECRET, json.dumps(SECRET)[1:-1], json.dumps(SECRET, ensure_ascii=False)[1:-1]):
        assert form not in json.dumps(err, ensure_ascii=False)
        assert form.encode() not in data


def test_a_timeout_interrupts_dbt_and_leaves_no_process(shop, tmp_path):
    folder, project, _ = shop
    connections = write_connections(tmp_path, project, grace=2)
    flow = write_flow(tmp_path, {"slow": {"type": "dbt.Command", "connection": "dbt", "timeout": "PT6S",
                                          "inputs": {"command": "run", "select": "slow_model"}}})
    run = engine.run_file(flow, state=tmp_path / "state.db", connections=connections)
    assert run.steps["slow"].status == "TimedOut"
    assert dbt_children(parent=os.getpid()) == []  # ours only: other xdist workers run dbt too


def dbt_children(parent: int | None = None) -> list[int]:
    """Pids of running dbt child processes (nodes/dbt/child.py), of ``parent`` when given."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
                state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            except OSError:
                continue
            if parent is not None and int(ppid) != parent:
                continue
            if b"nodes/dbt/child.py" in cmd and state != "Z":
                pids.append(int(entry.name))
    return pids


def wait_for(condition, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_kill_9_of_flowrun_leaves_no_dbt_process_behind(shop, tmp_path):
    folder, project, _ = shop
    connections = write_connections(tmp_path, project, grace=1)
    flow = write_flow(tmp_path, {"slow": {"type": "dbt.Command", "connection": "dbt",
                                          "inputs": {"command": "run", "select": "slow_model"}}})
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "--state", str(tmp_path / "state.db"),
                             "--connections", str(connections), "run", str(flow)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        child = wait_for(lambda: set(dbt_children(parent=proc.pid)))  # its own child, not another worker's
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_for(lambda: not (set(dbt_children()) & child), timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


# -- no dbt needed ---------------------------------------------------------------------------

PROJECT_STUB = DbtProject(project_dir=Path("/p"), profiles_dir=Path("/p/prof"), profile=None,
                          target="dev", artifacts_dir=Path("/a"), cancel_grace=1, env={}, secrets=())


@pytest.mark.parametrize("inputs, expected", [
    ({"command": "build"}, ["build"]),
    ({"command": "source freshness", "select": "source:shop"}, ["source", "freshness", "--select", "source:shop"]),
    ({"command": "docs generate"}, ["docs", "generate"]),
    ({"command": "run", "select": ["a", "b+"], "exclude": "tag:x"}, ["run", "--select", "a", "b+", "--exclude", "tag:x"]),
    ({"command": "build", "full_refresh": True, "fail_fast": True, "threads": 4},
     ["build", "--threads", "4", "--full-refresh", "--fail-fast"]),
    ({"command": "run", "vars": {"d": "2024-01-01"}}, ["run", "--vars", '{"d": "2024-01-01"}']),
    ({"command": "build", "state": "prod", "defer": True, "selector": "nightly"},
     ["build", "--selector", "nightly", "--state", "/p/prod", "--defer"]),
    ({"command": "seed", "target": "prod"}, ["seed"]),
])
def test_dbt_arguments_for_each_option(inputs, expected):
    args = dbt_args(inputs, PROJECT_STUB, Path("/a/t"))
    fixed = ["--project-dir", "/p", "--target-path", "/a/t", "--log-path", "/a/t", "--profiles-dir", "/p/prof",
             "--target", inputs.get("target", "dev")]
    words = len(inputs["command"].split())
    assert args[:words] + args[words + len(fixed):] == expected
    assert args[words:words + len(fixed)] == fixed


@pytest.mark.parametrize("inputs, path", [
    ({"command": "test", "full_refresh": True}, "inputs.full_refresh"),
    ({"command": "source freshness", "fail_fast": True}, "inputs.fail_fast"),
    ({"command": "docs generate", "defer": True, "state": "x"}, "inputs.defer"),
    ({"command": "build", "defer": True}, "inputs.defer"),
])
def test_an_option_the_command_does_not_take_is_a_validation_problem(inputs, path):
    assert [p for p, _ in option_problems(inputs)] == [path]


def test_a_flow_with_an_unknown_command_fails_validation_at_its_line(tmp_path):
    from engine.errors import FlowError

    connections = write_connections(tmp_path, PROJECT)
    flow = write_flow(tmp_path, {"x": {"type": "dbt.Command", "connection": "dbt",
                                       "inputs": {"command": "rm -rf"}}})
    with pytest.raises(FlowError) as info:
        engine.run_file(flow, state=tmp_path / "s.db", connections=connections)
    assert "flow.yaml:" in str(info.value) and "inputs.command" in str(info.value)


def test_a_project_folder_without_dbt_project_yml_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("DBT10_TEST_PASSWORD", SECRET)
    connections = write_connections(tmp_path, tmp_path / "nowhere")
    flow = write_flow(tmp_path, {"x": {"type": "dbt.Command", "connection": "dbt",
                                       "inputs": {"command": "build"}}})
    run = engine.run_file(flow, state=tmp_path / "s.db", connections=connections)
    assert run.steps["x"].error["code"] == "DbtProjectNotFound"


MANIFEST = {"metadata": {"invocation_id": "i"},
            "nodes": {"seed.p.raw": {"name": "raw", "resource_type": "seed", "tags": []},
                      "model.p.stg": {"name": "stg", "resource_type": "model", "tags": ["daily"]},
                      "model.p.mart": {"name": "mart", "resource_type": "model", "tags": []}},
            "sources": {"source.p.shop.pay": {"name": "pay", "source_name": "shop", "resource_type": "source"}},
            "exposures": {"exposure.p.dash": {"name": "dash", "resource_type": "exposure"}},
            "parent_map": {"model.p.stg": ["seed.p.raw", "source.p.shop.pay"], "model.p.mart": ["model.p.stg"],
                           "exposure.p.dash": ["model.p.mart"]},
            "child_map": {"seed.p.raw": ["model.p.stg"], "source.p.shop.pay": ["model.p.stg"],
                          "model.p.stg": ["model.p.mart"], "model.p.mart": ["exposure.p.dash"]}}


@pytest.mark.parametrize("select, expected", [
    (["stg"], {"model.p.stg"}),
    (["+stg"], {"model.p.stg", "seed.p.raw", "source.p.shop.pay"}),
    (["stg+"], {"model.p.stg", "model.p.mart", "exposure.p.dash"}),
    (["stg+1"], {"model.p.stg", "model.p.mart"}),
    (["tag:daily"], {"model.p.stg"}),
    (["source:shop"], {"source.p.shop.pay"}),
    (["resource_type:seed mart"], {"seed.p.raw", "model.p.mart"}),
    (["@mart"], {"model.p.mart", "exposure.p.dash", "model.p.stg", "seed.p.raw", "source.p.shop.pay"}),
    (None, {"seed.p.raw", "model.p.stg", "model.p.mart", "source.p.shop.pay", "exposure.p.dash"}),
])
def test_lineage_selection(select, expected):
    assert set(lineage(MANIFEST, select)["selected"]) == expected


@pytest.mark.parametrize("select", [["nope"], ["weird:x"], ["+"]])
def test_a_selection_that_matches_nothing_is_an_error(select):
    with pytest.raises(SelectionError):
        lineage(MANIFEST, select)


def test_run_results_with_missing_and_odd_fields_are_read_without_crashing():
    out = summarize({"results": [{"unique_id": "model.p.a", "status": "error", "adapter_response": None},
                                 "junk", {"status": "warn"}], "metadata": None})
    assert out["counts"] == {"error": 1, "warn": 1} and len(out["failed"]) == 1


@pytest.mark.parametrize("inputs", [
    {"command": "run", "select": "--profiles-dir /etc"},
    {"command": "run", "select": "orders --profiles-dir /etc"},
    {"command": "run", "select": ["orders", "--full-refresh"]},
    {"command": "run", "exclude": "-x"},
    {"command": "run", "target": "--debug"},
    {"command": "run", "selector": "-s"},
    {"command": "run", "state": "--x"},
])
def test_a_value_that_would_be_read_as_a_dbt_option_fails_validation(tmp_path, inputs):
    from engine.errors import FlowError

    flow = write_flow(tmp_path, {"x": {"type": "dbt.Command", "connection": "dbt", "inputs": inputs}})
    with pytest.raises(FlowError) as info:
        engine.run_file(flow, state=tmp_path / "s.db", connections=write_connections(tmp_path, PROJECT))
    assert "flow.yaml:" in str(info.value)
