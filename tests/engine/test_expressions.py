"""Templates: typing, workflow functions, never rendering data twice, the sandbox, bounded
cost, and error text people can act on."""
import json
import textwrap
import time

import anyio
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.cli import main
from engine.errors import ExpressionError, ExpressionLimit
from engine.expressions import FILTERS, FUNCTIONS, HELPERS, WORKFLOW_FUNCTIONS, Evaluator
from engine.sandbox import Limits

PAYLOAD = {"name": "Ada", "phone": "+15551234567", "zip": "00123", "total": 120.5, "paid": True,
           "tags": ["a", "b"], "customer": {"id": 7}, "nothing": None, "items": [1, 2, 3],
           "evil": "{{ 7*7 }}", "evil2": "{% for x in range(3) %}x{% endfor %}"}


def compose(run_flow, inputs, payload=PAYLOAD):
    result = run_flow(f"""
        actions:
          c:
            type: Compose
            inputs: {json.dumps(inputs)}
    """, input=payload)
    return result


@pytest.mark.parametrize("template, expected", [
    # a value that is exactly one {{ expr }} keeps its type
    ("{{ triggerBody() }}", PAYLOAD),
    ("{{ triggerBody().customer }}", {"id": 7}),
    ("{{ triggerBody().tags }}", ["a", "b"]),
    ("{{ triggerBody().total }}", 120.5),
    ("{{ triggerBody().paid }}", True),
    ("{{ triggerBody().nothing }}", None),
    ("  {{ triggerBody().customer.id }}  ", 7),
    ("{{ triggerBody().items }}", [1, 2, 3]),  # a JSON key, not dict.items
    # strings are never re-parsed
    ("{{ triggerBody().phone }}", "+15551234567"),
    ("{{ triggerBody().zip }}", "00123"),
    # text around it gives a string; objects render as JSON, null as ""
    ("to {{ triggerBody().phone }}", "to +15551234567"),
    ("{{ triggerBody().customer }}!", '{"id":7}!'),
    ("[{{ triggerBody().nothing }}]", "[]"),
    ("{{ triggerBody().paid }} / {{ triggerBody().total }}", "true / 120.5"),
    ("{{ triggerBody().name }}{{ triggerBody().zip }}", "Ada00123"),
    # filters
    ("{{ triggerBody().customer | json }}", '{"id":7}'),
    ("{{ '{\"a\": 1}' | fromjson }}", {"a": 1}),
    ("{{ 'hello' | b64encode }}", "aGVsbG8="),
    ("{{ 'aGVsbG8=' | b64decode }}", "hello"),
    ("{{ '2024-01-02T03:04:05Z' | dateformat('%Y/%m/%d') }}", "2024/01/02"),
    ("{{ coalesce(triggerBody().nothing, 'fallback') }}", "fallback"),
    ("{{ triggerBody().tags | length }}", 2),
    ("{{ workflow().name }}", "flow"),
])
def test_template_values(run_flow, template, expected):
    result = compose(run_flow, template)
    assert result.status == "Succeeded", result.error
    assert result.steps["c"].outputs == expected


def test_templates_inside_objects_and_lists(run_flow):
    result = compose(run_flow, {"to": "{{ triggerBody().phone }}", "n": "{{ triggerBody().customer.id }}",
                                "list": ["{{ triggerBody().zip }}", 1, None]})
    assert result.steps["c"].outputs == {"to": "+15551234567", "n": 7, "list": ["00123", 1, None]}


@pytest.mark.parametrize("field", ["evil", "evil2"])
def test_payload_data_is_never_rendered_as_a_template(run_flow, field):
    result = run_flow(f"""
        actions:
          first: {{type: Compose, inputs: "{{{{ triggerBody().{field} }}}}"}}
          second:
            type: Compose
            inputs: "got {{{{ body('first') }}}}"
            runAfter: {{first: [Succeeded]}}
          third:
            type: Compose
            inputs: "{{{{ outputs('second') }}}}"
            runAfter: {{second: [Succeeded]}}
    """, input=PAYLOAD)
    assert result.steps["first"].outputs == PAYLOAD[field]
    assert result.steps["second"].outputs == "got " + PAYLOAD[field]
    assert result.steps["third"].outputs == "got " + PAYLOAD[field]


