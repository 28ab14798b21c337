"""Running flows: runAfter and Skipped, run status, Scope try/catch, concurrency, retries,
timeouts, Terminate, loops and variables — as in Logic Apps."""
import json
import threading
import time

import pytest


def statuses(result):
    return {path: step.status for path, step in result.steps.items()}


# -- runAfter and Skipped -------------------------------------------------------------------
def test_unmet_run_after_skips_and_skipped_propagates(run_flow):
    result = run_flow("""
        actions:
          ok: {type: Compose, inputs: 1}
          on_fail: {type: Compose, inputs: 2, runAfter: {ok: [Failed]}}
          after_skip: {type: Compose, inputs: 3, runAfter: {on_fail: [Succeeded]}}
          tolerant: {type: Compose, inputs: 4, runAfter: {on_fail: [Skipped]}}
    """)
    assert statuses(result) == {"ok": "Succeeded", "on_fail": "Skipped", "after_skip": "Skipped",
                                "tolerant": "Succeeded"}
    assert result.status == "Succeeded"


def test_run_after_waits_for_all_predecessors_and_their_statuses(run_flow):
    result = run_flow("""
        actions:
          a: {type: Compose, inputs: 1}
          b: {type: Compose, inputs: "{{ 1 / 0 }}"}
          both: {type: Compose, inputs: 3, runAfter: {a: [Succeeded], b: [Succeeded]}}
          either: {type: Compose, inputs: 4, runAfter: {a: [Succeeded], b: [Failed]}}
    """)
    assert statuses(result)["both"] == "Skipped"
    assert statuses(result)["either"] == "Succeeded"


def test_handled_failure_leaves_the_run_succeeded(run_flow):
    result = run_flow("""
        actions:
          get: {type: Compose, inputs: "{{ triggerBody().missing }}"}
          handle: {type: Compose, inputs: handled, runAfter: {get: [Succeeded, Failed, Skipped, TimedOut]}}
    """, input={})
    assert statuses(result) == {"get": "Failed", "handle": "Succeeded"}
    assert result.status == "Succeeded"


def test_a_skipped_branch_end_inherits_the_failure_before_it(run_flow):
    # Logic Apps: Scope fails -> Failure_Response runs, Success_Response is Skipped -> run Failed
    result = run_flow("""
        actions:
          try:
            type: Scope
            actions:
              boom: {type: Compose, inputs: "{{ triggerBody().missing }}"}
          failure_response: {type: Compose, inputs: sorry, runAfter: {try: [Failed]}}
          success_response: {type: Compose, inputs: yay, runAfter: {try: [Succeeded]}}
    """, input={})
    assert statuses(result)["failure_response"] == "Succeeded"
    assert statuses(result)["success_response"] == "Skipped"
    assert result.status == "Failed"
    assert result.error["action"] == "try/boom"


def test_scope_try_catch_with_result(run_flow):
    result = run_flow("""
        actions:
          try:
            type: Scope
            actions:
              charge: {type: Compose, inputs: "{{ triggerBody().card.number }}"}
              receipt: {type: Compose, inputs: sent, runAfter: {charge: [Succeeded]}}
          catch:
            type: Query
            runAfter: {try: [Failed, TimedOut]}
            inputs:
              from: "{{ result('try') }}"
              where: "{{ item().status == 'Failed' }}"
          report:
            type: Compose
            runAfter: {catch: [Succeeded]}
            inputs: "{{ body('catch')[0].name }}: {{ body('catch')[0].error.code }}"
    """, input={})
    assert statuses(result)["try"] == "Failed"
    assert statuses(result)["try/receipt"] == "Skipped"
    assert result.steps["report"].outputs == "charge: ExpressionError"
    assert result.status == "Succeeded"


# -- concurrency ----------------------------------------------------------------------------
class InFlight:
    """A recorder handler that remembers the most requests in flight at once.

    With ``expected``, each request is held until that many are in flight (or until the ones
    left to come, of ``total``, cannot make that many), so reaching the bound does not depend
    on timing; ``delay`` then holds each a little longer, the peer's latency."""

    def __init__(self, delay=0.05, expected=None, total=None):
        self.delay, self.expected, self.total = delay, expected, total
        self.now = self.most = self.done = 0
        self.cond = threading.Condition()

    def __call__(self, req):
        with self.cond:
            self.now += 1
            self.most = max(self.most, self.now)
            self.cond.notify_all()
            if self.expected:
                self.cond.wait_for(lambda: self.now >= min(self.expected, self.total - self.done), timeout=10)
        time.sleep(self.delay)
        with self.cond:
            self.now -= 1
            self.done += 1
            self.cond.notify_all()
        return 200, {"Content-Type": "application/json"}, b'{"ok": true}'


