"""Signed timestamps are plain digits: nothing else passes, so nothing skips the tolerance."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from engine.errors import AuthError
from engine.timestamps import MAX_DIGITS, unix_timestamp, within

MALFORMED = ["nan", "NaN", "inf", "-inf", "Infinity", "1e10", " 123", "123 ", "0x10", "+5", "-5", "1_000", "1.0",
             "", "9" * (MAX_DIGITS + 1), "9" * 5_000, "١٢٣", "１２３", "12\n", "\t1"]


@pytest.mark.parametrize("text", MALFORMED)
def test_a_timestamp_that_is_not_plain_digits_is_403(text):
    with pytest.raises(AuthError) as caught:
        unix_timestamp(text, "timestamp header X-Timestamp")
    assert caught.value.status == 403 and "X-Timestamp" in caught.value.message


def test_none_is_refused_too():
    with pytest.raises(AuthError):
        unix_timestamp(None, "t=")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20))
def test_only_ascii_digit_strings_are_accepted(text):
    try:
        value = unix_timestamp(text, "t")
    except AuthError as exc:
        assert exc.status == 403
        assert not (text.isascii() and text.isdigit() and 0 < len(text) <= MAX_DIGITS)
    else:
        assert str(value) == text.lstrip("0") or (value == 0 and set(text) == {"0"})


def test_the_tolerance_is_checked_both_ways():
    assert within(1_000, 1_100, 100) and within(1_100, 1_000, 100)
    assert not within(1_000, 1_101, 100) and not within(1_101, 1_000, 100)
