"""A loopback Databricks workspace: the Jobs API (2.1 and 2.2 paths) and the Statement
Execution API, stateful, on the recording HTTP server, for the real databricks-sdk.

Runs move PENDING → RUNNING → TERMINATED one step per ``runs/get`` (never by the wall clock):
``jobs[job_id] = JobSpec(polls=3, result="FAILED", ...)`` says how a job's runs end, and a
submitted run ends as its first task's ``notebook_task.base_parameters.outcome`` says (default
SUCCESS). ``runs/submit`` with an ``idempotency_token`` seen before returns the same run, as
Databricks does. Statements: ``statements[sql] = StatementSpec(columns, rows, chunk=2, polls=1)``.
OAuth M2M: ``/oidc/.well-known/oauth-authorization-server`` and ``/oidc/v1/token``.

``count(kind)`` says what the workspace saw: "run-now", "submit", "get", "cancel", "output",
"statement", "statement-get", "chunk", "statement-cancel", "token".
"""
from __future__ import annotations

import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from .recorder import Recorded, Recorder

_JSON = {"Content-Type": "application/json"}
_API = r"/api/2\.[12]/jobs"


@dataclass
class JobSpec:
    polls: int = 2                  # runs/get answers before TERMINATED (first PENDING, then RUNNING)
    result: str = "SUCCESS"         # SUCCESS, FAILED, TIMEDOUT, CANCELED; or INTERNAL_ERROR (a life-cycle state)
    notebook_result: str | None = "done"
    error: str | None = None
    error_trace: str | None = None
    message: str = ""


@dataclass
class StatementSpec:
    columns: list[tuple[str, str]]  # (name, type_name)
    rows: list[list[str | None]] = field(default_factory=list)
    chunk: int = 1000               # rows per result chunk
    polls: int = 0                  # get answers while RUNNING (-1: forever)
    error: str | None = None        # FAILED with this message
    next_chunk: int | None = None   # a hostile peer: every chunk points to this index next


def _answer(status: int, body: Any) -> tuple[int, dict, bytes]:
    return status, _JSON, json.dumps(body).encode()


