"""WDL's values: type names, errors as Logic Apps words them, text, equality, conversions.

Values are JSON values (str, int, float, bool, None, list, dict) plus ``Decimal`` (from
``decimal()``). Binary and XML results are *content* objects, as in Logic Apps:
``{"$content-type": "...", "$content": "<base64>"}``.
"""
from __future__ import annotations

import base64
import json
import math
from decimal import Decimal
from typing import Any

from ..errors import InvalidTemplate

INT_MIN, INT_MAX = -2**63, 2**63 - 1
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
XML_TYPE = "application/xml;charset=utf-8"
BINARY_TYPE = "application/octet-stream"


def type_name(value: Any) -> str:
    """The type as Logic Apps names it in errors: String, Integer, Float, Boolean, Null, Object, Array."""
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, (float, Decimal)):
        return "Float"
    if isinstance(value, str):
        return "String"
    if isinstance(value, (list, tuple)):
        return "Array"
    if isinstance(value, dict):
        return "Object"
    return type(value).__name__


def ordinal(i: int) -> str:
    return ORDINALS[i] if i < len(ORDINALS) else f"{i + 1}th"


def arg_error(fn: str, i: int, expected: str, value: Any) -> InvalidTemplate:
    return InvalidTemplate(f"The template language function '{fn}' expects its {ordinal(i)} parameter to be "
                           f"{expected}. The provided value is of type '{type_name(value)}'.")


def fn_error(fn: str, detail: str) -> InvalidTemplate:
    return InvalidTemplate(f"The template language function '{fn}' {detail}")


def show(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else to_text(value)
    text = repr(text)
    return text if len(text) <= limit else text[:limit - 3] + "...'"


# -- content (binary, XML) --------------------------------------------------------------------
def content(data: bytes, ctype: str = BINARY_TYPE) -> dict:
    return {"$content-type": ctype, "$content": base64.b64encode(data).decode("ascii")}


def is_content(value: Any) -> bool:
    return isinstance(value, dict) and "$content" in value and isinstance(value.get("$content"), str)


def content_bytes(value: dict) -> bytes:
    try:
        return base64.b64decode(value["$content"], validate=False)
    except (ValueError, TypeError):
        return value["$content"].encode()


def as_bytes(value: Any) -> bytes:
    """The bytes of a value: a content object's, else its text in UTF-8."""
    if is_content(value):
        return content_bytes(value)
    return to_text(value).encode("utf-8")


# -- text -------------------------------------------------------------------------------------
def float_text(x: float) -> str:
    """A float as .NET writes it (shortest round trip, no trailing .0, E notation)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    text = repr(x)
    if "e" in text:
        mant, exp = text.split("e")
        sign = exp[0] if exp[0] in "+-" else "+"
        digits = exp.lstrip("+-")
        mant = mant[:-2] if mant.endswith(".0") else mant
        return f"{mant}E{sign}{digits.zfill(2)}"
    if abs(x) >= 1e15:
        mant = f"{x:.17g}"
        return float_text(float(mant)) if "e" in mant else mant
    return text


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(type(value).__name__)


def to_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_default, allow_nan=True)


def to_text(value: Any) -> str:
    """How a value reads inside text (interpolation, string(), concat, join)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return float_text(value)
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else str(value)
    if is_content(value):
        return content_bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, (dict, list, tuple)):
        return to_json(value)
    return str(value)


def exported(value: Any) -> Any:
    """A result leaving the language: JSON values only (a decimal becomes a number)."""
    if isinstance(value, Decimal):
        f = float(value)
        return int(f) if f.is_integer() and value == value.to_integral_value() and abs(f) < 2**53 else f
    if isinstance(value, tuple):
        return [exported(v) for v in value]
    return value


# -- comparisons ------------------------------------------------------------------------------
def is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def equal(a: Any, b: Any) -> bool:
    """``equals``: deep, numbers by value (1 equals 1.0), a boolean never equals a number, null equals ''."""
    if a is None:
        a = ""
    if b is None:
        b = ""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if is_number(a) and is_number(b):
        return _num_eq(a, b)
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        _tick(len(a))
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        _tick(len(a))
        return a.keys() == b.keys() and all(_deep(a[k], b[k]) for k in a)
    return False


