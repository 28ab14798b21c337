"""The flowrun command: exit codes, one-line errors, JSON output, and a fast, SDK-free start."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.cli import main

ROOT = Path(__file__).parents[2]
GOOD = """
    name: greet
    parameters: {greeting: {type: string, defaultValue: Hello}}
    actions:
      say: {type: Compose, inputs: "{{ parameters('greeting') }}, {{ triggerBody().name }}"}
    outputs:
      text: {value: "{{ outputs('say') }}"}
"""


def cli(tmp_path, *args):
    return CliRunner().invoke(main, ["--state", str(tmp_path / "s.db"), *args], catch_exceptions=False)


def write(tmp_path, text, name="flow.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_run_prints_json_and_exits_zero(tmp_path):
    flow = write(tmp_path, GOOD)
    out = cli(tmp_path, "run", str(flow), "--input", '{"name": "Ada"}', "--param", "greeting=Hi", "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["outputs"] == {"text": "Hi, Ada"}


def test_run_reads_input_from_a_file(tmp_path):
    flow = write(tmp_path, GOOD)
    (tmp_path / "event.json").write_text('{"name": "Grace"}')
    out = cli(tmp_path, "run", str(flow), "--input", f"@{tmp_path / 'event.json'}", "--json")
    assert json.loads(out.stdout)["outputs"] == {"text": "Hello, Grace"}


def test_a_failed_run_exits_one(tmp_path):
    flow = write(tmp_path, "actions: {a: {type: Compose, inputs: '{{ triggerBody().x }}'}}")
    out = cli(tmp_path, "run", str(flow), "--input", "{}")
    assert out.exit_code == 1
    assert "Failed" in out.output


@pytest.mark.parametrize("args, message", [
    (["run", "FLOW", "--input", "{not json"], "--input is not valid JSON"),
    (["run", "FLOW", "--param", "nope"], "--param takes NAME=VALUE"),
    (["run", "FLOW", "--param", "other=1"], "unknown parameter 'other'"),
    (["show", "0000"], "no run '0000'"),
    (["run", "missing.yaml"], "no flow file missing.yaml"),
])
def test_bad_input_gets_one_clear_line_and_a_nonzero_exit(tmp_path, args, message):
    flow = write(tmp_path, GOOD)
    out = CliRunner().invoke(main, ["--state", str(tmp_path / "s.db"), *[str(flow) if a == "FLOW" else a for a in args]])
    assert out.exit_code == 2
    assert message in out.output
    assert "Traceback" not in out.output


def test_validate_lists_problems_with_positions_and_exits_one(tmp_path):
    write(tmp_path, GOOD, "good.yaml")
    write(tmp_path, "actions:\n  a: {type: Compse}\n", "bad.yaml")
    out = cli(tmp_path, "validate", str(tmp_path))
    assert out.exit_code == 1
    assert f"{tmp_path / 'bad.yaml'}:2:13 actions.a.type: unknown action type 'Compse'" in out.output
    assert "1 of 2 flow file(s) valid" in out.output


def test_validate_passes_on_the_bundled_flows():
    # every flow of flows/ and examples/ (a dbt project's folder holds a .flowrunignore)
    out = CliRunner().invoke(main, ["validate", str(ROOT / "flows"), str(ROOT / "examples")])
    assert out.exit_code == 0, out.output
    assert "dbt_project.yml" not in out.output


def test_validate_json_lists_each_file_with_its_problems_and_severity(tmp_path, monkeypatch):
    monkeypatch.delenv("NOT_SET_TOKEN", raising=False)
    write(tmp_path, GOOD, "good.yaml")
    write(tmp_path, "actions:\n  a: {type: Compse}\n", "bad.yaml")
    (tmp_path / "connections.yaml").write_text("connections:\n  api: {kind: http, secrets: {token: NOT_SET_TOKEN}}\n")
    write(tmp_path, "actions:\n  a: {type: Http, connection: api, inputs: {method: GET, uri: 'http://x'}}\n", "warn.yaml")
    out = cli(tmp_path, "validate", str(tmp_path), "--json")
    report = json.loads(out.stdout)
    assert out.exit_code == 1 and (report["valid"], report["total"]) == (2, 3)
    files = {Path(f["file"]).name: f for f in report["files"]}
    assert files["good.yaml"] == {"file": str(tmp_path / "good.yaml"), "valid": True, "problems": []}
    [problem] = files["bad.yaml"]["problems"]
    assert problem["line"] == 2 and problem["column"] == 13 and problem["severity"] == "error"
    assert problem["path"] == "actions.a.type" and "did you mean 'Compose'" in problem["message"]
    assert files["warn.yaml"]["valid"] and files["warn.yaml"]["problems"][0]["severity"] == "warning"
    strict = json.loads(cli(tmp_path, "validate", str(tmp_path), "--json", "--strict").stdout)
    assert strict["valid"] == 1 and {Path(f["file"]).name for f in strict["files"] if not f["valid"]} == {"bad.yaml", "warn.yaml"}


def test_a_folder_holding_a_flowrunignore_file_is_not_scanned_for_flows(tmp_path):
    from engine.listener.triggers import flow_files

    write(tmp_path, GOOD, "good.yaml")
    (tmp_path / "dbt").mkdir()
    (tmp_path / "dbt" / "dbt_project.yml").write_text("name: shop\nversion: '1.0'\n")
    (tmp_path / "dbt" / "models").mkdir()
    (tmp_path / "dbt" / "models" / "schema.yml").write_text("version: 2\n")
    assert len(flow_files(tmp_path)) == 3  # without the marker, dbt's files would be read as (bad) flows
    (tmp_path / "dbt" / ".flowrunignore").write_text("")
    assert [f.name for f in flow_files(tmp_path)] == ["good.yaml"]  # serve and validate share this rule
    out = cli(tmp_path, "validate", str(tmp_path))
    assert out.exit_code == 0 and "1 of 1 flow file(s) valid" in out.output


def test_runs_and_show(tmp_path):
    flow = write(tmp_path, GOOD)
    run = json.loads(cli(tmp_path, "run", str(flow), "--input", '{"name": "Ada"}', "--json").stdout)
    listed = json.loads(cli(tmp_path, "runs", "--flow", "greet", "--json").stdout)
    assert [r["run_id"] for r in listed] == [run["run_id"]]
    assert json.loads(cli(tmp_path, "runs", "--status", "Failed", "--json").stdout) == []
    shown = cli(tmp_path, "show", run["run_id"][:8])
    assert "say" in shown.stdout and "Succeeded" in shown.stdout
    assert json.loads(cli(tmp_path, "show", run["run_id"], "--json").stdout)["steps"][0]["outputs"] == "Hello, Ada"


def test_graph_draws_mermaid_and_dot(tmp_path):
    flow = write(tmp_path, """
        actions:
          a: {type: Compose, inputs: 1}
          b: {type: Compose, inputs: 2, runAfter: {a: [Succeeded, Failed]}}
    """)
    assert 'n_a -->|"Succeeded#124;Failed"| n_b' in cli(tmp_path, "graph", str(flow)).stdout
    assert '"a" -> "b" [label="Succeeded|Failed"];' in cli(tmp_path, "graph", str(flow), "--format", "dot").stdout


def test_nodes_lists_types_and_shows_one():
    listing = CliRunner().invoke(main, ["nodes"]).output
    assert "Compose" in listing and "Foreach" in listing and "Http" in listing
    detail = CliRunner().invoke(main, ["nodes", "http"]).output
    assert "Inputs (JSON Schema)" in detail and "Example:" in detail and "Connection kind: http" in detail
    assert "did you mean 'Compose'" in CliRunner().invoke(main, ["nodes", "Compse"]).output


def run_python(code):
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)


VENDOR_SDKS = ["twilio", "sendgrid", "stripe", "simple_salesforce", "boto3", "confluent_kafka", "snowflake",
               "databricks", "dbt", "httpx", "starlette", "uvicorn"]


def test_importing_the_engine_and_the_registry_imports_no_vendor_sdk():
    out = run_python("import sys, engine, engine.api, engine.cli; from engine.registry import default_registry; "
                     "default_registry(); print(sorted(m for m in " + repr(VENDOR_SDKS) + " if m in sys.modules))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_help_is_fast_and_imports_nothing_heavy():
    out = run_python("import sys; from engine.cli import main\n"
                     "try:\n    main(['--help'])\nexcept SystemExit: pass\n"
                     "print(sorted(m for m in ['rich', 'jinja2', 'jsonschema', "
                     "'networkx', 'anyio', 'yaml'] + " + repr(VENDOR_SDKS) + " if m in sys.modules))")
    assert out.stdout.strip().splitlines()[-1] == "[]"  # how fast it is: bench/engine.py


def test_input_at_dash_reads_standard_input(tmp_path):
    flow = write(tmp_path, GOOD)
    out = CliRunner().invoke(main, ["--state", str(tmp_path / "s.db"), "run", str(flow), "--input", "@-", "--json"],
                             input='{"name": "Stdin"}')
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["outputs"] == {"text": "Hello, Stdin"}


def test_a_plain_line_per_finished_action_when_not_on_a_terminal(tmp_path):
    flow = write(tmp_path, GOOD)
    out = cli(tmp_path, "run", str(flow), "--input", '{"name": "Ada"}')
    assert out.stdout.splitlines()[0] == "Succeeded say"
    assert "\x1b[" not in out.stderr + out.stdout  # no colour codes in a log
    as_json = cli(tmp_path, "run", str(flow), "--input", '{"name": "Ada"}', "--json")
    assert json.loads(as_json.stdout)["status"] == "Succeeded"  # --json: stdout holds the JSON only


def test_version_prints_the_installed_version():
    from importlib.metadata import version

    out = CliRunner().invoke(main, ["--version"])
    assert out.exit_code == 0 and out.stdout == f"flowrun {version('flowrun')}\n"


def complete(tmp_path, words, incomplete):
    from click.shell_completion import ShellComplete

    comp = ShellComplete(main, {}, "flowrun", "_FLOWRUN_COMPLETE")
    return [c.value for c in comp.get_completions(["--state", str(tmp_path / "s.db"), *words], incomplete)]


def test_shell_completion_offers_run_ids_and_node_types(tmp_path):
    flow = write(tmp_path, GOOD)
    run_id = json.loads(cli(tmp_path, "run", str(flow), "--input", "{}", "--json").stdout)["run_id"]
    assert complete(tmp_path, ["show"], run_id[:3]) == [run_id]
    assert complete(tmp_path, ["show"], "zz") == []
    assert "Compose" in complete(tmp_path, ["nodes"], "Comp") and "Foreach" in complete(tmp_path, ["nodes"], "for")
    help_text = CliRunner().invoke(main, ["--help"]).stdout
    assert "_FLOWRUN_COMPLETE=bash_source" in help_text


def test_json_on_nodes_and_runs(tmp_path):
    entries = json.loads(CliRunner().invoke(main, ["nodes", "--json"]).stdout)
    assert {"Compose", "Foreach", "Http"} <= {e["name"] for e in entries if e["section"] == "action"}
    one = json.loads(CliRunner().invoke(main, ["nodes", "http", "--json"]).stdout)
    assert one["name"] == "Http" and "Inputs (JSON Schema)" in one["schemas"]
    bad = CliRunner().invoke(main, ["nodes", "Compse", "--json"])
    assert bad.exit_code == 2 and "did you mean 'Compose'" in bad.output


def test_a_queued_run_is_cancelled_at_once(tmp_path):
    from engine.api import Engine

    flow = write(tmp_path, GOOD)
    engine = Engine(tmp_path / "s.db")
    try:
        run_id = engine.start(engine.load(flow), input={"name": "x"})
    finally:
        engine.close()
    out = cli(tmp_path, "cancel", run_id[:10])
    assert out.exit_code == 0 and out.stdout.strip() == f"run {run_id}: Cancelled"
    shown = json.loads(cli(tmp_path, "show", run_id, "--json").stdout)
    assert shown["status"] == "Cancelled" and shown["error"]["code"] == "Cancelled"
    again = cli(tmp_path, "cancel", run_id)
    assert again.exit_code == 2 and "already finished (Cancelled)" in again.output


def test_a_run_another_process_executes_is_stopped_by_cancel(tmp_path):
    import sqlite3

    from tests.support.waiting import wait_until

    flow = write(tmp_path, """
        actions:
          pause: {type: Wait, inputs: {interval: {count: 120, unit: Second}}}
          after: {type: Compose, inputs: 1, runAfter: {pause: [Succeeded]}}
    """)
    state = tmp_path / "s.db"
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "--state", str(state), "run", str(flow)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def running():
            if not state.exists():
                return None
            db = sqlite3.connect(state)
            try:
                return db.execute("SELECT run_id FROM steps WHERE path = 'pause' AND status = 'Running'").fetchone()
            except sqlite3.Error:
                return None
            finally:
                db.close()
        run_id = wait_until(running, "the Wait never started")[0]
        out = cli(tmp_path, "cancel", run_id, "--wait", "30")
        assert out.exit_code == 0 and out.stdout.strip() == f"run {run_id}: Cancelled", out.output
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 1 and "Traceback" not in stderr
    steps = {s["path"]: s["status"] for s in json.loads(cli(tmp_path, "show", run_id, "--json").stdout)["steps"]}
    assert steps == {"pause": "Cancelled", "after": "Skipped"}


def test_a_replay_is_labelled_a_replay_not_a_rerun(tmp_path):
    from engine.api import Engine

    flow = write(tmp_path, GOOD)
    engine = Engine(tmp_path / "s.db")
    try:
        first = engine.start(engine.load(flow), input={"name": "A"}, request={"via": "trigger", "trigger": "manual"})
    finally:
        engine.close()
    out = cli(tmp_path, "replay", first, "--json")
    assert out.exit_code == 0, out.output
    replay = json.loads(out.stdout)
    assert replay["kind"] == "replay" and replay["replay_of"] == first and replay["rerun_of"] is None
    listed = {r["run_id"]: r for r in json.loads(cli(tmp_path, "runs", "--json").stdout)}
    assert listed[replay["run_id"]]["kind"] == "replay"
    assert "replay of" in cli(tmp_path, "runs").stdout and "rerun of" not in cli(tmp_path, "runs").stdout


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.text(max_size=40), st.just("[" * 5000), st.just('{"a":' * 3000),
                      st.just("1e99999"), st.just("\x00\ud800"), st.just("NaN")),
       extra=st.lists(st.sampled_from(["--depth", "0", "-1", "--failed", "--json", "--iterations", "x" * 300,
                                       "--from", "a[99999999999999999999]", "\x00"]), max_size=3))
def test_hostile_input_and_arguments_never_give_a_traceback(tmp_path, body, extra):
    flow = write(tmp_path, GOOD)
    runner = CliRunner()
    for args in (["run", str(flow), "--input", "@-"], ["show", "abc", *extra], ["rerun", "abc", "--from", "a", *extra],
                 ["cancel", *extra[:1]], ["prune", "--older-than", body[:20] or "x"]):
        out = runner.invoke(main, ["--state", str(tmp_path / "s.db"), *args], input=body.encode("utf-8", "surrogatepass"))
        assert out.exit_code in (0, 1, 2), (args, out.output, out.exception)
        assert "Traceback" not in out.output, (args, out.output)
        assert out.exception is None or isinstance(out.exception, SystemExit), (args, repr(out.exception))
