"""Every `@` evaluation runs under the sandbox's budget: what would build too much, nest too
deep or run too long stops with ExpressionLimit (never a hang, never a traceback); and any
text at all, hostile included, is either a value or one clear error."""
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import ExpressionError, ExpressionLimit
from engine.expressions import Evaluator
from engine.sandbox import Limits

from .test_functions import SCOPE

EVALUATOR = Evaluator(limits=Limits(seconds=1.0, max_bytes=2_000_000))


@pytest.mark.parametrize("text, words", [
    ("@length(replace(replace(replace(replace(string(range(0, 100000)), ',', ',,,,,,,,,,'), ',', ',,,,,,,,,,'), "
     "',', ',,,,,,,,,,'), ',', ',,,,,,,,,,'))", "would be about"),
    ("@range(0, 100001)", "at most 100,000"),
    ("@length(string(createArray(range(0, 100000), range(0, 100000), range(0, 100000), range(0, 100000))))",
     "would be about"),
    ("@length(createArray(" + ", ".join(["range(0, 100000)"] * 60) + "))", "built more than"),
    ("@chunk(string(range(0, 100000)), 1)", "would be about"),
    ("@split(string(range(0, 100000)), ',')", "would be about"),
    ("@xpath(xml(concat('<a>', join(range(0, 3000), '<b/>'), '</a>')), 'count(//*[count(//*) > count(//b)])')",
     "longer than"),
])
def test_costly_expressions_stop_at_the_budget(text, words):
    started = time.perf_counter()
    with pytest.raises(ExpressionLimit) as info:
        EVALUATOR.evaluate(text, SCOPE)
    assert words in info.value.message
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("text, words", [
    ("@length(" + "concat(" * 70 + "'x'" + ")" * 70 + ")", "nested more than 64"),
    ("@formatNumber(1, 'F100000')", "at most 1,000"),
    ("@concat('" + "x" * 9000 + "')", "at most 8,192"),
])
def test_what_cannot_be_bounded_at_run_time_is_refused_when_compiled(text, words):
    with pytest.raises(ExpressionError, match=words):
        EVALUATOR.evaluate(text, SCOPE)
    if "8,192" in words or "nested" in words:
        assert words in EVALUATOR.analyze(text).error


def test_a_pathological_xpath_stops_at_the_time_limit():
    quick = Evaluator(limits=Limits(seconds=0.2, max_ops=10**9))
    started = time.perf_counter()
    with pytest.raises(ExpressionLimit, match="longer than 0.2 s"):
        quick.evaluate("@xpath(xml(concat('<a>', join(range(0, 3000), '<b/>'), '</a>')), "
                       "'count(//*[count(//*) > count(//b)])')", SCOPE)
    assert time.perf_counter() - started < 3


def test_the_budget_covers_interpolated_text():
    with pytest.raises(ExpressionLimit):
        EVALUATOR.evaluate("@{string(range(0, 100000))}@{string(range(0, 100000))}@{string(range(0, 100000))}"
                           "@{string(range(0, 100000))}", SCOPE)


def test_hostile_regex_food_is_cheap():
    started = time.perf_counter()
    for text in ("@isFloat('" + "1" * 5000 + "x')", "@decimal('" + "1" * 5000 + "x')",
                 "@formatDateTime('" + "1" * 5000 + "')",
                 "@parseDateTime('" + "1" * 90 + "', 'en-us', 'HHmmssddMMyyyyhhfffffffFFFFFFF')"):
        try:
            EVALUATOR.evaluate(text, SCOPE)
        except ExpressionError:
            pass
    assert time.perf_counter() - started < 2


ATOMS = st.sampled_from(["'a'", "''''", "1", "-2.5", "true", "null", "triggerBody()", "createArray(1, 'x')",
                         "json('{}')", "variables('myString')", "item()", "'2018-03-15T00:00:00Z'", "range(0, 3)"])
NAMES = st.sampled_from(["concat", "add", "length", "first", "equals", "if", "and", "string", "json", "xml",
                         "formatDateTime", "addDays", "substring", "split", "join", "union", "sort", "coalesce",
                         "xpath", "int", "float", "base64", "uriHost", "formatNumber", "nosuch", "div", "mod"])


@st.composite
def expressions(draw, depth=0):
    if depth > 3 or draw(st.booleans()):
        out = draw(ATOMS)
    else:
        args = draw(st.lists(expressions(depth=depth + 1), max_size=4))
        out = f"{draw(NAMES)}({', '.join(args)})"
    for step in draw(st.lists(st.sampled_from([".x", "?.x", "[0]", "?['a']", "['name']"]), max_size=2)):
        out += step
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(expressions())
def test_generated_expressions_give_a_value_or_one_clear_error(expr):
    for text in (f"@{expr}", f"x @{{{expr}}} y"):
        try:
            EVALUATOR.evaluate(text, SCOPE)
        except ExpressionError as exc:
            assert exc.message and "Traceback" not in exc.message
        found = EVALUATOR.analyze(text)
        assert found.error is None or isinstance(found.error, str)


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(alphabet=st.sampled_from(list("@{}()[]'.,?\" abcxyz019-+eE_$\n\\")), max_size=60))
def test_any_text_parses_or_fails_with_a_position(text):
    found = EVALUATOR.analyze(text)
    if found.error is not None and found.language == "wdl":
        assert found.offset is None or 0 <= found.offset <= len(text)
    try:
        EVALUATOR.evaluate(text, SCOPE)
    except ExpressionError as exc:
        assert exc.message


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(max_size=80))
def test_any_unicode_text_is_handled(text):
    try:
        EVALUATOR.evaluate("@" + text, SCOPE)
    except ExpressionError as exc:
        assert exc.message


