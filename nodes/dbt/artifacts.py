"""Reading dbt's artifacts: run_results.json (and sources.json for ``source freshness``)
into the action's outputs, and manifest.json into lineage."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

FAILED = ("error", "fail", "runtime error")  # statuses that fail the action ("warn" does not)
MAX_MESSAGE = 2000  # characters of one node's message kept in the outputs


def read_json(path: Path) -> Any:
    """A JSON artifact. Anything unreadable (not UTF-8, not JSON, nested past Python's
    recursion limit) raises ValueError with a short reason."""
    with open(path, encoding="utf-8") as fh:
        try:
            return json.load(fh)
        except RecursionError:
            raise ValueError("nested too deeply") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8 (byte {exc.start})") from None
        except ValueError as exc:
            raise ValueError(str(exc)[:200]) from None


def _items(value: Any) -> list:
    return value if isinstance(value, list) else []


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: Any) -> float | int | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def resource_type(unique_id: str) -> str:
    return unique_id.split(".", 1)[0] if "." in unique_id else "unknown"


def _timing(result: dict) -> dict:
    out: dict[str, Any] = {}
    for step in _items(result.get("timing")):
        if isinstance(step, dict) and isinstance(step.get("name"), str) and step["name"]:
            out[step["name"]] = {"started_at": _text(step.get("started_at")),
                                 "completed_at": _text(step.get("completed_at"))}
    return out


def _message(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str)[:MAX_MESSAGE + 1]
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "…"


def node_results(data: dict) -> list[dict]:
    """One entry per node of run_results.json (or sources.json): what the outputs list."""
    out = []
    for r in _items(data.get("results")):
        if not isinstance(r, dict):
            continue
        uid = _text(r.get("unique_id")) or ""
        adapter = _mapping(r.get("adapter_response"))
        entry = {
            "unique_id": uid,
            "resource_type": resource_type(uid),
            "name": uid.split(".")[2] if uid.count(".") >= 2 else uid,
            "status": (_text(r.get("status")) or "").lower(),
            "execution_time": _number(r.get("execution_time")),
            "timing": _timing(r),
            "rows_affected": _whole(adapter.get("rows_affected")),
            "message": _message(r.get("message") if "message" in r else r.get("error")),
            "failures": _whole(r.get("failures")),
            "relation_name": _text(r.get("relation_name")),
        }
        if "max_loaded_at" in r:  # source freshness
            entry.update(max_loaded_at=_text(r.get("max_loaded_at")),
                         max_loaded_at_time_ago_in_s=_number(r.get("max_loaded_at_time_ago_in_s")))
        out.append(entry)
    return out


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def summarize(data: dict) -> dict:
    """Outputs from an artifact's data: results, counts by status, what failed."""
    results = node_results(data)
    counts = Counter(r["status"] for r in results)
    meta = _mapping(data.get("metadata"))
    return {
        "invocation_id": _text(meta.get("invocation_id")),
        "dbt_version": _text(meta.get("dbt_version")),
        "elapsed_time": _number(data.get("elapsed_time")),
        "counts": dict(sorted(counts.items())),
        "results": results,
        "failed": [failure(r) for r in results if r["status"] in FAILED],
        "warned": [failure(r) for r in results if r["status"] == "warn"],
    }


def failure(result: dict) -> dict:
    return {k: result[k] for k in ("unique_id", "resource_type", "name", "status", "message",
                                   "failures")}


# -- lineage -------------------------------------------------------------------------------

def _describe(uid: str, node: dict) -> dict:
    config = _mapping(node.get("config"))
    return {"unique_id": uid, "resource_type": _kind(uid, node),
            "name": _text(node.get("name")), "package": _text(node.get("package_name")),
            "path": _text(node.get("original_file_path")),
            "tags": [t for t in _items(node.get("tags")) if isinstance(t, str)],
            "materialized": _text(config.get("materialized")),
            "relation": _text(node.get("relation_name")),
            "description": _text(node.get("description")) or ""}


def _kind(uid: str, node: dict) -> str:
    return _text(node.get("resource_type")) or resource_type(uid)


def _edges(value: Any) -> dict[str, list[str]]:
    """parent_map / child_map, anything that is not a list of ids dropped."""
    return {k: [u for u in v if isinstance(u, str)] for k, v in _mapping(value).items()
            if isinstance(v, list)}