def _tick(n: int) -> None:
    from .. import sandbox

    sandbox.current().tick(n // 64 + 1)


def _deep(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return equal(a, b)


def _num_eq(a: Any, b: Any) -> bool:
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        try:
            return Decimal(str(a)) == Decimal(str(b))
        except Exception:  # noqa: BLE001
            return False
    return a == b


def compare(fn: str, a: Any, b: Any) -> int:
    """-1, 0 or 1 for greater/less/...: numbers with numbers, strings with strings (ordinal)."""
    if a is None:
        a = ""
    if b is None:
        b = ""
    if is_number(a) and is_number(b):
        if isinstance(a, Decimal) or isinstance(b, Decimal):
            a, b = Decimal(str(a)), Decimal(str(b))
        return (a > b) - (a < b)
    if isinstance(a, str) and isinstance(b, str):
        return (a > b) - (a < b)
    if isinstance(a, bool) and isinstance(b, bool):
        return (a > b) - (a < b)
    for i, v in enumerate((a, b)):
        if not (is_number(v) or isinstance(v, (str, bool))):
            raise arg_error(fn, i, "an integer, a float or a string", v)
    raise fn_error(fn, f"cannot compare a value of type '{type_name(a)}' with a value of type '{type_name(b)}'.")


def truthy(fn: str, i: int, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise arg_error(fn, i, "a boolean", value)


# -- property access --------------------------------------------------------------------------
def member(target: Any, key: Any, safe: bool, where: str) -> Any:
    """``target[key]`` / ``target.key`` / ``target?[key]`` with WDL's rules."""
    if target is None:
        if safe:
            return None
        raise InvalidTemplate(f"The template language expression '{where}' cannot be evaluated because property "
                              f"{_key(key)} cannot be selected. Property selection is not supported on values of "
                              f"type 'Null'.")
    if isinstance(target, dict):
        if isinstance(key, str):
            if key in target:
                return target[key]
            low = key.lower()
            for k in target:
                if isinstance(k, str) and k.lower() == low:
                    return target[k]
            if "/" in key and key.strip("/"):  # designer paths: ['body/mail'] is ['body']['mail']
                try:
                    cur: Any = target
                    for step in key.strip("/").split("/"):
                        cur = member(cur, step, False, where)
                    return cur
                except InvalidTemplate:
                    pass
            if safe:
                return None
            keys = ", ".join(str(k) for k in list(target)[:30]) + (", ..." if len(target) > 30 else "")
            raise InvalidTemplate(f"The template language expression '{where}' cannot be evaluated because property "
                                  f"'{key}' doesn't exist, available properties are '{keys}'.")
        if is_number(key) and not safe:
            raise InvalidTemplate(f"The template language expression '{where}' cannot be evaluated because an "
                                  f"object cannot be indexed with an integer ({to_text(key)}); use a property name.")
        if safe:
            return None
    if isinstance(target, (list, tuple)):
        if isinstance(key, int) and not isinstance(key, bool):
            if 0 <= key < len(target):
                return target[key]
            if safe:
                return None
            raise InvalidTemplate(f"The template language expression '{where}' cannot be evaluated because array "
                                  f"index '{key}' is outside bounds (0, {len(target) - 1}) of array.")
        if isinstance(key, str) and key.lstrip("-").isdigit():
            return member(target, int(key), safe, where)
        if safe:
            return None
        raise InvalidTemplate(f"The template language expression '{where}' cannot be evaluated because property "
                              f"{_key(key)} cannot be selected. Array elements can only be selected using an "
                              f"integer index.")
    if safe:
        return None
    raise InvalidTemplate(f"The template language expression '{where}' cannot be evaluated because property "
                          f"{_key(key)} cannot be selected. Property selection is not supported on values of "
                          f"type '{type_name(target)}'.")


def _key(key: Any) -> str:
    return f"'{key}'" if isinstance(key, str) else to_text(key)
