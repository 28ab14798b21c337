"""XML: ``xpath()``, and the conversions between XML and JSON that ``xml()`` and ``json()`` make.

XML is parsed by the standard library (expat, which refuses entity expansion bombs); a
document type declaration is refused outright. XPath 1.0 is evaluated by ``elementpath``
(imported on the first ``xpath()`` call), under the evaluation's time budget: it runs in a thread
of its own, stopped at the time limit (``_bounded_select``).
"""
from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from typing import Any

from .. import sandbox
from ..errors import ExpressionLimit
from .functions import text_arg
from .library import define
from .values import XML_TYPE, arg_error, content, content_bytes, fn_error, is_content

MAX_XML = 4_000_000  # bytes of XML one call parses


def parse_xml(fn: str, data: bytes) -> ET.Element:
    if len(data) > MAX_XML:
        raise ExpressionLimit(f"{fn}: the XML is {len(data):,} bytes; at most {MAX_XML:,}")
    head = data[:4096].lower()
    if b"<!doctype" in head or b"<!entity" in data.lower():
        raise fn_error(fn, "was given XML with a document type declaration, which is not allowed.")
    sandbox.current().tick(len(data) // 256 + 1)
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise fn_error(fn, f"was invoked with a parameter that is not valid XML: {exc}.") from None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if tag.startswith("{") else tag


def _element_json(el: ET.Element) -> Any:
    out: dict[str, Any] = {}
    for k, v in el.attrib.items():
        out["@" + _local(k)] = v
    for child in el:
        key = _local(child.tag) if isinstance(child.tag, str) else "#comment"
        value = _element_json(child)
        if key in out:
            if not isinstance(out[key], list) or key not in _arrays(el):
                out[key] = [out[key]]
            out[key].append(value)
        else:
            out[key] = value
    text = (el.text or "").strip()
    if not out:
        return text if text else None
    if text:
        out["#text"] = text
    return out


def _arrays(el: ET.Element) -> set:
    seen, twice = set(), set()
    for c in el:
        k = _local(c.tag) if isinstance(c.tag, str) else "#comment"
        (twice if k in seen else seen).add(k)
    return twice


def xml_to_json(fn: str, data: bytes) -> dict:
    root = parse_xml(fn, data)
    return {_local(root.tag): _element_json(root)}


def _build(parent: ET.Element | None, name: str, value: Any) -> list[ET.Element]:
    if isinstance(value, list):
        return [e for v in value for e in _build(parent, name, v)]
    el = ET.Element(name) if parent is None else ET.SubElement(parent, name)
    if isinstance(value, dict):
        for k, v in value.items():
            if k.startswith("@"):
                el.set(k[1:], "" if v is None else _scalar(v))
            elif k == "#text":
                el.text = _scalar(v)
            else:
                _build(el, k, v)
    elif value is not None:
        el.text = _scalar(value)
    return [el]


def _scalar(v: Any) -> str:
    from .values import to_text

    if isinstance(v, bool):
        return "true" if v else "false"
    return to_text(v)


def json_to_xml(value: dict) -> bytes:
    roots = [k for k in value if not k.startswith("?")]
    if len(roots) != 1 or isinstance(value[roots[0]], list):
        raise fn_error("xml", "expects an object with exactly one root property whose value is not an array.")
    sandbox.check_text(sandbox.current(), value)
    try:
        return ET.tostring(_build(None, roots[0], value[roots[0]])[0], encoding="unicode").encode("utf-8")
    except ValueError as exc:  # a property name that is no XML name
        raise fn_error("xml", f"cannot write the object as XML: {exc}.") from None


def _xml_arg(fn: str, value: Any) -> bytes:
    if is_content(value):
        return content_bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise arg_error(fn, 0, "XML (a string or the result of xml())", value)


_LOADED: list = []


def _elementpath() -> tuple[Any, Any]:
    """elementpath, imported and warmed up once (its parsers are built on first use: that time
    is not the expression's, and is not traced)."""
    if not _LOADED:
        import time

        if sandbox.current().inline:  # importing takes a while: not on the event loop
            raise sandbox.OffloadSignal()

        started, cpu = time.perf_counter(), time.thread_time()
        try:
            import elementpath
            from elementpath.exceptions import ElementPathError
        except ImportError:  # pragma: no cover - a core dependency
            raise fn_error("xpath", "needs the 'elementpath' package (pip install elementpath).") from None
        parser = _xpath1_parser(elementpath)
        elementpath.select(ET.ElementTree(ET.fromstring("<a b='1'><c>2</c></a>")), "count(/a/c[. > 1]) + sum(//@b)",
                           parser=parser)
        _LOADED.append((elementpath, ElementPathError, parser))
        sandbox.current().extend(time.perf_counter() - started, time.thread_time() - cpu)
    return _LOADED[0]


_BUILT = threading.local()  # what the concat() calls of the running path have built, and may build


def _xpath1_parser(elementpath: Any) -> Any:
    """XPath 1.0, as Logic Apps' xpath() reads it (elementpath's default is XPath 2.0, whose regular
    expressions run in C, where no stop reaches them, and whose ``1 to n`` builds lists). Its one
    function that builds text larger than its input, ``concat``, counts what it builds against the
    template's size budget before joining."""
    from elementpath import XPath1Parser

    class BoundedXPath1Parser(XPath1Parser):  # its own symbol table, copied from XPath 1.0's
        pass

    base = BoundedXPath1Parser.symbol_table["concat"]

    class BoundedConcat(base):  # type: ignore[misc,valid-type]
        def evaluate(self, context: Any = None) -> str:
            if self.context is not None:
                context = self.context
            parts = [self.string_value(self.get_argument(context, index=k)) for k in range(len(self))]
            size = sum(len(p) for p in parts)
            _BUILT.total = getattr(_BUILT, "total", 0) + size
            if _BUILT.total > getattr(_BUILT, "limit", MAX_XML):
                raise _TooBig(_BUILT.total)
            return "".join(parts)

    BoundedXPath1Parser.symbol_table["concat"] = BoundedConcat
    return BoundedXPath1Parser


class _TooBig(Exception):
    """concat() in a path would build more text than the budget allows."""


class _Stop(BaseException):
    """Raised into the thread running elementpath when the budget's time is up: not an
    Exception, so the library's ``except Exception`` clauses let it through."""


def _bounded_select(elementpath: Any, tree: Any, expr: str, parser: Any = None) -> Any:
    """``elementpath.select`` within the budget's time, whatever the path does.

    A pure-Python library cannot tick the budget, and a tracing hook is switched off by the
    interpreter the first time it raises. So the call runs in a thread of its own; the
    evaluation waits for it until the budget's time is up, then raises ``_Stop`` into that
    thread (again every few milliseconds until it has ended: nothing in it can swallow that
    for good) and fails with the budget's error. Only that thread is ever interrupted. On the
    event loop it does not start: the evaluation moves to a worker thread first."""
    import ctypes
    import time

    budget = sandbox.current()
    if budget.inline:  # a path may take long: never on the event loop
        raise sandbox.OffloadSignal()
    out: dict[str, Any] = {}
    stopping = threading.Lock()  # "done" and the raises of _Stop exclude each other

    limit = budget.limits.max_bytes

    def run() -> None:
        _BUILT.total, _BUILT.limit = 0, limit
        try:
            out["value"] = elementpath.select(tree, expr, namespaces=None, parser=parser)
        except _Stop:
            pass
        except BaseException as exc:  # noqa: BLE001  handed to the evaluating thread
            out["error"] = exc
        finally:
            with stopping:  # no raise comes after this, and one pending is withdrawn: none lands
                out["done"] = True  # in the thread's exit, outside every handler of _Stop
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(threading.get_ident()), None)

    worker = _Worker(run)
    worker.start()
    worker.join(max(0.0, budget.stop - time.perf_counter()))
    if worker.is_alive():
        while worker.is_alive():  # one raise usually ends it; again if it was dropped
            with stopping:
                if "done" in out:
                    break
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(worker.ident), ctypes.py_object(_Stop))
            worker.join(0.05)
        raise ExpressionLimit(f"the template ran longer than {budget.limits.seconds:g} s")
    if "error" in out:
        if isinstance(out["error"], _TooBig):
            budget.size(out["error"].args[0], "a text")
        raise out["error"]
    return out.get("value")


