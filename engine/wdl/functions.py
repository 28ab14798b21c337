"""String, collection, logical, math, manipulation and workflow functions (reference §8)."""
from __future__ import annotations

import math
import re
import random
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from .. import sandbox
from .library import define, workflow
from .values import (INT_MAX, INT_MIN, arg_error, compare, equal, exported, fn_error, is_number, to_text,
                     truthy, type_name)

MAX_ITEMS = sandbox.MAX_ITEMS


# -- argument helpers ---------------------------------------------------------------------------
def text_arg(fn: str, i: int, v: Any) -> str:
    if isinstance(v, str):
        return v
    if v is None:
        return ""
    raise arg_error(fn, i, "a string", v)


def int_arg(fn: str, i: int, v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, (float, Decimal)) and not isinstance(v, bool) and v == int(v) and math.isfinite(v):
        return int(v)
    if isinstance(v, str):
        t = v.strip()
        if len(t) <= 40 and _INTEGER.fullmatch(t):  # ASCII digits only, as .NET reads them (no '1_000', no '١')
            return int(t)
    raise arg_error(fn, i, "an integer", v)


_INTEGER = re.compile(r"[-+]?[0-9]+")


def num_arg(fn: str, i: int, v: Any) -> Any:
    if is_number(v):
        return v
    raise arg_error(fn, i, "an integer or a decimal number", v)


def seq_arg(fn: str, i: int, v: Any, objects: bool = False) -> Any:
    if isinstance(v, (str, list)) or (objects and isinstance(v, dict)):
        return v
    if isinstance(v, tuple):
        return list(v)
    raise arg_error(fn, i, "an array or a string" + (" or an object" if objects else ""), v)


def _size(n: int, what: str) -> None:
    sandbox.current().size(n, what)


