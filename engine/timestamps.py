"""Signed timestamps from webhook senders, read strictly.

A signature scheme with a timestamp (``<t>.<body>`` signed, ``t`` within a tolerance)
protects against replays only if ``t`` is a plain number: ``float("nan")`` makes every
comparison false and so skips the tolerance check, ``"1e10"``, ``" 123"``, ``"+5"``,
``"0x10"`` or ``"1_000"`` read as numbers by one parser and not another, and a 5,000-digit
string raises where no one expects it. So a timestamp is 1 to ``MAX_DIGITS`` ASCII digits,
nothing else; anything else is refused with 403, like a forged signature.
"""
from __future__ import annotations

from .errors import AuthError

MAX_DIGITS = 12  # Unix seconds have 10 digits until 2286; a 13-digit millisecond stamp is refused


def unix_timestamp(text: str | None, where: str) -> int:
    """``text`` as Unix seconds, or AuthError(403) naming ``where`` it came from."""
    if text is None or not (0 < len(text) <= MAX_DIGITS) or not (text.isascii() and text.isdigit()):
        shown = "empty" if not text else f"not 1 to {MAX_DIGITS} digits"
        raise AuthError(403, f"{where} is not a Unix timestamp ({shown})")
    return int(text)


def within(stamp: int, now: float, tolerance: float) -> bool:
    """True when ``stamp`` is at most ``tolerance`` seconds away from ``now``, either way."""
    return abs(now - stamp) <= tolerance
