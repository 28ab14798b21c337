"""engine/yamlpos.py: YAML values with the line and column each came from; problems, not crashes."""
import pytest

from engine import yamlpos


def load(text: str):
    return yamlpos.load(text, "f.yaml")


def messages(text: str) -> list[str]:
    return [str(p) for p in load(text)[2]]


def test_every_value_remembers_its_line_and_column():
    data, positions, problems = load("actions:\n  a:\n    type: Compose\n    inputs: [1, 2]\n")
    assert problems == []
    assert data == {"actions": {"a": {"type": "Compose", "inputs": [1, 2]}}}
    assert positions["actions.a.type"] == (3, 11)     # a scalar: where its value stands
    assert positions["actions.a"] == (2, 3)           # a mapping: where its key stands
    assert positions["@actions.a.type"] == (3, 5)     # the key itself
    assert positions["actions.a.inputs.1"] == (4, 17)


@pytest.mark.parametrize("path, key, expected", [
    ("actions.a.type", False, (3, 11)),
    ("actions.a.type", True, (3, 5)),
    ("actions.a.missing.deeper", False, (2, 3)),    # the nearest ancestor that exists
    ("nothing.here", False, (1, 1)),
])
def test_position_falls_back_to_the_nearest_ancestor(path, key, expected):
    _, positions, _ = load("actions:\n  a:\n    type: Compose\n")
    assert yamlpos.position(positions, path, key=key) == expected


@pytest.mark.parametrize("key", ["yes", "on", "404", "null", "1.5"])
def test_keys_stay_the_text_that_was_written(key):
    data, _, problems = load(f"{key}: 1\n")
    assert problems == [] and data == {key: 1}


@pytest.mark.parametrize("text, expected", [
    ("a: 1\na: 2\n", "f.yaml:2:1 a: duplicate key 'a' (first at line 1)"),
    ("actions:\n  x: {type: A}\n  x: {type: B}\n", "f.yaml:3:3 actions.x: duplicate key 'x' (first at line 2)"),
    ("a: [1, 2\n", "f.yaml:2:1 invalid YAML"),
    ("a: &x [*x]\n", "f.yaml:1:4 a.0: an alias refers to a value that contains it (recursive anchor)"),
    ("a: !!python/object:os.system x\n", "f.yaml:1:4 a: the tag !!python/object:os.system is not supported"),
    # crashers found by fuzzing: each is a problem line now, never a traceback
    ("a: \"x\x00y\"\n", "f.yaml:1:6 control character U+0000 is not allowed in a flow file"),
    ("a: 1\nb: \x1b[31m\n", "f.yaml:2:4 control character U+001B is not allowed"),
    ("a: !!timestamp hello\n", "f.yaml:1:4 a: invalid value: 'hello' is not a timestamp"),
    ("a: !!binary aGk=\n", "f.yaml:1:4 a: the tag !!binary is not supported"),
    ("a: !!int nope\n", "f.yaml:1:4 a: invalid value 'nope'"),
    ("a: !!float nope\n", "f.yaml:1:4 a: invalid value 'nope'"),
    ("a: !!bool maybe\n", "f.yaml:1:4 a: invalid value 'maybe'"),
    ("a: " + "9" * 5000 + "\n", "f.yaml:1:4 a: invalid value '9999"),
    ("a: !!set {x, y}\nb: !!omap [x]\n", None),
    ("a: !custom [1]\n", "f.yaml:1:4 a: the tag !custom is not supported"),
    ("? [1, 2]\n: x\n", "f.yaml:1:3 a key must be a plain value"),
    ("a: {<<: 5}\n", "invalid merge"),
    ("a: " + "[" * 70 + "]" * 70 + "\n", "f.yaml:1:67 values are nested deeper than 64 levels"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "invalid YAML"),
])
def test_bad_yaml_is_a_problem_with_a_position(text, expected):
    if expected is None:
        assert load(text)[1] is not None  # built, whatever it says
        return
    assert any(expected in m for m in messages(text)), messages(text)


def test_an_empty_document_is_none_without_problems():
    assert load("") == (None, {}, [])
    assert load("# only a comment\n")[0] is None


def test_a_file_expanding_past_the_value_budget_is_refused(monkeypatch):
    """An alias bomb: a few lines that expand to more values than any flow has."""
    monkeypatch.setattr(yamlpos, "MAX_VALUES", 1_000)
    bomb = ("a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            "c: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n")
    data, _, problems = load(bomb)
    assert data is None
    (problem,) = problems
    assert problem.message == "the file expands to more than 1,000 values (aliases repeating aliases?)"


def test_the_value_budget_holds_any_real_flow():
    assert yamlpos.MAX_VALUES == 1_000_000


@pytest.mark.parametrize("text, value", [
    ("a: 2024-01-31\n", "2024-01-31"),
    ("a: 2024-01-31T10:00:00Z\n", "2024-01-31T10:00:00Z"),
    ("a: 2024-01-31 10:00:00.5 +02:00\n", "2024-01-31 10:00:00.5 +02:00"),
])
def test_a_date_stays_the_text_that_was_written_as_json_has_no_dates(text, value):
    data, _, problems = load(text)
    assert problems == [] and data == {"a": value}


@pytest.mark.parametrize("text, value", [
    ("a: 1\n", 1), ("a: 1.5\n", 1.5), ("a: true\n", True), ("a: null\n", None), ("a: ~\n", None),
    ("a: 0x1f\n", 31), ("a: 'yes'\n", "yes"), ("a: yes\n", True),
])
def test_scalars_are_the_json_values_yaml_1_1_gives_them(text, value):
    data, _, problems = load(text)
    assert problems == [] and data == {"a": value}


def test_merge_keys_still_merge_and_keep_positions():
    data, positions, problems = load("d: &d {x: 1}\na:\n  <<: *d\n  y: 2\n")
    assert problems == [] and data["a"] == {"x": 1, "y": 2}
    assert positions["a.y"] == (4, 6)