def _texts(values: Any) -> list[str]:
    budget = sandbox.current()
    out = []
    total = 0
    budget.tick(len(values) // 64 + 1)
    for v in values:
        if isinstance(v, (dict, list, tuple)):
            sandbox.check_text(budget, v)
        t = to_text(v)
        total += len(t)
        budget.size(total, "the text")
        out.append(t)
    return out


# == string =================================================================================
@define("chunk(collection, length)", "split a string or array into chunks of `length`", "string")
def chunk(value: Any, length: Any) -> list:
    value = seq_arg("chunk", 0, value)
    n = int_arg("chunk", 1, length)
    if n <= 0:
        raise fn_error("chunk", "expects its second parameter 'length' to be a positive integer.")
    count = -(-len(value) // n)
    budget = sandbox.current()
    budget.tick(count // 64 + 1)
    budget.size(count * 64, "the chunks")
    return [value[i:i + n] for i in range(0, len(value), n)]


@define("concat(text, ...)", "join the texts (other values as text) into one string", "string")
def concat(*values: Any) -> str:
    return "".join(_texts(values))


@define("endsWith(text, searchText)", "whether text ends with searchText (case-insensitive)", "string")
def ends_with(text: Any, search: Any) -> bool:
    return text_arg("endsWith", 0, text).lower().endswith(text_arg("endsWith", 1, search).lower())


@define("startsWith(text, searchText)", "whether text starts with searchText (case-insensitive)", "string")
def starts_with(text: Any, search: Any) -> bool:
    return text_arg("startsWith", 0, text).lower().startswith(text_arg("startsWith", 1, search).lower())


_GUID_FORMATS = {"n": lambda u: u.hex, "d": str, "b": lambda u: "{" + str(u) + "}", "p": lambda u: "(" + str(u) + ")",
                 "x": lambda u: _guid_x(u)}


def _guid_x(u: uuid.UUID) -> str:
    h = u.hex
    tail = ",".join("0x" + h[i:i + 2] for i in range(16, 32, 2))
    return "{0x%s,0x%s,0x%s,{%s}}" % (h[:8], h[8:12], h[12:16], tail)


@define("guid(format?)", "a new random GUID; format N, D (default), B, P or X", "string")
def guid(fmt: Any = "D") -> str:
    key = text_arg("guid", 0, fmt).lower() or "d"
    if key not in _GUID_FORMATS:
        raise fn_error("guid", f"expects its first parameter to be one of N, D, B, P, X; got '{fmt}'.")
    return _GUID_FORMATS[key](uuid.uuid4())


@define("indexOf(text, searchText)", "the first position of searchText (case-insensitive), -1 if absent", "string")
def index_of(text: Any, search: Any) -> int:
    return text_arg("indexOf", 0, text).lower().find(text_arg("indexOf", 1, search).lower())


@define("lastIndexOf(text, searchText)", "the last position of searchText (case-insensitive), -1 if absent",
        "string")
def last_index_of(text: Any, search: Any) -> int:
    t, s = text_arg("lastIndexOf", 0, text), text_arg("lastIndexOf", 1, search)
    if t == "":
        return 0 if s == "" else -1
    if s == "":
        return len(t) - 1
    return t.lower().rfind(s.lower())


@define("nthIndexOf(text, searchText, occurrence)",
        "the position of the nth occurrence of searchText (negative: counting from the end), -1 if fewer",
        "string")
def nth_index_of(text: Any, search: Any, occurrence: Any) -> int:
    t = text_arg("nthIndexOf", 0, text).lower()
    s = text_arg("nthIndexOf", 1, search).lower()
    n = int_arg("nthIndexOf", 2, occurrence)
    if n == 0:
        raise fn_error("nthIndexOf", "expects its third parameter 'occurrence' to be a non-zero integer.")
    if s == "":
        return -1
    budget = sandbox.current()
    if n > 0:
        at = -1
        for _ in range(n):
            budget.tick()
            at = t.find(s, at + 1)
            if at < 0:
                return -1
        return at
    at = len(t)
    for _ in range(-n):
        budget.tick()
        at = t.rfind(s, 0, at + len(s) - 1) if at < len(t) else t.rfind(s)
        if at < 0:
            return -1
    return at


@define("length(collection)", "the number of items in an array, or characters in a string", "string")
def length(value: Any) -> int:
    if isinstance(value, (str, list, tuple, dict)):
        return len(value)
    raise arg_error("length", 0, "an array or a string", value)


@define("replace(text, oldText, newText)", "replace every oldText (case-sensitive) with newText", "string")
def replace(text: Any, old: Any, new: Any) -> str:
    t, o, n = (text_arg("replace", i, v) for i, v in enumerate((text, old, new)))
    if o == "":
        raise fn_error("replace", "expects its second parameter 'oldText' to be a non-empty string.")
    if len(n) > len(o):
        _size(len(t) + t.count(o) * (len(n) - len(o)), "the result of replace")
    return t.replace(o, n)


@define("slice(text, startIndex, endIndex?)", "the text from startIndex to endIndex (negative: from the end)",
        "string")
def slice_(text: Any, start: Any, end: Any = None) -> str:
    t = text_arg("slice", 0, text)
    a = int_arg("slice", 1, start)
    b = None if end is None else int_arg("slice", 2, end)
    return t[a:b]


@define("split(text, delimiter)", "the parts of text between the delimiters, as an array", "string")
def split(text: Any, delimiter: Any) -> list:
    t, d = text_arg("split", 0, text), text_arg("split", 1, delimiter)
    if d == "":
        return [t]
    _size(t.count(d) * 64, "the parts of split")
    return t.split(d)


@define("substring(text, startIndex, length?)", "length characters of text from startIndex", "string")
def substring(text: Any, start: Any, length_: Any = None) -> str:
    t = text_arg("substring", 0, text)
    a = int_arg("substring", 1, start)
    n = len(t) - a if length_ is None else int_arg("substring", 2, length_)
    if a < 0 or n < 0 or a + n > len(t):
        raise fn_error("substring", f"parameters are out of range: 'startIndex' ({a}) and 'length' ({n}) must be "
                                    f"non-negative and their sum no larger than the length of the string "
                                    f"({len(t)}).")
    return t[a:a + n]


@define("toLower(text)", "text in lower case", "string")
def to_lower(text: Any) -> str:
    return text_arg("toLower", 0, text).lower()


@define("toUpper(text)", "text in upper case", "string")
def to_upper(text: Any) -> str:
    return text_arg("toUpper", 0, text).upper()


@define("trim(text)", "text without leading and trailing white space", "string")
def trim(text: Any) -> str:
    return text_arg("trim", 0, text).strip()


# == collection ============================================================================
@define("contains(collection, value)", "whether a string holds a substring, an array an item, an object a key "
        "(case-sensitive)", "collection")
def contains(collection: Any, value: Any) -> bool:
    if isinstance(collection, str):
        return text_arg("contains", 1, value if not is_number(value) else to_text(value)) in collection
    if isinstance(collection, (list, tuple)):
        sandbox.current().tick(len(collection) // 64 + 1)
        return any(equal(x, value) for x in collection)
    if isinstance(collection, dict):
        return isinstance(value, str) and value in collection
    raise arg_error("contains", 0, "an array, a string or an object", collection)


@define("empty(collection)", "whether a string, array or object is empty (null is empty)", "collection")
def empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, (str, list, tuple, dict)):
        return len(value) == 0
    raise arg_error("empty", 0, "an array, a string or an object", value)


@define("first(collection)", "the first item of an array or character of a string (null if empty)",
        "collection")
def first(value: Any) -> Any:
    value = seq_arg("first", 0, value) if value is not None else ""
    return value[0] if len(value) else None


@define("last(collection)", "the last item of an array or character of a string (null if empty)", "collection")
def last(value: Any) -> Any:
    value = seq_arg("last", 0, value) if value is not None else ""
    return value[-1] if len(value) else None


def _same_kind(fn: str, values: tuple) -> str:
    kinds = set()
    for i, v in enumerate(values):
        if isinstance(v, (list, tuple)):
            kinds.add("array")
        elif isinstance(v, dict):
            kinds.add("object")
        else:
            raise arg_error(fn, i, "an array or an object", v)
    if len(kinds) > 1:
        raise fn_error(fn, "expects parameters of the same type: all arrays or all objects.")
    sandbox.current().tick(sum(len(v) for v in values) // 64 + 1)
    return kinds.pop()


def _unique(items: Any) -> list:
    out: list = []
    seen: set = set()
    for x in items:
        key = _hashable(x)
        if key in seen:
            continue
        seen.add(key)
        out.append(x)
    return out


def _hashable(x: Any) -> Any:
    """A key equal for values ``equals`` finds equal (containers by their canonical JSON)."""
    if isinstance(x, bool) or x is None:
        return ("b", x)
    if isinstance(x, str):
        return ("s", x)
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return ("n", x)
    if isinstance(x, Decimal):
        return ("n", float(x))
    import json

    sandbox.check_text(sandbox.current(), x)
    return ("j", json.dumps(x, sort_keys=True, separators=(",", ":"), default=float))


@define("intersection(collection1, collection2, ...)", "the items (or object properties) in every collection",
        "collection")
def intersection(*values: Any) -> Any:
    if _same_kind("intersection", values) == "object":
        out = dict(values[0])
        for v in values[1:]:
            out = {k: x for k, x in out.items() if k in v and equal(v[k], x)}
        return out
    out_l = _unique(values[0])
    for v in values[1:]:
        keys = {_hashable(y) for y in v}
        out_l = [x for x in out_l if _hashable(x) in keys]
    return out_l


@define("union(collection1, collection2, ...)", "every item of the arrays without duplicates, or the objects "
        "merged (the last value per key wins)", "collection")
def union(*values: Any) -> Any:
    if _same_kind("union", values) == "object":
        out: dict = {}
        for v in values:
            out.update(v)
        return out
    return _unique(x for v in values for x in v)


@define("join(collection, delimiter)", "the array's items as text, with the delimiter between them", "collection")
def join(collection: Any, delimiter: Any) -> str:
    if not isinstance(collection, (list, tuple)):
        raise arg_error("join", 0, "an array", collection)
    d = text_arg("join", 1, delimiter)
    _size(len(d) * max(0, len(collection) - 1), "the result of join")
    return d.join(_texts(collection))


@define("reverse(collection)", "the array (or string) in reverse order", "collection")
def reverse(value: Any) -> Any:
    return seq_arg("reverse", 0, value)[::-1]


@define("skip(collection, count)", "the array (or string) without its first count items", "collection")
def skip(value: Any, count: Any) -> Any:
    v = seq_arg("skip", 0, value)
    n = int_arg("skip", 1, count)
    if n < 0:
        raise fn_error("skip", "expects its second parameter 'count' to be a non-negative integer.")
    return v[n:]


@define("take(collection, count)", "the first count items of the array (or characters of the string)",
        "collection")
def take(value: Any, count: Any) -> Any:
    v = seq_arg("take", 0, value)
    n = int_arg("take", 1, count)
    if n < 0:
        raise fn_error("take", "expects its second parameter 'count' to be a non-negative integer.")
    return v[:n]


@define("sort(collection, sortBy?)", "the array sorted (objects by their sortBy property)", "collection")
def sort(value: Any, sort_by: Any = None) -> list:
    if not isinstance(value, (list, tuple)):
        raise arg_error("sort", 0, "an array", value)
    if len(value) > MAX_ITEMS:
        raise sandbox.ExpressionLimit(f"sort over {len(value):,} items; at most {MAX_ITEMS:,}")
    sandbox.current().tick(len(value) // 16 + 1)
    if sort_by is not None:
        key = text_arg("sort", 1, sort_by)
        keys = []
        for x in value:
            if not isinstance(x, dict):
                raise fn_error("sort", f"with 'sortBy' expects an array of objects; an item is of type "
                                       f"'{type_name(x)}'.")
            keys.append(x.get(key))
    else:
        keys = list(value)
    # one kind of key, compared in C: numbers, or strings (ordinally)
    if all(is_number(k) for k in keys):
        order = sorted(range(len(keys)), key=lambda i: float(keys[i]))
    elif all(isinstance(k, str) for k in keys):
        order = sorted(range(len(keys)), key=keys.__getitem__)
    elif all(isinstance(k, bool) for k in keys):
        order = sorted(range(len(keys)), key=keys.__getitem__)
    else:
        kinds = sorted({type_name(k) for k in keys})
        raise fn_error("sort", f"can only sort values of one kind (numbers or strings); found {', '.join(kinds)}.")
    return [value[i] for i in order]


# == logical ================================================================================
@define("and(expression1, expression2, ...)", "whether every expression is true (stops at the first false)",
        "logical", lazy=True)
def and_(*thunks: Callable[[], Any]) -> bool:
    for i, t in enumerate(thunks):
        if not truthy("and", i, t()):
            return False
    return True


@define("or(expression1, expression2, ...)", "whether any expression is true (stops at the first true)",
        "logical", lazy=True)
def or_(*thunks: Callable[[], Any]) -> bool:
    for i, t in enumerate(thunks):
        if truthy("or", i, t()):
            return True
    return False


@define("not(expression)", "true if the expression is false", "logical")
def not_(value: Any) -> bool:
    return not truthy("not", 0, value)


@define("if(expression, valueIfTrue, valueIfFalse)", "valueIfTrue when the expression is true, else "
        "valueIfFalse (only the one chosen is evaluated)", "logical", lazy=True)
def if_(cond: Callable[[], Any], yes: Callable[[], Any], no: Callable[[], Any]) -> Any:
    return yes() if truthy("if", 0, cond()) else no()


@define("equals(object1, object2)", "whether both are equal (numbers by value, null as '')", "logical")
def equals(a: Any, b: Any) -> bool:
    return equal(a, b)


@define("greater(value, compareTo)", "whether value > compareTo (numbers, or strings ordinally)", "logical")
def greater(a: Any, b: Any) -> bool:
    return compare("greater", a, b) > 0


@define("greaterOrEquals(value, compareTo)", "whether value >= compareTo", "logical")
def greater_or_equals(a: Any, b: Any) -> bool:
    return compare("greaterOrEquals", a, b) >= 0


@define("less(value, compareTo)", "whether value < compareTo", "logical")
def less(a: Any, b: Any) -> bool:
    return compare("less", a, b) < 0


@define("lessOrEquals(value, compareTo)", "whether value <= compareTo", "logical")
def less_or_equals(a: Any, b: Any) -> bool:
    return compare("lessOrEquals", a, b) <= 0


# == math ===================================================================================
def _checked(fn: str, result: Any) -> Any:
    if isinstance(result, int) and not isinstance(result, bool) and not INT_MIN <= result <= INT_MAX:
        raise fn_error(fn, "overflowed: the result is outside the 64-bit integer range.")
    return result


def _pair(fn: str, a: Any, b: Any) -> tuple[Any, Any]:
    a, b = num_arg(fn, 0, a), num_arg(fn, 1, b)
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        try:
            return Decimal(str(a)) if not isinstance(a, Decimal) else a, Decimal(str(b)) if not isinstance(b, Decimal) else b
        except InvalidOperation:
            raise fn_error(fn, "cannot mix a decimal with a non-finite number.") from None
    return a, b


@define("add(summand_1, summand_2)", "the sum (an integer when both are integers)", "math")
def add(a: Any, b: Any) -> Any:
    a, b = _pair("add", a, b)
    return _checked("add", a + b)


@define("sub(minuend, subtrahend)", "the difference", "math")
def sub(a: Any, b: Any) -> Any:
    a, b = _pair("sub", a, b)
    return _checked("sub", a - b)


@define("mul(multiplicand1, multiplicand2)", "the product", "math")
def mul(a: Any, b: Any) -> Any:
    a, b = _pair("mul", a, b)
    if isinstance(a, int) and isinstance(b, int):
        sandbox.current().bits(a.bit_length() + b.bit_length())
    return _checked("mul", a * b)


@define("div(dividend, divisor)", "the quotient: integer division (toward zero) when both are integers",
        "math")
def div(a: Any, b: Any) -> Any:
    a, b = _pair("div", a, b)
    if b == 0:
        if isinstance(a, int) and isinstance(b, int) or isinstance(b, Decimal):
            raise fn_error("div", "cannot divide by zero: its second parameter 'divisor' is 0.")
        return math.copysign(math.inf, a) if a else math.nan
    if isinstance(a, int) and isinstance(b, int):
        q = abs(a) // abs(b)
        return _checked("div", q if (a < 0) == (b < 0) else -q)
    return a / b


@define("mod(dividend, divisor)", "the remainder, with the sign of the dividend", "math")
def mod(a: Any, b: Any) -> Any:
    a, b = _pair("mod", a, b)
    if b == 0:
        raise fn_error("mod", "cannot divide by zero: its second parameter 'divisor' is 0.")
    if isinstance(a, int) and isinstance(b, int):
        r = abs(a) % abs(b)
        return r if a >= 0 else -r
    if isinstance(a, Decimal):
        return a % b  # Decimal's % keeps the sign of the dividend
    return math.fmod(a, b)


def _numbers(fn: str, values: tuple) -> list:
    if len(values) == 1 and isinstance(values[0], (list, tuple)):
        values = tuple(values[0])
        if not values:
            raise fn_error(fn, "expects a non-empty array of numbers.")
    for i, v in enumerate(values):
        num_arg(fn, i, v)
    return list(values)


@define("max(number1, number2?, ...)", "the largest of the numbers (or of one array of numbers)", "math")
def max_(*values: Any) -> Any:
    return max(_numbers("max", values))


@define("min(number1, number2?, ...)", "the smallest of the numbers (or of one array of numbers)", "math")
def min_(*values: Any) -> Any:
    return min(_numbers("min", values))


@define("rand(minValue, maxValue)", "a random integer from minValue up to (not including) maxValue", "math")
def rand(low: Any, high: Any) -> int:
    a, b = int_arg("rand", 0, low), int_arg("rand", 1, high)
    if a >= b:
        raise fn_error("rand", f"expects 'minValue' ({a}) to be less than 'maxValue' ({b}).")
    return random.randrange(a, b)


@define("range(startIndex, count)", "count integers from startIndex (count at most 100,000)", "math")
def range_(start: Any, count: Any) -> list:
    a, n = int_arg("range", 0, start), int_arg("range", 1, count)
    if n < 0:
        raise fn_error("range", "expects its second parameter 'count' to be a non-negative integer.")
    if n > MAX_ITEMS:
        raise sandbox.ExpressionLimit(f"range() of {n:,} items; at most {MAX_ITEMS:,}")
    if a + n > 2**31 - 1:
        raise fn_error("range", "expects 'startIndex' + 'count' to be at most 2,147,483,647.")
    sandbox.current().tick(n // 64 + 1)
    return list(range(a, a + n))


# == manipulation ===========================================================================
def _object(fn: str, v: Any) -> dict:
    if isinstance(v, dict):
        return v
    raise arg_error(fn, 0, "an object", v)


@define("addProperty(object, property, value)", "the object with a new property (an error if it exists)",
        "manipulation")
def add_property(obj: Any, prop: Any, value: Any) -> dict:
    o, p = _object("addProperty", obj), text_arg("addProperty", 1, prop)
    if p in o:
        raise fn_error("addProperty", f"cannot add property '{p}': it already exists (use setProperty).")
    return {**o, p: exported(value)}


@define("setProperty(object, property, value)", "the object with the property set (added if missing)",
        "manipulation")
def set_property(obj: Any, prop: Any, value: Any) -> dict:
    o, p = _object("setProperty", obj), text_arg("setProperty", 1, prop)
    return {**o, p: exported(value)}


@define("removeProperty(object, property)", "the object without the property (unchanged if missing)",
        "manipulation")
def remove_property(obj: Any, prop: Any) -> dict:
    o, p = _object("removeProperty", obj), text_arg("removeProperty", 1, prop)
    return {k: v for k, v in o.items() if k != p}


@define("coalesce(object_1, object_2, ...)", "the first value that is not null ('', [] and {} are not null)",
        "manipulation", lazy=True)
def coalesce(*thunks: Callable[[], Any]) -> Any:
    for t in thunks:
        v = t()
        if v is not None:
            return v
    return None


# == workflow ===============================================================================
workflow("trigger()", "the trigger's outputs: {headers, queries, body, ...}")
workflow("triggerBody()", "the trigger's body (the --input JSON for `flowrun run`)")
workflow("triggerOutputs()", "the trigger's headers (credentials masked), queries and relativePathParameters")
workflow("body(actionName)", "the `body` of an HTTP-shaped result, else the action's outputs")
workflow("outputs(actionName)", "an action's outputs")
workflow("actions(actionName)", "an action's status, inputs, outputs, error and times")
workflow("variables(variableName)", "a variable's current value")
workflow("parameters(parameterName)", "a flow parameter (defaultValue, or --param)")
workflow("item()", "the current item of the innermost Foreach (or of Select/Query)")
workflow("items(loopName)", "the current item of the named Foreach")
workflow("iterationIndexes(loopName)", "the 0-based index in the named loop")
workflow("result(scopedActionName)", "the results of the top-level actions inside a Scope, Foreach, Until or If (a big loop's rows are read from the state on demand)")
workflow("workflow()", "the flow's name and the run's id")
workflow("appsetting(name)", "an app setting (local.settings.json Values, else the environment)")
workflow("listCallbackUrl()", "the callback URL of the flow's Request trigger")
workflow("action()", "the current action's result, where Logic Apps allows it (trackedProperties, an Until "
         "condition); elsewhere an error")


@define("triggers()", "the trigger's outputs (as in trigger conditions)", "workflow", scope=True)
def triggers(names: dict) -> Any:
    return names["trigger"]()


@define("actionOutputs(actionName)", "an action's outputs (legacy name of outputs())", "workflow", scope=True)
def action_outputs(names: dict, name: Any) -> Any:
    return names["outputs"](name)


@define("actionBody(actionName)", "an action's body (legacy name of body())", "workflow", scope=True)
def action_body(names: dict, name: Any) -> Any:
    return names["body"](name)


def _form(fn: str, body: Any) -> list[tuple[str, str]]:
    """The key/value pairs of a form body: Logic Apps' $formdata, a urlencoded text, or an object."""
    from urllib.parse import parse_qsl

    from .values import content_bytes, is_content

    if isinstance(body, dict) and isinstance(body.get("$formdata"), list):
        return [(str(e.get("key")), e.get("value")) for e in body["$formdata"] if isinstance(e, dict)]
    if is_content(body):
        body = content_bytes(body).decode("utf-8", errors="replace")
    if isinstance(body, str):
        return parse_qsl(body, keep_blank_values=True)
    if isinstance(body, dict):
        return [(k, v) for k, v in body.items() for v in (v if isinstance(v, list) else [v])]
    raise fn_error(fn, f"expects a form body (application/x-www-form-urlencoded); the body is of type "
                       f"'{type_name(body)}'.")


def _form_value(fn: str, body: Any, key: Any) -> Any:
    k = text_arg(fn, 1 if fn.startswith("form") else 0, key)
    found = [v for name, v in _form(fn, body) if name == k]
    if len(found) > 1:
        raise fn_error(fn, f"found {len(found)} values for key '{k}'; use {fn.replace('Value', 'MultiValues')}().")
    return found[0] if found else None


def _multipart(fn: str, body: Any, index: Any) -> Any:
    i = int_arg(fn, 1 if fn == "multipartBody" else 0, index)
    parts = body.get("$multipart") if isinstance(body, dict) else None
    if not isinstance(parts, list):
        raise fn_error(fn, f"expects a multipart body; the body is of type '{type_name(body)}'.")
    if not 0 <= i < len(parts):
        raise fn_error(fn, f"index {i} is outside the {len(parts)} parts of the body.")
    part = parts[i]
    return part.get("body") if isinstance(part, dict) else part


@define("triggerFormDataValue(key)", "the one value of key in the trigger's form body", "workflow", scope=True)
def trigger_form_data_value(names: dict, key: Any) -> Any:
    return _form_value("triggerFormDataValue", names["triggerBody"](), key)


@define("triggerFormDataMultiValues(key)", "every value of key in the trigger's form body", "workflow",
        scope=True)
def trigger_form_data_multi(names: dict, key: Any) -> list:
    k = text_arg("triggerFormDataMultiValues", 0, key)
    return [v for name, v in _form("triggerFormDataMultiValues", names["triggerBody"]()) if name == k]


@define("triggerMultipartBody(index)", "the body of one part of the trigger's multipart body", "workflow",
        scope=True)
def trigger_multipart_body(names: dict, index: Any) -> Any:
    return _multipart("triggerMultipartBody", names["triggerBody"](), index)


@define("formDataValue(actionName, key)", "the one value of key in an action's form body", "workflow",
        scope=True)
def form_data_value(names: dict, action: Any, key: Any) -> Any:
    return _form_value("formDataValue", names["body"](action), key)


@define("formDataMultiValues(actionName, key)", "every value of key in an action's form body", "workflow",
        scope=True)
def form_data_multi(names: dict, action: Any, key: Any) -> list:
    k = text_arg("formDataMultiValues", 1, key)
    return [v for name, v in _form("formDataMultiValues", names["body"](action)) if name == k]


@define("multipartBody(actionName, index)", "the body of one part of an action's multipart body", "workflow",
        scope=True)
def multipart_body(names: dict, action: Any, index: Any) -> Any:
    return _multipart("multipartBody", names["body"](action), index)
