"""databricks.RunJob and databricks.SubmitRun: a Jobs run, started once and polled durably."""
from __future__ import annotations

from typing import Any

from engine.plugin import ActionError, Job, Pending, RetryableError, inputs_schema, count

from .client import DATABRICKS

RUNNING = {"QUEUED", "PENDING", "RUNNING", "TERMINATING", "BLOCKED", "WAITING_FOR_RETRY"}
TRACE_CHARS = 4000  # an error trace is cut to its last characters (where the exception is)
RUN_OUTPUTS = {"type": "object", "properties": {
    "runId": {"type": "integer"},
    "runPageUrl": {"type": "string", "description": "The run in the workspace UI."},
    "state": {"type": "object", "description": "life_cycle_state, result_state, state_message."},
    "tasks": {"type": "array", "description": "Per task: taskKey, runId, resultState, notebookResult "
              "(dbutils.notebook.exit value), error, errorTrace (its last 4,000 characters)."},
    "notebookResult": {"description": "The exit value of the run's only notebook task (or null)."},
}}
STRINGS = {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}}


def _strings(values: dict | None) -> dict | None:
    return None if values is None else {k: v if isinstance(v, str) else str(v).lower() if isinstance(v, bool)
                                        else str(v) for k, v in values.items()}


def _trace(text: str | None) -> str | None:
    if not text or len(text) <= TRACE_CHARS:
        return text
    return "…" + text[-TRACE_CHARS:]


class _RunJob(Job):
    """What RunJob and SubmitRun share: the handle, polling, outputs, cancel."""

    connection = "databricks"
    poll_interval, max_poll_interval, backoff = 5.0, 60.0, 1.5

    async def _start(self, context: Any, fn: Any, **kwargs: Any) -> dict:
        client = await DATABRICKS.client(context)
        waiter = await DATABRICKS.call(context, fn(client), **kwargs)
        return {"runId": int(waiter.run_id)}

    async def poll(self, handle: dict, context: Any) -> Any:
        client = await DATABRICKS.client(context)
        try:
            run = await DATABRICKS.call(context, client.jobs.get_run, handle["runId"])
        except ActionError as exc:
            if exc.code == "DatabricksConfig":  # an answer the SDK could not read (malformed JSON):
                # a failed status check, not a failed run (after max_poll_errors the run is cancelled)
                raise RetryableError(f"could not read run {handle['runId']}'s status: {exc.message}",
                                     code="DatabricksBadAnswer") from None
            raise
        state = run.state
        life = state.life_cycle_state.value if state and state.life_cycle_state else None
        if life in RUNNING or life is None:
            return Pending(progress=life)
        result = state.result_state.value if state.result_state else None
        tasks = []
        for task in run.tasks or []:
            out = None
            if task.run_id is not None:
                try:
                    out = await DATABRICKS.call(context, client.jobs.get_run_output, task.run_id)
                except ActionError as exc:
                    if exc.retryable:
                        raise
            tstate = task.state
            tasks.append({
                "taskKey": task.task_key, "runId": task.run_id,
                "resultState": tstate.result_state.value if tstate and tstate.result_state else None,
                "notebookResult": out.notebook_output.result if out and out.notebook_output else None,
                "error": out.error if out else None, "errorTrace": _trace(out.error_trace) if out else None,
            })
        outputs = {
            "runId": handle["runId"], "runPageUrl": run.run_page_url,
            "state": {"life_cycle_state": life, "result_state": result,
                      "state_message": state.state_message},
            "tasks": tasks,
            "notebookResult": tasks[0]["notebookResult"] if len(tasks) == 1 else None,
        }
        if result == "SUCCESS":
            return outputs
        failed = [t for t in tasks if t["error"]]
        message = (f"Databricks run {handle['runId']} ended {result or life}"
                   f"{': ' + state.state_message if state.state_message else ''}"
                   f"{' (' + failed[0]['taskKey'] + ': ' + failed[0]['error'] + ')' if failed else ''}"
                   f" — {run.run_page_url}")
        raise ActionError(message, code=f"Run{(result or life or 'FAILED').title().replace('_', '')}",
                          details=outputs)

    async def cancel(self, handle: dict, context: Any) -> None:
        client = await DATABRICKS.client(context)
        await DATABRICKS.call(context, client.jobs.cancel_run, handle["runId"])


