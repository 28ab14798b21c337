"""Static analysis of templates (engine/expressions.py ``Evaluator.analyze``), as the loader uses
it: templates that differ only in their literals share one parse, and get the same answer as
a parse of their own."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings, strategies as st

from engine.expressions import Evaluator
from engine.registry import default_registry

FRESH = Evaluator(default_registry().filters)

literal = st.one_of(st.text(alphabet="ab'\"\\ {}%x1", max_size=4).map(repr), st.integers(0, 99).map(str),
                    st.sampled_from(["'a'", "'a'", "'b'", "\"a\"", "1.5"]))
name = st.sampled_from(["outputs", "body", "variables", "parameters", "item", "items", "zz", "range", "x"])
expr = st.recursive(
    st.one_of(literal, name),
    lambda inner: st.one_of(
        st.tuples(name, st.lists(inner, max_size=2)).map(lambda t: f"{t[0]}({', '.join(t[1])})"),
        st.tuples(inner, st.sampled_from([" ~ ", " + ", " ", " | upper", " | nope", ".x", "[0]"]), inner)
        .map(lambda t: t[0] + t[1] + (t[2] if t[1] in (" ~ ", " + ", " ") else "")),
    ), max_leaves=6)
template = st.lists(st.one_of(expr.map(lambda e: "{{ " + e + " }}"), st.sampled_from(["text ", "{% for i in x %}",
                                                                                      "{% endfor %}", "{{", "'"])),
                    min_size=1, max_size=4).map("".join)


@settings(deadline=None, max_examples=400, suppress_health_check=list(HealthCheck))
@given(st.lists(template, min_size=1, max_size=6))
def test_a_template_analysed_through_a_shared_shape_gets_the_answer_of_its_own_parse(texts):
    shared = Evaluator(default_registry().filters)
    for text in texts + [t.replace("'a'", "'c'").replace("1", "2") for t in texts]:
        assert shared.analyze(text) == FRESH._analyze(text), text


def test_templates_differing_only_in_literals_are_parsed_once():
    ev = Evaluator(default_registry().filters)
    parsed = []
    real = ev._analyze
    ev._analyze = lambda text: parsed.append(text) or real(text)
    for i in range(50):
        found = ev.analyze(f"{{{{ outputs('a{i}').total + {i} }}}}")
        assert found.calls == [("outputs", f"a{i}")]
    assert len(parsed) == 1


def test_a_number_too_long_for_python_is_an_error_even_after_a_short_one_of_the_same_shape():
    ev = Evaluator(default_registry().filters)
    assert ev.analyze("{{ 5 }}").error is None
    assert "too many digits" in ev.analyze("{{ " + "9" * 5000 + " }}").error