@pytest.mark.parametrize("template, message", [
    ("{{ triggerBody().missing }}", "no key 'missing'"),
    ("x {{ triggerBody().customer.missing }} y", "no key 'missing'"),
    ("{{ triggerBody().nothing.deeper }}", "deeper"),
    ("{{ '{bad json' | fromjson }}", "not valid JSON"),
])
def test_undefined_fails_the_action_naming_the_expression(run_flow, template, message):
    result = compose(run_flow, template)
    step = result.steps["c"]
    assert step.status == "Failed"
    assert step.error["code"] == "ExpressionError"
    assert template.strip() in step.error["message"]
    assert message in step.error["message"]


@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ triggerBody().__class__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ workflow.__globals__ }}",
    "{{ triggerBody().tags.append(1) }}",  # immutable sandbox: no mutation of data
])
def test_sandbox_blocks_escapes(run_flow, template):
    result = compose(run_flow, template)
    step = result.steps["c"]
    assert step.status == "Failed", step.outputs
    assert step.error["code"] == "ExpressionError"


def test_resolved_inputs_are_what_is_persisted(run_flow):
    result = compose(run_flow, {"who": "{{ triggerBody().name }}"})
    assert result.steps["c"].inputs == {"who": "Ada"}


# -- bounded cost -------------------------------------------------------------------------------
# One row per bomb: each ran for over 20 s or grew past 3 GB before templates were bounded.
DOUBLINGS = "{% set a = 'aaaaaaaaaa' %}" + "{% set a = a ~ a %}" * 40 + "{{ a | length }}"
LIST_DOUBLINGS = "{% set a = [1, 2, 3, 4] %}" + "{% set a = a + a %}" * 40 + "{{ a | length }}"
NESTED = ("{% set b = ['x' * 1000000] %}{% set c = [b, b, b, b, b, b, b, b] %}"
          "{% set d = [c, c, c, c, c, c, c, c] %}{% set e = [d, d, d, d] %}")
BOMBS = [
    "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
    "{% for i in range(99999) %}{% for j in range(99999) %}{{ i }}{% endfor %}{% endfor %}",
    "{% for i in range(99999) %}{% for j in range(999) %}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "{% endfor %}{% endfor %}",
    "{{ ((9**999)**999)**999 }}",
    "{{ (9**999)*(9**999)*(9**999)*(9**999)*(9**999) }}",
    "{{ 10 ** 100000 }}",
    "{{ '%*s' % (10**9, 'a') }}",
    "{{ '%.*f' % (10**9, 1.5) }}",
    "{{ '%0100000000d' % 1 }}",
    "{{ '%*s' | format(10**9, 'a') }}",
    "{{ '%0100000000d' | format(1) }}",
    "{{ '{:{}}'.format('a', 10**9) }}",
    "{{ '{:>100000000}'.format(1) }}",
    "{{ '{0:{1}}'.format_map({'0': 1, '1': 10**9}) if false else '{x:{w}}'.format_map({'x': 1, 'w': 10**9}) }}",
    "{{ 'a'.ljust(10**9) }}",
    "{{ 'a'.rjust(10**9) }}",
    "{{ 'a'.center(10**9) }}",
    "{{ 'a'.zfill(10**9) }}",
    "{{ 'a\\tb'.expandtabs(10**9) }}",
    "{{ ('a' * 10000).replace('a', 'b' * 10000) }}",
    "{{ ('y' * 5000000).join(['a', 'b', 'c', 'd', 'e']) }}",
    "{{ (2).to_bytes(10**9, 'big') }}",
    "{{ [1] | slice(10**9) | list }}",
    "{{ [1] | batch(10**9, 0) | list }}",
    "{{ 'x' | center(10**9) }}",
    "{{ 'a\\nb' | indent(10**9) }}",
    "{{ ('x ' * 1000) | wordwrap(1, true, 'y' * 100000) }}",
    "{{ ('a' * 10000) | replace('a', 'b' * 10000) }}",
    "{{ range(10**9) | list | length }}",
    "{{ 'x' * 10**9 }}",
    "{{ [0] * 10**9 }}",
    DOUBLINGS,
    LIST_DOUBLINGS,
    NESTED + "{{ e }}",
    NESTED + "{{ e | string }}",
    NESTED + "{{ e ~ '' }}",
    NESTED + "{{ e | join }}",
    "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "{% for x in [1] recursive %}{{ loop(range(99999)) }}{% endfor %}",
    "{{ ([range(99999) | list] * 20) | sum(start=[]) | length }}",
    "{{ 1.5 | round(10**9, 'ceil') }}",
    "{{ [[[[[[[[[[range(9999) | list]]]]]]]]]] | tojson(indent=10**6) }}",
    "{{ ((range(99999) | list) * 20) | sort | length }}",
]


