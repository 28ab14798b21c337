"""Run control: Terminate, Wait, Response (the reply to an HTTP trigger) and Workflow (a child run)."""
from __future__ import annotations

import datetime as dt
from typing import Any


from engine.errors import ActionError
from engine.plugin import Context, Node, Status, any_case

UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800, "month": 2592000}


def _wait_text(inputs: Any) -> str:
    inputs = inputs or {}
    if "interval" in inputs:
        return f"{inputs['interval'].get('count')} {str(inputs['interval'].get('unit', '')).lower()}(s)"
    return f"until {(inputs.get('until') or {}).get('timestamp')}"


class Terminate(Node):
    type = "Terminate"
    title = "End the run now"
    description = ("Ends the run with `runStatus` (Succeeded, Failed or Cancelled); actions in flight are "
                   "cancelled and the rest Skipped. `runError` (code, message) becomes the run's error.")
    input_schema = {"type": "object", "additionalProperties": False, "required": ["runStatus"],
                    "properties": {"runStatus": any_case(["Succeeded", "Failed", "Cancelled"],
                                                         "Succeeded, Failed or Cancelled, in any letter case"),
                                   "runError": {"type": "object", "additionalProperties": False,
                                                "properties": {"code": {"type": "string"},
                                                               "message": {"type": "string"}}}}}
    inputs_required = True
    placement = "outside-loops"
    example = {"type": "Terminate", "inputs": {"runStatus": "Failed",
                                               "runError": {"code": "NoStock", "message": "out of stock"}}}
    outputs = {"type": "object", "properties": {"runStatus": {"type": "string"}, "runError": {}}}
    example_outputs = {"runStatus": "Failed", "runError": {"code": "Terminated", "message": "terminated by the flow"}}

    async def run(self, inputs: Any, context: Context) -> Any:
        error = None
        status = Status.of(inputs["runStatus"]).value  # any letter case, as every status
        if status == Status.FAILED:
            error = {"code": "Terminated", "message": "terminated by the flow"} | (inputs.get("runError") or {})
        context.terminate(status, error)
        return {"runStatus": status, "runError": error}

    def replay(self, outputs: Any, context: Context) -> None:
        # a resumed run whose Terminate had already finished ends the same way
        if outputs:
            context.terminate(outputs["runStatus"], outputs.get("runError"))


class Wait(Node):
    type = "Wait"
    title = "Wait for a while, or until a time"
    description = ("Waits `interval` ({count, unit}) or `until` ({timestamp}, ISO 8601 UTC). The wake-up "
                   "time is recorded, so a resumed run waits only what is left; under `flowrun serve` a run "
                   "that is only waiting is parked and holds no task.")
    input_schema = {"type": "object", "additionalProperties": False, "properties": {
        "interval": {"type": "object", "required": ["count", "unit"], "additionalProperties": False,
                     "properties": {"count": {"type": "number", "minimum": 0},
                                    "unit": {"enum": [u.capitalize() for u in UNITS] + list(UNITS)}}},
        "until": {"type": "object", "required": ["timestamp"], "additionalProperties": False,
                  "properties": {"timestamp": {"type": "string"}}}},
        "oneOf": [{"required": ["interval"]}, {"required": ["until"]}]}
    inputs_required = True
    example = {"type": "Wait", "inputs": {"interval": {"count": 5, "unit": "Second"}}}
    outputs = {"type": "null"}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would wait {_wait_text(inputs)}"

    async def run(self, inputs: Any, context: Context) -> Any:
        if "interval" in inputs:
            seconds = inputs["interval"]["count"] * UNITS[inputs["interval"]["unit"].lower()]
        else:
            try:
                until = dt.datetime.fromisoformat(inputs["until"]["timestamp"].replace("Z", "+00:00"))
            except ValueError:
                raise ActionError(f"until.timestamp {inputs['until']['timestamp']!r} is not an ISO 8601 time",
                                  code="InvalidTimestamp") from None
            if until.tzinfo is None:
                until = until.replace(tzinfo=dt.timezone.utc)
            await context.wait_until(until.timestamp())
            return None
        await context.wait(seconds)  # durable: a resumed run waits only what is left
        return None