@pytest.mark.parametrize("concurrency", [1, 3, 8])
def test_foreach_in_flight_count_stays_within_its_concurrency(run_flow, recorder, concurrency):
    meter = InFlight(delay=0.02, expected=concurrency, total=16)
    recorder.route("GET", "/item/.*", handler=meter)
    result = run_flow(f"""
        actions:
          loop:
            type: Foreach
            foreach: "{{{{ triggerBody() }}}}"
            concurrency: {concurrency}
            actions:
              call: {{type: Http, inputs: {{method: GET, uri: "{recorder.url}/item/{{{{ item() }}}}"}}}}
    """, input=list(range(16)))
    assert result.status == "Succeeded"
    assert len(recorder.requests) == 16
    assert meter.most == concurrency


def test_foreach_concurrency_one_is_sequential_and_keeps_order(run_flow):
    result = run_flow("""
        actions:
          init: {type: InitializeVariable, inputs: {variables: [{name: seen, type: array}]}}
          loop:
            type: Foreach
            foreach: "{{ range(30) | list }}"
            concurrency: 1
            runAfter: {init: [Succeeded]}
            actions:
              add: {type: AppendToArrayVariable, inputs: {name: seen, value: "{{ item() }}"}}
        outputs:
          seen: {value: "{{ variables('seen') }}"}
    """)
    assert result.outputs["seen"] == list(range(30))


def test_independent_actions_run_concurrently(run_flow, recorder):
    meter = InFlight(delay=0.02, expected=3, total=3)
    recorder.route("GET", "/slow", handler=meter)
    result = run_flow(f"""
        actions:
          a: {{type: Http, inputs: {{method: GET, uri: "{recorder.url}/slow"}}}}
          b: {{type: Http, inputs: {{method: GET, uri: "{recorder.url}/slow"}}}}
          c: {{type: Http, inputs: {{method: GET, uri: "{recorder.url}/slow"}}}}
    """)
    assert result.status == "Succeeded"
    assert meter.most == 3  # all three were in flight at once


def test_global_concurrency_limit_bounds_actions_in_flight(run_flow, recorder):
    meter = InFlight(delay=0.02, expected=2, total=10)
    recorder.route("GET", "/x", handler=meter)
    result = run_flow(f"""
        actions:
          loop:
            type: Foreach
            foreach: "{{{{ range(10) | list }}}}"
            concurrency: 10
            actions:
              call: {{type: Http, inputs: {{method: GET, uri: "{recorder.url}/x"}}}}
    """, concurrency=2)
    assert result.status == "Succeeded"
    assert meter.most == 2


# -- retries and timeouts -------------------------------------------------------------------
FAST = "retryPolicy: {type: fixed, count: 3, interval: PT0.01S}"


def test_retryable_errors_are_retried_until_success(run_flow, recorder):
    recorder.route("GET", "/flaky", status=503, body="busy", times=2)
    recorder.route("GET", "/flaky", json={"ok": True})
    result = run_flow(f"""
        actions:
          call:
            type: Http
            inputs: {{method: GET, uri: "{recorder.url}/flaky"}}
            {FAST}
    """)
    step = result.steps["call"]
    assert (step.status, step.attempts) == ("Succeeded", 3)
    assert step.outputs["body"] == {"ok": True}


def test_the_wait_between_retries_is_on_the_engine_clock(run_flow, recorder):
    """An hour between attempts passes on the engine's clock: a fake one (tests, `flowrun test`)
    moves on at once, and the hours are what it counts."""
    from tests.support.clock import FakeClock

    recorder.route("GET", "/flaky", status=503, body="busy", times=2)
    recorder.route("GET", "/flaky", json={"ok": True})
    clock = FakeClock()
    result = run_flow(f"""
        actions:
          call:
            type: Http
            inputs: {{method: GET, uri: "{recorder.url}/flaky"}}
            retryPolicy: {{type: fixed, count: 3, interval: PT1H}}
    """, clock=clock)
    assert (result.steps["call"].status, result.steps["call"].attempts) == ("Succeeded", 3)
    assert clock.slept == 2 * 3600


