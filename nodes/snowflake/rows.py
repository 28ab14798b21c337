"""Rows as JSON-safe objects, and named parameters bound by position.

Types (by the column's Snowflake type, then by the Python value the connector gave):

- FIXED/DECIMAL: an integer within ±(2**53 - 1) or a decimal whose float reads back the same
  is a number; anything else (a 38-digit id, 0.1 + cents past a double's precision) is a
  string holding the exact digits;
- REAL: a number; NaN and ±inf (no JSON form) are the strings "NaN", "inf", "-inf";
- DATE, TIME, TIMESTAMP_*: ISO 8601 (with the offset for TIMESTAMP_TZ/LTZ);
- VARIANT, OBJECT, ARRAY: parsed JSON;
- BINARY: hex (Snowflake's default BINARY_OUTPUT_FORMAT).
"""
from __future__ import annotations

import datetime as _dt
import json
import math
from decimal import Decimal
from typing import Any, Iterable

from engine.plugin import ActionError

SAFE_INT = 2 ** 53 - 1
_JSON_TYPES = {5, 9, 10, 17}  # VARIANT, OBJECT, ARRAY, MAP (snowflake.connector.constants.FIELD_TYPES)
TYPE_NAMES = ("FIXED", "REAL", "TEXT", "DATE", "TIMESTAMP", "VARIANT", "TIMESTAMP_LTZ",
              "TIMESTAMP_TZ", "TIMESTAMP_NTZ", "OBJECT", "ARRAY", "BINARY", "TIME", "BOOLEAN",
              "GEOGRAPHY", "GEOMETRY", "VECTOR", "MAP", "FILE")


def json_safe(value: Any, parse: bool = False) -> Any:
    """One value as JSON-safe data; ``parse``: a semi-structured column's JSON text."""
    if value is None or isinstance(value, (bool, str)) and not parse:
        return value
    if isinstance(value, int):
        return value if -SAFE_INT <= value <= SAFE_INT else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else ("NaN" if value != value else ("inf" if value > 0 else "-inf"))
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, str):  # parse
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return str(value)


def _decimal(value: Decimal) -> Any:
    if not value.is_finite():
        return str(value)
    if value == value.to_integral_value():
        as_int = int(value)
        return as_int if -SAFE_INT <= as_int <= SAFE_INT else str(as_int)
    as_float = float(value)
    if Decimal(repr(as_float)) == value:
        return as_float
    text = format(value, "f")  # exact: normalize() would round to the context's 28 digits
    return text.rstrip("0").rstrip(".") if "." in text else text


def columns(description: Iterable[Any] | None) -> list[dict]:
    out = []
    for col in description or ():
        code = col.type_code
        out.append({"name": col.name, "type": TYPE_NAMES[code] if 0 <= code < len(TYPE_NAMES) else str(code),
                    "precision": col.precision, "scale": col.scale, "nullable": col.is_nullable})
    return out


def converter(description: Iterable[Any] | None):
    """``row tuple -> {column: value}`` for a cursor's description."""
    desc = list(description or ())
    names = [c.name for c in desc]
    parse = [c.type_code in _JSON_TYPES for c in desc]
    cols = list(zip(names, parse))

    def convert(row: tuple) -> dict:
        return {name: json_safe(value, p) for (name, p), value in zip(cols, row)}

    return convert


def bindable(value: Any) -> Any:
    """A JSON value as something the connector binds: objects and arrays as JSON text
    (read them with PARSE_JSON(?))."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return value


# -- :name placeholders -----------------------------------------------------------------------

def _ident_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_$"


def positional(sql: str, params: dict) -> tuple[str, list]:
    """``sql`` with each ``:name`` placeholder replaced by ``?`` and the values in that order.

    Placeholders are found outside string literals ('...', $$...$$), quoted identifiers and
    comments; ``::`` casts and ``col:path`` (a VARIANT path: a name right before the colon)
    are left alone. Every placeholder must have a value and every value a placeholder; a bare
    ``?`` outside literals (the other style) is refused rather than left for the server to bind
    to nothing.
    """
    out, values, used = [], [], set()
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch == "'":
            j = i + 1
            while j < n:
                if sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == "'":
                    if j + 1 < n and sql[j + 1] == "'":
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i:j + 1])
            i = j + 1
        elif ch == '"':
            j = sql.find('"', i + 1)
            j = n if j < 0 else j
            while j + 1 < n and sql[j + 1] == '"':
                j = sql.find('"', j + 2)
                j = n if j < 0 else j
            out.append(sql[i:j + 1])
            i = j + 1
        elif sql.startswith("$$", i) and not (i > 0 and _ident_char(sql[i - 1])):  # a$$ is a name
            j = sql.find("$$", i + 2)
            j = n if j < 0 else j + 1
            out.append(sql[i:j + 1])
            i = j + 1
        elif sql.startswith("--", i) or sql.startswith("//", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(sql[i:j])
            i = j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 1
            out.append(sql[i:j + 1])
            i = j + 1
        elif ch == ":" and sql.startswith("::", i):
            out.append("::")
            i += 2
        elif ch == ":" and i + 1 < n and (sql[i + 1].isalpha() or sql[i + 1] == "_") and \
                not (i > 0 and (sql[i - 1].isalnum() or sql[i - 1] in '_$"])')):
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] in "_$"):
                j += 1
            name = sql[i + 1:j]
            if name not in params:
                raise ActionError(f"the SQL names :{name} but params has no '{name}'",
                                  code="InvalidParams", details={"missing": name})
            out.append("?")
            values.append(bindable(params[name]))
            used.add(name)
            i = j
        elif ch == "?":
            raise ActionError("the SQL has a ? placeholder but params is an object (for :name "
                              "placeholders): use one style, a list for ? or an object for :name",
                              code="InvalidParams", details={"position": i})
        else:
            out.append(ch)
            i += 1
    unused = sorted(set(params) - used)
    if unused:
        raise ActionError(f"params {', '.join(map(repr, unused))} not used in the SQL (write :name where "
                          "each value goes)", code="InvalidParams", details={"unused": unused})
    return "".join(out), values


def bind(sql: str, params: Any) -> tuple[str, list | None]:
    """SQL and the positional values for ``params`` (a list for ``?``, an object for ``:name``)."""
    if params is None:
        return sql, None
    if isinstance(params, dict):
        return positional(sql, params)
    return sql, [bindable(v) for v in params]