@pytest.mark.parametrize("template", BOMBS)
def test_a_template_bomb_fails_the_action_with_expression_limit_within_its_budget(run_flow, template):
    started = time.perf_counter()
    result = compose(run_flow, template)
    elapsed = time.perf_counter() - started
    step = result.steps["c"]
    assert step.status == "Failed", str(step.outputs)[:200]
    assert step.error["code"] == "ExpressionLimit", step.error
    assert result.status == "Failed"
    assert elapsed < 5, f"took {elapsed:.1f} s"  # the budget is 1 s; the rest is the engine and a loaded CI box


@pytest.mark.parametrize("template, expected", [
    ("{{ 'x' * 40 }}", "x" * 40),
    ("{{ 2 ** 64 }}", 2 ** 64),
    ("{{ 9 ** 999 == 9 ** 999 }}", True),
    ("{{ '%5s|%-3d|%.2f' % ('ab', 7, 1.5) }}", "   ab|7  |1.50"),
    ("{{ '{:>6}'.format('ab') }}", "    ab"),
    ("{{ 'ab'.ljust(4, '.') ~ 'cd'.center(4) ~ '7'.zfill(3) }}", "ab.. cd 007"),
    ("{{ range(3) | list }}", [0, 1, 2]),
    ("{{ [1, 2, 3, 4] | batch(2) | list }}", [[1, 2], [3, 4]]),
    ("{% for i in range(300) %}{% for j in range(300) %}{% endfor %}{% endfor %}done", "done"),
    ("{{ triggerBody().tags | join(', ') }}", "a, b"),
    ("{{ 1.25 | round(1, 'ceil') }}", 1.3),
    ("{{ [1, [2]] | tojson(indent=1) }}", "[\n 1,\n [\n  2\n ]\n]"),
    ("{{ ('x' * 1000000) | length }}", 1000000),
])
def test_ordinary_templates_stay_well_inside_the_budget(run_flow, template, expected):
    result = compose(run_flow, template)
    assert result.status == "Succeeded", result.error
    assert result.steps["c"].outputs == expected


def test_the_limits_are_configurable():
    tight = Evaluator(limits=Limits(seconds=5, max_bytes=1000, max_ops=50))
    assert tight.evaluate("{{ 'x' * 1000 }}", SCOPE) == "x" * 1000
    with pytest.raises(ExpressionLimit, match="1,001 bytes"):
        tight.evaluate("{{ 'x' * 1001 }}", SCOPE)
    with pytest.raises(ExpressionLimit, match="more than 50 operations"):
        tight.evaluate("{% for i in range(100) %}{% endfor %}", SCOPE)


