"""SOQL literal quoting, contributed to flow templates as filters.

    WHERE Email = {{ triggerBody().email | soql }}
    WHERE Name LIKE {{ triggerBody().q | soql_like('startswith') }}
    WHERE Id IN {{ body('ids') | soql }}

``soql`` renders a value as a complete SOQL literal, quotes included, so the value can
never end the literal and change the query: strings become '...' with the escapes SOQL
documents (backslash, single and double quote, \\n \\r \\t \\b \\f); numbers and booleans
become bare literals, None ``null``, lists ``('a','b')``, dates ISO 8601.
``soql_like`` additionally escapes LIKE's wildcards ``%`` and ``_`` and adds the ones
the mode asks for.

https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_select_quotedstringescapes.htm
"""
from __future__ import annotations

import math
from datetime import date, datetime, timezone
from typing import Any

_ESCAPES = str.maketrans({
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
})
_LIKE_ESCAPES = str.maketrans({"%": "\\%", "_": "\\_"})
_LIKE_MODES = {"contains": "%{}%", "startswith": "{}%", "endswith": "%{}", "exact": "{}"}


def soql(value: Any) -> str:
    """A SOQL literal for ``value`` (quotes included for strings)."""
    if isinstance(value, str):
        return "'" + value.translate(_ESCAPES) + "'"
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} has no SOQL literal")
        return repr(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        if not value:
            raise ValueError("an empty list has no SOQL literal (IN () is invalid)")
        return "(" + ",".join(soql(v) for v in value) + ")"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).replace(microsecond=0).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    raise ValueError(f"cannot quote a {type(value).__name__} as a SOQL literal")


def soql_like(value: Any, mode: str = "contains") -> str:
    """A quoted LIKE pattern matching ``value`` literally: contains / startswith /
    endswith / exact."""
    if mode not in _LIKE_MODES:
        raise ValueError(f"soql_like mode must be one of {', '.join(_LIKE_MODES)}")
    text = str(value).translate(_ESCAPES).translate(_LIKE_ESCAPES)
    return "'" + _LIKE_MODES[mode].format(text) + "'"


FILTERS = {"soql": soql, "soql_like": soql_like}
