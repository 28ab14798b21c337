"""engine.sandbox.weight: the size accounting every template result goes through."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ExpressionLimit
from engine.sandbox import MAX_DEPTH, weight

CAP = 16_000_000
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6),
    max_leaves=60)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_weight_of_json_data_is_close_to_the_length_of_its_json_text(value):
    text = len(json.dumps(value, ensure_ascii=False))
    w = weight(value, CAP)
    assert text // 4 <= w <= text * 4 + 16


@pytest.mark.parametrize("value, expected", [
    ("abc", 5),
    (b"abc", 5),
    ([], 2),
    ({}, 2),
    (["ab", "cd"], 2 + 2 + 4 + 4),
    ({"ab": "cd"}, 2 + 1 + 4 + 4),
    ([None, True, 1.5], 2 + 3 + 5 + 5 + 16),
    ([1, "a", [2]], 2 + 3 + 2 + 3 + (2 + 1 + 2)),
    ((1, 2), 2 + 2 + 2 + 2),
    (list(range(100)), 2 + 100 + sum(i.bit_length() for i in range(100)) // 3 + 2 * 100),  # long: by levels
    ({1: "a"}, 2 + 1 + 2 + 3),
])
def test_weight_counts_brackets_separators_and_every_item(value, expected):
    assert weight(value, CAP) == expected


@pytest.mark.parametrize("build", [
    lambda: [["x" * 1000] * 1000] * 1000,            # shared parts: written out every time
    lambda: [{"k": "v" * 100_000}] * 200,
    lambda: [[[["y" * 64] * 64] * 64] * 64] * 64,
    lambda: ["z" * 10_000_000, "z" * 10_000_000],
    lambda: [1, "a", [["q" * 50_000] * 400]] * 2,     # a mixed level
])
def test_weight_sees_past_the_cap_without_building_the_text(build):
    assert weight(build(), CAP) > CAP


def test_weight_of_a_value_that_contains_itself_is_a_limit_not_a_hang():
    loop: list = []
    loop.append(loop)
    with pytest.raises(ExpressionLimit, match="nested more than"):
        weight(loop, CAP)


def test_weight_follows_nesting_up_to_its_depth_limit():
    value: list = []
    for _ in range(MAX_DEPTH - 1):
        value = [value]
    assert weight(value, CAP) == 3 * (MAX_DEPTH - 1) + 2


def test_weight_of_a_large_batch_of_small_objects_matches_its_json_text():
    batch = [{"value": {"id": i, "sku": f"SKU-{i:04d}", "qty": i % 7}} for i in range(20_000)]
    text = len(json.dumps(batch))
    assert text * 0.8 <= weight(batch, CAP) <= text * 1.2