class RunJob(_RunJob):
    type = "databricks.RunJob"
    title = "Run a Databricks job and wait for it"
    description = (
        "`jobs.run_now` on an existing job, with job parameters (or the legacy notebook "
        "params), sent with the action's idempotency key as `idempotency_token` so a retried "
        "start never triggers a second run. The run id is recorded in the step at once; the "
        "run is polled durably (5 s, backing off to 60 s) and a resumed flow polls the same "
        "run. SUCCESS succeeds; FAILED, TIMEDOUT, CANCELED, INTERNAL_ERROR and the rest fail "
        "the action with the state message and the run page URL (the outputs are the "
        "error's details). A timeout or Terminate cancels the run (`jobs.cancel_run`).")
    input_schema = inputs_schema(
        ["jobId"],
        jobId={"type": "integer", "minimum": 1, "description": "The job's id."},
        jobParameters={**STRINGS, "description": "Job-level parameters (name → value)."},
        notebookParams={**STRINGS, "description": "Legacy notebook task parameters (name → value)."},
    )
    outputs = RUN_OUTPUTS
    example = {"type": "databricks.RunJob", "connection": "databricks", "timeout": "PT2H",
               "inputs": {"jobId": 123456789, "jobParameters": {"run_date": "{{ utcNow()[:10] }}"}}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would run Databricks job {inputs.get('jobId')}"

    async def start(self, inputs: dict, context: Any) -> dict:
        return await self._start(context, lambda c: c.jobs.run_now, job_id=inputs["jobId"],
                                 job_parameters=_strings(inputs.get("jobParameters")),
                                 notebook_params=_strings(inputs.get("notebookParams")),
                                 idempotency_token=_token(context))


def _token(context: Any) -> str:
    """Databricks keeps idempotency tokens to 64 characters."""
    key = context.idempotency_key
    if len(key) <= 64:
        return key
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()


_KINDS = ("notebook_task", "spark_python_task", "sql_task", "spark_jar_task", "python_wheel_task")
TASK = {
    "type": "object",
    "required": ["task_key"],
    "description": "A task as the Jobs API takes it: task_key; one of notebook_task, "
                   "spark_python_task, sql_task, spark_jar_task, python_wheel_task; and "
                   "new_cluster (a cluster spec) or existing_cluster_id (not for sql_task).",
    "properties": {
        "task_key": {"type": "string", "minLength": 1},
        **{k: {"type": "object"} for k in _KINDS},
        "new_cluster": {"type": "object", "description": "spark_version, node_type_id, num_workers, ..."},
        "existing_cluster_id": {"type": "string"},
        "depends_on": {"type": "array"},
        "libraries": {"type": "array"},
        "timeout_seconds": {"type": "integer"},
    },
    "anyOf": [{"required": [k]} for k in _KINDS],
}


class SubmitRun(_RunJob):
    type = "databricks.SubmitRun"
    title = "Submit a one-time Databricks run and wait for it"
    description = (
        "`jobs.submit`: a one-time run of notebook, Python, SQL or Spark JAR tasks on a new "
        "cluster (spec) or an existing cluster id, with the action's idempotency key as "
        "`idempotency_token`: a retried or resumed start returns the same run instead of "
        "submitting another. Polled durably; states, outputs and cancellation as "
        "databricks.RunJob.")
    input_schema = inputs_schema(
        ["tasks"],
        runName={"type": "string", "description": "Shown in the Runs UI (default: the action path)."},
        tasks={"type": "array", "minItems": 1, "items": TASK},
        timeoutSeconds={"type": "integer", "minimum": 0, "description": "Databricks' own limit on the run."},
    )
    outputs = RUN_OUTPUTS
    example = {"type": "databricks.SubmitRun", "connection": "databricks",
               "inputs": {"runName": "nightly-features", "tasks": [{
                   "task_key": "features",
                   "notebook_task": {"notebook_path": "/Repos/data/features",
                                     "base_parameters": {"date": "{{ utcNow()[:10] }}"}},
                   "new_cluster": {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge",
                                   "num_workers": 2}}]}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would submit a Databricks run of {count(inputs.get('tasks'))} task(s)"

    @classmethod
    def check(cls, action: dict) -> list[tuple[str, str]]:
        inputs = action.get("inputs")
        tasks = inputs.get("tasks") if isinstance(inputs, dict) else None
        out = []
        for i, task in enumerate(tasks if isinstance(tasks, list) else []):
            if not isinstance(task, dict):
                continue
            kinds = [k for k in _KINDS if k in task]
            if len(kinds) > 1:
                out.append((f"inputs.tasks.{i}", f"a task has one kind, not {' and '.join(kinds)}"))
            if kinds and kinds[0] != "sql_task" and "new_cluster" in task and "existing_cluster_id" in task:
                out.append((f"inputs.tasks.{i}", "new_cluster or existing_cluster_id, not both"))
        return out

    async def start(self, inputs: dict, context: Any) -> dict:
        from databricks.sdk.service.jobs import SubmitTask

        try:
            tasks = [SubmitTask.from_dict(t) for t in inputs["tasks"]]
        except (AttributeError, TypeError, ValueError, KeyError) as exc:  # a list where an object goes, ...
            raise ActionError(f"inputs.tasks: not a task the Jobs API takes ({type(exc).__name__}: {exc})",
                              code="InvalidInputs") from None
        return await self._start(context, lambda c: c.jobs.submit,
                                 run_name=inputs.get("runName") or context.path, tasks=tasks,
                                 timeout_seconds=inputs.get("timeoutSeconds"),
                                 idempotency_token=_token(context))
