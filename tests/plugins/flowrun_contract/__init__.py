"""A third-party node package, as another team would write it: only ``engine.plugin``.

Its nodes declare what the engine must know (a loop, nested blocks, declared variables, a
reply) instead of the engine knowing their names.
"""
from __future__ import annotations

from typing import Any

from engine.plugin import ActionError, Context, Node, Status


class Repeat(Node):
    """Runs its block once per element of ``over``, one at a time."""

    type = "contract.Repeat"
    title = "Repeat a block for each element"
    fields = {"over": {"type": "array"}, "actions": {"$ref": "#/$defs/actions"}}
    required_fields = ("over", "actions")
    lazy = ("actions",)
    nested = ("actions",)
    loops = True
    example = {"type": "contract.Repeat", "over": [1, 2], "actions": {"x": {"type": "Compose", "inputs": 1}}}

    @classmethod
    def blocks(cls, action: dict) -> dict:
        return {"actions": action.get("actions") or {}}

    async def run(self, inputs: Any, context: Context) -> Any:
        failed = 0
        for i, item in enumerate(inputs["over"]):
            status = await context.run_block("actions", item=item, index=i, iteration=str(i))
            failed += Status.of(status).is_failure
        if failed:
            raise ActionError(f"{failed} iterations failed")
        return {"count": len(inputs["over"])}


class Counter(Node):
    """Declares a run variable ``name`` holding 0."""

    type = "contract.Counter"
    input_schema = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
    declares_variables = True
    placement = "top-level"

    @classmethod
    def declared_variables(cls, action: dict) -> list[str]:
        return [action["inputs"]["name"]]

    async def run(self, inputs: Any, context: Context) -> Any:
        context.variables.declare(inputs["name"], "integer", 0)
        return {"name": inputs["name"], "value": 0}

    def replay(self, outputs: Any, context: Context) -> None:
        context.variables.declare(outputs["name"], "integer", outputs["value"])


class Bump(Node):
    """Adds one to a declared variable."""

    type = "contract.Bump"
    input_schema = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}

    async def run(self, inputs: Any, context: Context) -> Any:
        context.variables[inputs["name"]] += 1
        return {"name": inputs["name"], "value": context.variables[inputs["name"]]}


class Stop(Node):
    """Ends the run as Cancelled, through the ``terminate`` capability."""

    type = "contract.Stop"
    placement = "outside-loops"

    async def run(self, inputs: Any, context: Context) -> Any:
        context.terminate(Status.CANCELLED)
        return None


class Spawn(Node):
    """Runs a Python child process that writes ``inputs.path`` (a tool wrapped as a node): its
    work happens where no guard of this process can see it, so it declares ``transport``."""

    type = "contract.Spawn"
    title = "Write a file from a child process"
    transport = "subprocess"
    input_schema = {"type": "object", "required": ["path"], "properties": {"path": {"type": "string"}}}
    outputs = {"type": "object", "properties": {"written": {"type": "string"}}}
    example_outputs = {"written": "example.txt"}

    async def run(self, inputs: Any, context: Context) -> Any:
        import subprocess
        import sys

        from engine.plugin import run_sync

        await run_sync(subprocess.run, [sys.executable, "-c", f"open({inputs['path']!r}, 'w').write('ran')"],
                       check=True)
        return {"written": inputs["path"]}


NODES = [Repeat, Counter, Bump, Stop, Spawn]
