"""result() of a loop read from the store on demand (engine/looprows.py).

Every case runs the same small loop twice: with its rows as plain lists (the eager path,
what small loops get) and as store-backed sequences (``EAGER_ROWS = 0``, what a loop of
200,000 iterations gets); both must give the same, known, values. The memory bound of the
big loop is in test_memory.py."""
import textwrap

import pytest

import engine
from engine import looprows
from tests.support import postgres

# items 0..9: `half` fails where item % 3 == 0 (0, 3, 6, 9), `after` is then Skipped
LOOP = """
actions:
  loop:
    type: Foreach
    foreach: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    concurrency: 4
    actions:
      half: {type: Compose, inputs: "{{ 6 // (item() % 3) }}"}
      after: {type: Compose, inputs: "{{ item() * 10 }}", runAfter: {half: [Succeeded]}}
CONSUMERS
outputs:
  rows: {value: "{{ result('loop')[1].outputs | map(attribute='outputs') | list }}"}
"""

# (expression, the value it gives)
CASES = [
    ("{{ result('loop') | map(attribute='name') | list }}", ["half", "after"]),
    ("{{ result('loop') | map(attribute='status') | list }}", ["Failed", "Succeeded"]),
    ("{{ result('loop')[0].outputs | length }}", 10),
    ("{{ result('loop')[0].outputs | count }}", 10),
    ("{{ result('loop')[0].outputs[1].outputs }}", 6),
    ("{{ result('loop')[0].outputs[-1].status }}", "Failed"),
    ("{{ result('loop')[1].outputs[-2].outputs }}", 80),
    ("{{ result('loop')[1].outputs[1:4] | map(attribute='outputs') | list }}", [10, 20, None]),
    ("{{ result('loop')[1].outputs[::-3] | map(attribute='status') | list }}",
     ["Skipped", "Skipped", "Skipped", "Skipped"]),
    ("{{ (result('loop')[0].outputs | first).status }}", "Failed"),
    ("{{ (result('loop')[0].outputs | last).error.code }}", "ExpressionError"),
    ("{{ result('loop')[0].outputs | selectattr('status', 'eq', 'Failed') | map(attribute='inputs') | list }}",
     [None, None, None, None]),
    ("{{ result('loop')[0].outputs | selectattr('status', '==', 'Succeeded') | map(attribute='outputs') | list }}",
     [6, 3, 6, 3, 6, 3]),
    ("{{ result('loop')[0].outputs | rejectattr('status', 'equalto', 'Failed') | list | length }}", 6),
    ("{{ result('loop')[1].outputs | selectattr('status', 'in', ['Skipped']) | list | length }}", 4),
    ("{{ result('loop')[1].outputs | selectattr('status', 'ne', 'Skipped') | sum(attribute='outputs') }}", 270),
    ("{{ result('loop')[1].outputs | selectattr('status') | list | length }}", 10),
    ("{{ result('loop')[1].outputs[2:8] | selectattr('status', 'eq', 'Skipped') | map(attribute='name') | list }}",
     ["after", "after"]),
    ("{{ result('loop')[1].outputs | rejectattr('outputs', 'none') | selectattr('outputs', 'gt', 60) | map(attribute='outputs') | list }}",
     [70, 80]),
    ("{{ result('loop')[1].outputs | selectattr('status', 'eq', 'Failed') | list }}", []),
    ("{{ result('loop')[1].outputs | reverse | map(attribute='outputs') | first }}", None),
    ("{{ result('loop')[1].outputs | map(attribute='outputs') | select | max }}", 80),
    ("{{ result('loop')[1].outputs == result('loop')[1].outputs }}", True),
    ("{{ result('loop')[1].outputs[:2] == [] }}", False),
    ("{{ result('loop')[1].outputs[5:5] == [] }}", True),
    ("{{ (result('loop')[1].outputs[1:3] + [1]) | length }}", 3),
    ("{{ result('loop')[1].outputs[1:2] | map(attribute='outputs') | join(',') }}", "10"),
    ("{{ result('loop')[0].outputs[1:3] | map(attribute='outputs') | list | tojson }}", "[6, 3]"),
    ("{{ result('loop')[1].outputs[1:2] | tojson | fromjson | map(attribute='outputs') | list }}", [10]),
    ("n={{ result('loop')[1].outputs[7:9] | map(attribute='outputs') | list }}", "n=[70,80]"),
    ("{% for r in result('loop')[1].outputs %}{{ r.outputs or '-' }}{% endfor %}", "-1020-4050-7080-"),
    ("{{ result('loop')[0].outputs is sequence }}", True),
    ("{{ result('loop')[0].outputs[1] in result('loop')[0].outputs }}", True),
    ("{{ (result('loop')[0].outputs | list)[2].outputs }}", 3),
    ("{{ result('loop')[0].outputs | sort(attribute='status') | map(attribute='status') | first }}", "Failed"),
    ("{{ result('loop')[1].outputs | batch(4) | map('length') | list }}", [4, 4, 2]),
]


