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
# payload data that dbt would run if it rendered it (a var holding Jinja), an emoji JSON can't give it
LABEL = "{{ 7*7 }} {% if true %}yes{% endif %} {# c #} 😀 é"
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
                  "inputs": {"command": "build", "exclude": "tag:slow tag:leaky tag:echo"}},
        "lineage": {"type": "dbt.Lineage", "runAfter": {"build": ["Failed"]},
                    "inputs": {"manifest": "{{ actions('build').error.details.artifacts.manifest }}",
                               "select": "+customer_totals+"}},
        "stg": {"type": "dbt.Command", "connection": "dbt", "runAfter": {"build": ["Failed"]},
                "inputs": {"command": "run", "select": ["stg_orders"], "vars": {"min_amount": 100},
                           "threads": 1}},
        "echo": {"type": "dbt.Command", "connection": "dbt", "runAfter": {"stg": ["Succeeded"]},
                 "inputs": {"command": "compile", "select": "echo_vars",
                            "vars": {"label": "{{ triggerBody().label }}"}}},
        "leaky": {"type": "dbt.Command", "connection": "dbt", "runAfter": {"echo": ["Succeeded"]},
                  "inputs": {"command": "run", "select": "tag:leaky"}},
    })
    run = engine.run_file(flow, state=folder / "state.db", connections=connections, input={"label": LABEL})
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


def test_payload_data_in_vars_reaches_dbt_as_written_never_rendered(session_run):
    step = session_run[0].steps["echo"]
    assert step.status == "Succeeded", step.error
    compiled = Path(step.outputs["artifacts"]["target_path"]) / "compiled" / "flowrun_shop" / "models" / "echo_vars.sql"
    assert f"-- label: {LABEL}\n" in compiled.read_text(encoding="utf-8")


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
    ({"command": "run", "vars": {"d": "2024-01-01"}}, ["run", "--vars", "{d: '2024-01-01'}"]),
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


# -- adversarial: the command line --------------------------------------------------------

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from engine.plugin import ActionError  # noqa: E402
from nodes.dbt.command import MAX_VALUE, encode_vars  # noqa: E402
from nodes.dbt.process import CUT, MAX_LINE, Finished, Lines, Masker, _line  # noqa: E402

FIXED = {"project_dir", "target_path", "log_path", "profiles_dir", "target"}


def parsed(args: list[str]) -> dict:
    """``args`` as dbt's own click parser reads them: option name -> value(s)."""
    import click
    from dbt.cli.main import cli

    words = 2 if args[0] in ("source", "docs") else 1
    command = cli
    for word in args[:words]:
        command = command.commands[word]
    ctx = click.Context(command, info_name=args[words - 1], parent=click.Context(cli, info_name="dbt"))
    opts, rest, _ = command.make_parser(ctx).parse_args(list(args[words:]))
    assert rest == [], rest  # nothing left over that dbt would read as a command or argument
    return opts


def expected_opts(inputs: dict) -> dict:
    out = {}
    for name in ("select", "exclude"):
        if inputs.get(name):
            value = inputs[name]
            words = [value] if isinstance(value, str) else list(value)
            out[name] = [tuple(words[0].split(" ")) + tuple(words[1:])]
    if inputs.get("selector"):
        out["selector"] = inputs["selector"]
    if inputs.get("threads"):
        out["threads"] = str(inputs["threads"])
    for flag in ("full_refresh", "fail_fast", "defer"):
        if inputs.get(flag):
            out[flag] = True
    return out


hostile_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["--full-refresh", "-s", "a --debug", "a\n--debug", "a\r--x", "a\t-x", "a\x00b",
                     " --x", "a\u2003--x", "x; rm -rf /", "$(reboot)", "`id`", "a|b", "{{ 7*7 }}",
                     "a" * (MAX_VALUE + 1), "\x00", "\n"]),
    st.text(alphabet="-ab \t\n\r\x00", max_size=12))


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(command=st.sampled_from(["build", "run", "test", "seed", "compile", "source freshness"]),
       select=st.one_of(st.none(), hostile_text, st.lists(hostile_text, min_size=1, max_size=3)),
       exclude=st.one_of(st.none(), hostile_text),
       selector=st.one_of(st.none(), hostile_text), target=st.one_of(st.none(), hostile_text),
       state=st.one_of(st.none(), hostile_text),
       threads=st.one_of(st.none(), st.integers(-3, 300), st.booleans()),
       flags=st.sets(st.sampled_from(["full_refresh", "fail_fast", "defer"])))
