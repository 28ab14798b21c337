"""JSON from strangers, bounded: nesting depth, number size, encoding.

Python's ``json.loads`` recurses once per ``[`` or ``{``: a body nested a few thousand
levels deep raises RecursionError (not ValueError), a 100,000-digit integer raises after
quadratic work, and ``1e99999`` quietly becomes ``inf``, which no JSON encoder can write
back. ``loads`` refuses all of these with ``JsonLimit`` (a ValueError whose message is a
sentence for the sender) before or while parsing:

- ``depth(data)`` is a cheap pre-scan of bracket depth that skips string literals; when a
  text holds fewer brackets than the limit it costs two ``count`` calls;
- numbers: integers up to ``MAX_DIGITS`` digits, finite floats only, no NaN/Infinity;
- bytes must be UTF-8 (JSON's encoding).

And JSON text going out (``utf8_json``): a lone surrogate, which ``"\\ud800"`` in JSON from a
stranger becomes, is written back as that escape, never raw (no UTF-8 holds it).
"""
from __future__ import annotations

import json
import math
import re
from array import array
from itertools import accumulate
from typing import Any

from .errors import JsonLimit  # noqa: F401  (its home is engine.errors)

MAX_DEPTH = 128
MAX_DIGITS = 1000
_SURROGATE = re.compile("[\ud800-\udfff]")  # (utf8_json)

_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")  # what translate() deletes
_DIGITS = bytes.maketrans(b"123456789E", b"000000000e")
_BIG_MARKS = (b"0" * 300, b"e000", b"e+000", b"e-000")  # a number that could overflow or exceed MAX_DIGITS
_SIGN = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # as signed bytes: +1 opens, -1 closes


def depth(data: bytes | str) -> int:
    """The deepest bracket nesting outside string literals.

    Exact for valid JSON; for malformed text it is exact up to the first error, which is as
    far as ``json.loads`` goes. All C-speed passes: escapes out, strings out (every other
    piece of a split on ``"``), brackets to +1/-1, a running sum.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if raw.count(b"[") + raw.count(b"{") == 0:
        return 0
    outside = b"".join(raw.replace(b"\\\\", b"").replace(b'\\"', b"").split(b'"')[::2])
    steps = array("b", outside.translate(_SIGN, _NOT_BRACKETS))
    return max(0, max(accumulate(steps), default=0))


def too_deep(data: bytes | str, limit: int = MAX_DEPTH) -> bool:
    """True when ``data`` nests deeper than ``limit`` (cheap when it holds few brackets)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    return depth(raw) > limit


def _big_number(raw: bytes) -> bool:
    """True when the text may hold a number with 300+ digits or a 3-digit exponent (cheap)."""
    raw = raw.translate(_DIGITS)
    return any(mark in raw for mark in _BIG_MARKS)


def _int(text: str) -> int:
    digits = len(text) - (text[0] == "-")
    if digits > MAX_DIGITS:
        raise JsonLimit(f"a number has {digits} digits; the limit is {MAX_DIGITS}")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_DIGITS:
        raise JsonLimit(f"a number has {len(text)} characters; the limit is {MAX_DIGITS}")
    value = float(text)
    if not math.isfinite(value):
        raise JsonLimit(f"the number {text[:40]} is out of range")
    return value


def _constant(name: str) -> Any:
    raise JsonLimit(f"{name} is not a JSON value")


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` with bounded depth and numbers; JsonLimit (a ValueError) for bad input."""
    if isinstance(data, (bytes, bytearray)):
        raw = bytes(data)
        try:
            text = raw.decode("utf-8-sig" if raw[:3] == b"\xef\xbb\xbf" else "utf-8")
        except UnicodeDecodeError as exc:
            raise JsonLimit(f"the JSON is not UTF-8 (byte {exc.start})") from None
    else:
        text, raw = data, data.encode("utf-8", "surrogatepass")
    if too_deep(raw, max_depth):
        raise JsonLimit(f"the JSON nests deeper than {max_depth} levels")
    hooks: dict[str, Any] = {"parse_constant": _constant}
    if _big_number(raw):  # only then pay a Python call per number
        hooks.update(parse_int=_int, parse_float=_float)
    try:
        return json.loads(text, **hooks)
    except JsonLimit:
        raise
    except RecursionError:  # a limit above what this interpreter's stack allows
        raise JsonLimit("the JSON nests too deeply") from None
    except ValueError as exc:
        raise JsonLimit(f"malformed JSON: {exc}") from None


def utf8_json(text: str) -> str:
    """JSON text (of ``json.dumps(..., ensure_ascii=False)``) that encodes to UTF-8: its lone
    surrogates written as ``\\uXXXX`` escapes, the same value. Raw, sqlite3 and psycopg refuse
    them (a webhook's run was a 500, a vendor's answer a lost commit), and so does a reply's
    or a log line's ``.encode()``. They stand only inside strings, where json.dumps put them."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
