"""If, Switch, Foreach, Until and Scope: actions that run nested actions."""
from __future__ import annotations

import time
from typing import Any

import anyio

from engine.errors import ActionError
from engine.model import parse_duration
from engine.plugin import Context, Node, Status

from .conditions import CONDITION_SCHEMA, truth

ACTIONS = {"$ref": "#/$defs/actions", "description": "nested actions, by name"}
BRANCH = {"type": "object", "properties": {"actions": ACTIONS}, "additionalProperties": False}
NESTED = ("actions", "else", "cases", "default")


def _fail_if(status: str, what: str) -> None:
    if Status.of(status).is_failure:
        raise ActionError(f"{what} failed", code="ActionFailed")


class Scope(Node):
    type = "Scope"
    title = "Group actions; the Scope fails when an action inside it fails (try/catch)"
    description = ("Runs its actions as one unit. Its status is Failed when an action inside failed "
                   "or timed out, so an action with `runAfter: {scope: [Failed]}` acts as a catch block.")
    fields = {"actions": ACTIONS}
    required_fields = ("actions",)
    lazy = NESTED
    nested = ("actions",)
    example = {"type": "Scope", "actions": {"charge": {"type": "Compose", "inputs": "charged"}}}
    outputs = {"type": "null"}

    @classmethod
    def blocks(cls, action: dict) -> dict:
        return {"actions": action.get("actions") or {}}

    async def run(self, inputs: Any, context: Context) -> Any:
        _fail_if(await context.run_block("actions"), "an action in the scope")
        return None


class If(Node):
    type = "If"
    title = "Run one of two branches"
    description = "Evaluates `expression`; runs `actions` when true, `else.actions` otherwise. The other branch is Skipped."
    fields = {"expression": CONDITION_SCHEMA, "actions": ACTIONS, "else": BRANCH}
    required_fields = ("expression",)
    lazy = NESTED
    nested = ("actions", "else")
    example = {"type": "If", "expression": "{{ triggerBody().total > 100 }}",
               "actions": {"big": {"type": "Compose", "inputs": "big order"}},
               "else": {"actions": {"small": {"type": "Compose", "inputs": "small order"}}}}
    outputs = {"type": "object", "properties": {"result": {"type": "boolean", "description": "the condition's value"}}}

    @classmethod
    def blocks(cls, action: dict) -> dict:
        return {"actions": action.get("actions") or {}, "else": (action.get("else") or {}).get("actions") or {}}

    async def run(self, inputs: Any, context: Context) -> Any:
        taken = truth(inputs.get("expression"))
        run, skip = ("actions", "else") if taken else ("else", "actions")
        context.skip_block(skip)
        _fail_if(await context.run_block(run), "an action in the branch")
        return {"result": taken}


class Switch(Node):
    type = "Switch"
    title = "Run the case whose value equals the expression"
    description = "At most one case runs (equality); none matching runs `default`. The others are Skipped."
    fields = {"expression": {"description": "the value to match"},
              "cases": {"type": "object", "additionalProperties": {
                  "type": "object", "required": ["case"], "additionalProperties": False,
                  "properties": {"case": {"description": "the value of this case"}, "actions": ACTIONS}}},
              "default": BRANCH}
    required_fields = ("expression", "cases")
    lazy = NESTED
    nested = ("cases", "default")
    example = {"type": "Switch", "expression": "{{ triggerBody().tier }}",
               "cases": {"gold": {"case": "gold", "actions": {"vip": {"type": "Compose", "inputs": "vip"}}}},
               "default": {"actions": {"std": {"type": "Compose", "inputs": "standard"}}}}
    outputs = {"type": "object", "properties": {"case": {"description": "the case that ran, or 'default'"}}}

    @classmethod
    def blocks(cls, action: dict) -> dict:
        out = {f"case:{name}": (case or {}).get("actions") or {}
               for name, case in (action.get("cases") or {}).items() if isinstance(case, dict)}
        out["default"] = (action.get("default") or {}).get("actions") or {}
        return out

    @classmethod
    def check(cls, action: dict) -> list[tuple[str, str]]:
        seen: dict = {}
        out = []
        for name, case in (action.get("cases") or {}).items():
            value = repr(case.get("case"))
            if value in seen:
                out.append((f"cases.{name}.case", f"case value {value} is also used by case '{seen[value]}'"))
            seen[value] = name
        return out

    async def run(self, inputs: Any, context: Context) -> Any:
        value = inputs.get("expression")
        chosen = "default"
        for name, case in context.action.raw.get("cases", {}).items():
            if await context.evaluate_async(case.get("case")) == value:
                chosen = f"case:{name}"
                break
        for key in context.action.blocks:
            if key != chosen:
                context.skip_block(key)
        _fail_if(await context.run_block(chosen), "an action in the case")
        return {"case": chosen.removeprefix("case:")}


