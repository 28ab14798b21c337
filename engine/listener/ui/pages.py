"""The UI's GET pages: runs list, run page, rerun plan, flows, and downloads of stored values.

Every input is a query string or a path segment from a browser: numbers are clamped, names
and paths bounded, and a run id is matched whole (no prefix probing). What cannot be read
is a 404 page, never a 500.
"""
from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response

from engine import history
from engine.errors import FlowrunError
from engine.inspection import Reader, header, is_reused, kind
from engine.runs import Run, Step
from engine.state import Status, is_terminal
from engine.store import is_blob_ref

from . import HEADERS, Refused, dag, timeline

PAGE = 50  # runs per page of the list
STRIP = 500  # iterations per page of a loop's strip
MOST_STEPS = 500  # steps listed on a run page (outside loops, plus the chosen iterations)
_ITERATION = re.compile(r"\[(\d+)\]")
RUN_VALUES = ("payload", "params", "outputs", "error", "request", "response")
STEP_VALUES = ("inputs", "outputs", "error")


def number(text: Any, default: int, low: int, high: int) -> int:
    try:
        value = int(str(text)) if text is not None and len(str(text)) < 12 else default
    except ValueError:
        return default
    return min(max(value, low), high)


def short_text(text: Any, most: int = 300) -> str | None:
    if not isinstance(text, str) or not text or len(text) > most or "\x00" in text:
        return None
    return text


def chosen_iterations(it: str | None) -> dict[str, str]:
    """``a[1]/b[2]`` -> {"a": "a[1]", "a[1]/b": "a[1]/b[2]"}: the loop instances it opens."""
    out: dict[str, str] = {}
    if not it:
        return out
    for m in _ITERATION.finditer(it):
        out[it[:m.start()]] = it[:m.end()]
    return out