def test_retries_stop_at_the_policy_count(run_flow, recorder):
    recorder.route("GET", "/down", status=500, json={"error": "boom"})
    result = run_flow(f"""
        actions:
          call:
            type: Http
            inputs: {{method: GET, uri: "{recorder.url}/down"}}
            {FAST}
    """)
    step = result.steps["call"]
    assert (step.status, step.attempts) == ("Failed", 4)
    assert step.error["code"] == "Http500"
    assert step.error["details"] == {"statusCode": 500, "body": {"error": "boom"}}
    assert len(recorder.requests) == 4


def test_non_retryable_errors_fail_at_once(run_flow, recorder):
    recorder.route("GET", "/bad", status=400, json={"error": "bad request"})
    result = run_flow(f"""
        actions:
          call:
            type: Http
            inputs: {{method: GET, uri: "{recorder.url}/bad"}}
            {FAST}
    """)
    step = result.steps["call"]
    assert (step.status, step.attempts) == ("Failed", 1)
    assert "returned 400" in step.error["message"] and "bad request" in step.error["message"]


def test_retry_policy_none_and_retry_after(run_flow, recorder):
    recorder.route("GET", "/limited", status=429, headers={"Retry-After": "0"}, body="slow down", times=1)
    recorder.route("GET", "/limited", json={"ok": True})
    recorder.route("GET", "/never", status=503)
    result = run_flow(f"""
        actions:
          limited:
            type: Http
            inputs: {{method: GET, uri: "{recorder.url}/limited"}}
            retryPolicy: {{type: exponential, count: 2, interval: PT20S}}
          never:
            type: Http
            inputs: {{method: GET, uri: "{recorder.url}/never"}}
            retryPolicy: {{type: none}}
    """)
    # Retry-After: 0 is honoured instead of the 20 s interval
    assert (result.steps["limited"].status, result.steps["limited"].attempts) == ("Succeeded", 2)
    assert (result.steps["never"].status, result.steps["never"].attempts) == ("Failed", 1)


def test_timeout_gives_timed_out_and_run_after_can_handle_it(run_flow):
    result = run_flow("""
        actions:
          slow: {type: Wait, inputs: {interval: {count: 1, unit: Hour}}, timeout: PT0.2S}
          handle: {type: Compose, inputs: late, runAfter: {slow: [TimedOut]}}
          normal: {type: Compose, inputs: ok, runAfter: {slow: [Succeeded]}}
    """)
    assert statuses(result) == {"slow": "TimedOut", "handle": "Succeeded", "normal": "Skipped"}
    assert result.steps["slow"].error["code"] == "ActionTimedOut"


# -- Terminate ------------------------------------------------------------------------------
def test_terminate_ends_the_run_cancels_in_flight_and_skips_the_rest(run_flow):
    result = run_flow("""
        actions:
          long: {type: Wait, inputs: {interval: {count: 1, unit: Hour}}}
          stop:
            type: Terminate
            inputs: {runStatus: Failed, runError: {code: OutOfStock, message: no stock}}
          later: {type: Compose, inputs: x, runAfter: {long: [Succeeded]}}
    """)
    assert result.status == "Failed"
    assert result.error == {"code": "OutOfStock", "message": "no stock"}
    assert statuses(result) == {"stop": "Succeeded", "long": "Cancelled", "later": "Skipped"}


LOOPS_IN_FLIGHT = {
    "Foreach": "each: {type: Foreach, foreach: [1, 2, 3], actions: {nap: %s}}",
    "Until": "each: {type: Until, expression: '{{ false }}', actions: {nap: %s}}",
    "a Foreach in a Scope": "each: {type: Scope, actions: {inner: {type: Foreach, foreach: [1, 2], actions: {nap: %s}}}}",
}


