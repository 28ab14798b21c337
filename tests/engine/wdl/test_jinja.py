"""One library for both languages: the `@` functions are Jinja globals of the same names, from
the same implementation; Jinja's own helpers keep their meaning."""
import datetime as dt

import pytest

from engine.errors import ExpressionError
from engine.expressions import Evaluator

from .test_functions import SCOPE

EVALUATOR = Evaluator()


@pytest.mark.parametrize("jinja, at", [
    ("{{ formatDateTime('2018-03-15T13:27:36Z', 'yyyy-MM-dd') }}", "@formatDateTime('2018-03-15T13:27:36Z', 'yyyy-MM-dd')"),
    ("{{ concat('a', 1, true) }}", "@concat('a', 1, true)"),
    ("{{ length(triggerBody().tags) }}", "@length(triggerBody().tags)"),
    ("{{ addDays('2018-03-15T00:00:00Z', 10) }}", "@addDays('2018-03-15T00:00:00Z', 10)"),
    ("{{ formatNumber(1234.5, 'N1', 'de-de') }}", "@formatNumber(1234.5, 'N1', 'de-de')"),
    ("{{ json('{\"a\": [1, 2]}') }}", "@json('{\"a\": [1, 2]}')"),
    ("{{ if(equals(1, 1), 'yes', 'no') }}", "@if(equals(1, 1), 'yes', 'no')"),
    ("{{ coalesce(none, 'x') }}", "@coalesce(null, 'x')"),
    ("{{ union([1, 2], [2, 3]) }}", "@union(createArray(1, 2), createArray(2, 3))"),
    ("{{ xpath('<a><b>1</b></a>', 'string(/a/b)') }}", "@xpath('<a><b>1</b></a>', 'string(/a/b)')"),
    ("{{ convertFromUtc('2018-01-01T08:00:00Z', 'Pacific Standard Time') }}",
     "@convertFromUtc('2018-01-01T08:00:00Z', 'Pacific Standard Time')"),
    ("{{ string(decimal('1.10')) }}", "@string(decimal('1.10'))"),
    ("{{ uriHost('https://x.test:8080/p') }}", "@uriHost('https://x.test:8080/p')"),
    ("{{ base64ToString(base64('héllo')) }}", "@base64ToString(base64('héllo'))"),
    ("{{ triggerFormDataValue('name') }}", "@triggerFormDataValue('name')"),
])
def test_the_same_function_gives_the_same_value_in_both_languages(jinja, at):
    assert EVALUATOR.evaluate(jinja, SCOPE) == EVALUATOR.evaluate(at, SCOPE)


def test_jinja_keeps_its_own_helpers():
    # utcNow with a strftime format, or none, as before; with a .NET format as in `@`
    year = str(dt.datetime.now(dt.timezone.utc).year)
    assert EVALUATOR.evaluate("{{ utcNow('%Y') }}", SCOPE) == year
    assert EVALUATOR.evaluate("{{ utcNow('yyyy') }}", SCOPE) == year
    assert EVALUATOR.evaluate("{{ utcNow() }}", SCOPE).endswith("Z")
    # range is Python's in Jinja, WDL's (start, count) in `@`
    assert EVALUATOR.evaluate("{{ range(3) | list }}", SCOPE) == [0, 1, 2]
    assert EVALUATOR.evaluate("@range(3, 2)", SCOPE) == [3, 4]
    # filters are untouched by the globals of the same name
    assert EVALUATOR.evaluate("{{ triggerBody().tags | json }}", SCOPE) == '["a","b"]'
    assert EVALUATOR.evaluate("{{ json('[1]') | json }}", SCOPE) == "[1]"


@pytest.mark.parametrize("template, words", [
    ("{{ formatdatetime(utcNow(), 'yyyy') }}", "did you mean formatDateTime()"),
    ("{{ CONCAT('a', 'b') }}", "did you mean concat()"),
    ("{{ substring('abc') }}", "expects 2 to 3 parameters"),
    ("{{ int('x') }}", "The template language function 'int'"),
    ("{{ concat('a', nosuch) }}", "'nosuch' is not defined"),
    ("{{ length(text='x') }}", "no named arguments"),
])
def test_jinja_errors_name_the_function(template, words):
    with pytest.raises(ExpressionError) as info:
        EVALUATOR.evaluate(template, SCOPE)
    assert words in info.value.message