class Pages:
    def __init__(self, ui: Any):
        self.ui = ui
        self.engine = ui.engine
        self.store = ui.engine.store

    def run_of(self, request: Request) -> Run:
        run_id = request.path_params["run_id"]
        run = self.engine.run_record(run_id) if short_text(run_id, 100) else None
        if run is None:
            raise Refused(404, f"No run {run_id[:100]!r}.")
        return self.engine.result(run.id)  # Running runs no process holds are marked orphaned

    # -- runs list ----------------------------------------------------------------------------
    async def runs(self, request: Request) -> Response:
        q = request.query_params
        f = history.RunFilter.parse(q)
        page = number(q.get("page"), 1, 1, 1_000_000)
        runs = self.engine.search_runs(f, offset=(page - 1) * PAGE, limit=PAGE + 1)
        more = len(runs) > PAGE
        counts = history.counts(self.store, f)
        table = self.ui.listener.table
        flows = sorted(set(table.flows) | ({f.flow} if f.flow else set()))
        triggers = sorted({t for name in table.flows for t in table.trigger_names(name)}
                          | {t.name for fl in table.flows.values() for t in fl.triggers.values()})
        template = "runs_live.html" if q.get("fragment") == "live" else "runs.html"
        return self.ui.render(request, template, title="Runs", nav="runs", runs=runs[:PAGE], page=page, more=more,
                              filter=f, counts=counts, statuses=[str(s) for s in Status], flows=flows,
                              triggers=triggers, kind=kind, total=sum(counts.values()))

    # -- one run ------------------------------------------------------------------------------
    async def run(self, request: Request) -> Response:
        run = self.run_of(request)
        q = request.query_params
        reader = Reader(self.store, run.id, blobs=False)
        it = short_text(q.get("it"), 500)
        chosen = chosen_iterations(it)
        if it and (reader.step(it) is None or reader.step(it).type != "Iteration"):
            chosen, it = {}, None
        failed_only = q.get("failed") == "1"
        start = number(q.get("start"), 0, 0, 10**9)
        flow, flow_problem = None, ""
        try:
            flow = self.engine.load_recorded(run)
        except FlowrunError as exc:
            flow_problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        diagram = None
        counted: dict[str, tuple] = {}

        def loop_counts(path: str) -> tuple:  # read once per loop: the diagram and the strip both use it
            if path not in counted:
                counted[path] = reader.loop_counts(path)
            return counted[path]

        if flow is not None:
            def status_of(action: Any, path: str) -> str | None:
                step = reader.step(path)
                return str(step.status) if step else None

            def counts_of(path: str) -> dict[str, dict[str, int]]:
                return loop_counts(path)[1]

            diagram = dag.diagram(flow.root, "", status_of, counts_of, chosen)
        strips = {}
        for section in _sections(diagram):
            path = section.loop_path
            if path and "[]" not in path:
                per_iteration, _ = loop_counts(path)
                items = reader.iteration_page(path, start, STRIP, bad_only=failed_only)
                strips[path] = {"counts": per_iteration, "items": items, "total": sum(per_iteration.values()),
                                "next": (int(_ITERATION.findall(items[-1].path)[-1]) + 1) if len(items) == STRIP else None}
        steps = self._listed(reader, chosen)
        attempts = {s.path: self.store.attempts(run.id, s.path) for s in steps if s.attempts and s.attempts > 1}
        chart = timeline.chart(steps, run.started, run.ended)
        rel = history.related(self.store, run.id)
        facts = header(run)
        request_record = run.request if isinstance(run.request, dict) else None
        in_flight = run.id in self.ui.listener.runs.in_flight
        return self.ui.render(request, "run.html", title=f"Run {run.id[:12]}", nav="runs", run=run, facts=facts,
                              kind=kind(run), diagram=diagram, flow_problem=flow_problem, strips=strips,
                              it=it, failed_only=failed_only, steps=steps, chart=chart, related=rel, attempts=attempts,
                              request_record=request_record, reused={s.path for s in steps if is_reused(run, s)},
                              is_blob=is_blob_ref, finished=is_terminal(run.status), in_flight=in_flight,
                              can_resume=not is_terminal(run.status) and not in_flight and run.orphaned,
                              can_replay=isinstance(run.request, dict),
                              step_count=history.progress(self.store, run.id)["steps"])

    def _listed(self, reader: Reader, chosen: dict[str, str]) -> list[Step]:
        """The steps outside loops, and inside the chosen iterations, in the order of the tree."""
        out: list[Step] = []

        def block(prefix: str | None) -> None:
            for step in reader.children(prefix):
                if len(out) >= MOST_STEPS:
                    return
                out.append(step)
                inside = reader.inside(step.path)
                if inside == "block":
                    block(step.path)
                elif inside == "loop" and step.path in chosen:
                    iteration = reader.step(chosen[step.path])
                    if iteration is not None:
                        out.append(iteration)
                        block(iteration.path)

        block(None)
        return out

    async def value(self, request: Request) -> Response:
        """A stored value of the run (``payload`` ...) or of one step (``?path=``), as a JSON file."""
        run = self.run_of(request)
        what = request.path_params["what"]
        path = short_text(request.query_params.get("path"), 2000)
        if path is not None:
            if what not in STEP_VALUES:
                raise Refused(404, f"A step has no {what[:40]!r}; one of {', '.join(STEP_VALUES)}.")
            step = Reader(self.store, run.id).step(path)
            if step is None:
                raise Refused(404, f"Run {run.id} has no step {path[:200]!r}.")
            value, name = getattr(step, what), f"{run.id[:12]}-{re.sub(r'[^A-Za-z0-9_.-]', '_', path)[:80]}-{what}"
        else:
            if what not in RUN_VALUES:
                raise Refused(404, f"A run has no {what[:40]!r}; one of {', '.join(RUN_VALUES)}.")
            value, name = getattr(run, what), f"{run.id[:12]}-{what}"
        text = self.ui.redact(json.dumps(value, indent=2, ensure_ascii=False, default=str))
        return Response(text, media_type="application/json",
                        headers={**HEADERS, "Content-Disposition": f'attachment; filename="{name}.json"'})

    async def blob(self, request: Request) -> Response:
        """A value offloaded to the blob store (written redacted), as a JSON file."""
        digest = request.path_params["digest"]
        path = self.store.blob_file(digest)  # SQLite: a file; PostgreSQL: a row of the blobs table
        if path is not None:
            return FileResponse(path, media_type="application/json", filename=f"{digest[:16]}.json",
                                headers=dict(HEADERS))
        data = self.store.blob_data(digest)
        if data is None:
            raise Refused(404, "No such stored value.")
        return Response(data, media_type="application/json",
                        headers={**HEADERS, "Content-Disposition": f'attachment; filename="{digest[:16]}.json"'})

    # -- rerun plan -----------------------------------------------------------------------------
    async def rerun_plan(self, request: Request) -> Response:
        run = self.run_of(request)
        q = request.query_params
        start = short_text(q.get("from"), 300)
        if start is None:
            raise Refused(400, "Say which action to rerun from (?from=ACTION, or ACTION[N] for one iteration).")
        definition = "current" if q.get("definition") == "current" else "recorded"
        flow, old, reuse, again = self.engine.rerun_plan(run.id, start, definition)
        kept = sorted({s.action for s in Reader(self.store, run.id).children(None)} - set(again))
        return self.ui.render(request, "rerun.html", title=f"Rerun {run.id[:12]}", nav="runs", run=run,
                              start=start, definition=definition, again=again, kept=kept, flow=flow)

    # -- flows --------------------------------------------------------------------------------
    async def flows(self, request: Request) -> Response:
        table = self.ui.listener.table
        rows = []
        for file in sorted(set(table.files) | set(table.problems)):
            name = table.files.get(file)
            flow = table.flows.get(name) if name else None
            recent = history.recent(self.store, name, 100) if name else []
            done = [r for r in recent if is_terminal(r.status)]
            ok = sum(1 for r in done if r.status == Status.SUCCEEDED)
            rows.append({"file": file, "name": name, "flow": flow, "problems": table.problems.get(file, []),
                         "triggers": [(t.name, t.type) for t in flow.triggers.values()] if flow else [],
                         "recent": recent[:20], "rate": None if not done else round(100 * ok / len(done)),
                         "finished": len(done)})
        return self.ui.render(request, "flows.html", title="Flows", nav="flows", rows=rows,
                              folder=self.ui.listener.options.flows)


def _sections(diagram: dag.Diagram | None) -> list[dag.Section]:
    out: list[dag.Section] = []
    if diagram is None:
        return out
    for s in diagram.sections:
        out.append(s)
        out.extend(_sections(s.diagram))
    return out


def redirect_to_run(run_id: str) -> Response:
    return RedirectResponse(f"/ui/runs/{run_id}", 303, headers=HEADERS)