def _flow(cases) -> str:
    consumers = "\n".join(
        f"  c{i}: {{type: Compose, inputs: {_yaml(expr)}, runAfter: {{loop: [Succeeded, Failed]}}}}"
        for i, (expr, _) in enumerate(cases))
    return LOOP.replace("CONSUMERS", consumers)


def _yaml(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@pytest.fixture(params=postgres.BACKENDS)
def state(request, tmp_path):
    """Every run here is stored in SQLite and in PostgreSQL: the loop's rows are read by SQL."""
    yield from postgres.backend_state(request.param, tmp_path)


@pytest.fixture
def run(flow_file, state):
    return lambda text, **kw: engine.run_file(flow_file(textwrap.dedent(text)), state=state, **kw)


@pytest.fixture(params=["lists", "store-backed"])
def rows_as(request, monkeypatch):
    if request.param == "store-backed":
        monkeypatch.setattr(looprows, "EAGER_ROWS", 0)
    return request.param


def test_every_read_of_a_loops_rows_gives_the_known_value(run, rows_as):
    result = run(_flow(CASES))
    got = {expr: (result.steps[f"c{i}"].outputs, result.steps[f"c{i}"].error) for i, (expr, _) in enumerate(CASES)}
    assert got == {expr: (want, None) for expr, want in CASES}
    assert result.outputs == {"rows": [None, 10, 20, None, 40, 50, None, 70, 80, None]}


def test_the_whole_result_is_the_same_from_lists_and_from_the_store(run, monkeypatch):
    flow = _flow([("{{ result('loop') }}", None), ("{{ result('loop')[1].outputs[3:] }}", None)])
    eager = run(flow)
    monkeypatch.setattr(looprows, "EAGER_ROWS", 0)
    lazy = run(flow)
    for name in ("c0", "c1"):
        assert lazy.steps[name].status == "Succeeded"
        assert _timeless(lazy.steps[name].outputs) == _timeless(eager.steps[name].outputs)
    whole = lazy.steps["c0"].outputs
    assert [r["name"] for r in whole] == ["half", "after"]
    assert [r["status"] for r in whole[0]["outputs"]] == ["Failed", "Succeeded", "Succeeded"] * 3 + ["Failed"]
    assert set(whole[1]["outputs"][0]) == {"name", "type", "status", "inputs", "outputs", "error", "startTime",
                                           "endTime", "attempts"}


def _timeless(value):
    """Rows without their times (two runs of one flow differ only there)."""
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items() if k not in ("startTime", "endTime")}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


def test_result_of_an_until_loop_from_the_store(run, rows_as):
    result = run("""
        actions:
          n: {type: InitializeVariable, inputs: {variables: [{name: n, type: integer, value: 0}]}}
          again:
            type: Until
            runAfter: {n: [Succeeded]}
            expression: "{{ variables('n') >= 4 }}"
            limit: {count: 10}
            actions:
              bump: {type: IncrementVariable, inputs: {name: n}}
          seen:
            type: Compose
            runAfter: {again: [Succeeded]}
            inputs: "{{ (result('again') | first).outputs | map(attribute='outputs.value') | list }}"
    """)
    assert result.steps["seen"].outputs == [1, 2, 3, 4]


