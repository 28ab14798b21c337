"""Conversion functions (base64, data URIs, URI components, json, int, float ...) and URI parsing."""
from __future__ import annotations

import base64 as _b64
import binascii
import re
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, unquote_to_bytes, urlsplit

from .. import sandbox
from .functions import int_arg, text_arg
from .library import define
from .values import (BINARY_TYPE, XML_TYPE, arg_error, content, content_bytes, exported, fn_error, is_content,
                     is_number, to_text)


def _text_of(fn: str, value: Any) -> str:
    if isinstance(value, (dict, list)) and not is_content(value):
        sandbox.check_text(sandbox.current(), value)
    return to_text(value)


def _decode(fn: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise fn_error(fn, "was given data that is not UTF-8 text.") from None


def _unbase64(fn: str, value: Any) -> bytes:
    text = text_arg(fn, 0, value) if not is_content(value) else value["$content"]
    try:
        return _b64.b64decode(text.strip() + "=" * (-len(text.strip()) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise fn_error(fn, f"was invoked with a parameter that is not valid base64: {text[:40]!r}.") from None


@define("array(value)", "an array holding the one value", "conversion")
def array(value: Any) -> list:
    return [exported(value)]


@define("createArray(object1?, ...)", "an array of the values", "conversion")
def create_array(*values: Any) -> list:
    return [exported(v) for v in values]  # a decimal inside a container is a number


@define("base64(value)", "the base64 encoding of the value's text (or of binary content)", "conversion")
def base64(value: Any) -> str:
    if is_content(value):
        return value["$content"]
    text = _text_of("base64", value)
    sandbox.current().size(len(text) * 4 // 3 + 4, "the result of base64")
    return _b64.b64encode(text.encode("utf-8")).decode("ascii")


@define("base64ToString(value)", "the text a base64 string encodes", "conversion",
        aliases=("decodeBase64",))
def base64_to_string(value: Any) -> str:
    return _decode("base64ToString", _unbase64("base64ToString", value))


@define("base64ToBinary(value)", "the binary content a base64 string encodes", "conversion")
def base64_to_binary(value: Any) -> dict:
    return content(_unbase64("base64ToBinary", value))


@define("binary(value)", "the value's text as binary content", "conversion")
def binary(value: Any) -> dict:
    if is_content(value):
        return value
    return content(_text_of("binary", value).encode("utf-8"))


@define("bool(value)", "the value as a boolean: true/false, 'true'/'false', a number (0 is false)", "conversion")
def bool_(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if is_number(value):
        return value != 0
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise fn_error("bool", f"was invoked with a parameter that is not valid: {to_text(value)[:40]!r} cannot be "
                           f"converted to a boolean.")


@define("dataUri(value)", "a data URI of the value (text/plain, or the content's type)", "conversion")
def data_uri(value: Any) -> str:
    if is_content(value):
        ctype, data = value.get("$content-type") or BINARY_TYPE, value["$content"]
    else:
        text = _text_of("dataUri", value)
        sandbox.current().size(len(text) * 4 // 3 + 40, "the result of dataUri")
        ctype, data = "text/plain;charset=utf-8", _b64.b64encode(text.encode("utf-8")).decode("ascii")
    return f"data:{ctype};base64,{data}"


_DATA_URI = re.compile(r"^data:(?P<type>[^,]*?)(?P<b64>;base64)?,(?P<data>.*)$", re.S | re.I)


def _data_uri(fn: str, value: Any) -> tuple[str, bytes]:
    m = _DATA_URI.match(text_arg(fn, 0, value))
    if m is None:
        raise fn_error(fn, f"expects a data URI (data:[type][;base64],data); got {to_text(value)[:40]!r}.")
    ctype = m["type"] or "text/plain;charset=US-ASCII"
    if m["b64"]:
        return ctype, _unbase64(fn, m["data"])
    return ctype, unquote_to_bytes(m["data"])


@define("dataUriToBinary(value)", "the binary content of a data URI", "conversion", aliases=("decodeDataUri",))
def data_uri_to_binary(value: Any) -> dict:
    ctype, data = _data_uri("dataUriToBinary", value)
    return content(data, ctype)


@define("dataUriToString(value)", "the text of a data URI", "conversion")
def data_uri_to_string(value: Any) -> str:
    return _decode("dataUriToString", _data_uri("dataUriToString", value)[1])


@define("decimal(value)", "the value as a decimal number (exact; as a plain number it may lose precision)",
        "conversion")
def decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if is_number(value):
        return Decimal(str(value))
    if isinstance(value, str):
        text = value.strip()
        if len(text) <= 100 and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text, re.A):
            try:
                d = Decimal(text)
                if abs(d) < Decimal("79228162514264337593543950336"):
                    return d
            except InvalidOperation:
                pass
    raise fn_error("decimal", f"was invoked with a parameter that is not valid: {to_text(value)[:40]!r} is not a "
                              f"decimal number.")


@define("uriComponent(value)", "the value's text with URL-unsafe characters percent-encoded", "conversion",
        aliases=("encodeUriComponent",))
def uri_component(value: Any) -> str:
    text = _text_of("uriComponent", value)
    sandbox.current().size(len(text.encode()) * 3, "the result of uriComponent")
    return quote(text, safe="")


@define("decodeUriComponent(value)", "the text with %-escapes decoded", "conversion",
        aliases=("uriComponentToString",))
def decode_uri_component(value: Any) -> str:
    return _decode("decodeUriComponent", unquote_to_bytes(text_arg("decodeUriComponent", 0, value)))


@define("uriComponentToBinary(value)", "the binary content of a percent-encoded text", "conversion")
def uri_component_to_binary(value: Any) -> dict:
    return content(unquote_to_bytes(text_arg("uriComponentToBinary", 0, value)))


@define("float(value, locale?)", "the value as a floating-point number (text read in the locale, default en-us)",
        "conversion")
def float_(value: Any, locale: Any = None) -> float:
    from .numbers import parse_float

    if is_number(value):
        return float(value)
    if isinstance(value, str):
        found = parse_float(value, text_arg("float", 1, locale) or "en-us", "float")
        if found is not None:
            return found
    raise fn_error("float", f"was invoked with a parameter that is not valid: {to_text(value)[:40]!r} cannot be "
                            f"converted to a floating-point number.")


@define("int(value)", "the value as an integer", "conversion")
def int_(value: Any) -> int:
    try:
        out = int_arg("int", 0, value)
    except Exception:  # noqa: BLE001
        raise fn_error("int", f"was invoked with a parameter that is not valid: {to_text(value)[:40]!r} cannot be "
                              f"converted to an integer.") from None
    if not -2**63 <= out < 2**63:
        raise fn_error("int", "was invoked with a value outside the 64-bit integer range.")
    return out


@define("string(value)", "the value as text (objects as JSON, null as '')", "conversion")
def string(value: Any) -> str:
    return _text_of("string", value)


@define("json(value)", "the value of a JSON text, or the JSON form of XML content", "conversion")
def json_(value: Any) -> Any:
    from ..safejson import loads

    if value is None:
        return {}
    if is_content(value) and "xml" in str(value.get("$content-type", "")).lower():
        from .documents import xml_to_json

        return xml_to_json("json", content_bytes(value))
    if is_content(value):
        value = _decode("json", content_bytes(value))
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("<"):
            from .documents import xml_to_json

            return xml_to_json("json", text.encode("utf-8"))
        try:
            return loads(text)
        except ValueError as exc:
            raise fn_error("json", f"was invoked with a parameter that is not valid JSON: {str(exc)[:80]}.") from None
    if isinstance(value, (dict, list)) or is_number(value) or isinstance(value, bool):
        return value
    raise arg_error("json", 0, "a string or XML", value)


@define("xml(value)", "XML content of an XML text, or of a JSON object with one root property", "conversion")
def xml(value: Any) -> dict:
    from .documents import json_to_xml, parse_xml

    if is_content(value):
        data = content_bytes(value)
    elif isinstance(value, str):
        data = value.encode("utf-8")
    elif isinstance(value, dict):
        data = json_to_xml(value)
    else:
        raise arg_error("xml", 0, "a string or an object", value)
    parse_xml("xml", data)  # well-formed, or an error now
    return content(data, XML_TYPE)


# == URI parsing ============================================================================
def _uri(fn: str, value: Any) -> Any:
    text = text_arg(fn, 0, value)
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  a malformed port raises here
    except ValueError:
        parts = None
    if parts is None or not parts.scheme or not parts.netloc:
        raise fn_error(fn, f"was invoked with a parameter that is not a valid absolute URI: {text[:60]!r}.")
    return parts


_PORTS = {"http": 80, "https": 443, "ftp": 21, "ws": 80, "wss": 443, "sftp": 22, "ldap": 389}


@define("uriHost(uri)", "the host of a URI", "uri")
def uri_host(value: Any) -> str:
    return _uri("uriHost", value).hostname or ""


@define("uriPath(uri)", "the path of a URI ('/' if empty)", "uri")
def uri_path(value: Any) -> str:
    return _uri("uriPath", value).path or "/"


@define("uriPathAndQuery(uri)", "the path and query of a URI", "uri")
def uri_path_and_query(value: Any) -> str:
    p = _uri("uriPathAndQuery", value)
    return (p.path or "/") + (f"?{p.query}" if p.query else "")


@define("uriPort(uri)", "the port of a URI (the scheme's default port if none)", "uri")
def uri_port(value: Any) -> int:
    p = _uri("uriPort", value)
    if p.port is not None:
        return p.port
    if p.scheme.lower() in _PORTS:
        return _PORTS[p.scheme.lower()]
    raise fn_error("uriPort", f"cannot tell the default port of scheme '{p.scheme}'.")


@define("uriQuery(uri)", "the query of a URI, with its '?' ('' if none)", "uri")
def uri_query(value: Any) -> str:
    q = _uri("uriQuery", value).query
    return f"?{q}" if q else ""


@define("uriScheme(uri)", "the scheme of a URI", "uri")
def uri_scheme(value: Any) -> str:
    return _uri("uriScheme", value).scheme.lower()