def test_the_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("FLOWRUN_TEMPLATE_SECONDS", "0.5")
    monkeypatch.setenv("FLOWRUN_TEMPLATE_MAX_BYTES", "2048")
    monkeypatch.setenv("FLOWRUN_TEMPLATE_MAX_OPS", "not a number")
    assert Limits.from_env() == Limits(seconds=0.5, max_bytes=2048)


def test_the_time_limit_stops_a_template_that_stays_under_the_operation_count():
    slow = Evaluator(limits=Limits(seconds=0.05, max_ops=10**9))
    started = time.perf_counter()
    with pytest.raises(ExpressionLimit, match="longer than 0.05 s"):
        slow.evaluate("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}", SCOPE)
    assert time.perf_counter() - started < 1


class _Scope:
    def names(self, functions):
        return {"triggerBody": lambda: PAYLOAD, "item": lambda: 1}


SCOPE = _Scope()
HEAVY = "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"


def offloaded_while_the_loop_ticks(evaluate, monkeypatch):
    """Run ``await evaluate()`` beside a ticker on the same loop, spying on the hand-off to a
    worker thread. Returns (the error code raised, thread idents the evaluations ran in, the
    ticker's count when the worker started and when it finished). No timing is asserted: the
    loop was free if it ticked while the worker was evaluating, which a held loop cannot do."""
    import threading

    import anyio.to_thread

    real = anyio.to_thread.run_sync
    ticks = [0]
    seen: dict[str, object] = {}

    async def spy(fn, *args, **kwargs):
        def worker(*a):
            seen["thread"] = threading.get_ident()
            seen["ticks_at_start"] = ticks[0]
            try:
                return fn(*a)
            finally:
                seen["ticks_at_end"] = ticks[0]
        return await real(worker, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", spy)

    async def main() -> str:
        seen["loop"] = threading.get_ident()
        done = anyio.Event()

        async def ticker() -> None:
            while not done.is_set():
                await anyio.sleep(0.001)
                ticks[0] += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            await anyio.sleep(0)
            try:
                await evaluate()
            except ExpressionLimit as exc:
                return exc.code
            finally:
                done.set()
        return "no error"

    code = anyio.run(main)
    return code, seen


def test_a_long_evaluation_never_holds_the_event_loop(monkeypatch):
    """offload() gives an evaluation a few ms on the loop, then moves it to a worker thread:
    a ticker on the same loop keeps ticking while the evaluation runs to its limit there."""
    evaluator = Evaluator(limits=Limits(seconds=0.5))
    code, seen = offloaded_while_the_loop_ticks(lambda: evaluator.evaluate_async(HEAVY, SCOPE), monkeypatch)
    assert code == "ExpressionLimit"  # it ran to its full budget ...
    assert "thread" in seen and seen["thread"] != seen["loop"]  # ... in a worker thread ...
    assert seen["ticks_at_end"] > seen["ticks_at_start"], seen  # ... while the loop went on


def test_a_short_evaluation_stays_on_the_event_loop():
    evaluator = Evaluator()

    async def main() -> tuple:
        import threading
        seen = []
        scope = type("S", (), {"names": lambda self, f: {"item": lambda: seen.append(threading.get_ident()) or 7}})()
        value = await evaluator.evaluate_async("{{ item() }}", scope)
        return value, seen[0] == threading.get_ident()

    assert anyio.run(main) == (7, True)


# The class, not just the rows: random mixes of the dangerous operators, methods and filters
# over big numbers always finish within the budget, with a value or an ExpressionError.
_NUMS = st.sampled_from(["3", "99", "999", "99999", "10**6", "10**9", "9**999", "2**64", "-1"])
_TEXTS = st.sampled_from(["'a'", "'ab\\tc'", "('x' * 1000)", "'%*s'", "'{:{}}'", "('%s' * 10)"])


@st.composite
def _expr(draw, depth=0):
    if depth >= 3:
        return draw(st.one_of(_NUMS, _TEXTS))
    a, b = draw(_expr(depth=depth + 1)), draw(_expr(depth=depth + 1))
    n = draw(_NUMS)
    form = draw(st.sampled_from([
        "({a} * {b})", "({a} ** {n})", "({a} % ({n}, {b}))", "({a} ~ {b})", "({a} + {b})", "[{a}, {b}, {a}]",
        "({a} | string).ljust({n})", "({a} | string).center({n})", "({a} | string).zfill({n})",
        "({a} | string).expandtabs({n})", "({a} | string).replace('a', {b} | string)",
        "'{{:{{}}}}'.format({a}, {n})", "({a} | string) | center({n})", "[{a}] | slice({n}) | list",
        "[{a}, {b}] | batch({n}, 0) | list", "range({n}) | list", "({a} | string) | join(({b} | string))",
        "({a} | string) | format({n}, {b})", "({a} | string) | indent({n})", "[{a}] * {n}",
    ]))
    return form.format(a=a, b=b, n=n)


@st.composite
def _template(draw):
    e = draw(_expr())
    if draw(st.booleans()):
        return "{{ " + e + " }}"
    n = draw(_NUMS)
    return "{% for i in range(" + n + ") %}{% for j in range(" + n + ") %}{{ " + e + " }}{% endfor %}{% endfor %}"


_FUZZ = Evaluator(limits=Limits(seconds=0.2))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(_template())
def test_random_mixes_of_dangerous_operators_finish_within_the_budget(template):
    started = time.process_time()  # CPU time: what the template costs, not how loaded the box is
    try:
        result = _FUZZ.evaluate(template, SCOPE)
    except ExpressionError:
        result = None
    elapsed = time.process_time() - started
    assert elapsed < 1.0, f"{template} took {elapsed:.2f} s of CPU"
    if isinstance(result, (str, list)):
        assert len(result) <= _FUZZ.limits.max_bytes


# -- no stuck runs --------------------------------------------------------------------------------
BIG = "{{ (9**999)*(9**999)*(9**999)*(9**999)*(9**999) }}"


def test_a_big_integer_fails_the_action_and_the_run_settles_through_the_cli(tmp_path):
    flow = tmp_path / "flow.yaml"
    flow.write_text(textwrap.dedent(f"""
        name: bigint
        actions:
          big: {{type: Compose, inputs: "{BIG}"}}
    """))
    state = ["--state", str(tmp_path / "s.db")]
    out = CliRunner().invoke(main, [*state, "run", str(flow), "--json"])
    assert out.exit_code == 1, out.output  # a failed run, not a crash (exit 2)
    run = json.loads(out.output)
    assert run["status"] == "Failed"
    step = run["steps"][0]
    assert step["status"] == "Failed" and step["error"]["code"] == "ExpressionLimit"
    assert "4,300 a template may build" in step["error"]["message"]
    assert run["error"]["message"].startswith("action 'big' failed: ")
    runs = json.loads(CliRunner().invoke(main, [*state, "runs", "--json"]).output)
    assert [r["status"] for r in runs] == ["Failed"]


def test_a_big_integer_in_the_flow_outputs_fails_the_run_cleanly(tmp_path):
    flow = tmp_path / "flow.yaml"
    flow.write_text(textwrap.dedent(f"""
        name: bigout
        actions:
          a: {{type: Compose, inputs: 1}}
        outputs:
          n: {{value: "{BIG}"}}
    """))
    state = ["--state", str(tmp_path / "s.db")]
    out = CliRunner().invoke(main, [*state, "run", str(flow), "--json"])
    assert out.exit_code == 1, out.output
    run = json.loads(out.output)
    assert run["status"] == "Failed"
    assert run["error"]["code"] == "ExpressionLimit"
    assert run["error"]["message"].startswith("flow outputs: ") and "4,300" in run["error"]["message"]
    runs = json.loads(CliRunner().invoke(main, [*state, "runs", "--json"]).output)
    assert [r["status"] for r in runs] == ["Failed"]


# -- error text for users -------------------------------------------------------------------------
@pytest.mark.parametrize("template, words", [
    ("{{ triggerBody().customer.unit_price }}", ["no key 'unit_price'", "its keys: 'id'"]),
    ("{{ triggerBody().customer.id.name }}", ["an integer value has no attribute or key 'name'"]),
    ("{{ triggerBody().tags[5] }}", ["index 5 is out of range", "2 items"]),
    ("{{ '2024-01-02T00:00:00Z' | add_time(1, 2, 3) }}",
     ["add_time: wrong arguments", "add_time(seconds=0, minutes=0, hours=0, days=0"]),
    ("{{ '2024-01-02T00:00:00Z' | add_time(months=1) }}", ["no argument named 'months'"]),
    ("{{ '2024-01-02T00:00:00Z' | add_time(hours='x') }}", ["hours must be a number, got string"]),
    ("{{ triggerBody().name | add_time(days=1) }}", ["'Ada' is not an ISO 8601 date-time"]),
    ("{{ triggerBody().total | dateformat }}", ["expected an ISO 8601 date-time string, got number"]),
    ("{{ '2024-01-02' | dateformat(5) }}", ["the format must be a string"]),
    ("{{ triggerBody().name - 1 }}", ["cannot apply '-' to string and integer"]),
    ("{{ triggerBody().name + 1 }}", ["cannot add integer to string", "use ~"]),
    ("{{ triggerBody().total > 'a' }}", ["cannot compare number with string using '>'"]),
    ("{{ range(triggerBody().name) }}", ["expected an integer, got string"]),
    ("{{ triggerBody().total / 0 }}", ["division by zero"]),
    ("{{ '%d' % triggerBody().name }}", ["'%d' needs a number, got string"]),
    ("{% for x in triggerBody().total %}{% endfor %}", ["a number value cannot be looped over"]),
    ("{{ '{bad json' | fromjson }}", ["fromjson: not valid JSON", "line 1 column 2"]),
    ("{{ 'not base64!' | b64decode }}", ["b64decode:", "is not base64"]),
])
def test_runtime_errors_read_in_flowruns_words(run_flow, template, words):
    result = compose(run_flow, template)
    step = result.steps["c"]
    assert step.status == "Failed"
    message = step.error["message"]
    assert template.strip() in message
    for w in words:
        assert w in message
    assert "object has no attribute" not in message and "positional argument" not in message
    assert result.error["message"].startswith("action 'c' failed: ")


def test_every_function_and_filter_flowrun_adds_is_in_the_reference():
    documented = {f.name for f in FUNCTIONS}
    assert set(WORKFLOW_FUNCTIONS) | set(HELPERS) | set(FILTERS) | {"range"} <= documented
    for f in FUNCTIONS:
        assert f.signature.count("(") == f.signature.count(")") and f.description
    assert "add_time(seconds=0" in {f.name: f.signature for f in FUNCTIONS}["add_time"]


def test_flowrun_functions_lists_every_signature(tmp_path):
    out = CliRunner().invoke(main, ["functions"])
    assert out.exit_code == 0, out.output
    for f in FUNCTIONS:
        assert f.signature in out.output
    assert "soql" in out.output  # node-contributed filters are listed too


# -- serve ------------------------------------------------------------------------------------------
BOMB_FLOW = """\
name: bomb
triggers:
  hook: {type: Request, auth: {type: none}}
actions:
  boom: {type: Compose, inputs: "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"}
"""
CALM_FLOW = """\
name: calm
triggers:
  hook: {type: Request, auth: {type: none}}
actions:
  ok: {type: Compose, inputs: "{{ triggerBody().n + 1 }}"}
"""


def test_a_bomb_in_serve_fails_only_its_own_run_and_healthz_stays_fast(tmp_path):
    """While the bomb runs to its 3 s budget (operations unbounded), /healthz keeps answering: a
    loop held by the bomb would answer at most one request before the run failed, so several round trips that begin and
    end with the run still Running show the loop free (no latency bound, which load can break)."""
    from tests.listener.conftest import Server, write_flows

    server = Server(write_flows(tmp_path / "flows", {"bomb.yaml": BOMB_FLOW, "calm.yaml": CALM_FLOW}),
                    tmp_path / "state.db", env={"FLOWRUN_TEMPLATE_SECONDS": "3", "FLOWRUN_TEMPLATE_MAX_OPS": str(10**12)}).start()
    try:
        with server.client(timeout=30) as c:
            bomb = c.post("/flows/bomb/triggers/hook", json={})
            assert bomb.status_code == 202, bomb.text
            bomb_id = bomb.headers["x-flowrun-run-id"]
            during = 0  # healthz answers begun and ended while the bomb was still running
            while server.run(bomb_id)["status"] in ("Queued", "Running"):
                assert c.get("/healthz").status_code == 200
                during += server.run(bomb_id)["status"] == "Running"
            calm = c.post("/flows/calm/triggers/hook", json={"n": 41})
            calm_id = calm.headers["x-flowrun-run-id"]
        bomb_run = server.wait_run(bomb_id)
        assert bomb_run["status"] == "Failed"
        assert "ExpressionLimit" in bomb_run["error"]
        assert server.wait_run(calm_id)["status"] == "Succeeded"
        assert during >= 3, f"only {during} /healthz answers while the bomb ran"
    finally:
        server.stop()


@pytest.mark.parametrize("action", [
    {"type": "Until", "expression": HEAVY, "limit": {"count": 2},
     "actions": {"x": {"type": "Compose", "inputs": 1}}},
    {"type": "Switch", "expression": 1, "cases": {"one": {"case": HEAVY, "actions": {}}}},
    {"type": "If", "expression": HEAVY, "actions": {}},
    {"type": "Foreach", "foreach": "{{ [1] | batch(10**9, 0) | list }}", "actions": {}},
])
def test_a_bomb_in_a_control_expression_fails_that_action(run_flow, action):
    result = run_flow("actions:\n  c: " + json.dumps(action))
    step = result.steps["c"]
    assert step.status == "Failed"
    assert step.error["code"] == "ExpressionLimit", step.error


@pytest.mark.parametrize("text", ["[" * 5000 + "]" * 5000, "1" * 5000, "NaN", '{"a": Infinity}'])
def test_fromjson_and_parsejson_refuse_hostile_json_with_a_clear_error(run_flow, text):
    result = run_flow("""
        actions:
          a: {type: Compose, inputs: "{{ triggerBody().t | fromjson }}"}
          b: {type: ParseJson, inputs: {content: "{{ triggerBody().t }}", schema: {}}}
    """, input={"t": text})
    for name in ("a", "b"):
        step = result.steps[name]
        assert step.status == "Failed", name
        assert "Traceback" not in step.error["message"] and len(step.error["message"]) < 300


def test_an_undefined_inside_a_list_result_is_the_expressions_error_not_a_crash_later(tmp_path):
    """`xs | map(attribute='missing') | list` builds a list of Undefined: it fails in the
    expression, naming it, never later wherever the value is first written as text."""
    import engine

    flow = tmp_path / "u.yaml"
    flow.write_text("name: u\nactions:\n  c: {type: Compose, inputs: \"{{ [[1], [2]] | map(attribute='id') | list }}\"}\n"
                    "  d: {type: Compose, inputs: {deep: \"{{ [{'k': [[1]] | map(attribute='z') | list}] }}\"}}\n")
    result = engine.run_file(flow, state=tmp_path / "s.db")
    assert result.status == "Failed"
    assert result.steps["c"].error["message"].endswith("an array has no attribute 'id' (use an index: [0])")
    assert "has no attribute 'z'" in result.steps["d"].error["message"]
