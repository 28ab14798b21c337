"""`flowrun test`: each test is a real run of its flow; mocks answer at the node boundary, so
expressions, runAfter, Scope and Foreach run for real; the network is blocked; a line per test,
JUnit XML, exit 1 on failure."""
from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.testing.runner import run_files

ROOT = Path(__file__).parents[3]

FLOW = """\
name: shop
actions:
  lines:
    type: Foreach
    foreach: "{{ triggerBody().skus }}"
    actions:
      price:
        type: Http
        inputs: {method: GET, uri: "http://127.0.0.1:9/prices/{{ item() }}"}
  total:
    type: Compose
    runAfter: {lines: [Succeeded, Failed]}
    inputs: "{{ result('lines') | map(attribute='outputs') | list | length }}"
  notify:
    type: Http
    runAfter: {total: [Succeeded]}
    timeout: PT1M
    inputs: {method: POST, uri: "http://127.0.0.1:9/notify", body: {n: "{{ outputs('total') }}"}}
outputs:
  total: {value: "{{ outputs('total') }}"}
"""


def write(folder: Path, tests: str, flow: str = FLOW, name: str = "shop") -> Path:
    (folder / f"{name}.yaml").write_text(flow)
    path = folder / f"{name}.test.yaml"
    path.write_text(textwrap.dedent(tests))
    return path


def flowrun(*args: str):
    return CliRunner().invoke(main, ["--state", "unused.db", *args], catch_exceptions=False)


def test_mocks_answer_per_iteration_and_everything_around_them_runs_for_real(tmp_path):
    path = write(tmp_path, """\
        tests:
          two prices, one failing:
            input: {skus: [tea, cocoa]}
            mocks:
              price: [{outputs: {statusCode: 200, body: 4}}, {status: Failed, error: {code: Gone, message: no price}}]
              notify: {outputs: {statusCode: 202}}
            expect:
              status: Succeeded
              actions: {lines: Failed, total: Succeeded, notify: Succeeded}
              values:
                "{{ actions('notify').inputs.body }}": {n: 1}
                "{{ result('lines')[0].outputs | map(attribute='status') | list }}": [Succeeded, Failed]
        """)
    [result] = run_files([str(path)])
    assert result.passed, result.failures


def test_a_mock_can_time_out_and_runafter_sees_it(tmp_path):
    path = write(tmp_path, """\
        tests:
          timed out:
            input: {skus: []}
            mocks:
              notify: {status: TimedOut}
            expect:
              status: TimedOut
              actions: {notify: TimedOut}
              that: ["{{ actions('notify').error.code == 'ActionTimedOut' }}"]
        """)
    [result] = run_files([str(path)])
    assert result.passed, result.failures


def test_an_unmocked_network_call_fails_the_test_naming_the_action(tmp_path, recorder):
    recorder.route("POST", "/notify", json={})
    recorder.start()
    flow = FLOW.replace("http://127.0.0.1:9", recorder.url)
    path = write(tmp_path, """\
        tests:
          forgot a mock:
            input: {skus: []}
            expect: {status: Succeeded}
        """, flow=flow)
    [result] = run_files([str(path)])
    assert not result.passed
    assert any("action 'notify' tried to reach 127.0.0.1:" in f and "network is blocked" in f
               for f in result.failures), result.failures
    assert recorder.requests == []  # nothing left the process


def test_the_network_guard_fails_fast_even_with_a_retry_policy(tmp_path):
    flow = FLOW.replace("    timeout: PT1M\n", "    retryPolicy: {type: fixed, count: 3, interval: PT30S}\n")
    path = write(tmp_path, """\
        tests:
          no retries against a blocked network:
            input: {skus: []}
            expect:
              actions: {notify: Failed}
              that: ["{{ actions('notify').error.code == 'NetworkBlocked' and actions('notify').attempts == 1 }}"]
        """, flow=flow)
    [result] = run_files([str(path)])
    assert result.failures and all("notify" in f for f in result.failures)
    assert not any("NetworkBlocked" in f for f in result.failures)  # the assertion itself held
    assert result.seconds < 20  # no 30 s retry waits


