"""`@` expressions in YAML flows, end to end: typed values, interpolation, loops, conditions,
both languages in one flow, payloads never evaluated, and what `validate` reports (file:line:col)."""
import textwrap

import pytest

from engine.errors import FlowError
from engine.loader import load_text


def test_a_flow_written_in_the_at_language_runs(run_flow):
    result = run_flow("""
        parameters:
          greeting: {type: string, defaultValue: Hello}
        actions:
          init:
            type: InitializeVariable
            inputs: {variables: [{name: total, type: integer, value: 0}]}
          loop:
            type: Foreach
            foreach: "@triggerBody()?['orders']"
            runAfter: {init: [Succeeded]}
            concurrency: 1
            actions:
              add:
                type: IncrementVariable
                inputs: {name: total, value: "@mul(items('loop')?['qty'], 2)"}
          big:
            type: Query
            runAfter: {loop: [Succeeded]}
            inputs:
              from: "@triggerBody()?['orders']"
              where: "@greater(item()?['qty'], 2)"
          check:
            type: If
            runAfter: {big: [Succeeded]}
            expression: "@greater(variables('total'), 10)"
            actions:
              big_total: {type: Compose, inputs: "@{parameters('greeting')}, @{triggerBody()?.name}: total @{variables('total')}"}
            else:
              actions:
                small_total: {type: Compose, inputs: small}
          shape:
            type: Compose
            runAfter: {check: [Succeeded]}
            inputs:
              count: "@length(body('big'))"
              first: "@first(body('big'))?.sku"
              when: "@formatDateTime('2024-05-06T07:08:09Z', 'dd/MM/yyyy')"
              escaped: "@@{not evaluated}"
              jinja: "{{ triggerBody().name | upper }}"
              both: "{{ formatDateTime('2024-05-06T07:08:09Z', 'yyyy') }}"
    """, input={"name": "Ada", "orders": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 5}, {"sku": "c", "qty": 3}]})
    assert result.status == "Succeeded", result.error
    assert result.steps["check/big_total"].outputs == "Hello, Ada: total 18"
    assert result.steps["check/small_total"].status == "Skipped"
    assert result.steps["shape"].outputs == {"count": 2, "first": "b", "when": "06/05/2024",
                                             "escaped": "@{not evaluated}", "jinja": "ADA", "both": "2024"}


def test_payload_data_is_never_evaluated(run_flow):
    evil = {"a": "@{div(1, 0)}", "b": "@concat('x')", "c": "{{ 7*7 }}"}
    result = run_flow("""
        actions:
          whole: {type: Compose, inputs: "@triggerBody()"}
          part: {type: Compose, inputs: "got @{triggerBody()?.a} and @{triggerBody()?['b']}"}
          text: {type: Compose, inputs: "@string(triggerBody())"}
    """, input=evil)
    assert result.status == "Succeeded", result.error
    assert result.steps["whole"].outputs == evil
    assert result.steps["part"].outputs == "got @{div(1, 0)} and @concat('x')"
    assert '"@{div(1, 0)}"' in result.steps["text"].outputs


def test_a_runtime_error_fails_the_action_with_logic_apps_words(run_flow):
    result = run_flow("""
        actions:
          c: {type: Compose, inputs: "@triggerBody().missing"}
          d: {type: Compose, inputs: "@int('abc')"}
    """, input={"name": "Ada", "age": 3})
    assert result.steps["c"].status == "Failed"
    message = result.steps["c"].error["message"]
    assert "property 'missing' doesn't exist, available properties are 'name, age'" in message
    assert result.steps["c"].error["code"] == "InvalidTemplate"
    assert "The template language function 'int'" in result.steps["d"].error["message"]


def test_appsetting_reads_the_environment(run_flow, monkeypatch):
    monkeypatch.setenv("WDL_FLOW_SETTING", "from env")
    result = run_flow("""
        actions:
          c: {type: Compose, inputs: "@appsetting('WDL_FLOW_SETTING')"}
          d: {type: Compose, inputs: "@appsetting('WDL_NOT_SET_ANYWHERE')"}
          e: {type: Compose, inputs: "@listCallbackUrl()"}
    """)
    assert result.steps["c"].outputs == "from env"
    assert "app setting 'WDL_NOT_SET_ANYWHERE' is not set" in result.steps["d"].error["message"]
    assert "no callback URL" in result.steps["e"].error["message"]


