"""tableau.RefreshExtract: refresh a workbook's or data source's extract, then wait for the job."""
from __future__ import annotations

from typing import Any

from engine.plugin import ActionError, Job, Pending, RetryableError, excerpt

from .client import TABLEAU

SUCCESS, FAILED, CANCELLED, COMPLETED = 0, 1, 2, 3  # JobItem.FinishCode


def _job(job: Any) -> dict:
    stamp = lambda value: value.isoformat() if value is not None else None  # noqa: E731
    return {"jobId": job.id, "type": job.type, "progress": job.progress, "finishCode": job.finish_code,
            "createdAt": stamp(job.created_at), "startedAt": stamp(job.started_at),
            "completedAt": stamp(job.completed_at), "notes": job.notes or [],
            "statusNotes": getattr(job, "status_notes", None) or []}


class RefreshExtract(Job):
    type = "tableau.RefreshExtract"
    title = "Refresh a Tableau extract and wait for the job"
    description = (
        "Starts an extract refresh of a workbook or a data source (full, or `incremental`) and "
        "waits for its job durably: the job id is recorded in the step at once and polled (5 s, "
        "backing off to 60 s); a resumed run polls the same job and never starts a second "
        "refresh. A job that finished with an error fails the action with Tableau's notes "
        "(`TableauJobFailed`); a cancelled job fails with `TableauJobCancelled`. A timeout or "
        "Terminate cancels the job (Cancel Job). When a refresh of the same content is already "
        "queued, Tableau refuses a second one: the action fails retryably "
        "(`RefreshAlreadyQueued`).")
    connection = "tableau"
    poll_interval, max_poll_interval, backoff = 5.0, 60.0, 1.5
    input_schema = {"type": "object", "additionalProperties": False,
                    "oneOf": [{"required": ["workbookId"]}, {"required": ["datasourceId"]}],
                    "properties": {
                        "workbookId": {"type": "string", "minLength": 1, "description": "The workbook's LUID."},
                        "datasourceId": {"type": "string", "minLength": 1,
                                         "description": "The published data source's LUID."},
                        "incremental": {"type": "boolean", "default": False,
                                        "description": "An incremental refresh instead of a full one."}}}
    outputs = {"type": "object", "properties": {
        "jobId": {"type": "string"}, "finishCode": {"type": "integer", "description": "0 success, 3 completed."},
        "notes": {"type": "array", "description": "Tableau's notes on the job."},
        "completedAt": {"type": ["string", "null"]}}}
    example = {"type": "tableau.RefreshExtract", "connection": "tableau", "timeout": "PT1H",
               "inputs": {"datasourceId": "9dbd2263-16b5-46e1-9c43-a76bb8ab65fb"}}
    example_outputs = {"jobId": "f7b3f9a3-53c7-4b5e-9d1b-9c5e1f2a4b6d", "type": "RefreshExtract", "progress": 100,
                       "finishCode": 0, "createdAt": "2026-01-05T06:00:00+00:00",
                       "startedAt": "2026-01-05T06:00:04+00:00", "completedAt": "2026-01-05T06:03:12+00:00",
                       "notes": [], "statusNotes": []}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        what = f"workbook {inputs.get('workbookId')}" if inputs.get("workbookId") else (
            f"data source {inputs.get('datasourceId')}")
        kind = "an incremental" if inputs.get("incremental") else "a full"
        return f"would start {kind} extract refresh of Tableau {what} and wait for the job"

    async def start(self, inputs: dict, context: Any) -> dict:
        session = await TABLEAU.client(context)
        incremental = bool(inputs.get("incremental", False))
        if inputs.get("workbookId"):
            what, item = "workbook", inputs["workbookId"]
            refresh = lambda server: server.workbooks.refresh(item, incremental=incremental)  # noqa: E731
        else:
            what, item = "data source", inputs["datasourceId"]
            refresh = lambda server: server.datasources.refresh(item, incremental=incremental)  # noqa: E731
        job = await TABLEAU.call(context, session.call, refresh)
        if job is None:  # TSC swallows 409093 ("a refresh job is already queued") into None
            raise RetryableError(f"an extract refresh of {what} {item} is already queued on Tableau",
                                 code="RefreshAlreadyQueued")
        return {"jobId": job.id}

    async def poll(self, handle: dict, context: Any) -> Any:
        session = await TABLEAU.client(context)
        job = await TABLEAU.call(context, session.call, lambda server: server.jobs.get_by_id(handle["jobId"]))
        out = _job(job)
        if job.finish_code in (SUCCESS, COMPLETED):
            return out
        if job.finish_code in (FAILED, CANCELLED):
            notes = "; ".join(n for n in out["notes"] if n) or "; ".join(
                str(n.get("text") or n.get("value") or "") for n in out["statusNotes"]) or "no notes"
            word = "failed" if job.finish_code == FAILED else "was cancelled"
            raise ActionError(f"Tableau job {job.id} {word}: {notes}",
                              code="TableauJobFailed" if job.finish_code == FAILED else "TableauJobCancelled",
                              details=out)
        if job.finish_code == -1:  # no finishCode yet: running
            return Pending(progress=job.progress)
        raise RetryableError(f"Tableau job {job.id} has an unknown finish code {job.finish_code}",
                             code="TableauBadAnswer")

    async def cancel(self, handle: dict, context: Any) -> None:
        session = await TABLEAU.client(context)
        await TABLEAU.call(context, session.call, lambda server: server.jobs.cancel(handle["jobId"]))
