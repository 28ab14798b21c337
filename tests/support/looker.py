"""A loopback Looker API 4.0 (login, looks, inline queries, dashboard render tasks) answering
as Looker documents it, driven by the real looker-sdk with its base URL set in code. Every
request is recorded; error answers carry Looker's message and documentation URL.

    with LookerFake(client_id="id", client_secret="s") as looker:
        looker.render_polls = 2
        ... Looker40SDK with base_url=looker.url ...
        assert looker.logins == [("id", "s")]
"""
from __future__ import annotations

import itertools
import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from tests.support.recorder import Recorded, Recorder
from tests.support.tableau import PDF, PNG

ROWS = [{"orders.created_date": "2024-06-01", "orders.count": 42},
        {"orders.created_date": "2024-06-02", "orders.count": 17}]


def _json(status: int, body: Any, headers: dict | None = None) -> tuple[int, dict, bytes]:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode()


def _error(status: int, message: str, path: str) -> tuple[int, dict, bytes]:
    return _json(status, {"message": message,
                          "documentation_url": f"https://cloud.google.com/looker/docs/r/err/4.0/{status}{path}"})


@dataclass
class LookerFake:
    client_id: str = "looker-id"
    client_secret: str = "looker-secret"
    looks: dict = field(default_factory=lambda: {"42": ROWS})
    dashboards: set = field(default_factory=lambda: {"17"})
    render_polls: int = 1  # polls answered "rendering" before "success"
    render_fails: str | None = None  # a status_detail: the task ends in failure
    query_error: str | None = None  # a looker_error inside a 200 answer
    throttle: int = 0  # the next N API calls get 429

    def __post_init__(self) -> None:
        self.recorder = Recorder()
        self.logins: list[tuple[str, str]] = []
        self.tokens: set[str] = set()
        self.tasks: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._n = itertools.count(1)

    def __enter__(self) -> "LookerFake":
        self.recorder.__enter__()
        self.url = self.recorder.url
        r = self.recorder.route
        r("POST", r"/api/4\.0/login", handler=self._login)
        r("GET", r"/api/4\.0/looks/[^/]+/run/[a-z_]+", handler=self._authed(self._run_look))
        r("POST", r"/api/4\.0/queries/run/[a-z_]+", handler=self._authed(self._run_query))
        r("POST", r"/api/4\.0/render_tasks/dashboards/[^/]+/[a-z]+", handler=self._authed(self._create_task))
        r("GET", r"/api/4\.0/render_tasks/[^/]+/results", handler=self._authed(self._results))
        r("GET", r"/api/4\.0/render_tasks/[^/]+", handler=self._authed(self._task))
        return self

    def __exit__(self, *exc: Any) -> None:
        self.recorder.__exit__(*exc)

    def requests(self, method: str, contains: str = "") -> list[Recorded]:
        return [q for q in self.recorder.requests if q.method == method and contains in q.path]

    # -- handlers ---------------------------------------------------------------------------
    def _login(self, req: Recorded) -> tuple[int, dict, bytes]:
        form = parse_qs(req.body.decode(), keep_blank_values=True)
        got = ((form.get("client_id") or [""])[0], (form.get("client_secret") or [""])[0])
        with self._lock:
            self.logins.append(got)
        if got != (self.client_id, self.client_secret):
            return _error(404, "Not found", "/post/login")  # what Looker answers to bad credentials
        token = f"lk-{uuid.uuid4().hex}"
        with self._lock:
            self.tokens.add(token)
        return _json(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    def _authed(self, handler: Any) -> Any:
        def check(req: Recorded) -> tuple[int, dict, bytes]:
            auth = req.header("authorization") or ""
            if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
                return _error(401, "Requires authentication.", "/get")
            with self._lock:
                if self.throttle > 0:
                    self.throttle -= 1
                    return _json(429, {"message": "Too many requests"}, {"Retry-After": "1"})
            return handler(req)
        return check

    def _run_look(self, req: Recorded) -> tuple[int, dict, bytes]:
        parts = req.path.split("/")
        look, kind = parts[-3], parts[-1]
        rows = self.looks.get(look)
        if rows is None:
            return _error(404, "Not found", "/get/looks/:look_id/run/:result_format")
        limit = int((req.query.get("limit") or [len(rows)])[0])
        rows = rows[:limit]
        if kind == "json":
            return _json(200, rows)
        if kind == "csv":
            head = list(rows[0]) if rows else []
            text = ",".join(head) + "\n" + "".join(",".join(str(r[h]) for h in head) + "\n" for r in rows)
            return 200, {"Content-Type": "text/csv; charset=utf-8"}, text.encode()
        if kind == "png":
            return 200, {"Content-Type": "image/png"}, PNG
        return _error(400, f"Unsupported result format {kind}", "/get/looks/:look_id/run/:result_format")

    def _run_query(self, req: Recorded) -> tuple[int, dict, bytes]:
        body = req.json()
        if self.query_error:
            return _json(200, {"looker_error": self.query_error})
        if body.get("model") == "no_such_model":
            return _json(422, {"message": "Validation Failed", "errors": [
                {"field": "model", "code": "missing", "message": "This field is required.",
                 "documentation_url": "https://cloud.google.com/looker/docs/r/err/4.0/422/post/queries/run"}],
                "documentation_url": "https://cloud.google.com/looker/docs/r/err/4.0/422/post/queries/run"})
        fields = body.get("fields") or []
        rows = [{f: r.get(f) for f in fields} for r in ROWS][: int(body.get("limit") or 500)]
        return _json(200, rows)

    def _create_task(self, req: Recorded) -> tuple[int, dict, bytes]:
        parts = req.path.split("/")
        dashboard, kind = parts[-2], parts[-1]
        if dashboard not in self.dashboards:
            return _error(404, "Not found", "/post/render_tasks/dashboards/:dashboard_id/:result_format")
        task = {"id": f"rt-{next(self._n)}-{uuid.uuid4().hex[:6]}", "dashboard_id": dashboard,
                "result_format": kind, "status": "enqueued_for_query", "polls": self.render_polls,
                "width": int(req.query["width"][0]), "height": int(req.query["height"][0]), "body": req.json()}
        with self._lock:
            self.tasks[task["id"]] = task
        return _json(200, {k: v for k, v in task.items() if k not in ("polls", "body")})

    def _task(self, req: Recorded) -> tuple[int, dict, bytes]:
        task = self.tasks.get(req.path.rsplit("/", 1)[1])
        if task is None:
            return _error(404, "Not found", "/get/render_tasks/:render_task_id")
        with self._lock:
            if task["polls"] > 0:
                task["polls"] -= 1
                task["status"] = "rendering"
            elif self.render_fails:
                task["status"], task["status_detail"] = "failure", self.render_fails
            else:
                task["status"] = "success"
        return _json(200, {k: v for k, v in task.items() if k not in ("polls", "body")})

    def _results(self, req: Recorded) -> tuple[int, dict, bytes]:
        task = self.tasks.get(req.path.split("/")[-2])
        if task is None or task["status"] != "success":
            return _error(404, "Not found", "/get/render_tasks/:render_task_id/results")
        if task["result_format"] == "pdf":
            return 200, {"Content-Type": "application/pdf"}, PDF
        return 200, {"Content-Type": "image/png"}, PNG