def problems(text: str) -> list[str]:
    with pytest.raises(FlowError) as info:
        load_text(textwrap.dedent(text), "flows/x.yaml")
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize("text, expected", [
    # syntax: the column is the character in the line
    ("""
     actions:
       a: {type: Compose, inputs: "@concat('a' 'b')"}
     """, "flows/x.yaml:3:43 actions.a.inputs: expected ',' or ')' to close concat("),
    ("""
     actions:
       a:
         type: Compose
         inputs: "total: @{add(1, }"
     """, "flows/x.yaml:5:30 actions.a.inputs: unexpected character '}'"),
    ("""
     actions:
       a:
         type: Compose
         inputs: '@"double"'
     """, "flows/x.yaml:5:15 actions.a.inputs: unexpected character '\"' (strings use single quotes)"),
    ("""
     actions:
       a: {type: Compose, inputs: "@concatt('a')"}
     """, "flows/x.yaml:3:32 actions.a.inputs: The template function 'concatt' is not defined or not valid "
          "(did you mean concat()?)"),
    ("""
     actions:
       a:
         type: Compose
         inputs: {x: "@substring('abc')"}
     """, "flows/x.yaml:5:19 actions.a.inputs.x: The template language function 'substring' expects 2 to 3 "
          "parameters"),
    ("""
     actions:
       a: {type: Compose, inputs: "@body('nope')"}
     """, "flows/x.yaml:3:30 actions.a.inputs: unknown action 'nope'"),
    ("""
     actions:
       a: {type: Compose, inputs: 1}
       b: {type: Compose, inputs: "@{BODY('a')}"}
     """, "actions.b.inputs: 'a' is not guaranteed to have finished before 'b' runs"),
    ("""
     actions:
       a: {type: Compose, inputs: "@variables('nope')"}
     """, "unknown variable 'nope'"),
    ("""
     actions:
       a: {type: Compose, inputs: "@items('loop')"}
     """, "'loop' is not a loop around 'a'"),
    ("""
     actions:
       a: {type: Compose, inputs: "@parameters('nope')"}
     """, "unknown parameter 'nope'"),
    ("""
     actions:
       a: {type: Compose, inputs: "{{ triggerBody() }} and @{triggerBody()}"}
     """, "cannot mix `@{...}` and Jinja `{{ }}`"),
    ("""
     actions:
       a: {type: Compose, inputs: "{{ formatdatetime(utcNow(), 'yyyy') }}"}
     """, "unknown name 'formatdatetime' (did you mean formatDateTime()?)"),
    ("""
     actions:
       a: {type: Compose, inputs: 1}
     outputs:
       o: {value: "@outputs('zz')"}
     """, "outputs.o.value: unknown action 'zz'"),
])
def test_validate_reports_at_expressions_with_their_position(text, expected):
    found = problems(text)
    assert any(expected in p for p in found), found


def test_every_problem_of_a_flow_is_reported_at_once():
    found = problems("""
        actions:
          a: {type: Compose, inputs: "@nosuch()"}
          b: {type: Compose, inputs: "@concat("}
          c: {type: Compose, inputs: "@outputs('zz')"}
    """)
    assert len(found) == 3, found


def test_a_flow_mixing_languages_across_fields_validates():
    flow = load_text(textwrap.dedent("""
        actions:
          a: {type: Compose, inputs: {x: "@triggerBody()", y: "{{ triggerBody() }}", z: "@@literal", w: "a@b.c"}}
          b:
            type: Compose
            runAfter: {a: [Succeeded]}
            inputs: "@{outputs('a')?['x']} {{ outputs('a').y }}x"
    """).replace("{{ outputs('a').y }}x", "and more"), "flows/x.yaml")
    assert set(flow.actions) == {"a", "b"}
