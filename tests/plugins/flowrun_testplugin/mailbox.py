"""``testplugin.Mailbox``: a pull trigger that reads through a connection, as a queue consumer does.

Its connection (kind ``testplugin.mailbox``: a ``folder`` setting and a ``token`` secret from
the environment) gives a client; each ``*.json`` file in the folder is a message. A message
is "deleted" (renamed ``*.done``) only after its run succeeded, and renamed ``*.failed``
otherwise, as an SQS consumer with ``deleteAfter: succeeded`` leaves a failed run's message.
While the server's runs in flight are at their limit the trigger pauses (``paused`` is
appended to ``<folder>/marks``), as a Kafka consumer pauses its partitions.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio

from engine.plugin import ConnectionSpec, PullTrigger


class MailboxClient:
    def __init__(self, folder: str, token: str):
        self.folder, self.token = Path(folder), token

    def waiting(self) -> list[Path]:
        return sorted(self.folder.glob("*.json"))

    def mark(self, what: str) -> None:
        with open(self.folder / "marks", "a") as f:
            f.write(what + "\n")


def build_client(connection: Any) -> MailboxClient:
    return MailboxClient(connection.settings["folder"], connection.secret("token"))


CONNECTION = ConnectionSpec(
    kind="testplugin.mailbox",
    description="A folder of JSON messages (a test source).",
    settings={"type": "object", "properties": {"folder": {"type": "string"},
                                               "token": {"type": "string", "format": "password"}},
              "required": ["folder", "token"]},
    client=build_client,
)


class Mailbox(PullTrigger):
    type = "testplugin.Mailbox"
    title = "Consume a folder of JSON files through a connection"
    description = "A test source: each `*.json` file starts one run; it is deleted once the run succeeded."
    connection = "testplugin.mailbox"
    config = {"poll": {"type": "number", "minimum": 0.001, "default": 0.01}}
    example = {"type": "testplugin.Mailbox", "connection": "inbox"}

    async def run(self) -> None:
        client = await self.host.client()
        client.mark(f"token {len(client.token)}")  # the secret reached the client (its length, never itself)
        taken: set[str] = set()
        async with anyio.create_task_group() as tg:
            while True:
                for path in client.waiting():
                    if path.name in taken:
                        continue
                    if self.host.full():
                        client.mark("paused")
                        await self.host.wait_for_room()
                    taken.add(path.name)
                    got = await self.host.accept({"body": json.loads(path.read_text())}, path.name)
                    tg.start_soon(self._settle, path, got.run_id)
                await anyio.sleep(float(self.definition.get("poll", 0.01)))

    async def _settle(self, path: Path, run_id: str) -> None:
        status = await self.host.finished(run_id)
        path.rename(path.with_suffix(".done" if status == "Succeeded" else ".failed"))
