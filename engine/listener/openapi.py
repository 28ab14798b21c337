"""An OpenAPI 3.1 document generated from the trigger table (``GET /openapi.json``).

Each Request trigger is an operation at its path and method, with its JSON Schema as the
request body (OpenAPI 3.1 schemas are JSON Schema 2020-12, so they are used as written),
its relative path parameters, the answers it can give, and a security scheme per auth.
"""
from __future__ import annotations

import re
from typing import Any

from .triggers import PushEntry, Table

ERROR = {"type": "object", "properties": {"error": {"type": "string"},
                                          "problems": {"type": "array", "items": {
                                              "type": "object", "properties": {"path": {"type": "string"},
                                                                               "message": {"type": "string"}}}}}}
ACCEPTED = {"type": "object", "properties": {"runId": {"type": "string"}, "status": {"const": "Accepted"},
                                             "location": {"type": "string"}}}
RUN = {"type": "object", "properties": {
    "runId": {"type": "string"}, "flow": {"type": "string"}, "trigger": {"type": "string"},
    "status": {"enum": ["Queued", "Running", "Succeeded", "Failed", "TimedOut", "Cancelled"]},
    "created": {"type": "string", "format": "date-time"}, "started": {"type": ["string", "null"]},
    "ended": {"type": ["string", "null"]}, "outputs": {}, "error": {}, "response": {}}}


def _json(schema: dict, description: str, headers: dict | None = None) -> dict:
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _security(t: PushEntry) -> tuple[str | None, dict | None]:
    name = f"{t.flow.name}.{t.name}"
    if t.kind == "none":
        return None, None
    if t.kind == "key":
        if "query" in t.options:
            return name, {"type": "apiKey", "in": "query", "name": t.options["query"]}
        header = t.options.get("header", "X-API-Key")
        if header.lower() == "authorization" and t.options.get("scheme"):
            return name, {"type": "http", "scheme": t.options["scheme"].lower()}
        return name, {"type": "apiKey", "in": "header", "name": header}
    if t.kind == "hmac":
        header = t.options.get("header", "X-Hub-Signature-256")
        return name, {"type": "apiKey", "in": "header", "name": header,
                      "description": f"HMAC-SHA256 of the raw body, '{t.options.get('prefix', 'sha256=')}' + "
                                     f"{t.options.get('encoding', 'hex')}"}
    if t.kind == "sas":
        return name, {"type": "apiKey", "in": "query", "name": "sig",
                      "description": "Logic Apps' SAS signature of the trigger's callback URL (with sp and sv; "
                                     "flowrun serve logs each callback URL at start)"}
    # a node module's auth: its class may name the header it reads (``signature_header``)
    cls = type(t.auth)
    doc = (cls.__doc__ or "").strip().splitlines()
    return name, {"type": "apiKey", "in": "header", "name": getattr(cls, "signature_header", None) or "Authorization",
                  "description": f"verified by the '{t.kind}' auth ({cls.__module__})" + (f": {doc[0]}" if doc else "")}


def operation(t: PushEntry) -> dict:
    params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
              for p in re.findall(r"\{([^{}]+)\}", t.relative_path or "")]
    responses: dict[str, Any] = {}
    if t.has_response:
        responses["200"] = {"description": "the flow's Response action (status, headers and body as it sets them)"}
        responses["502"] = _json(ERROR, "the run ended without sending its Response")
    responses["202"] = _json(ACCEPTED, "accepted: the run is committed; poll Location" +
                             (" (the Response took longer than --sync-timeout)" if t.has_response else ""),
                             {"Location": {"schema": {"type": "string"}}})
    responses["400"] = _json(ERROR, "the body is not valid, or does not match the schema (every problem listed)")
    if t.kind != "none":
        responses["401"] = _json(ERROR, "credentials missing")
        responses["403"] = _json(ERROR, "credentials wrong, forged or expired")
    responses["413"] = _json(ERROR, "the body is larger than --max-body")
    responses["429"] = _json(ERROR, "too many runs in flight; retry after Retry-After seconds",
                             {"Retry-After": {"schema": {"type": "integer"}}})
    op: dict[str, Any] = {
        "operationId": f"{t.flow.name}.{t.name}",
        "summary": (t.flow.description or f"start flow {t.flow.name}").strip().splitlines()[0],
        "tags": [t.flow.name],
        "responses": responses,
    }
    desc = t.flow.triggers[t.name].raw.get("description")
    if desc:
        op["description"] = desc
    if params:
        op["parameters"] = params
    if t.method not in ("GET", "DELETE"):
        op["requestBody"] = {"required": t.schema is not None, "content": {
            "application/json": {"schema": t.schema if t.schema is not None else {}}}}
    sec, _ = _security(t)
    op["security"] = [{sec: []}] if sec else []
    return op


def document(table: Table, base_url: str | None = None) -> dict:
    paths: dict[str, dict] = {}
    schemes: dict[str, dict] = {}
    for t in sorted(table.push.values(), key=lambda t: t.path):
        paths.setdefault(t.path, {})[t.method.lower()] = operation(t)
        name, scheme = _security(t)
        if name:
            schemes[name] = scheme
    schemes["admin"] = {"type": "http", "scheme": "bearer", "description": "the server's admin token"}
    paths["/runs/{runId}"] = {"get": {
        "operationId": "getRun", "summary": "a run's status and outputs (its trigger's auth, or the admin token)",
        "parameters": [{"name": "runId", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": _json(RUN, "the run has finished"),
                      "202": _json(RUN, "the run is in flight; poll again after Retry-After"),
                      "401": _json(ERROR, "credentials missing"), "404": _json(ERROR, "no such run")}}}
    for path, what in (("/healthz", "the process is up"), ("/readyz", "flows are loaded and the server accepts requests")):
        paths[path] = {"get": {"operationId": path.strip("/"), "summary": what, "security": [],
                               "responses": {"200": {"description": what}, "503": {"description": "not ready"}}}}
    paths["/metrics"] = {"get": {"operationId": "metrics", "summary": "Prometheus metrics", "security": [],
                                 "responses": {"200": {"description": "Prometheus text format",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}}}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "flowrun triggers", "version": "1",
                 "description": "HTTP triggers of the flows this server runs. Generated from the flow files."},
        "paths": paths,
        "components": {"securitySchemes": schemes},
    }
    if base_url:
        doc["servers"] = [{"url": base_url.rstrip("/")}]
    return doc