class Foreach(Node):
    type = "Foreach"
    title = "Run actions for every item of an array, concurrently"
    description = ("Runs `actions` once per item (`item()`, `items('name')`, `iterationIndexes('name')`). "
                   "`concurrency` bounds iterations in flight (default 20; 1 = sequential; a Foreach "
                   "inside a Foreach runs sequentially unless it sets `concurrency`, as in Logic Apps). "
                   "Fails when any iteration failed.")
    fields = {"foreach": {"type": "array", "description": "the items"},
              "actions": ACTIONS,
              "concurrency": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 20}}
    required_fields = ("foreach", "actions")
    lazy = ("actions",)
    nested = ("actions",)
    loops = True
    example = {"type": "Foreach", "foreach": "{{ triggerBody().orders }}", "concurrency": 5,
               "actions": {"each": {"type": "Compose", "inputs": "{{ item().id }}"}}}
    outputs = {"type": "object", "properties": {"count": {"type": "integer"}, "failed": {"type": "integer"}}}

    @classmethod
    def blocks(cls, action: dict) -> dict:
        return {"actions": action.get("actions") or {}}

    async def run(self, inputs: Any, context: Context) -> Any:
        items = inputs.get("foreach")
        if not isinstance(items, list):
            raise ActionError(f"foreach must evaluate to an array, not {type(items).__name__}", code="InvalidForeach")
        raw = context.action.raw
        limit = inputs.get("concurrency")
        if limit is None and any(a.type == "Foreach" for a in context.action.ancestors()):
            limit = 1  # a Foreach inside a Foreach runs sequentially, as in Logic Apps
        if limit is None:
            limit = ((raw.get("runtimeConfiguration") or {}).get("concurrency") or {}).get("repetitions", 20)
        if str(raw.get("operationOptions", "")).lower() == "sequential":
            limit = 1
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise ActionError(f"concurrency must be a whole number from 1 to 1000, not {limit!r}",
                              code="InvalidForeach")
        failed = 0  # counts, not a list: a loop's memory must not grow with its items
        cursor = iter(enumerate(items))

        async def worker() -> None:
            nonlocal failed
            for i, item in cursor:
                status = await context.run_block("actions", item=item, index=i, iteration=str(i))
                failed += Status.of(status).is_failure

        async with anyio.create_task_group() as tg:
            for _ in range(min(int(limit), max(len(items), 1))):
                tg.start_soon(worker)
        if failed:
            raise ActionError(f"{failed} of {len(items)} iterations failed", code="ActionFailed",
                              details={"count": len(items), "failed": failed})
        return {"count": len(items), "failed": 0}


class Until(Node):
    type = "Until"
    title = "Repeat actions until a condition is true (do-while)"
    description = ("Runs `actions`, then evaluates `expression`; repeats until it is true or a limit is "
                   "reached (`limit.count`, default 60; `limit.timeout`, default PT1H, checked between "
                   "iterations). Reaching a limit succeeds unless `operationOptions: FailWhenLimitsReached`.")
    fields = {"expression": CONDITION_SCHEMA, "actions": ACTIONS}
    required_fields = ("expression", "actions")
    lazy = ("expression", "actions")
    nested = ("actions",)
    loops = True
    after_block = ("expression",)
    owns_limit = True
    example = {"type": "Until", "expression": "{{ body('poll').statusCode == 200 }}",
               "limit": {"count": 10, "timeout": "PT1M"},
               "actions": {"poll": {"type": "Http", "inputs": {"method": "GET", "uri": "https://example.com/job/1"}}}}
    outputs = {"type": "object", "properties": {"iterations": {"type": "integer"},
                                                "limitReached": {"type": "boolean"}}}

    @classmethod
    def blocks(cls, action: dict) -> dict:
        return {"actions": action.get("actions") or {}}

    async def run(self, inputs: Any, context: Context) -> Any:
        raw = context.action.raw
        limit = raw.get("limit") or {}
        count = int(limit.get("count", 60))
        deadline = time.monotonic() + parse_duration(limit.get("timeout", "PT1H"))
        status, i = Status.SUCCEEDED, 0
        while True:
            status = await context.run_block("actions", index=i, iteration=str(i))
            i += 1
            if truth(await context.evaluate_async(raw["expression"])):
                _fail_if(status, "the last iteration")
                return {"iterations": i, "limitReached": False}
            if i >= count or time.monotonic() >= deadline:
                if str(raw.get("operationOptions", "")).lower() == "failwhenlimitsreached":
                    raise ActionError(f"limit reached after {i} iterations", code="LimitReached")
                _fail_if(status, "the last iteration")
                return {"iterations": i, "limitReached": True}