@pytest.mark.parametrize("loop", sorted(LOOPS_IN_FLIGHT))
def test_iterations_in_flight_when_a_run_is_terminated_end_cancelled_not_running(run_flow, tmp_path, loop):
    """Their actions were recorded Cancelled, the iterations themselves left Running: a Failed
    run with steps in flight (a timeout or a cancel ends a run the same way)."""
    import sqlite3

    nap = "{type: Wait, inputs: {interval: {count: 1, unit: Hour}}}"
    result = run_flow(f"""
        actions:
          {LOOPS_IN_FLIGHT[loop] % nap}
          pause: {{type: Wait, inputs: {{interval: {{count: 0.1, unit: Second}}}}}}
          stop:
            type: Terminate
            inputs: {{runStatus: Failed, runError: {{code: Stop, message: stop}}}}
            runAfter: {{pause: [Succeeded]}}
    """)
    assert result.status == "Failed"
    rows = dict(sqlite3.connect(tmp_path / "state.db").execute("SELECT path, status FROM steps"))
    assert "Running" not in rows.values(), rows
    assert {s for p, s in rows.items() if p.endswith("]")} == {"Cancelled"}, rows


@pytest.mark.parametrize("run_status", ["Succeeded", "Cancelled"])
def test_terminate_sets_the_run_status(run_flow, run_status):
    result = run_flow(f"""
        actions:
          stop: {{type: Terminate, inputs: {{runStatus: {run_status}}}}}
          after: {{type: Compose, inputs: x, runAfter: {{stop: [Succeeded]}}}}
    """)
    assert result.status == run_status
    assert result.steps["after"].status == "Skipped"


# -- control flow and variables --------------------------------------------------------------
def test_if_switch_until_and_variables(run_flow):
    result = run_flow("""
        actions:
          n: {type: InitializeVariable, inputs: {variables: [{name: n, type: integer, value: 0}]}}
          log: {type: InitializeVariable, inputs: {variables: [{name: log, type: string}]}}
          count:
            type: Until
            expression: "{{ variables('n') >= 3 }}"
            limit: {count: 10}
            runAfter: {n: [Succeeded], log: [Succeeded]}
            actions:
              inc: {type: IncrementVariable, inputs: {name: n}}
              note:
                type: AppendToStringVariable
                inputs: {name: log, value: "{{ iterationIndexes('count') }};"}
                runAfter: {inc: [Succeeded]}
          big:
            type: If
            expression: {and: [{greater: ["{{ variables('n') }}", 2]}, {equals: ["{{ triggerBody().tier }}", gold]}]}
            runAfter: {count: [Succeeded]}
            actions:
              yes: {type: Compose, inputs: yes}
            else:
              actions:
                no: {type: Compose, inputs: no}
          route:
            type: Switch
            expression: "{{ triggerBody().tier }}"
            runAfter: {big: [Succeeded]}
            cases:
              gold: {case: gold, actions: {vip: {type: Compose, inputs: vip}}}
              silver: {case: silver, actions: {std: {type: Compose, inputs: std}}}
            default:
              actions:
                other: {type: Compose, inputs: other}
        outputs:
          n: {value: "{{ variables('n') }}"}
          log: {value: "{{ variables('log') }}"}
    """, input={"tier": "gold"})
    assert result.status == "Succeeded"
    assert result.outputs == {"n": 3, "log": "0;1;2;"}
    s = statuses(result)
    assert (s["big/yes"], s["big/no"]) == ("Succeeded", "Skipped")
    assert (s["route/vip"], s["route/std"], s["route/other"]) == ("Succeeded", "Skipped", "Skipped")
    assert result.steps["route"].outputs == {"case": "gold"}


def test_until_stops_at_its_count_limit(run_flow):
    result = run_flow("""
        actions:
          loop:
            type: Until
            expression: "{{ false }}"
            limit: {count: 4}
            actions:
              tick: {type: Compose, inputs: "{{ iterationIndexes('loop') }}"}
    """)
    assert result.steps["loop"].outputs == {"iterations": 4, "limitReached": True}
    assert [result.steps[f"loop[{i}]/tick"].outputs for i in range(4)] == [0, 1, 2, 3]


def test_foreach_fails_when_an_iteration_fails_and_reports_each(run_flow):
    result = run_flow("""
        actions:
          loop:
            type: Foreach
            foreach: [1, 0, 2]
            actions:
              div: {type: Compose, inputs: "{{ 10 // item() }}"}
    """)
    s = statuses(result)
    assert (s["loop[0]"], s["loop[1]"], s["loop[2]"]) == ("Succeeded", "Failed", "Succeeded")
    assert s["loop"] == "Failed"
    assert result.steps["loop"].error["details"] == {"count": 3, "failed": 1}