def lineage(manifest: dict, select: Iterable[str] | None) -> dict:
    """Nodes, sources and exposures of ``select`` (all when None), each with its parents and
    children, as manifest.json's ``parent_map``/``child_map`` give them."""
    catalog: dict[str, dict] = {}
    for section in ("nodes", "sources", "exposures", "metrics", "semantic_models",
                    "saved_queries", "unit_tests"):
        for uid, node in _mapping(manifest.get(section)).items():
            if isinstance(node, dict):
                catalog[uid] = node
    parents = _edges(manifest.get("parent_map"))
    children = _edges(manifest.get("child_map"))
    chosen = select_ids(catalog, parents, children, select)
    out: dict[str, dict] = {"nodes": {}, "sources": {}, "exposures": {}}
    for uid in sorted(chosen):
        entry = _describe(uid, catalog[uid])
        entry["parents"] = sorted(parents.get(uid) or [])
        entry["children"] = sorted(children.get(uid) or [])
        kind = entry["resource_type"]
        out["sources" if kind == "source" else "exposures" if kind == "exposure" else "nodes"][uid] = entry
    out["selected"] = sorted(chosen)
    out["invocation_id"] = _text(_mapping(manifest.get("metadata")).get("invocation_id"))
    return out


class SelectionError(ValueError):
    pass


def select_ids(catalog: dict, parents: dict, children: dict, select: Iterable[str] | None) -> set[str]:
    """dbt's selection syntax, the common part: names, unique ids, ``tag:``,
    ``resource_type:``, ``source:src[.table]``, ``path:``, ``package:``, with ``+`` and
    ``n+`` graph operators (``+orders``, ``orders+``, ``2+orders+1``, ``@orders``).
    Space-separated methods in one string are a union, as on dbt's command line."""
    if select is None:
        return set(catalog)
    chosen: set[str] = set()
    for term in (t for s in select for t in str(s).split()):
        chosen |= _term(term, catalog, parents, children)
    return chosen


def _term(term: str, catalog: dict, parents: dict, children: dict) -> set[str]:
    at = term.startswith("@")
    body = term[1:] if at else term
    m = re.fullmatch(r"(?:(\d*)\+)?(.+?)(?:\+(\d*))?", body)
    if m is None:
        raise SelectionError(f"cannot read selector {term!r}")
    up_txt, core, down_txt = m.group(1), m.group(2), m.group(3)
    up = (int(up_txt) if up_txt else 10**9) if up_txt is not None else 0
    down = (int(down_txt) if down_txt else 10**9) if down_txt is not None else 0
    base = _match(core, catalog)
    if not base:
        raise SelectionError(f"selector {term!r} matches nothing in the manifest")
    out = set(base)
    if at:
        down = 10**9
    out |= _walk(base, children, down)
    if at:
        for uid in set(out):
            out |= _walk({uid}, parents, 10**9)
    out |= _walk(base, parents, up)
    return {u for u in out if u in catalog}


def _walk(start: set[str], edges: dict, depth: int) -> set[str]:
    seen, frontier = set(), set(start)
    while frontier and depth > 0:
        nxt = {p for u in frontier for p in (edges.get(u) or [])} - seen - start
        seen |= nxt
        frontier, depth = nxt, depth - 1
    return seen


def _match(core: str, catalog: dict) -> set[str]:
    method, sep, value = core.partition(":")
    if not sep:
        method, value = "name", core
    if core in catalog:
        return {core}
    out = set()
    for uid, node in catalog.items():
        kind = _kind(uid, node)
        if method == "name" and (node.get("name") == value or uid.endswith("." + value)):
            out.add(uid)
        elif method == "tag" and value in _items(node.get("tags")):
            out.add(uid)
        elif method in ("resource_type", "type") and kind == value:
            out.add(uid)
        elif method == "source" and kind == "source":
            src, _, table = value.partition(".")
            if node.get("source_name") == src and (not table or node.get("name") == table):
                out.add(uid)
        elif method == "path" and str(node.get("original_file_path", "")).startswith(value):
            out.add(uid)
        elif method == "package" and node.get("package_name") == value:
            out.add(uid)
        elif method == "exposure" and kind == "exposure" and node.get("name") == value:
            out.add(uid)
    if method not in ("name", "tag", "resource_type", "type", "source", "path", "package", "exposure"):
        raise SelectionError(f"selector method {method!r} is not supported here (name, tag:, "
                             f"resource_type:, source:, path:, package:, exposure:)")
    return out