class FakeDatabricks:
    def __init__(self, recorder: Recorder):
        self.api = recorder
        self.url = recorder.url
        self.jobs: dict[int, JobSpec] = {}
        self.runs: dict[int, dict] = {}
        self.statements: dict[str, StatementSpec] = {}
        self._executions: dict[str, dict] = {}
        self._tokens: dict[str, int] = {}
        self._ids = itertools.count(1001)
        self._lock = threading.Lock()
        self.stall_submit = False            # runs/submit creates the run, then holds its answer
        self.submit_stalled = threading.Event()  # ... until unstall() (a kill -9 before the id is back)
        self._unstalled = threading.Event()
        r = recorder.route
        r("POST", _API + r"/run-now", handler=self._run_now)
        r("POST", _API + r"/runs/submit", handler=self._submit)
        r("GET", _API + r"/runs/get", handler=self._get)
        r("GET", _API + r"/runs/get-output", handler=self._output)
        r("POST", _API + r"/runs/cancel", handler=self._cancel)
        r("POST", r"/api/2\.0/sql/statements/?", handler=self._execute)
        r("GET", r"/api/2\.0/sql/statements/[^/]+", handler=self._statement)
        r("GET", r"/api/2\.0/sql/statements/[^/]+/result/chunks/\d+", handler=self._chunk)
        r("POST", r"/api/2\.0/sql/statements/[^/]+/cancel", handler=self._statement_cancel)
        r("GET", r"/oidc/\.well-known/oauth-authorization-server", handler=self._oidc)
        # the SDK's discovery probe (recent databricks-sdk releases ask it whenever a client is built)
        r("GET", r"/\.well-known/databricks-config", handler=self._host_metadata)
        r("POST", r"/oidc/v1/token", json={"access_token": "oauth-access-token", "token_type": "Bearer",
                                           "expires_in": 3600})

    # -- jobs ------------------------------------------------------------------------------------
    def _new_run(self, spec: JobSpec, tasks: list[dict], job_id: int | None) -> int:
        run_id = next(self._ids)
        self.runs[run_id] = {"spec": spec, "polls": 0, "state": "PENDING", "result": None,
                             "tasks": [{"task_key": t.get("task_key", "main"), "run_id": next(self._ids)}
                                       for t in tasks] or [{"task_key": "main", "run_id": next(self._ids)}],
                             "job_id": job_id}
        return run_id

    def _run_now(self, req: Recorded) -> tuple[int, dict, bytes]:
        body = req.json()
        spec = self.jobs.get(body.get("job_id"))
        if spec is None:
            return _answer(400, {"error_code": "INVALID_PARAMETER_VALUE",
                                 "message": f"Job {body.get('job_id')} does not exist."})
        with self._lock:
            token = body.get("idempotency_token")
            if token and token in self._tokens:
                return _answer(200, {"run_id": self._tokens[token]})
            run_id = self._new_run(spec, [], body["job_id"])
            if token:
                self._tokens[token] = run_id
        return _answer(200, {"run_id": run_id, "number_in_job": run_id})

    def _submit(self, req: Recorded) -> tuple[int, dict, bytes]:
        body = req.json()
        tasks = body.get("tasks") or []
        params = ((tasks[0].get("notebook_task") or {}).get("base_parameters") or {}) if tasks else {}
        spec = JobSpec(polls=int(params.get("polls", 2)), result=params.get("outcome", "SUCCESS"),
                       notebook_result=params.get("exit", "done"), error=params.get("error"),
                       error_trace=params.get("trace"), message=params.get("message", ""))
        with self._lock:
            token = body.get("idempotency_token")
            if token and token in self._tokens:
                return _answer(200, {"run_id": self._tokens[token]})
            run_id = self._new_run(spec, tasks, None)
            if token:
                self._tokens[token] = run_id
        if self.stall_submit:
            self.submit_stalled.set()
            self._unstalled.wait(60)
        return _answer(200, {"run_id": run_id})

    def unstall(self) -> None:
        self.stall_submit = False
        self._unstalled.set()

    def _run(self, run_id: Any) -> dict | None:
        try:
            return self.runs.get(int(run_id))
        except (TypeError, ValueError):
            return None

    def _get(self, req: Recorded) -> tuple[int, dict, bytes]:
        run_id = req.query.get("run_id", [None])[0]
        run = self._run(run_id)
        if run is None:
            return _answer(400, {"error_code": "INVALID_PARAMETER_VALUE", "message": f"Run {run_id} does not exist."})
        with self._lock:
            spec = run["spec"]
            if run["state"] not in ("TERMINATED", "INTERNAL_ERROR"):
                run["polls"] += 1
                if run["polls"] > spec.polls:
                    if spec.result == "INTERNAL_ERROR":
                        run["state"], run["result"] = "INTERNAL_ERROR", "FAILED"
                    else:
                        run["state"], run["result"] = "TERMINATED", spec.result
                elif run["polls"] > 1:
                    run["state"] = "RUNNING"
            state = {"life_cycle_state": run["state"], "state_message": spec.message if run["result"] else ""}
            if run["result"]:
                state["result_state"] = run["result"]
            task_state = dict(state)
        body = {"run_id": int(run_id), "job_id": run["job_id"], "state": state,
                "run_page_url": f"{self.url}/#job/{run['job_id'] or 0}/run/{run_id}",
                "tasks": [{**t, "state": task_state} for t in run["tasks"]]}
        return _answer(200, body)

    def _output(self, req: Recorded) -> tuple[int, dict, bytes]:
        task_run = int(req.query.get("run_id", ["0"])[0])
        run = next((r for r in self.runs.values() if any(t["run_id"] == task_run for t in r["tasks"])), None)
        if run is None:
            return _answer(400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "no such task run"})
        spec = run["spec"]
        body: dict = {"metadata": {"run_id": task_run}}
        if run["result"] == "SUCCESS" and spec.notebook_result is not None:
            body["notebook_output"] = {"result": spec.notebook_result, "truncated": False}
        if run["result"] not in (None, "SUCCESS"):
            body["error"] = spec.error or run["result"]
            if spec.error_trace:
                body["error_trace"] = spec.error_trace
        return _answer(200, body)

    def _cancel(self, req: Recorded) -> tuple[int, dict, bytes]:
        run = self._run(req.json().get("run_id"))
        if run is None:
            return _answer(400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "no such run"})
        with self._lock:
            run["state"], run["result"] = "TERMINATED", "CANCELED"
        return _answer(200, {})

    # -- statements ------------------------------------------------------------------------------
    def _execute(self, req: Recorded) -> tuple[int, dict, bytes]:
        body = req.json()
        spec = self.statements.get(body.get("statement"))
        if spec is None:
            return _answer(400, {"error_code": "BAD_REQUEST", "message": "unknown statement in the fake"})
        sid = f"01ef-{next(self._ids)}"
        with self._lock:
            self._executions[sid] = {"spec": spec, "polls": 0, "state": "RUNNING" if spec.polls else "DONE",
                                     "request": body}
        return self._status(sid)

    def _status(self, sid: str) -> tuple[int, dict, bytes]:
        ex = self._executions[sid]
        spec = ex["spec"]
        if ex["state"] == "CANCELED":
            return _answer(200, {"statement_id": sid, "status": {"state": "CANCELED"}})
        if ex["state"] == "RUNNING":
            return _answer(200, {"statement_id": sid, "status": {"state": "RUNNING"}})
        if spec.error:
            return _answer(200, {"statement_id": sid, "status": {"state": "FAILED", "error": {
                "error_code": "BAD_REQUEST", "message": spec.error}}})
        chunks = [spec.rows[i:i + spec.chunk] for i in range(0, len(spec.rows), spec.chunk)] or [[]]
        manifest = {"format": "JSON_ARRAY", "total_chunk_count": len(chunks), "total_row_count": len(spec.rows),
                    "schema": {"column_count": len(spec.columns), "columns": [
                        {"name": n, "type_name": t, "type_text": t, "position": i}
                        for i, (n, t) in enumerate(spec.columns)]}}
        return _answer(200, {"statement_id": sid, "status": {"state": "SUCCEEDED"}, "manifest": manifest,
                             "result": self._chunk_body(sid, 0)})

    def _chunk_body(self, sid: str, index: int) -> dict:
        spec = self._executions[sid]["spec"]
        count = max(1, -(-len(spec.rows) // spec.chunk))
        body: dict = {"chunk_index": index, "row_offset": index * spec.chunk,
                      "data_array": spec.rows[index * spec.chunk:(index + 1) * spec.chunk]}
        body["row_count"] = len(body["data_array"])
        if spec.next_chunk is not None:
            body["next_chunk_index"] = spec.next_chunk
        elif index + 1 < count:
            body["next_chunk_index"] = index + 1
            body["next_chunk_internal_link"] = f"/api/2.0/sql/statements/{sid}/result/chunks/{index + 1}"
        return body

    def _statement(self, req: Recorded) -> tuple[int, dict, bytes]:
        sid = req.path.rsplit("/", 1)[1]
        ex = self._executions.get(sid)
        if ex is None:
            return _answer(404, {"error_code": "NOT_FOUND", "message": "no such statement"})
        with self._lock:
            if ex["state"] == "RUNNING":
                ex["polls"] += 1
                if ex["polls"] >= ex["spec"].polls >= 0:
                    ex["state"] = "DONE"
        return self._status(sid)

    def _chunk(self, req: Recorded) -> tuple[int, dict, bytes]:
        parts = req.path.split("/")
        return _answer(200, self._chunk_body(parts[5], int(parts[8])))

    def _statement_cancel(self, req: Recorded) -> tuple[int, dict, bytes]:
        ex = self._executions.get(req.path.split("/")[5])
        if ex is not None:
            ex["state"] = "CANCELED"
        return _answer(200, {})

    def _host_metadata(self, req: Recorded) -> tuple[int, dict, bytes]:
        return _answer(200, {"oidc_endpoint": f"{self.url}/oidc", "workspace_id": "1234567890123456",
                             "cloud": "aws"})

    def _oidc(self, req: Recorded) -> tuple[int, dict, bytes]:
        return _answer(200, {"authorization_endpoint": f"{self.url}/oidc/v1/authorize",
                             "token_endpoint": f"{self.url}/oidc/v1/token"})

    # -- what was seen -----------------------------------------------------------------------------
    _KINDS = {"run-now": ("POST", _API + r"/run-now"), "submit": ("POST", _API + r"/runs/submit"),
              "get": ("GET", _API + r"/runs/get"), "output": ("GET", _API + r"/runs/get-output"),
              "cancel": ("POST", _API + r"/runs/cancel"), "statement": ("POST", r"/api/2\.0/sql/statements/?"),
              "statement-get": ("GET", r"/api/2\.0/sql/statements/[^/]+"),
              "chunk": ("GET", r"/api/2\.0/sql/statements/[^/]+/result/chunks/\d+"),
              "statement-cancel": ("POST", r"/api/2\.0/sql/statements/[^/]+/cancel"),
              "token": ("POST", r"/oidc/v1/token")}

    def seen(self, kind: str) -> list[Recorded]:
        method, pattern = self._KINDS[kind]
        return [r for r in list(self.api.requests) if r.method == method and re.fullmatch(pattern, r.path)]

    def count(self, kind: str) -> int:
        return len(self.seen(kind))
