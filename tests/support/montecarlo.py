"""A loopback Monte Carlo: a real HTTP server answering the GraphQL operations pycarlo sends
(parsed with graphql-core, as a GraphQL server would), plus the pre-signed upload URLs of the
dbt importer. It records every operation: its root fields, resolved arguments, variables and
headers.

    with MonteCarloFake() as mc:
        mc.rule("r-1", breaches=[0], polls=2)       # two polls say EXECUTING_START, then done
        ... Session(endpoint=mc.url) ...
        assert mc.calls("triggerCircuitBreakerRuleV2")[0].arguments == {"ruleUuid": "r-1"}
"""
from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from graphql import OperationDefinitionNode, parse, value_from_ast_untyped

from tests.support.recorder import Recorded, Recorder


@dataclass
class Call:
    operation: str | None  # "query" / "mutation"
    name: str | None  # the operation's name
    field: str  # the root field
    arguments: dict
    variables: dict
    headers: dict


@dataclass
class Rule:
    breaches: list[int]  # one execution per entry, with this breach count
    polls: int = 0  # state reads answered EXECUTING_START before PROCESSING_COMPLETE
    error: str | None = None


@dataclass
class MonteCarloFake:
    rules: dict[str, Rule] = field(default_factory=dict)
    incidents: list[dict] = field(default_factory=list)
    errors: dict[str, dict] = field(default_factory=dict)  # root field -> a GraphQL error
    uploads: dict[str, bytes] = field(default_factory=dict)
    warehouses: list[dict] = field(default_factory=lambda: [
        {"uuid": "3a0b6c2e-8d9e-4f1a-9b2c-5d6e7f8a9b0c", "name": "shop", "connectionType": "duckdb"}])

    def __post_init__(self) -> None:
        self.calls_: list[Call] = []
        self._executions: dict[str, tuple[Rule, int]] = {}
        self._reads: dict[str, int] = {}
        self._lock = threading.Lock()
        self.raw: dict[str, list[tuple[int, dict, bytes]]] = {}
        self.recorder = Recorder()

    # -- set-up ---------------------------------------------------------------------------
    def rule(self, key: str, *, breaches: list[int], polls: int = 0, error: str | None = None) -> None:
        self.rules[key] = Rule(list(breaches), polls, error)

    def fail(self, root_field: str, message: str, code: str = "BAD_REQUEST") -> None:
        self.errors[root_field] = {"message": message, "extensions": {"code": code}}

    def respond(self, root_field: str, status: int, body: bytes, headers: dict | None = None,
                times: int = 1) -> None:
        """The next ``times`` requests for ``root_field`` get this raw answer (after they are
        recorded): malformed JSON, partial data, 429/503 with any Retry-After."""
        self.raw.setdefault(root_field, []).extend([(status, headers or {}, body)] * times)

    def calls(self, root_field: str | None = None) -> list[Call]:
        return [c for c in self.calls_ if root_field is None or c.field == root_field]

    def __enter__(self) -> "MonteCarloFake":
        self.recorder.__enter__()
        self.url = self.recorder.url + "/graphql"
        self.recorder.route("POST", r"/graphql", handler=self._graphql)
        self.recorder.route("PUT", r"/uploads/.+", handler=self._upload)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.recorder.__exit__(*exc)

    # -- HTTP -----------------------------------------------------------------------------
    def _upload(self, req: Recorded) -> tuple[int, dict, bytes]:
        self.uploads[req.path.split("/uploads/", 1)[1]] = req.body
        return 200, {}, b""

    def _graphql(self, req: Recorded) -> tuple[int, dict, bytes]:
        payload = req.json()
        variables = payload.get("variables") or {}
        doc = parse(payload["query"])
        ops = [d for d in doc.definitions if isinstance(d, OperationDefinitionNode)]
        wanted = payload.get("operationName")
        op = next((o for o in ops if o.name and o.name.value == wanted), ops[0])
        data: dict = {}
        errors = []
        for sel in op.selection_set.selections:
            name = sel.name.value
            args = {a.name.value: value_from_ast_untyped(a.value, variables) for a in (sel.arguments or ())}
            call = Call(op.operation.value, op.name.value if op.name else None, name, args,
                        variables, dict(req.headers))
            with self._lock:
                self.calls_.append(call)
                canned = self.raw.get(name)
                if canned:
                    return canned.pop(0)
            if name in self.errors:
                errors.append({**self.errors[name], "path": [name]})
                data[name] = None
                continue
            key = sel.alias.value if sel.alias else name
            data[key] = self._answer(name, args, req)
        body = {"data": data, **({"errors": errors} if errors else {})}
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    def _answer(self, name: str, args: dict, req: Recorded) -> Any:
        if name in ("triggerCircuitBreakerRuleV2", "triggerCircuitBreakerRule"):
            rule = self.rules.get(args.get("ruleUuid") or f"{args.get('namespace')}/{args.get('ruleName')}") \
                or self.rules.get(args.get("ruleName") or "")
            if rule is None:
                return None
            ids = []
            for i in range(len(rule.breaches)):
                jid = str(uuid.uuid4())
                self._executions[jid] = (rule, i)
                ids.append(jid)
            return {"jobExecutionUuids": ids}
        if name == "getCircuitBreakerRuleStateV2":
            out = []
            for jid in args.get("jobExecutionUuids") or []:
                rule, i = self._executions[jid]
                reads = self._reads[jid] = self._reads.get(jid, 0) + 1
                if reads <= rule.polls:
                    out.append({"status": "EXECUTING_START", "log": json.dumps([{"stage": "EXECUTING_START"}])})
                elif rule.error:
                    out.append({"status": "HAS_ERROR", "log": json.dumps(
                        [{"stage": "HAS_ERROR", "payload": {"error": rule.error}}])})
                else:
                    out.append({"status": "PROCESSING_COMPLETE", "log": json.dumps(
                        [{"stage": "EXECUTING_START"},
                         {"stage": "PROCESSING_COMPLETE",
                          "payload": {"breach_count": rule.breaches[i], "error": None,
                                      "query": "select * from orders where amount < 0"}}])})
            return out
        if name == "getUser":
            return {"account": {"warehouses": self.warehouses}}
        if name == "getPiiFilteringPreferences":
            return {"enabled": False, "failMode": "CLOSE"}
        if name == "getDbtUploadUrl":
            return f"{self.recorder.url}/uploads/{args['invocationId']}/{args['fileName']}"
        if name == "sendDbtArtifactsEvent":
            return {"ok": True}
        if name == "getIncidents":
            first = int(args.get("first") or 100)
            after = int(args.get("after") or 0)
            rows = [i for i in self.incidents
                    if not args.get("fullTableIds") or set(i.get("tables", [])) & set(args["fullTableIds"])]
            rows = [i for i in rows if not args.get("severities") or i.get("severity") in args["severities"]]
            page = rows[after:after + first]
            more = after + first < len(rows)
            return {"pageInfo": {"hasNextPage": more, "endCursor": str(after + first) if more else None},
                    "edges": [{"node": {k: v for k, v in i.items() if k != "tables"}} for i in page]}
        if name == "getTable":
            return {"mcon": f"MCON++{args.get('fullTableId')}", "tableId": args.get("fullTableId")}
        return None
