"""A loopback Tableau REST API (sign-in, extract refreshes and jobs, view exports, content
listings) answering in Tableau's XML, driven by the real tableauserverclient. It records every
request (``fake.recorder.requests``) and keeps the state a server would: session tokens (which
it can expire), jobs that finish after some polls, cancelled jobs.

    with TableauFake(version="3.25") as tableau:
        tableau.job_polls = 2                      # two polls say "in progress"
        ... TSC.Server(tableau.url) ...
        assert tableau.sign_ins[0]["personalAccessTokenName"] == "flowrun"
"""
from __future__ import annotations

import itertools
import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree as ET
from xml.sax.saxutils import quoteattr

from tests.support.recorder import Recorded, Recorder

NS = "http://tableau.com/api"
SITE_ID = "a946d998-2ead-4894-bb50-1054a91dcab3"
USER_ID = "9f9e9d9c-8b8a-4f4e-9d9c-8b8a7f7e6d6c"
PDF = b"%PDF-1.7\n% loopback tableau\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 17


def _xml(inner: str) -> bytes:
    return f'<?xml version="1.0" encoding="UTF-8"?><tsResponse xmlns="{NS}">{inner}</tsResponse>'.encode()


def _error(status: int, code: str, summary: str, detail: str) -> tuple[int, dict, bytes]:
    return status, {"Content-Type": "application/xml"}, _xml(
        f'<error code="{code}"><summary>{summary}</summary><detail>{detail}</detail></error>')


@dataclass
class Job:
    id: str
    kind: str  # "workbook" / "datasource"
    item: str
    polls_left: int
    finish: int = 0
    notes: str | None = None
    cancelled: bool = False
    polls: int = 0