def test_a_long_at_evaluation_never_holds_the_event_loop(monkeypatch):
    """On the event loop an `@` evaluation gets a slice, then moves to a worker thread (xpath too),
    and the loop goes on ticking while it runs there to its limit."""
    from tests.engine.test_expressions import offloaded_while_the_loop_ticks

    evaluator = Evaluator(limits=Limits(seconds=0.5, max_ops=10**9))
    heavy = ("@xpath(xml(concat('<a>', join(range(0, 3000), '<b/>'), '</a>')), "
             "'count(//*[count(//*) > count(//b)])')")
    code, seen = offloaded_while_the_loop_ticks(lambda: evaluator.evaluate_async(heavy, SCOPE), monkeypatch)
    assert code == "ExpressionLimit"
    assert "thread" in seen and seen["thread"] != seen["loop"]
    assert seen["ticks_at_end"] > seen["ticks_at_start"], seen


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(expressions())
def test_a_flow_holding_any_expression_loads_or_lists_its_problems(expr):
    import json as _json

    from engine.errors import FlowError
    from engine.loader import load_text

    text = f"actions:\n  a: {{type: Compose, inputs: {_json.dumps('@' + expr)}}}\n"
    try:
        load_text(text, "flows/x.yaml")
    except FlowError as exc:
        for p in exc.problems:
            assert p.line == 2 and p.column >= 1 and "internal error" not in p.message, str(p)


class _Body:
    """SCOPE with a trigger body of the test's choosing (a hostile payload)."""

    def __init__(self, body):
        self.body = body

    def names(self, functions):
        return {**SCOPE.names(functions), "triggerBody": lambda: self.body}


@pytest.mark.parametrize("path", [
    'replace("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!", "(a+)+$", "b")',  # a regex in C: no stop reaches it
    'matches("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!", "(a|aa)+$")',
    'tokenize("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!", "(a+)+$")',
    'count(1 to 100000000000)',
    'string-join(for $i in 1 to 100000000 return "x", "")',
    'unparsed-text("file:///etc/passwd")',
    'doc("file:///etc/passwd")',
    'environment-variable("HOME")',
    'parse-xml("<a/>")',
])
def test_xpath_is_xpath_1_0_so_xpath_2_0_regexes_ranges_and_documents_are_unknown(path):
    """Logic Apps' xpath() is XPath 1.0; XPath 2.0's regexes ran in C past every stop (a hang) and
    its ranges and document functions were reachable."""
    started = time.perf_counter()
    with pytest.raises(ExpressionError, match="could not evaluate the XPath"):
        EVALUATOR.evaluate(f"@xpath(xml('<a>x</a>'), '{path}')", SCOPE)
    assert time.perf_counter() - started < 3


@pytest.mark.parametrize("body, path", [
    ("<a>" * 400 + "x" * 1_000_000 + "</a>" * 400, "//*"),     # each nested node holds the 1 MB text
    ("<a>" + "x" * 3_000_000 + "</a>", "concat(" + ",".join(["/a"] * 300) + ")"),  # 900 MB of text
])
def test_xpath_results_are_measured_before_they_grow_past_the_budget(body, path):
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(ExpressionLimit, match="more than the 2.0 MB"):
            EVALUATOR.evaluate(f"@length(xpath(xml(triggerBody()), '{path}'))", _Body(body))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 120_000_000


def test_an_xpath_stopped_at_its_time_prints_nothing(capfd):
    quick = Evaluator(limits=Limits(seconds=0.2, max_ops=10**9))
    for _ in range(3):
        with pytest.raises(ExpressionLimit):
            quick.evaluate("@xpath(xml(concat('<a>', join(range(0, 3000), '<b/>'), '</a>')), "
                           "'count(//*[count(//*) > count(//b)])')", SCOPE)
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("text, words", [
    ("@decimal('1e999999999')", "'decimal' gives a result out of range"),
    ("@addHours('0001-01-01T00:00:00+14:00', 0)", "'addHours' gives a result out of range"),
    ("@ticks('0001-01-01T00:00:00+01:00')", "'ticks' gives a result out of range"),
    ("@startOfDay('9999-12-31T23:00:00-05:00')", "'startOfDay' gives a result out of range"),
])
def test_a_number_or_date_python_cannot_hold_names_the_function(text, words):
    with pytest.raises(ExpressionError, match=words) as info:
        EVALUATOR.evaluate(text, SCOPE)
    assert "Error)" not in info.value.message and "<class" not in info.value.message