class _Worker(threading.Thread):
    """The thread of one path: a stop that lands after the path has ended is dropped here, never
    printed as an unhandled exception."""

    def __init__(self, target: Any):
        super().__init__(name="flowrun-xpath", daemon=True)
        self._work = target

    def run(self) -> None:
        try:
            try:
                self._work()
            except _Stop:
                pass
        except _Stop:
            pass


def _node_value(node: Any) -> Any:
    if isinstance(node, ET.ElementTree):  # '/': the document node, written as its root element
        node = node.getroot()
    elif isinstance(getattr(node, "value", None), ET.ElementTree):
        node = node.value.getroot()
    if isinstance(node, ET.Element):
        return content(ET.tostring(node, encoding="unicode").encode("utf-8"), XML_TYPE)
    if hasattr(node, "elem") and isinstance(getattr(node, "elem", None), ET.Element) and not hasattr(node, "value"):
        return _node_value(node.elem)
    value = getattr(node, "value", node)
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, (int, str)):
        return value
    if isinstance(value, tuple) and len(value) == 2:  # a namespace node: (prefix, uri) reads as its URI
        return str(value[1])
    return str(value)


@define("xpath(xml, xpath)", "the nodes or value an XPath 1.0 expression selects in XML", "manipulation")
def xpath(document: Any, path: Any) -> Any:
    root = parse_xml("xpath", _xml_arg("xpath", document))
    expr = text_arg("xpath", 1, path)
    if len(expr) > 8192:
        raise fn_error("xpath", "was given an XPath expression longer than 8,192 characters.")
    elementpath, ElementPathError, parser = _elementpath()
    tree = ET.ElementTree(root)
    sandbox.current().tick()
    try:
        found = _bounded_select(elementpath, tree, expr, parser)
    except (ElementPathError, SyntaxError, ValueError, TypeError, KeyError) as exc:
        raise fn_error("xpath", f"could not evaluate the XPath {expr[:60]!r}: {str(exc)[:160]}.") from None
    except RecursionError:
        raise ExpressionLimit("xpath: the XPath expression is nested too deeply") from None
    if isinstance(found, list):
        return _node_values(found)
    return _node_value(found)


def _node_values(found: list) -> list:
    """Each selected node as a value, measured as it is written: nested elements selected together
    (``//*``) each hold their descendants, so their text can be the document's size times its depth."""
    budget = sandbox.current()
    budget.tick(len(found) // 16 + 1)
    total, out = 0, []
    for n in found:
        v = _node_value(n)
        total += len(v["$content"]) if is_content(v) else len(v) if isinstance(v, str) else 8
        budget.size(total, "the nodes the XPath selects")
        budget.tick()
        out.append(v)
    return out