@dataclass
class TableauFake:
    version: str = "3.25"
    site: str = "acme"
    job_polls: int = 1  # polls answered "in progress" before the job finishes
    job_finish: int = 0  # 0 success, 1 failed, 2 cancelled
    job_notes: str | None = None
    views: list[dict] = field(default_factory=lambda: [
        {"id": "v-sales-0001", "name": "Sales Overview", "contentUrl": "Sales/sheets/Overview", "workbook": "wb-1"},
        {"id": "v-churn-0002", "name": "Churn", "contentUrl": "Retention/sheets/Churn", "workbook": "wb-2"}])
    workbooks: list[dict] = field(default_factory=lambda: [
        {"id": f"wb-{i}", "name": f"Workbook {i}", "contentUrl": f"Workbook{i}", "project": "Finance" if i % 2 else "Ops"}
        for i in range(1, 6)])
    datasources: list[dict] = field(default_factory=lambda: [
        {"id": "ds-orders", "name": "Orders", "contentUrl": "Orders", "project": "Finance"}])

    def __post_init__(self) -> None:
        self.recorder = Recorder()
        self.sign_ins: list[dict] = []  # the credentials element's attributes of each sign-in
        self.tokens: set[str] = set()
        self.jobs: dict[str, Job] = {}
        self.cancels: list[str] = []
        self.refreshes: list[tuple[str, str, bool]] = []  # (kind, id, incremental)
        self.queued_once: set[str] = set()  # items whose next refresh answers 409093
        self._lock = threading.Lock()
        self._n = itertools.count(1)

    # -- set-up -----------------------------------------------------------------------------
    def expire_sessions(self) -> None:
        """Every session token now answers 401 (a session that timed out)."""
        with self._lock:
            self.tokens.clear()

    def requests(self, method: str | None = None, suffix: str = "") -> list[Recorded]:
        return [r for r in self.recorder.requests if (method is None or r.method == method) and r.path.endswith(suffix)]

    def __enter__(self) -> "TableauFake":
        self.recorder.__enter__()
        self.url = self.recorder.url
        base = "/api/" + re.escape(self.version)
        site = rf"{base}/sites/{SITE_ID}"
        r = self.recorder.route
        r("POST", rf"{base}/auth/signin", handler=self._sign_in)
        r("POST", rf"{base}/auth/signout", handler=lambda req: (204, {}, b""))
        r("POST", rf"{site}/(workbooks|datasources)/[^/]+/refresh", handler=self._refresh)
        r("GET", rf"{site}/jobs/[^/]+", handler=self._job)
        r("PUT", rf"{site}/jobs/[^/]+", handler=self._cancel)
        r("GET", rf"{site}/views/[^/]+/(pdf|image|data)", handler=self._export)
        r("GET", rf"{site}/(views|workbooks|datasources)", handler=self._list)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.recorder.__exit__(*exc)

    # -- handlers -------------------------------------------------------------------------
    def _authorised(self, req: Recorded) -> bool:
        return req.header("x-tableau-auth") in self.tokens

    def _sign_in(self, req: Recorded) -> tuple[int, dict, bytes]:
        root = ET.fromstring(req.body)
        creds = root.find("credentials")
        site = creds.find("site").get("contentUrl") if creds is not None and creds.find("site") is not None else None
        attrs = dict(creds.attrib) if creds is not None else {}
        with self._lock:
            self.sign_ins.append({**attrs, "site": site})
        if site != self.site or not (attrs.get("personalAccessTokenSecret") or attrs.get("jwt")):
            return _error(401, "401001", "Signin Error", "Error signing in to Tableau Server")
        token = f"sess|{uuid.uuid4().hex}|tok"
        with self._lock:
            self.tokens.add(token)
        return 200, {"Content-Type": "application/xml"}, _xml(
            f'<credentials token="{token}" estimatedTimeToExpiration="239:59:59">'
            f'<site id="{SITE_ID}" contentUrl="{self.site}"/><user id="{USER_ID}"/></credentials>')

    def _refresh(self, req: Recorded) -> tuple[int, dict, bytes]:
        if not self._authorised(req):
            return _error(401, "401002", "Unauthorized Access", "Invalid authentication credentials were provided.")
        parts = req.path.split("/")
        kind, item = parts[-3], parts[-2]
        root = ET.fromstring(req.body) if req.body else None
        incremental = (root is not None and root.find("extractRefresh") is not None
                       and root.find("extractRefresh").get("incremental") == "true")
        with self._lock:
            if item in self.queued_once:
                self.queued_once.discard(item)
                return _error(409, "409093", "Resource Conflict", "A refresh job is already queued for it.")
            self.refreshes.append((kind, item, incremental))
            job = Job(f"job-{next(self._n):04d}-{uuid.uuid4().hex[:8]}", kind, item, self.job_polls,
                      self.job_finish, self.job_notes)
            self.jobs[job.id] = job
        return 202, {"Content-Type": "application/xml"}, _xml(
            f'<job id="{job.id}" mode="Asynchronous" type="RefreshExtract" createdAt="2024-06-03T04:00:00Z"/>')

    def _job(self, req: Recorded) -> tuple[int, dict, bytes]:
        if not self._authorised(req):
            return _error(401, "401002", "Unauthorized Access", "Invalid authentication credentials were provided.")
        job = self.jobs.get(req.path.rsplit("/", 1)[1])
        if job is None:
            return _error(404, "404005", "Resource Not Found", "Job not found.")
        with self._lock:
            job.polls += 1
            if job.cancelled:
                finish, progress = 2, 100
            elif job.polls_left > 0:
                job.polls_left -= 1
                finish, progress = -1, 40
            else:
                finish, progress = job.finish, 100
        done = f' completedAt="2024-06-03T04:05:00Z" finishCode="{finish}"' if finish >= 0 else ""
        notes = f"<notes>{job.notes}</notes>" if job.notes and finish >= 0 else ""
        tag = "workbook" if job.kind == "workbooks" else "datasource"
        return 200, {"Content-Type": "application/xml"}, _xml(
            f'<job id="{job.id}" mode="Asynchronous" type="RefreshExtract" progress="{progress}" '
            f'createdAt="2024-06-03T04:00:00Z" startedAt="2024-06-03T04:00:01Z"{done}>'
            f'<extractRefreshJob>{notes}<{tag} id="{job.item}" name="{job.item}"/></extractRefreshJob></job>')

    def _cancel(self, req: Recorded) -> tuple[int, dict, bytes]:
        if not self._authorised(req):
            return _error(401, "401002", "Unauthorized Access", "Invalid authentication credentials were provided.")
        job_id = req.path.rsplit("/", 1)[1]
        with self._lock:
            self.cancels.append(job_id)
            if job_id in self.jobs:
                self.jobs[job_id].cancelled = True
        return 200, {}, b""

    def _export(self, req: Recorded) -> tuple[int, dict, bytes]:
        if not self._authorised(req):
            return _error(401, "401002", "Unauthorized Access", "Invalid authentication credentials were provided.")
        parts = req.path.split("/")
        view_id, kind = parts[-2], parts[-1]
        if view_id not in {v["id"] for v in self.views}:
            return _error(404, "404011", "Resource Not Found", f"View '{view_id}' could not be found.")
        if kind == "pdf":
            return 200, {"Content-Type": "application/pdf"}, PDF
        if kind == "image":
            return 200, {"Content-Type": "image/png"}, PNG
        filters = {k[3:]: v[0] for k, v in sorted(req.query.items()) if k.startswith("vf_")}
        rows = "Region,Sales\n" + "".join(f"{r},{100 + i}\n" for i, r in enumerate(
            (filters.get("Region") or "East,West").split(",")))
        return 200, {"Content-Type": "text/csv"}, rows.encode()

    def _list(self, req: Recorded) -> tuple[int, dict, bytes]:
        if not self._authorised(req):
            return _error(401, "401002", "Unauthorized Access", "Invalid authentication credentials were provided.")
        kind = req.path.rsplit("/", 1)[1]
        items = {"views": self.views, "workbooks": self.workbooks, "datasources": self.datasources}[kind]
        for clause in re.findall(r"[^,\[]+(?:\[[^\]]*\])?", (req.query.get("filter") or [""])[0]):
            name, op, value = clause.split(":", 2)
            key = {"name": "name", "projectName": "project", "contentUrl": "contentUrl"}.get(name, name)
            wanted = value.strip("[]").split(",") if op == "in" else [value]
            items = [i for i in items if i.get(key) in wanted]
        size = int((req.query.get("pageSize") or ["100"])[0])
        page = int((req.query.get("pageNumber") or ["1"])[0])
        chunk = items[(page - 1) * size: page * size]
        tag = kind[:-1]
        body = "".join(
            f'<{tag} id={quoteattr(i["id"])} name={quoteattr(i["name"])} contentUrl={quoteattr(i["contentUrl"])} '
            f'updatedAt="2024-06-01T00:00:00Z">'
            + (f'<project id="p-{i["project"]}" name={quoteattr(i["project"])}/>' if "project" in i else "")
            + (f'<workbook id="{i["workbook"]}"/>' if "workbook" in i else "") + f'<owner id="{USER_ID}"/>'
            + f"</{tag}>" for i in chunk)
        return 200, {"Content-Type": "application/xml"}, _xml(
            f'<pagination pageNumber="{page}" pageSize="{size}" totalAvailable="{len(items)}"/>'
            f"<{kind}>{body}</{kind}>")