def test_no_input_adds_a_dbt_option_or_a_command(command, select, exclude, selector, target, state,
                                                 threads, flags):
    inputs = {"command": command, "select": select, "exclude": exclude, "selector": selector,
              "target": target, "state": state, "threads": threads, **{f: True for f in flags}}
    inputs = {k: v for k, v in inputs.items() if v is not None}
    try:
        args = dbt_args(inputs, PROJECT_STUB, Path("/a/t"))
    except ActionError as exc:
        assert exc.code == "InvalidInputs"
        return
    opts = parsed(args)
    assert set(opts) - FIXED - {"state"} == set(expected_opts(inputs))
    for name, value in expected_opts(inputs).items():
        assert opts[name] == value
    assert opts["target"] == (inputs.get("target") or "dev")
    if inputs.get("state"):
        assert opts["state"].startswith("/")


@pytest.mark.parametrize("option, value", [
    ("select", "-x"), ("select", "a --full-refresh"), ("select", "a\t--x"), ("select", "a\r--x"),
    ("select", "a\n--x"), ("select", " --x"), ("select", ["a", "--full-refresh"]), ("select", ["a b -c"]),
    ("select", ["a\x00"]), ("select", "x" * (MAX_VALUE + 1)), ("exclude", "-x"), ("selector", "--debug"),
    ("target", "-t"), ("target", "\x00"), ("state", "--x"), ("state", "a\x00b"), ("threads", 0),
    ("threads", True), ("threads", "4; rm"), ("vars", "{a: 1}"), ("vars", {"a": "\ud800"}),
    ("vars", {"a": "x" * 1_000_001}), ("command", "run --debug"),
])
def test_a_hostile_value_is_refused_before_dbt_runs(option, value):
    inputs = {"command": "run", option: value}
    with pytest.raises(ActionError) as info:
        dbt_args(inputs, PROJECT_STUB, Path("/a/t"))
    assert info.value.code == "InvalidInputs"
    assert "\x00" not in str(info.value) and len(str(info.value)) < 400


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10)
hostile_vars = st.dictionaries(
    st.text(min_size=1, max_size=8),
    json_values | st.sampled_from(["{{ run_query('drop table x') }}", "{% raw %}", "{#", "yes", "no", "~",
                                   "null", "2024-01-01", "0x1F", "1e3", ".inf", "&a", "*a", "!!python/object",
                                   "😀 é \x85 \ufeff", "'\"\\", "- a", "? b", "{a: 1}"]), max_size=4)


def dbt_reads_var(text: str, name: str):
    """What var(name) returns in dbt for --vars ``text``: dbt's own YAML loader, then dbt's
    own rendering of string vars."""
    from dbt.clients.jinja import get_rendered
    from dbt.config.utils import parse_cli_yaml_string

    value = parse_cli_yaml_string(text, "vars")[name]
    return get_rendered(value, {}) if isinstance(value, str) else value


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(values=hostile_vars)
def test_vars_reach_dbt_s_var_exactly_as_given_and_are_never_rendered(values):
    text = encode_vars(values)
    for name, value in values.items():
        assert dbt_reads_var(text, name) == value


def test_vars_with_an_emoji_nan_and_a_template_reach_dbt_unchanged():
    values = {"e": "😀", "n": float("inf"), "t": "{{ env_var('DBT_ENV_SECRET_PASSWORD') }}", "b": "yes"}
    text = encode_vars(values)
    assert [dbt_reads_var(text, k) for k in values] == list(values.values())