def test_variable_type_is_enforced(run_flow):
    result = run_flow("""
        actions:
          v: {type: InitializeVariable, inputs: {variables: [{name: v, type: integer, value: 1}]}}
          set: {type: SetVariable, inputs: {name: v, value: "text"}, runAfter: {v: [Succeeded]}}
    """)
    assert result.steps["set"].status == "Failed"
    assert "variable 'v' is integer" in result.steps["set"].error["message"]


def test_inputs_are_checked_against_the_node_schema_after_evaluation(run_flow):
    result = run_flow("""
        actions:
          wait: {type: Wait, inputs: {interval: {count: "{{ 'soon' }}", unit: Second}}}
    """)
    assert result.steps["wait"].status == "Failed"
    assert result.steps["wait"].error["code"] == "InvalidInputs"
    assert "'soon' is not of type 'number'" in result.steps["wait"].error["message"]


def test_query_select_join_parse_json(run_flow):
    result = run_flow("""
        actions:
          big:
            type: Query
            inputs: {from: "{{ triggerBody() }}", where: "{{ item().total > 10 }}"}
          ids:
            type: Select
            runAfter: {big: [Succeeded]}
            inputs: {from: "{{ body('big') }}", select: {id: "{{ item().id }}"}}
          csv:
            type: Join
            runAfter: {big: [Succeeded]}
            inputs: {from: "{{ body('big') | map(attribute='id') | list }}", joinWith: ","}
          parsed:
            type: ParseJson
            inputs: {content: '{"id": 1}', schema: {type: object, required: [id]}}
          rejected:
            type: ParseJson
            inputs: {content: '{"name": 1}', schema: {type: object, required: [id]}}
    """, input=[{"id": "a", "total": 5}, {"id": "b", "total": 50}, {"id": "c", "total": 11}])
    assert result.steps["ids"].outputs == [{"id": "b"}, {"id": "c"}]
    assert result.steps["csv"].outputs == "b,c"
    assert result.steps["parsed"].outputs == {"id": 1}
    assert result.steps["rejected"].status == "Failed"
    assert "'id' is a required property" in result.steps["rejected"].error["message"]


def test_response_is_recorded_with_the_run(run_flow):
    result = run_flow("""
        actions:
          reply: {type: Response, inputs: {statusCode: 201, headers: {X-Id: "7"}, body: {id: 7}}}
    """)
    assert result.response == {"statusCode": 201, "headers": {"X-Id": "7"}, "body": {"id": 7}}


def test_workflow_runs_a_child_flow_linked_to_its_parent(run_flow, flow_file):
    flow_file("""
        name: child
        actions:
          double: {type: Compose, inputs: "{{ triggerBody().n * 2 }}"}
        outputs:
          doubled: {value: "{{ outputs('double') }}"}
    """, name="child.yaml")
    result = run_flow("""
        actions:
          call: {type: Workflow, inputs: {flow: child.yaml, body: {n: 21}}}
          use: {type: Compose, inputs: "{{ body('call').doubled }}", runAfter: {call: [Succeeded]}}
    """)
    assert result.status == "Succeeded"
    assert result.steps["use"].outputs == 42
    import engine
    child = result.steps["call"].outputs["runId"]
    eng = engine.Engine(result.file.rsplit("/", 1)[0] + "/state.db")
    assert eng.get_run(child).parent_id == result.run_id


def test_flow_parameters_defaults_and_overrides(run_flow):
    text = """
        parameters:
          region: {type: string, defaultValue: eu}
          retries: {type: int, defaultValue: 1}
        actions:
          c: {type: Compose, inputs: {r: "{{ parameters('region') }}", n: "{{ parameters('retries') }}"}}
    """
    assert run_flow(text).steps["c"].outputs == {"r": "eu", "n": 1}
    assert run_flow(text, params={"region": "us", "retries": "3"}).steps["c"].outputs == {"r": "us", "n": 3}


