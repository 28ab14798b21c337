"""The `@` language against its table (cases.py): every function, typing and conversion
rules, null safety, interpolation, escapes and the errors, through the engine's Evaluator."""
import pytest

from engine.errors import ExpressionError
from engine.expressions import Evaluator
from engine.wdl import load

from .cases import CASES, Err, Like

PAYLOAD = {"name": "Ada", "age": 42, "tags": ["a", "b"], "nothing": None, "price": 5.0,
           "Nested": {"Deep": {"x": 1}}, "items": [{"id": 1, "v": "x"}, {"id": 2, "v": "y"}],
           "flag": True, "zip": "00123", "body/mail": "slash-key"}
RESULTS = {
    "http": {"statusCode": 200, "headers": {}, "body": {"id": 7}},
    "form": {"$content-type": "application/x-www-form-urlencoded", "$formdata": [
        {"key": "color", "value": "blue"}, {"key": "size", "value": "S"}, {"key": "size", "value": "M"}]},
    "multi": {"$content-type": "multipart/form-data", "$multipart": [
        {"headers": {}, "body": "first part"}, {"headers": {}, "body": "second part"}]},
}


class Scope:
    """The workflow functions a run's frame answers, with fixed values."""

    def names(self, functions):
        from engine.errors import ActionError

        def variables(name):
            vs = {"myString": "abcdefg", "myInteger": 1234}
            if name not in vs:
                raise ActionError(f"variable '{name}' is not initialized")
            return vs[name]

        trigger = {"name": "manual", "outputs": {"headers": {"Content-Type": "application/json"},
                                                 "queries": {"page": "2"}, "body": PAYLOAD}}
        return {
            "trigger": lambda: trigger,
            "triggerBody": lambda: PAYLOAD,
            "triggerOutputs": lambda: trigger["outputs"],
            "body": lambda n: RESULTS[n]["body"] if "body" in RESULTS[n] else RESULTS[n],
            "outputs": lambda n: RESULTS[n],
            "actions": lambda n: {"name": n, "status": "Succeeded", "outputs": RESULTS[n]},
            "variables": variables,
            "parameters": lambda n: {"myAge": 42}[n],
            "item": lambda: {"sku": "A1", "qty": 2},
            "items": lambda n: {"sku": "A1", "qty": 2},
            "iterationIndexes": lambda n: 3,
            "result": lambda n: [{"name": "step", "status": "Failed"}],
            "workflow": lambda: {"name": "wdl", "run": {"name": "run-1"}},
            "appsetting": lambda n: {"WDL_SETTING": "from-settings"}[n],
            "listCallbackUrl": lambda: "https://example.test/api/manual/triggers/manual/invoke?sig=x",
        }


EVALUATOR = Evaluator()
SCOPE = Scope()


@pytest.mark.parametrize("text, expected", CASES, ids=[c[0][:60] for c in CASES])
def test_expression(text, expected):
    if isinstance(expected, Err):
        with pytest.raises(ExpressionError) as info:
            EVALUATOR.evaluate(text, SCOPE)
        for word in expected.words:
            assert word in info.value.message, info.value.message
        assert "Traceback" not in info.value.message
        return
    got = EVALUATOR.evaluate(text, SCOPE)
    if isinstance(expected, Like):
        assert expected.test(got), f"{got!r} is not {expected.text}"
    else:
        assert got == expected and type(got) is type(expected), f"{got!r} != {expected!r}"


def test_the_table_is_large_and_covers_every_declared_function():
    assert len(CASES) >= 400
    called = " ".join(text.lower() for text, _ in CASES)
    missing = [f.name for f in load().values() if f"{f.name.lower()}(" not in called]
    assert not missing, f"functions without a case: {missing}"


def test_static_analysis_sees_the_same_problems_as_evaluation():
    for text, expected in CASES:
        found = EVALUATOR.analyze(text)
        if found.error:  # a syntax, name or arity problem is an error when run too
            assert isinstance(expected, Err), (text, found.error)
