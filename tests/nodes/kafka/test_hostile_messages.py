"""Hostile message bytes never break the Kafka trigger: any value, key or header decodes, or the
message is refused with one clear reason (it goes to the dead-letter topic); what a run gets is
always JSON. Real confluent_kafka.Message objects, fuzzed with hypothesis (bounded)."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodes.kafka.consume import Consume, Invalid

pytest.importorskip("confluent_kafka")
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def trigger(**extra) -> Consume:
    return Consume({"topics": ["t"], "groupId": "g", **extra})


def message(value: bytes | None, key: bytes | None = None, headers: list | None = None):
    from confluent_kafka import Message

    return Message(topic="t", partition=0, offset=7, key=key, value=value, headers=headers, timestamp=(1, 1_700_000_000_000))


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                       | st.text(), lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(), kids, max_size=4),
                       max_leaves=20)


@FAST
@given(raw=st.binary(max_size=300) | JSONISH.map(lambda v: json.dumps(v).encode()),
       fmt=st.sampled_from(["json", "string", "base64"]))
def test_any_value_decodes_to_json_or_is_refused_with_a_reason(raw, fmt):
    t = trigger(valueFormat=fmt, maxBytes=200, schema={"type": "object"})
    try:
        value = t._decode(message(raw))
    except Invalid as exc:
        assert exc.code in ("Undecodable", "TooLarge", "SchemaMismatch") and exc.message
        return
    json.dumps(value, allow_nan=False)
    assert isinstance(value, dict)


@FAST
@given(key=st.none() | st.binary(max_size=50), headers=st.lists(st.tuples(st.text(max_size=10),
                                                                          st.none() | st.binary(max_size=30)),
                                                                max_size=5),
       key_format=st.sampled_from(["string", "base64", "json"]))
def test_any_key_and_headers_reach_the_run_as_json(key, headers, key_format):
    out = trigger(keyFormat=key_format)._describe(message(b"{}", key, headers or None))
    json.dumps(out, allow_nan=False)
    assert out["offset"] == 7 and out["timestamp"] == 1_700_000_000_000
    last = dict(headers)  # a name sent twice: the last value wins
    assert set(out["headers"]) == set(last)
    for name, raw in last.items():
        assert (out["headers"][name] is None) == (raw is None)


@pytest.mark.parametrize("raw, code", [
    (b"[" * 100_000, "Undecodable"),            # nested past the bound: no RecursionError
    (b"1" * 5000, "Undecodable"),               # a 5,000-digit number
    (b'{"a": NaN}', "Undecodable"),
    (b"\xff\xfe\x00", "Undecodable"),
    (b'"x"' + b" " * 300, "TooLarge"),
])
def test_bombs_are_refused_cheaply_with_a_reason(raw, code):
    with pytest.raises(Invalid) as info:
        trigger(maxBytes=250 if code == "TooLarge" else 1_000_000)._decode(message(raw))
    assert info.value.code == code