def test_foreach_concurrency_out_of_range_fails(run_flow):
    result = run_flow("""
        parameters: {n: {type: int, defaultValue: 0}}
        actions:
          loop:
            type: Foreach
            foreach: [1, 2, 3]
            concurrency: "{{ parameters('n') }}"
            actions:
              each: {type: Compose, inputs: "{{ item() }}"}
    """)
    assert result.steps["loop"].status == "Failed"
    assert "concurrency must be a whole number from 1 to 1000" in result.steps["loop"].error["message"]


# -- data is never evaluated ---------------------------------------------------------------------
LAZY_FROM_DATA = [
    ("Select", {"from": [1, 2], "select": "{{ 12345 * 10 }}"}, "select"),
    ("Query", {"from": [1, 2], "where": "{{ 12345 * 10 > 0 }}"}, "where"),
    ("Table", {"format": "CSV", "from": [{"a": 1}], "columns": [{"header": "a", "value": "{{ 12345 * 10 }}"}]},
     "columns"),
]


@pytest.mark.parametrize("node, payload, key", LAZY_FROM_DATA)
def test_keys_a_node_evaluates_itself_are_never_taken_from_data(run_flow, node, payload, key):
    result = run_flow(f"""
        actions:
          shape: {{type: {node}, inputs: "{{{{ triggerBody() }}}}"}}
    """, input=payload)
    step = result.steps["shape"]
    assert step.status == "Failed"
    assert f"'{key}' of {node} must be written in the flow file" in step.error["message"]
    assert "123450" not in json.dumps(step.outputs)


def test_every_node_with_self_evaluated_keys_is_covered_by_the_data_table():
    from engine.registry import default_registry

    # vendor nodes need a connection this table's flows lack: their own tests cover them
    # (aws.kinesis.PutRecords: tests/nodes/aws/test_kinesis.py)
    lazy_inputs = {n.type for n in default_registry().nodes.values() if n.lazy and not n.fields and not n.connection}
    assert lazy_inputs == {row[0] for row in LAZY_FROM_DATA}


def test_a_template_in_the_flow_file_still_maps_items_whose_data_looks_like_a_template(run_flow):
    result = run_flow("""
        actions:
          shape: {type: Select, inputs: {from: "{{ triggerBody() }}", select: "{{ item().name }}!"}}
    """, input=[{"name": "{{ 6 * 7 }}"}])
    assert result.steps["shape"].outputs == ["{{ 6 * 7 }}!"]


def test_a_failed_run_reports_the_failing_action_not_the_outputs_template_that_failed_because_of_it(run_flow):
    result = run_flow("""
        actions:
          boom:
            type: Compose
            inputs: "{{ 1 / 0 }}"
        outputs:
          total: {value: "{{ outputs('boom').total + 1 }}"}
        """)
    assert result.status == "Failed" and result.outputs in (None, {})
    assert result.error["action"] == "boom" and result.error["message"].startswith("action 'boom' failed")


def test_a_succeeded_run_whose_outputs_template_fails_fails_with_that_error(run_flow):
    result = run_flow("""
        actions:
          ok: {type: Compose, inputs: 1}
        outputs:
          bad: {value: "{{ outputs('ok').nope.deeper }}"}
        """)
    assert result.status == "Failed" and "flow outputs" in result.error["message"]


def test_a_wait_whose_timeout_comes_first_times_out_where_runs_park_instead_of_parking_past_it(tmp_path, flow_file):
    """With parking (flowrun serve, workers) a run whose every action waits parks until the
    earliest wake-up, and the step's timeout, a timer of the execution, went with it: an
    hour's Wait with a 1 s timeout slept the hour (seen in chaos runs: parked an hour)."""
    import anyio

    import engine

    e = engine.Engine(tmp_path / "state.db", park_after=0.05)
    e.parking = True
    try:
        flow = e.load(flow_file("""
            actions:
              hang: {type: Wait, inputs: {interval: {count: 1, unit: Hour}}, timeout: PT1S}
              after: {type: Compose, inputs: x, runAfter: {hang: [TimedOut]}}
              short: {type: Wait, inputs: {interval: {count: 1, unit: Hour}}, timeout: PT2H}
        """))
        run = anyio.run(lambda: e.run(flow))
        assert run.status == "Waiting"  # parked on `short` (its timeout comes after its wake-up)
        steps = {s.path: s.status for s in e.steps(run.id)}
        assert steps["hang"] == "TimedOut" and steps["after"] == "Succeeded" and steps["short"] == "Running"
    finally:
        e.close()