# -- adversarial: dbt's output -------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.binary(max_size=MAX_LINE * 2) | st.sampled_from([b"\n", b"a\nb", b"x" * MAX_LINE]),
                       max_size=8))
def test_lines_are_bounded_whatever_the_child_prints(chunks):
    lines = Lines()
    out = [line for chunk in chunks for line in lines.feed(chunk)] + lines.close()
    assert all(len(line) <= MAX_LINE + len(CUT) for line in out)
    assert len(lines.buffer) == 0
    whole = b"".join(chunks).split(b"\n")
    if all(len(w) <= MAX_LINE for w in whole):
        assert out == [w for w in whole if w] or out == whole[:-1] + ([whole[-1]] if whole[-1] else [])


class ListLog:
    def __init__(self):
        self.lines = []

    def info(self, msg, *args):
        self.lines.append(msg % args)


@pytest.mark.parametrize("offset", [0, 1, 5, len(SECRET) - 1, len(SECRET) + 3])
def test_a_line_cut_inside_a_secret_shows_no_part_of_it(offset):
    lines, mask, done, log = Lines(), Masker((SECRET,)), Finished(None), ListLog()
    raw = b"x" * (MAX_LINE - offset) + SECRET.encode() + b" tail\n"
    for line in lines.feed(raw):
        _line(line, done, mask, log)
    assert log.lines and all(SECRET[:3] not in line for line in log.lines), log.lines[0][-40:]


# -- adversarial: malformed artifacts ------------------------------------------------------

from nodes.dbt.artifacts import read_json  # noqa: E402
from nodes.dbt.command import Command  # noqa: E402


@pytest.mark.parametrize("content", [
    b'{"results": [{"unique_id": "model.p.a", "sta', b"", b"\xff\xfe{}", b"[" * 200_000 + b"]" * 200_000,
    b'{"a": ' * 100_000 + b"1" + b"}" * 100_000, b"NaN-ish garbage",
])
def test_an_unreadable_run_results_is_one_clear_error(tmp_path, content):
    (tmp_path / "run_results.json").write_bytes(content)
    with pytest.raises(ActionError) as info:
        Command.outcome("run", tmp_path, Finished(returncode=0, success=True), ())
    assert info.value.code == "DbtArtifactUnreadable" and len(str(info.value)) < 600


@settings(max_examples=300, deadline=None)
@given(data=st.dictionaries(st.sampled_from(["results", "metadata", "elapsed_time", "args"]),
                            json_values, max_size=4),
       results=st.lists(st.dictionaries(st.sampled_from(["unique_id", "status", "timing", "message", "failures",
                                                         "adapter_response", "execution_time"]),
                                        json_values, max_size=7), max_size=3))
def test_run_results_of_any_shape_are_read_without_crashing(data, results):
    for shape in (data, {**data, "results": results}):
        out = summarize(shape)
        json.dumps(out)
        assert all(isinstance(r["status"], str) for r in out["results"])


@settings(max_examples=300, deadline=None)
@given(manifest=st.dictionaries(st.sampled_from(["nodes", "sources", "exposures", "parent_map", "child_map",
                                                 "metadata"]),
                                json_values | st.dictionaries(st.sampled_from(["model.p.a", "seed.p.b"]),
                                                              json_values, max_size=2), max_size=6),
       select=st.one_of(st.none(), st.lists(st.sampled_from(["a", "+a+", "@b", "tag:x", "2+a"]), max_size=2)))
def test_a_manifest_of_any_shape_gives_lineage_or_a_selection_error(manifest, select):
    try:
        json.dumps(lineage(manifest, select))
    except SelectionError:
        pass


def test_a_deeply_nested_manifest_fails_lineage_with_one_clear_error(tmp_path):
    from nodes.dbt.lineage import _read

    path = tmp_path / "manifest.json"
    path.write_bytes(b"[" * 200_000 + b"]" * 200_000)
    with pytest.raises(ActionError) as info:
        _read(path, None)
    assert info.value.code == "ManifestUnreadable" and "nested too deeply" in str(info.value)
    assert read_json  # the same reader as dbt.Command's
