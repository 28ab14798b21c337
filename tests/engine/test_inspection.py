"""`flowrun show` and `flowrun run` read the run from the store a page at a time: a loop is
summarised (iterations counted by status, failed ones listed with what failed in them),
--failed and --depth narrow the tree, the header carries the trigger payload, parameters,
git commit and ISO 8601 times, a rerun marks the steps it reused and a rerun of 'loop[N]'
runs that iteration only."""
import json
import re
import textwrap

import pytest
from click.testing import CliRunner

from engine.api import Engine
from engine.cli import main
from engine.inspection import level

LOOP = """
    name: loopy
    parameters: {n: {type: int, defaultValue: 40}}
    actions:
      first: {type: Compose, inputs: "{{ triggerBody() }}"}
      each:
        type: Foreach
        foreach: "{{ range(parameters('n')) | list }}"
        runAfter: {first: [Succeeded]}
        actions:
          check: {type: Compose, inputs: "{{ 1 // 0 if item() in [6, 17] else item() }}"}
          after_check: {type: Compose, inputs: "{{ outputs('check') }}", runAfter: {check: [Succeeded]}}
      last: {type: Compose, inputs: done, runAfter: {each: [Succeeded, Failed]}}
"""
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def cli(tmp_path, *args, input=None):
    return CliRunner().invoke(main, ["--state", str(tmp_path / "s.db"), *args], input=input)


@pytest.fixture
def looped(tmp_path):
    flow = tmp_path / "loop.yaml"
    flow.write_text(textwrap.dedent(LOOP))
    out = cli(tmp_path, "run", str(flow), "--input", '{"k": "v"}', "--param", "n=40", "--json")
    assert out.exit_code == 0, out.output  # the loop's failures are handled: `last` runs after Failed
    return json.loads(out.stdout)


def test_a_loop_is_summarised_with_counts_and_its_failed_iterations(tmp_path, looped):
    text = cli(tmp_path, "show", looped["run_id"]).stdout
    lines = text.splitlines()
    assert "40 iterations: 38 Succeeded, 2 Failed" in text
    assert "check: 38 Succeeded, 2 Failed" in text and "after_check: 38 Succeeded, 2 Skipped" in text
    assert [ln.split()[0] for ln in lines if "each[" in ln] == ["each[6]", "each[17]"]
    assert "division by zero" in text
    assert len(lines) < 30  # not one line per iteration


@pytest.mark.parametrize("args, present, absent", [
    (["--failed"], ["each[6]", "each[17]", "division by zero"], ["first ", "last ", "iterations:"]),
    (["--depth", "1"], ["first ", "each ", "last "], ["each[6]", "iterations:"]),
    (["--depth", "2"], ["each[6]", "40 iterations"], ["division by zero"]),
    (["--iterations", "--depth", "2"], ["each[0] ", "each[39] "], ["      check"]),
])
def test_failed_and_depth_narrow_the_tree(tmp_path, looped, args, present, absent):
    text = cli(tmp_path, "show", looped["run_id"], *args).stdout
    for p in present:
        assert p in text, (args, p, text)
    for a in absent:
        assert a not in text, (args, a, text)


def test_show_prints_the_payload_parameters_git_commit_and_times(tmp_path, looped):
    text = cli(tmp_path, "show", looped["run_id"]).stdout
    assert '"k": "v"' in text and '"n": 40' in text and "git " in text
    assert re.search(r"started \d{4}-\d\d-\d\dT[\d:.]+Z  ended \d{4}-\d\d-\d\dT[\d:.]+Z", text)


def test_every_time_in_json_is_iso_8601(tmp_path, looped):
    shown = json.loads(cli(tmp_path, "show", looped["run_id"], "--json").stdout)
    listed = json.loads(cli(tmp_path, "runs", "--json").stdout)
    times = [shown[k] for k in ("created", "started", "ended")] + [listed[0][k] for k in ("created", "started", "ended")]
    times += [s[k] for s in shown["steps"] for k in ("started", "ended") if s[k] is not None]
    assert times and all(ISO.match(t) for t in times), times
    assert shown["payload"]["body"] == {"k": "v"} and shown["params"] == {"n": 40}
    assert shown["summary"]["each[]"] == {"Succeeded": 38, "Failed": 2}