class Response(Node):
    type = "Response"
    title = "Reply to the HTTP request that started the run"
    description = ("Sets the run's reply: `statusCode` (default 200), `headers`, `body`. The HTTP listener "
                   "returns it to the caller; a run can respond once. Not allowed inside loops.")
    input_schema = {"type": "object", "additionalProperties": False, "properties": {
        "statusCode": {"type": "integer", "minimum": 100, "maximum": 599, "default": 200},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "body": {"description": "JSON value or text"}}}
    placement = "outside-loops"
    replies = True
    example = {"type": "Response", "inputs": {"statusCode": 200, "body": {"ok": True}}}
    outputs = {"type": "object", "properties": {"statusCode": {"type": "integer"}, "headers": {"type": "object"},
                                                "body": {}}}
    example_outputs = {"statusCode": 200, "headers": {}, "body": None}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would reply {(inputs or {}).get('statusCode', 200)} to the request that started the run"

    async def run(self, inputs: Any, context: Context) -> Any:
        inputs = inputs or {}
        reply = {"statusCode": inputs.get("statusCode", 200), "headers": inputs.get("headers") or {},
                 "body": inputs.get("body")}
        context.respond(reply)
        return reply

    def replay(self, outputs: Any, context: Context) -> None:
        if outputs and not context.responded:
            context.respond(outputs, replayed=True)


class Workflow(Node):
    type = "Workflow"
    title = "Run another flow as a child run"
    description = ("Runs the flow file `flow` (relative to this flow's file) as a child run linked to this "
                   "one, with `body` as its trigger body and `parameters`, waits for it and outputs its "
                   "outputs and reply. Fails when the child fails. A resumed parent does not run a "
                   "finished child again.")
    input_schema = {"type": "object", "additionalProperties": False, "properties": {
        "flow": {"type": "string", "description": "path of the child flow, relative to this flow file"},
        "host": {"type": "object", "description": "Logic Apps' shape: {triggerName, workflow: {id}}; the "
                                                  "workflow named by the id's last segment, a sibling "
                                                  "workflow folder of the same Standard app",
                 "required": ["workflow"],
                 "properties": {"triggerName": {"type": "string"},
                                "workflow": {"type": "object", "required": ["id"],
                                             "properties": {"id": {"type": "string"}}}}},
        "headers": {"type": "object", "description": "the child's trigger headers "
                                                     "(triggerOutputs()['headers'], names lower-cased)"},
        "body": {"description": "the child's triggerBody()"},
        "parameters": {"type": "object"}},
        "oneOf": [{"required": ["flow"]}, {"required": ["host"]}]}
    inputs_required = True
    holds_slot = False  # it waits for other actions (the child's): it must not hold a concurrency slot
    example = {"type": "Workflow", "inputs": {"flow": "child.yaml", "body": {"orderId": "{{ triggerBody().id }}"}}}
    outputs = {"type": "object", "properties": {
        "runId": {"type": "string"}, "status": {"type": "string"}, "outputs": {"description": "child flow outputs"},
        "body": {"description": "the child's Response body, or its outputs"}, "statusCode": {"type": "integer"}}}
    example_outputs = {"runId": "<child run id>", "status": "Succeeded", "outputs": {}, "statusCode": 200, "body": {}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would run the flow {inputs.get('flow')} as a child run"

    @staticmethod
    def child_file(inputs: dict, this_file: str) -> str:
        """The child flow's path relative to this one: ``flow``, or a Logic Apps workflow id's last
        segment as a sibling workflow folder (``../<name>/workflow.json``) or file (``<name>.json``)."""
        if "flow" in inputs:
            return inputs["flow"]
        name = str(inputs["host"]["workflow"]["id"]).rstrip("/").rsplit("/", 1)[-1]
        if not name or name in (".", "..") or "\\" in name:
            raise ActionError(f"workflow id {inputs['host']['workflow']['id']!r} names no workflow",
                              code="InvalidChildFlow")
        return f"../{name}/workflow.json" if this_file.endswith("workflow.json") else f"{name}.json"

    async def run(self, inputs: Any, context: Context) -> Any:
        flow = self.child_file(inputs, context.flow_file)
        host = inputs.get("host") if isinstance(inputs.get("host"), dict) else {}
        child = await context.run_child(flow, inputs.get("body"), inputs.get("parameters"),
                                        headers=inputs.get("headers"), trigger=host.get("triggerName"))
        reply = child.response or {}
        out = {"runId": child.run_id, "status": child.status, "outputs": child.outputs,
               "statusCode": reply.get("statusCode"), "body": reply.get("body", child.outputs)}
        if child.status != Status.SUCCEEDED:
            raise ActionError(f"child run {child.run_id} ended {child.status}: "
                              f"{(child.error or {}).get('message', '')}", code="ChildRunFailed", details=out)
        return out