def test_a_nested_loops_result_reads_only_its_own_iterations(run, rows_as):
    result = run("""
        actions:
          outer:
            type: Foreach
            foreach: [1, 2]
            actions:
              inner:
                type: Foreach
                foreach: "{{ range(items('outer') * 2) | list }}"
                actions:
                  each: {type: Compose, inputs: "{{ items('outer') * 100 + item() }}"}
              seen: {type: Compose, runAfter: {inner: [Succeeded]},
                     inputs: "{{ result('inner')[0].outputs | map(attribute='outputs') | list }}"}
          all: {type: Compose, runAfter: {outer: [Succeeded]},
                inputs: "{{ result('outer') | selectattr('name', 'eq', 'seen') | map(attribute='outputs') | first | map(attribute='outputs') | list }}"}
    """)
    assert result.steps["all"].outputs == [[100, 101], [200, 201, 202, 203]]


def test_a_rerun_reads_the_reused_iterations_from_the_store(run, state, monkeypatch):
    import anyio

    monkeypatch.setattr(looprows, "EAGER_ROWS", 0)
    first = run("""
        actions:
          loop:
            type: Foreach
            foreach: [1, 2, 3]
            actions:
              sq: {type: Compose, inputs: "{{ item() * item() }}"}
          total: {type: Compose, inputs: "{{ (result('loop') | first).outputs | sum(attribute='outputs') }}",
                  runAfter: {loop: [Succeeded]}}
    """)
    assert first.steps["total"].outputs == 14
    eng = engine.Engine(state)
    try:
        again = anyio.run(lambda: eng.rerun(first.run_id, "total"))
        assert again.steps["total"].outputs == 14
        assert again.steps["loop[2]/sq"].outputs == 9
    finally:
        eng.close()


# -- the budget ------------------------------------------------------------------------------
BUDGET_LOOP = """
actions:
  loop:
    type: Foreach
    foreach: "{{ range(60) | list }}"
    concurrency: 10
    actions:
      each: {type: Compose, inputs: "{{ 'x' * 40 }}"}
CONSUMERS
"""


def tight(monkeypatch):
    """Templates may build 4,000 bytes (the rows of this loop are about 12,000 as JSON)."""
    from engine.loader import tools
    from engine.registry import default_registry
    from engine.sandbox import Limits

    monkeypatch.setattr(tools(default_registry())[1], "limits", Limits(max_bytes=4000))
    monkeypatch.setattr(looprows, "EAGER_ROWS", 0)


@pytest.mark.parametrize("expr, error", [
    ("{{ result('loop') }}", "result('loop') has 60 rows of 'each': about "),
    ("{{ result('loop')[0].outputs | list }}", "result('loop') has 60 rows of 'each'"),
    ("{{ result('loop')[0].outputs | tojson }}", "result('loop') has 60 rows of 'each'"),
    ("rows: {{ result('loop')[0].outputs }}", "result('loop') has 60 rows of 'each'"),
    ("{{ result('loop')[0].outputs + [] }}", "result('loop') has 60 rows of 'each'"),
    ("{{ result('loop')[0].outputs ~ '' }}", "more than the 4,000 bytes a template may build"),
    ("{{ result('loop')[0].outputs[:40] | sort(attribute='status') }}", "result('loop') has 40 rows of 'each'"),
    ("{{ [result('loop')[0].outputs[:10], result('loop')[0].outputs[10:20]] }}",
     "result('loop') has 10 rows of 'each': about 2,660 bytes as JSON (with the 2,660 bytes read before it)"),
])
def test_a_whole_value_past_the_budget_is_one_clear_limit_error(run, monkeypatch, expr, error):
    tight(monkeypatch)
    result = run(BUDGET_LOOP.replace("CONSUMERS", f"  c: {{type: Compose, inputs: {_yaml(expr)}, "
                                                  f"runAfter: {{loop: [Succeeded]}}}}"))
    step = result.steps["c"]
    assert step.status == "Failed"
    assert step.error["code"] == "ExpressionLimit", step.error
    assert error in step.error["message"], step.error["message"]
    assert "Traceback" not in step.error["message"]


