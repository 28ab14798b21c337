"""JSON from strangers: bounded depth and numbers, UTF-8 only, never a RecursionError."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from engine import safejson
from engine.safejson import MAX_DEPTH, JsonLimit


def _nested(kind: str, n: int, closed: bool) -> str:
    opens = {"array": "[" * n, "object": '{"a":' * n, "mixed": '[{"a":' * -(-n // 2)}[kind]
    if not closed:
        return opens
    inner = {"array": "", "object": "1", "mixed": "1"}[kind]
    closes = {"array": "]" * n, "object": "}" * n, "mixed": "}]" * -(-n // 2)}[kind]
    return opens + inner + closes


@pytest.mark.parametrize("n", [MAX_DEPTH + 1, 990, 1_000, 5_000, 100_000])
@pytest.mark.parametrize("kind", ["array", "object", "mixed"])
@pytest.mark.parametrize("closed", [True, False])
def test_deep_json_is_refused_as_a_limit_not_a_recursion_error(kind, n, closed):
    with pytest.raises(JsonLimit, match="nests deeper than"):
        safejson.loads(_nested(kind, n, closed).encode())


def test_json_at_the_depth_limit_parses():
    assert safejson.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None


def test_brackets_inside_strings_do_not_count_as_depth():
    text = json.dumps({"a": "[" * 10_000, "b": '\\"{' * 5_000, "c": ["]", "}"]})
    assert safejson.loads(text)["a"] == "[" * 10_000


@pytest.mark.parametrize("text, message", [
    ("1e99999", "out of range"), ("-1e309", "out of range"), ("[1E400]", "out of range"),
    ("9" * 400 + ".5", "out of range"), ("1" * 100_000, "digits"), ("-" + "7" * 5_000, "digits"),
    ("NaN", "not a JSON value"), ("[Infinity]", "not a JSON value"), ("-Infinity", "not a JSON value"),
])
def test_huge_or_non_finite_numbers_are_refused(text, message):
    with pytest.raises(JsonLimit, match=message):
        safejson.loads(text.encode())


@pytest.mark.parametrize("raw", [b"\xff", b'{"a": "\xc3"}', b'["\xed\xa0\x80"]', b"\xfe\xff[]"])
def test_invalid_utf8_is_refused(raw):
    with pytest.raises(JsonLimit, match="not UTF-8"):
        safejson.loads(raw)


def test_ordinary_numbers_and_a_bom_still_parse():
    assert safejson.loads(b"\xef\xbb\xbf[1, 2.5, -3e10, 1e300, 12345678901234567890]") == \
        [1, 2.5, -3e10, 1e300, 12345678901234567890]


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab'),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\k'), inner,
                                                                                 max_size=3), max_leaves=30)


def _true_depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_true_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_true_depth, value), default=0)
    return 0


@settings(max_examples=100, deadline=None)
@given(_json, st.booleans())
def test_the_depth_prescan_is_exact_for_any_valid_json(value, ascii_only):
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert safejson.depth(text) == _true_depth(value)
    assert safejson.loads(text) == value


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300) | st.text(alphabet='[]{}"\\:,1e9-.a ', max_size=600).map(str.encode))
def test_any_bytes_give_a_value_or_json_limit_never_another_error(raw):
    try:
        safejson.loads(raw)
    except JsonLimit:
        pass