def test_each_failed_expectation_is_one_line_at_the_test(tmp_path):
    path = write(tmp_path, """\
        tests:
          wrong on purpose:
            input: {skus: []}
            mocks: {notify: {outputs: {statusCode: 202}}}
            expect:
              status: Failed
              actions: {total: Skipped}
              outputs: {total: 7}
              that: ["{{ outputs('total') == 7 }}"]
        """)
    result = flowrun("test", str(path))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith(f"FAIL {path}::wrong on purpose (")
    assert f"    {path}:2: the run ended Succeeded, expected Failed" in lines
    assert f"    {path}:2: action 'total' ended Succeeded, expected Skipped" in lines
    assert f"    {path}:2: output 'total' is 1, expected 7" in lines
    assert f"    {path}:2: {{{{ outputs('total') == 7 }}}} is false, expected true" in lines
    assert "0 passed, 1 failed" in result.output


def test_junit_xml_lists_every_test_with_its_failure(tmp_path):
    path = write(tmp_path, """\
        tests:
          passes:
            input: {skus: []}
            mocks: {notify: {outputs: {}}}
            expect: {status: Succeeded}
          fails:
            input: {skus: []}
            mocks: {notify: {outputs: {}}}
            expect: {status: Failed}
        """)
    report = tmp_path / "junit.xml"
    result = flowrun("test", str(path), "--junit-xml", str(report))
    assert result.exit_code == 1
    root = ET.parse(report).getroot()
    assert root.get("tests") == "2" and root.get("failures") == "1"
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases["passes"].find("failure") is None
    assert "expected Failed" in cases["fails"].find("failure").get("message")


def test_minus_k_picks_tests_by_name(tmp_path):
    path = write(tmp_path, """\
        tests:
          alpha: {input: {skus: []}, mocks: {notify: {outputs: {}}}}
          beta: {input: {skus: []}, mocks: {notify: {outputs: {}}}}
        """)
    result = flowrun("test", str(path), "-k", "bet")
    assert result.exit_code == 0 and "::beta" in result.output and "::alpha" not in result.output


def test_assertions_see_the_run_its_response_and_its_variables(tmp_path):
    flow = """\
name: reply
actions:
  n: {type: InitializeVariable, inputs: {variables: [{name: n, type: integer, value: 41}]}}
  inc: {type: IncrementVariable, runAfter: {n: [Succeeded]}, inputs: {name: n}}
  answer: {type: Response, runAfter: {inc: [Succeeded]}, inputs: {statusCode: 201, body: {n: "{{ variables('n') }}"}}}
"""
    path = write(tmp_path, """\
        tests:
          replies:
            expect:
              response: {statusCode: 201, body: {n: 42}}
              that:
                - "{{ variables('n') == 42 }}"
                - "{{ run().status == 'Succeeded' and response().body.n == 42 }}"
        """, flow=flow, name="reply")
    [result] = run_files([str(path)])
    assert result.passed, result.failures


def test_mocks_do_not_reach_into_child_flows(tmp_path):
    (tmp_path / "child.yaml").write_text("name: child\nactions:\n  price: {type: Compose, inputs: 5}\n"
                                         "outputs:\n  price: {value: \"{{ outputs('price') }}\"}\n")
    flow = """\
name: parent
actions:
  price: {type: Compose, inputs: 1}
  child: {type: Workflow, runAfter: {price: [Succeeded]}, inputs: {flow: child.yaml}}
"""
    path = write(tmp_path, """\
        tests:
          only the parent's price is mocked:
            mocks: {price: {outputs: 100}}
            expect:
              values:
                "{{ outputs('price') }}": 100
                "{{ body('child').price }}": 5
        """, flow=flow, name="parent")
    [result] = run_files([str(path)])
    assert result.passed, result.failures


def test_a_wait_takes_no_wall_time(tmp_path):
    flow = """\
name: slow
actions:
  nap: {type: Wait, inputs: {interval: {count: 2, unit: Hour}}}
  done: {type: Compose, runAfter: {nap: [Succeeded]}, inputs: woke}
"""
    path = write(tmp_path, """\
        tests:
          wakes at once:
            expect: {actions: {done: Succeeded}}
        """, flow=flow, name="slow")
    [result] = run_files([str(path)])
    assert result.passed and result.seconds < 10