@pytest.mark.parametrize("args, check", [
    (["--failed"], lambda s: s["status"] in ("Failed", "TimedOut", "Cancelled")),
    (["--depth", "2"], lambda s: level(s["path"]) <= 2),
])
def test_json_steps_narrow_the_same_way(tmp_path, looped, args, check):
    steps = json.loads(cli(tmp_path, "show", looped["run_id"], "--json", *args).stdout)["steps"]
    assert steps and all(check(s) for s in steps)


def test_a_rerun_marks_the_steps_it_reused(tmp_path, looped):
    out = cli(tmp_path, "rerun", looped["run_id"], "--from", "last", "--json")
    again = json.loads(out.stdout)
    reused = {s["path"] for s in again["steps"] if s["reused"]}
    assert {"first", "each", "each[6]", "each[3]/check"} <= reused and "last" not in reused
    assert again["kind"] == "rerun" and again["rerun_of"] == looped["run_id"]
    assert "(reused)" in cli(tmp_path, "show", again["run_id"], "--depth", "1").stdout


def test_a_rerun_of_one_iteration_runs_only_that_iteration(tmp_path, looped):
    flow = tmp_path / "loop.yaml"
    flow.write_text(textwrap.dedent(LOOP).replace("[6, 17]", "[17]"))  # iteration 6 is fixed now
    out = cli(tmp_path, "rerun", looped["run_id"], "--from", "each[6]", "--definition", "current", "--json")
    again = json.loads(out.stdout)
    fresh = {s["path"] for s in again["steps"] if not s["reused"]}
    assert fresh == {"each", "each[6]", "each[6]/check", "each[6]/after_check", "last"}
    assert again["summary"]["each[]"] == {"Succeeded": 39, "Failed": 1}


@pytest.mark.parametrize("frm, message", [("first[2]", "not a loop"), ("nope[1]", "no action 'nope'")])
def test_a_rerun_of_an_iteration_of_something_else_is_one_clear_line(tmp_path, looped, frm, message):
    out = cli(tmp_path, "rerun", looped["run_id"], "--from", frm)
    assert out.exit_code == 2 and message in out.output and "Traceback" not in out.output


def test_show_of_a_big_loop_reads_a_page_at_a_time(tmp_path, monkeypatch):
    import engine.inspection as inspection

    flow = tmp_path / "loop.yaml"
    flow.write_text(textwrap.dedent(LOOP))
    assert cli(tmp_path, "run", str(flow), "--param", "n=2500").exit_code == 0
    run_id = json.loads(cli(tmp_path, "runs", "--json").stdout)[0]["run_id"]
    fetched = []
    real = inspection.Reader._rows

    def counting(self, where, args):
        for step in real(self, where, args):
            fetched.append(1)
            yield step
    monkeypatch.setattr(inspection.Reader, "_rows", counting)
    text = cli(tmp_path, "show", run_id).stdout
    assert "2500 iterations: 2498 Succeeded, 2 Failed" in text
    assert len(fetched) < 20  # top-level actions and the failed iterations: counts come from SQL
    engine = Engine(tmp_path / "s.db")
    try:
        chunks = list(inspection.json_chunks(engine.store, engine.result(run_id)))  # a step per chunk
    finally:
        engine.close()
    assert len(chunks) > 7500 and json.loads("".join(chunks))["steps"][-1]["path"] == "last"


def test_listing_every_iteration_costs_linear_work_not_quadratic(tmp_path):
    """Counted in SQLite VM steps (not wall-clock): twice the iterations, about twice the work."""
    from engine import inspection

    work = {}
    for n in (500, 1000):
        folder = tmp_path / str(n)
        folder.mkdir()
        flow = folder / "loop.yaml"
        flow.write_text(textwrap.dedent(LOOP))
        assert cli(folder, "run", str(flow), "--param", f"n={n}").exit_code == 0
        engine = Engine(folder / "s.db")
        try:
            run = engine.result(json.loads(cli(folder, "runs", "--json").stdout)[0]["run_id"])
            count = [0]

            def tick():
                count[0] += 1
                return 0
            engine.store.db.set_progress_handler(tick, 100)
            lines = sum(1 for _ in inspection.text_lines(engine.store, run, iterations=True))
            engine.store.db.set_progress_handler(None, 100)
        finally:
            engine.close()
        assert lines > 3 * n
        work[n] = count[0]
    assert work[1000] < 2.6 * work[500], work
