"""Test files: every problem at its file:line:column, one line each, never a traceback."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

from engine.cli import main
from engine.errors import FlowError
from engine.registry import default_registry
from engine.testing.files import load

FLOW = """\
name: shop
actions:
  charge: {type: Compose, inputs: 1}
  wrap:
    type: Scope
    runAfter: {charge: [Succeeded]}
    actions:
      inner: {type: Compose, inputs: 2}
outputs:
  total: {value: "{{ outputs('charge') }}"}
"""

PROBLEMS = [
    # (test file text, expected problem: "line:col path: message" fragment)
    ("tests:\n  t:\n    mocks:\n      chrage: {outputs: 1}\n",
     "4:7 tests.t.mocks.chrage: no action 'chrage' in shop.yaml (did you mean 'charge'?)"),
    ("tests:\n  t:\n    mocks:\n      wrap: {outputs: 1}\n",
     "4:7 tests.t.mocks.wrap: 'wrap' is a Scope: the actions inside it run, so mock those"),
    ("tests:\n  t:\n    mocks:\n      charge: {status: Skipped}\n",
     "tests.t.mocks.charge.status: a mock is Succeeded, Failed or TimedOut, not Skipped"),
    ("tests:\n  t:\n    mocks:\n      charge: {status: Fine}\n",
     "tests.t.mocks.charge.status: unknown status 'Fine'"),
    ("tests:\n  t:\n    mocks:\n      charge: {output: 1}\n",
     "4:16 tests.t.mocks.charge.output: unknown key 'output' (did you mean 'outputs'?)"),
    ("tests:\n  t:\n    expect:\n      actions: {inner: Done}\n",
     "tests.t.expect.actions.inner: unknown status 'Done'"),
    ("tests:\n  t:\n    expect:\n      that: [\"{{ outputs('charge') == }}\"]\n",
     "4:14 tests.t.expect.that.0: syntax error"),
    ("tests:\n  t:\n    expect:\n      that: [\"{{ outptus('charge') }}\"]\n",
     "tests.t.expect.that.0: unknown name 'outptus' (did you mean 'outputs'?)"),
    ("tests:\n  t:\n    expect:\n      that: [\"charge == 1\"]\n",
     "tests.t.expect.that.0: an assertion is an expression"),
    ("tests:\n  t:\n    expect:\n      outputs: {totl: 1}\n",
     "4:17 tests.t.expect.outputs.totl: the flow has no output 'totl' (did you mean 'total'?)"),
    ("tests:\n  t:\n    expcet: {}\n", "3:5 tests.t.expcet: unknown key 'expcet' (did you mean 'expect'?)"),
    ("flow: nowhere.yaml\ntests:\n  t: {}\n", "1:7 flow: the flow under test, "),
    ("tests: {}\n", "tests: {} should be non-empty"),
    ("tests:\n  t: {input: 1\n", "invalid YAML"),
    ("- a list\n", "a test file is a mapping with `tests:`"),
    ("tests:\n  t:\n    input: !!python/object:os.system {}\n", "3:12"),
    # a trigger or parameter the flow does not have (the class of `mocks` naming an unknown action)
    ("tests:\n  t:\n    trigger: {name: manul}\n", "3:21 tests.t.trigger.name: no trigger 'manul' in shop.yaml "
                                                  "(did you mean 'manual'?)"),
    ("tests:\n  t:\n    trigger: {name: 5}\n", "3:21 tests.t.trigger.name: 5 is not of type 'string'"),
    ("tests:\n  t:\n    parameters: {rate: 1}\n", "3:18 tests.t.parameters.rate: no parameter 'rate' in shop.yaml"),
]


@pytest.mark.parametrize("text, expected", PROBLEMS, ids=[p[1][:40] for p in PROBLEMS])
def test_a_problem_in_a_test_file_is_one_line_at_its_position(tmp_path, text, expected):
    (tmp_path / "shop.yaml").write_text(FLOW)
    path = tmp_path / "shop.test.yaml"
    path.write_text(text)
    with pytest.raises(FlowError) as caught:
        load(path, default_registry())
    shown = [str(p) for p in caught.value.problems]
    assert any(expected in line for line in shown), shown
    assert all(line.startswith(f"{path}:") for line in shown)


def test_the_cli_reports_problems_at_their_lines_and_exits_1_without_a_traceback(tmp_path):
    (tmp_path / "shop.yaml").write_text(FLOW)
    path = tmp_path / "shop.test.yaml"
    path.write_text(PROBLEMS[0][0])
    result = CliRunner().invoke(main, ["--state", str(tmp_path / "s.db"), "test", str(tmp_path)])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"ERROR {path}" in result.output
    assert f"{path}:4:7 tests.t.mocks.chrage: no action 'chrage'" in result.output
    assert "Traceback" not in result.output


def test_a_flow_with_problems_reports_the_flows_own_lines(tmp_path):
    (tmp_path / "shop.yaml").write_text(FLOW.replace("charge: [Succeeded]", "charg: [Succeeded]"))
    (tmp_path / "shop.test.yaml").write_text("tests:\n  t: {}\n")
    with pytest.raises(FlowError) as caught:
        load(tmp_path / "shop.test.yaml", default_registry())
    assert any(p.file.endswith("shop.yaml") and "charg" in p.message for p in caught.value.problems)


def test_no_test_files_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(main, ["--state", str(tmp_path / "s.db"), "test", str(tmp_path)])
    assert result.exit_code == 2 and "no test files (*.test.yaml)" in result.output


def test_test_files_are_not_flows_to_validate_or_serve(tmp_path):
    (tmp_path / "shop.yaml").write_text(FLOW)
    (tmp_path / "shop.test.yaml").write_text("tests:\n  t: {}\n")
    result = CliRunner().invoke(main, ["--state", str(tmp_path / "s.db"), "validate", str(tmp_path)])
    assert result.exit_code == 0 and "1 of 1 flow file(s) valid" in result.output


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                     max_leaves=20)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.dictionaries(st.sampled_from(["flow", "tests", "x"]), _json, max_size=3)
       | st.fixed_dictionaries({"tests": st.dictionaries(st.text(min_size=1, max_size=8), st.dictionaries(
           st.sampled_from(["input", "mocks", "expect", "parameters", "trigger"]), _json, max_size=4),
           min_size=1, max_size=2)}),
       raw=st.text(max_size=60))
def test_hostile_test_files_give_problems_never_exceptions(tmp_path, data, raw):
    import json

    (tmp_path / "shop.yaml").write_text(FLOW)
    path = tmp_path / "shop.test.yaml"
    for text in (json.dumps(data), raw):
        path.write_text(text, encoding="utf-8", errors="surrogatepass") if "\ud800" not in text else None
        try:
            load(path, default_registry())
        except FlowError as exc:
            assert exc.problems and all(str(p).startswith(str(path)) or str(tmp_path) in str(p)
                                        for p in exc.problems)