@pytest.mark.parametrize("expr, value", [
    ("{{ result('loop')[0].outputs | length }}", 60),
    ("{{ result('loop')[0].outputs[-1].outputs | length }}", 40),
    ("{{ result('loop')[0].outputs[10:12] | map(attribute='outputs') | join | length }}", 80),
    ("{{ result('loop')[0].outputs | selectattr('status', 'eq', 'Failed') | list }}", []),
    ("{{ result('loop')[0].outputs | map(attribute='status') | unique | list }}", ["Succeeded"]),
    ("{{ result('loop')[0].status }}", "Succeeded"),
])
def test_parts_of_a_loop_too_big_to_build_whole_are_read_within_the_budget(run, monkeypatch, expr, value):
    tight(monkeypatch)
    result = run(BUDGET_LOOP.replace("CONSUMERS", f"  c: {{type: Compose, inputs: {_yaml(expr)}, "
                                                  f"runAfter: {{loop: [Succeeded]}}}}"))
    assert (result.steps["c"].status, result.steps["c"].outputs) == ("Succeeded", value), result.steps["c"].error


@pytest.mark.parametrize("expr, error", [
    ("{{ result('loop')[0].outputs[99] }}", "index 99 is out of range: the array has 10 items"),
    ("{{ result('loop')[0].outputs['x'] }}", "an array has no attribute 'x' (use an index: [0])"),
    ("{{ result('loop')[0].outputs.materialize }}", "not allowed in the sandbox"),
    ("{{ result('loop')[0].outputs._loop }}", "not allowed in the sandbox"),
])
def test_reading_what_is_not_there_is_a_plain_expression_error(run, monkeypatch, expr, error):
    monkeypatch.setattr(looprows, "EAGER_ROWS", 0)
    result = run(LOOP.replace("CONSUMERS", f"  c: {{type: Compose, inputs: {_yaml(expr)}, "
                                           f"runAfter: {{loop: [Succeeded, Failed]}}}}"))
    step = result.steps["c"]
    assert step.status == "Failed"
    assert error in step.error["message"], step.error["message"]


# -- fuzz: any slice, index and status filter reads the same rows both ways ------------------------
@pytest.fixture(scope="module", params=postgres.BACKENDS)
def finished_loop(request, tmp_path_factory):
    """A finished run of LOOP (no readers) and a root frame to evaluate templates in after it,
    on each backend."""
    from engine.frames import ActionResult, Frame
    from engine.executor import Runtime

    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "flow.yaml").write_text(LOOP.replace("CONSUMERS", "").replace("foreach: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]",
                                                                            "foreach: \"{{ range(23) | list }}\""))
    places = postgres.backend_state(request.param, folder)
    state = next(places)
    ran = engine.run_file(folder / "flow.yaml", state=state)
    eng = engine.Engine(state)
    flow = eng.load(folder / "flow.yaml")
    runtime = Runtime(engine=eng, flow=flow, run_id=ran.run_id, trigger={}, params={}, connections={})
    runtime.latest["loop"] = ActionResult("loop", "Foreach", "Failed", path="loop")
    yield eng.evaluator, Frame(runtime, None, "")
    eng.close()
    places.close()  # drops the PostgreSQL schema


def _read(evaluator, frame, text):
    from engine.errors import ExpressionError

    try:
        return evaluator.evaluate(text, frame)
    except ExpressionError as exc:
        return ("error", exc.message)


def _sl(s):
    return ":".join("" if x is None else str(x) for x in s)


try:
    from hypothesis import HealthCheck, given, settings, strategies as st
except ImportError:  # pragma: no cover
    st = None

