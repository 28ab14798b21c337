"""A third-party node package, registered through the ``flowrun.nodes`` entry point (the
``flowrun_jobplugin-0.1.0.dist-info`` beside it makes it discoverable with ``tests/plugins`` on
the path, as ``pip install`` would). It holds one long-running node that talks to the
loopback job API of ``tests/support/jobserver.py``."""
from __future__ import annotations

from typing import Any

import httpx

from engine.plugin import ActionError, Context, Job, Pending, RetryableError


class RunJob(Job):
    type = "testjob.Run"
    title = "Run a job on the test job server and wait for it"
    description = "Starts a job (`POST /jobs`), polls it (`GET /jobs/{id}`) and cancels it on timeout or Terminate."
    input_schema = {"type": "object", "additionalProperties": False, "required": ["server"], "properties": {
        "server": {"type": "string", "description": "base URL of the job server"},
        "polls": {"type": ["integer", "null"], "description": "polls until the job is done (null: never)"},
        "fail": {"type": "boolean"},
        "pollEvery": {"type": "number", "description": "seconds between polls (overrides the backoff)"},
        "input": {}}}
    inputs_required = True
    example = {"type": "testjob.Run", "inputs": {"server": "http://127.0.0.1:8080", "polls": 3}}
    outputs = {"type": "object", "properties": {"jobId": {"type": "string"}, "result": {"type": "object"}}}
    poll_interval = 0.02
    backoff = 1.5
    max_poll_interval = 0.1
    cancel_timeout = 5.0

    async def start(self, inputs: Any, context: Context) -> dict:
        body = {"polls": inputs.get("polls", 3), "fail": inputs.get("fail", False), "input": inputs.get("input")}
        answer = await _call("POST", f"{inputs['server']}/jobs", json=body)
        return {"server": inputs["server"], "jobId": answer["id"], "pollEvery": inputs.get("pollEvery")}

    async def poll(self, handle: dict, context: Context) -> Any:
        job = await _call("GET", f"{handle['server']}/jobs/{handle['jobId']}")
        if job["state"] == "RUNNING":
            return Pending(after=handle.get("pollEvery"), progress=job["polls"])
        if job["state"] != "SUCCESS":
            raise ActionError(f"job {handle['jobId']} ended {job['state']}", code="JobFailed")
        return {"jobId": handle["jobId"], "result": job["result"]}

    async def cancel(self, handle: dict, context: Context) -> None:
        await _call("POST", f"{handle['server']}/jobs/{handle['jobId']}/cancel")


async def _call(method: str, url: str, **kw: Any) -> Any:
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.request(method, url, **kw)
    except httpx.TransportError as exc:
        raise RetryableError(f"job server unreachable: {exc}", code="Unreachable") from None
    if response.status_code >= 500:
        raise RetryableError(f"job server answered {response.status_code}", code="ServerError")
    if response.status_code >= 400:
        raise ActionError(f"job server answered {response.status_code}: {response.text}", code="BadRequest")
    return response.json()


NODES = [RunJob]
