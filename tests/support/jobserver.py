"""A loopback "job API" on the recording HTTP server: what a long-running node talks to.

    POST /jobs                {"polls": 3}   -> {"id": "job-1"}; done after 3 polls (null: never)
                              {"fail": true} -> the job ends FAILED at its first poll
    GET  /jobs/{id}                          -> {"id", "state": RUNNING | SUCCESS | FAILED | CANCELLED, "result"}
    POST /jobs/{id}/cancel                   -> {"id", "state": "CANCELLED"}

``count("start" | "poll" | "cancel", job_id=None)`` says what the server saw.
"""
from __future__ import annotations

import itertools
import json
import re
import threading
from typing import Any

from .recorder import Recorded, Recorder

_JSON = {"Content-Type": "application/json"}


class JobServer:
    def __init__(self, recorder: Recorder):
        self.api = recorder
        self.url = recorder.url
        self.jobs: dict[str, dict] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        recorder.route("POST", r"/jobs", handler=self._start)
        recorder.route("GET", r"/jobs/[^/]+", handler=self._poll)
        recorder.route("POST", r"/jobs/[^/]+/cancel", handler=self._cancel)

    def _start(self, req: Recorded) -> tuple[int, dict, bytes]:
        body = req.json() or {}
        with self._lock:
            job_id = f"job-{next(self._ids)}"
            self.jobs[job_id] = {"state": "RUNNING", "polls": 0, "done_after": body.get("polls"),
                                 "fail": bool(body.get("fail")), "input": body.get("input")}
        return 201, _JSON, json.dumps({"id": job_id}).encode()

    def _job(self, req: Recorded) -> tuple[str, dict | None]:
        job_id = req.path.split("/")[2]
        return job_id, self.jobs.get(job_id)

    def _poll(self, req: Recorded) -> tuple[int, dict, bytes]:
        job_id, job = self._job(req)
        if job is None:
            return 404, _JSON, b'{"error": "no such job"}'
        with self._lock:
            job["polls"] += 1
            if job["state"] == "RUNNING":
                if job["fail"]:
                    job["state"] = "FAILED"
                elif job["done_after"] is not None and job["polls"] >= job["done_after"]:
                    job["state"] = "SUCCESS"
            answer = {"id": job_id, "state": job["state"], "polls": job["polls"]}
            if job["state"] == "SUCCESS":
                answer["result"] = {"echo": job["input"], "rows": 42}
        return 200, _JSON, json.dumps(answer).encode()

    def _cancel(self, req: Recorded) -> tuple[int, dict, bytes]:
        job_id, job = self._job(req)
        if job is None:
            return 404, _JSON, b'{"error": "no such job"}'
        with self._lock:
            job["state"] = "CANCELLED"
        return 200, _JSON, json.dumps({"id": job_id, "state": "CANCELLED"}).encode()

    def override(self, method: str, path: str, **route: Any) -> None:
        """A route answered before the job API's own (a failing poll, a spy)."""
        self.api.route(method, path, **route)
        with self.api._lock:
            self.api._routes.insert(0, self.api._routes.pop())

    def count(self, kind: str, job_id: str | None = None) -> int:
        pattern = {"start": ("POST", r"/jobs"), "poll": ("GET", r"/jobs/[^/]+"),
                   "cancel": ("POST", r"/jobs/[^/]+/cancel")}[kind]
        return sum(1 for r in list(self.api.requests)
                   if r.method == pattern[0] and re.fullmatch(pattern[1], r.path)
                   and (job_id is None or r.path.split("/")[2] == job_id))