if st is not None:
    _slices = st.tuples(*(st.one_of(st.none(), st.integers(-30, 30)) for _ in range(2)),
                        st.one_of(st.none(), st.integers(-5, 5).filter(bool)))
    _statuses = st.sampled_from(["Failed", "Succeeded", "Skipped", "Running"])

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(which=st.integers(0, 1), first=_slices, then=_slices, index=st.integers(-30, 30),
           op=st.sampled_from(["eq", "ne", "==", "!=", "in"]), status=_statuses, reject=st.booleans())
    def test_any_slice_index_and_status_filter_reads_the_same_rows_from_the_store(
            finished_loop, monkeypatch, which, first, then, index, op, status, reject):
        evaluator, frame = finished_loop
        operand = f"['{status}', 'Skipped']" if op == "in" else f"'{status}'"
        rows = f"result('loop')[{which}].outputs"
        picked = f"({rows}[{_sl(first)}] | {'rejectattr' if reject else 'selectattr'}('status', '{op}', {operand}) | list)"
        texts = [f"{{{{ {rows}[{_sl(first)}] | map(attribute='outputs') | list }}}}",
                 f"{{{{ {rows}[{index}].outputs }}}}",
                 f"{{{{ {picked}[{_sl(then)}] | map(attribute='outputs') | list }}}}",
                 f"{{{{ {picked} | length }}}}",
                 f"{{{{ ({rows}[{_sl(first)}] | list)[{index}].status }}}}"]
        with monkeypatch.context() as m:  # (undone at the end of each example)
            m.setattr(looprows, "EAGER_ROWS", 10**9)
            eager = [_read(evaluator, frame, t) for t in texts]
            m.setattr(looprows, "EAGER_ROWS", 0)
            lazy = [_read(evaluator, frame, t) for t in texts]
        assert lazy == eager


def test_many_readers_at_once_read_the_loop_while_the_run_goes_on(run, monkeypatch):
    """Readers start together after the loop, each in its own worker thread, while the run
    records their starts: reading never touches what the run is writing."""
    monkeypatch.setattr(looprows, "EAGER_ROWS", 0)
    readers = "\n".join(
        f"  r{i}: {{type: Compose, runAfter: {{loop: [Succeeded]}}, inputs: \"{{{{ [result('loop')[0].outputs | "
        f"selectattr('status', 'eq', 'Failed') | list, result('loop')[0].outputs[{i}:{i + 2}] | "
        f"map(attribute='outputs') | list] }}}}\"}}" for i in range(16))
    for _ in range(3):
        result = run(BUDGET_LOOP.replace("range(60)", "range(3000)").replace("'x' * 40", "item()")
                     .replace("CONSUMERS", readers))
        assert {name: (s.status, s.outputs) for name, s in result.steps.items() if name.startswith("r")} == \
               {f"r{i}": ("Succeeded", [[], [i, i + 1]]) for i in range(16)}


def test_a_node_given_rows_gets_a_plain_list(run, rows_as):
    """Foreach refuses anything but a list: the rows it is given are one, built at the boundary."""
    result = run(LOOP.replace("CONSUMERS", """
  again:
    type: Foreach
    runAfter: {loop: [Failed]}
    foreach: "{{ result('loop')[1].outputs[1:3] }}"
    actions:
      twice: {type: Compose, inputs: "{{ item().outputs * 2 }}"}
  seen: {type: Compose, runAfter: {again: [Succeeded]}, inputs: "{{ result('again')[0].outputs | map(attribute='outputs') | list }}"}
"""))
    assert result.steps["again"].status == "Succeeded", result.steps["again"].error
    assert result.steps["seen"].outputs == [20, 40]


@pytest.mark.parametrize("view", ["", "[0:30]", " | selectattr('status', 'eq', 'Succeeded')"])
def test_rows_whose_outputs_live_in_blob_files_are_sized_by_their_blobs(run, monkeypatch, view):
    """Outputs past the blob threshold are stored as references to files: the size of the rows
    is that of what the files hold, not of the references."""
    tight(monkeypatch)
    flow = BUDGET_LOOP.replace("'x' * 40", "'y' * 300").replace("CONSUMERS", f"""
  n: {{type: Compose, runAfter: {{loop: [Succeeded]}}, inputs: "{{{{ result('loop')[0].outputs{view} | length }}}}"}}
  rows: {{type: Compose, runAfter: {{loop: [Succeeded]}}, inputs: "{{{{ result('loop')[0].outputs{view} }}}}"}}
""")
    result = run(flow, blob_threshold=100)
    assert result.steps["loop[0]/each"].outputs == "y" * 300
    assert result.steps["n"].outputs == (30 if "30" in view else 60)
    message = result.steps["rows"].error["message"]
    assert "more than the 4,000 bytes" in message, message
    size = int(message.split("rows of 'each': about ")[1].split(" bytes")[0].replace(",", ""))
    # counted to the end from the loop's summary; a page at a time (16 rows first) for a part
    assert size >= (60 if not view else 16) * 600, message  # inputs and outputs: 2 x 302 bytes
