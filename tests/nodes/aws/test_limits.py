"""Hostile input to the pieces every AWS node and trigger shares: batching and decoding."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.aws.client import BadMessage, backoff, batches, decode
from nodes.aws.eventbridge import cloudevent


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=300), max_size=60), st.integers(1, 12), st.integers(1, 600))
def test_batches_keep_the_order_cover_every_item_and_stay_within_both_limits(sizes, max_count, max_bytes):
    groups = batches(sizes, max_count=max_count, max_bytes=max_bytes)
    assert [i for g in groups for i in g] == list(range(len(sizes)))
    for g in groups:
        assert 1 <= len(g) <= max_count
        assert len(g) == 1 or sum(sizes[i] for i in g) <= max_bytes  # one oversize item goes alone


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["json", "text", "base64"]), st.integers(1, 400))
def test_decoding_any_bytes_gives_a_value_or_a_bad_message_never_another_error(data, fmt, limit):
    try:
        decode(data, fmt, limit)
    except BadMessage as exc:
        assert str(exc)


@pytest.mark.parametrize("data,reason", [
    (b"{not json", "the data is not JSON"),
    (b"[" * 5000 + b"]" * 5000, "the data is not JSON"),
    (b"1" * 2000, "the data is not JSON"),
    (b"NaN", "the data is not JSON"),
    (b"\xff\xfe", "the data is not UTF-8 text"),
    (b"x" * 101, "101 bytes is more than maxMessageBytes (100)"),
])
def test_bad_messages_are_refused_with_a_reason_a_person_can_act_on(data, reason):
    with pytest.raises(BadMessage, match=reason.replace("(", r"\(").replace(")", r"\)")):
        decode(data, "json", 100 if len(data) == 101 else 100_000)


@given(st.integers(0, 60), st.floats(0, 60), st.floats(0, 300))
def test_a_backoff_is_never_negative_nor_above_its_ceiling(attempt, delay, cap):
    wait = backoff(attempt, {"delay": delay, "maxDelay": cap})
    assert 0 <= wait <= min(cap, delay * 2 ** attempt)


def test_a_cloudevent_has_the_four_required_attributes_of_the_1_0_spec():
    from datetime import datetime, timezone

    event = cloudevent({"source": "s", "detailType": "T", "detail": {"a": 1}}, "id-1",
                       datetime(2026, 1, 2, tzinfo=timezone.utc))
    assert {k: event[k] for k in ("id", "source", "specversion", "type")} == {
        "id": "id-1", "source": "s", "specversion": "1.0", "type": "T"}
    assert event["time"] == "2026-01-02T00:00:00Z" and event["data"] == {"a": 1}