def test_every_bundled_flow_has_a_passing_test_file():
    flows = [p for p in [*ROOT.glob("flows/*.yaml"), *ROOT.glob("examples/**/*.yaml"),
                         *ROOT.glob("examples/**/workflow.json")]  # Logic Apps Standard workflows
             if p.name != "connections.yaml" and not p.name.endswith(".test.yaml")
             and "dbt" not in p.relative_to(ROOT).parts]
    assert {"examples/bi_refresh/flow.yaml", "examples/geo_enrich/flow.yaml", "examples/data_pipeline/flow.yaml",
            "examples/events/flows/order_paid.yaml", "examples/logic_app/reserve/workflow.json"} <= {
        str(p.relative_to(ROOT)) for p in flows}
    missing = [str(p.relative_to(ROOT)) for p in flows if not p.with_name(p.stem + ".test.yaml").is_file()]
    assert missing == []
    result = CliRunner().invoke(main, ["--state", "unused.db", "test", str(ROOT / "flows"), str(ROOT / "examples")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.output and "ERROR" not in result.output
    assert result.output.count("PASS ") >= 30
    assert f"PASS {ROOT}/examples/logic_app/reserve/workflow.test.yaml::a mock of Get_stock wins over its static " \
        "result" in result.output  # (the path in full: the working directory is no secret)


def test_an_assertion_runs_under_the_expression_budget(tmp_path):
    path = write(tmp_path, """\
        tests:
          a runaway assertion:
            input: {skus: []}
            mocks: {notify: {outputs: {}}}
            expect:
              that: ["{{ range(99999) | map('string') | join('x' * 100000) | length > 0 }}"]
        """)
    [result] = run_files([str(path)])
    assert not result.passed and "limit" in result.failures[0].lower(), result.failures


def test_mock_outputs_and_inputs_are_data_never_evaluated(tmp_path):
    path = write(tmp_path, """\
        tests:
          templates in data stay text:
            input: {skus: ["{{ 7 * 7 }}"]}
            mocks:
              price: {outputs: {statusCode: 200, body: "{{ 6 * 7 }}"}}
              notify: {outputs: {}}
            expect:
              values:
                "{{ result('lines')[0].outputs[0].outputs.body }}": "{{ 6 * 7 }}"
                "{{ result('lines')[0].outputs[0].inputs.uri }}": "http://127.0.0.1:9/prices/{{ 7 * 7 }}"
        """)
    [result] = run_files([str(path)])
    assert result.passed, result.failures


def test_a_secret_never_reaches_the_test_output(tmp_path, monkeypatch):
    secret = 'p"a\\ss\'w0rd-for-tests'
    monkeypatch.setenv("SHOP_TOKEN", secret)
    (tmp_path / "connections.yaml").write_text(
        "connections:\n  hooks: {kind: http, settings: {base_url: 'http://127.0.0.1:9/', auth: bearer}, "
        "secrets: {token: SHOP_TOKEN}}\n")
    flow = FLOW.replace('    inputs: {method: POST, uri: "http://127.0.0.1:9/notify"',
                        '    connection: hooks\n    inputs: {method: POST, uri: "notify"')
    path = write(tmp_path, f"""\
        tests:
          echoes the secret:
            input: {{skus: []}}
            mocks:
              notify: {{outputs: {{statusCode: 200, body: {json.dumps(secret)}}}}}
            expect:
              values:
                "{{{{ body('notify') }}}}": {json.dumps(secret)}
        """, flow=flow)
    report = tmp_path / "junit.xml"
    result = CliRunner().invoke(main, ["--state", str(tmp_path / "s.db"), "test", str(path), "--junit-xml", str(report)])
    text = result.output + report.read_text()
    assert result.exit_code == 1  # the mock's secret was masked at the source: the value differs
    assert secret not in text and json.dumps(secret)[1:-1] not in text and "***" in text


def test_hostile_test_names_make_valid_junit_xml(tmp_path):
    path = write(tmp_path, """\
        tests:
          "a\\u0001b <&> \\" :: ]]> \\U0001F600": {input: {skus: []}, mocks: {notify: {outputs: {}}}, expect: {status: Failed}}
        """)
    report = tmp_path / "junit.xml"
    CliRunner().invoke(main, ["--state", str(tmp_path / "s.db"), "test", str(path), "--junit-xml", str(report)])
    case = next(ET.parse(report).getroot().iter("testcase"))
    assert case.get("name") == 'a\\x01b <&> " :: ]]> \U0001F600'


@pytest.mark.parametrize("hostile, shown", [("\udcff", "\\udcff"), ("\ud800", "\\ud800"), ("\ufffe", "\\ufffe"),
                                            ("\uffff", "\\uffff"), ("\x0b", "\\x0b"), ("\x00", "\\x00")])
@pytest.mark.parametrize("field", ["file", "name", "error", "failures"])
def test_junit_xml_stays_a_valid_document_whatever_a_name_or_message_holds(tmp_path, hostile, shown, field):
    """XML 1.0 holds no lone surrogate (a file name whose bytes are not UTF-8) and no U+FFFE/U+FFFF:
    ElementTree would write them as character references no XML parser accepts."""
    from engine.testing.junit import write
    from engine.testing.runner import TestResult

    values = {"file": "t.test.yaml", "name": "n", "error": None, "failures": []}
    values[field] = [f"x{hostile}y"] if field == "failures" else f"x{hostile}y"
    result = TestResult(test="t::n", passed=False, seconds=0.1, **values)
    report = tmp_path / "junit.xml"
    write([result], report)
    root = ET.parse(report).getroot()  # parses: a valid document
    assert f"x{shown}y" in ET.tostring(root, encoding="unicode").replace("&lt;", "<")


def test_a_flow_in_a_folder_whose_name_is_not_utf8_is_one_error_line_and_valid_junit(tmp_path):
    import os

    folder = os.path.join(os.fsencode(tmp_path), b"caf\xe9")
    os.mkdir(folder)
    (Path(os.fsdecode(folder)) / "shop.yaml").write_text(FLOW)
    path = write(Path(os.fsdecode(folder)), """\
        tests:
          t: {input: {skus: []}, mocks: {notify: {outputs: {}}}}
        """)
    report = tmp_path / "junit.xml"
    result = CliRunner().invoke(main, ["--state", str(tmp_path / "s.db"), "test", str(path), "--junit-xml", str(report)])
    assert result.exit_code == 1 and "caf\\xe9/shop.yaml:1:1 the file's path is not UTF-8 text" in result.output
    assert "Traceback" not in result.output
    [case] = ET.parse(report).getroot().iter("testcase")
    assert "caf\\udce9" in case.get("name")


@pytest.mark.parametrize("where", ["missing/folder/junit.xml", "/proc/junit.xml"])
def test_a_junit_xml_path_that_cannot_be_written_is_one_message_naming_it(tmp_path, where):
    path = write(tmp_path, """\
        tests:
          t: {input: {skus: []}, mocks: {notify: {outputs: {}}}}
        """)
    report = where if where.startswith("/") else str(tmp_path / where)
    result = CliRunner().invoke(main, ["--state", str(tmp_path / "s.db"), "test", str(path), "--junit-xml", report])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert f"--junit-xml {report}: cannot write it (" in result.output and ".tmp" not in result.output


def test_a_logic_apps_definition_is_tested_with_at_expressions_and_its_static_results(tmp_path):
    import shutil

    shutil.copy(ROOT / "tests/logicapps/definitions/try_catch.json", tmp_path / "try_catch.json")
    path = tmp_path / "try_catch.test.yaml"
    path.write_text(textwrap.dedent("""\
        flow: try_catch.json
        tests:
          the static 503 is caught:
            expect:
              actions: {Get_order: Failed, Report: Succeeded}
              that: ["@equals(outputs('Report')?['code'], 503)"]
              values: {"@body('Report')?['failed']": 1}
          a mock wins over the static result:
            mocks: {Get_order: {outputs: {statusCode: 200, body: {id: 7}}}}
            expect:
              actions: {Use_order: Succeeded, Catch: Skipped}
              values: {"@outputs('Use_order')?['id']": 7}
        """))
    results = run_files([str(path)])
    assert [r.passed for r in results] == [True, True], [r.failures for r in results]
    plan = flowrun("plan", str(tmp_path / "try_catch.json"), "--effects-only")
    assert "Try/Get_order: would GET https://orders.example.invalid/api/orders/7  [outputs: static result]" in plan.output


FORGED = "\\nPASS shop.test.yaml::all good (0.00s)"
@pytest.mark.parametrize("hostile", [FORGED, "\\e[2K\\e[1A", "\\u202e", "\\x9b31m", "\\x07", "\\r", "\\u2028"])
def test_test_names_and_failure_messages_print_as_one_printable_line_each(tmp_path, hostile):
    """What a test file names, and what a run's error says (a vendor's, a payload's), cannot
    print a line of its own (a forged PASS) nor send a terminal escape or bidi override."""
    path = write(tmp_path, f"""\
        tests:
          "fails{hostile}":
            input: {{skus: []}}
            mocks:
              notify: {{status: Failed, error: {{message: "no route{hostile}"}}}}
            expect: {{actions: {{notify: Succeeded}}, outputs: {{total: "x{hostile}"}}}}
        """)
    result = CliRunner().invoke(main, ["--state", str(tmp_path / "s.db"), "test", str(path)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("FAIL ") and all(line.startswith("    ") for line in lines[1:]), lines
    assert len(lines) == 3 and all(line.isprintable() for line in lines), lines
    assert "no route" in lines[1] + lines[2]
