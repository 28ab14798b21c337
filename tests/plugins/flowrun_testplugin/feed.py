"""``testplugin.FileFeed``: a pull trigger that consumes a JSON-lines file like a queue partition.

Each line is a message ``{"id": ..., ...}``; its run's ``triggerBody()`` is the message. The
checkpoint ``offset`` (lines consumed) is committed with each run, and the message id is the
de-duplication key, so a crash anywhere neither loses a line nor runs one twice. New lines
appended later are picked up (the file is polled). ``start``/``stop`` append ``started`` /
``stopped`` to ``<path>.lifecycle`` so tests can see the server drive the life cycle.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio

from engine.plugin import PullTrigger, TriggerConfigError


class FileFeed(PullTrigger):
    type = "testplugin.FileFeed"
    title = "Consume a JSON-lines file, one run per line"
    description = "A test source: each line `{\"id\": ...}` starts one run, exactly once, across crashes."
    config = {
        "path": {"type": "string", "description": "the JSON-lines file"},
        "pace": {"type": "number", "minimum": 0, "default": 0,
                 "description": "seconds between messages (to make a consumer slow)"},
        "poll": {"type": "number", "minimum": 0.001, "default": 0.02, "description": "seconds between file checks"},
    }
    required = ("path",)
    example = {"type": "testplugin.FileFeed", "path": "feed.jsonl"}

    def __init__(self, definition: dict, host: Any = None):
        super().__init__(definition, host)
        self.path = Path(definition["path"])
        if not self.path.is_absolute():
            raise TriggerConfigError([("path", "give an absolute path")])
        self.pace = float(definition.get("pace", 0))
        self.poll = float(definition.get("poll", 0.02))

    def _mark(self, what: str) -> None:
        with open(str(self.path) + ".lifecycle", "a") as f:
            f.write(what + "\n")

    async def start(self) -> None:
        self._mark("started")

    async def stop(self) -> None:
        self._mark("stopped")

    async def run(self) -> None:
        offset = self.host.checkpoint("offset") or 0
        while True:
            lines = self.path.read_text().splitlines() if self.path.exists() else []
            while offset < len(lines):
                message = json.loads(lines[offset])
                await self.host.accept({"body": message, "headers": {}, "queries": {}, "relativePathParameters": {}},
                                       str(message["id"]), checkpoint={"offset": offset + 1})
                offset += 1
                if self.pace:
                    await anyio.sleep(self.pace)
            await anyio.sleep(self.poll)
