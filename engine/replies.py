"""Waiting in one process for the reply of a run another process executes (PostgreSQL).

``flowrun serve`` without ``--worker`` commits a webhook's run Queued and a ``flowrun worker``
executes it. When the flow has a Response action the caller still gets that reply: the
worker's store sends ``NOTIFY flowrun_reply`` (payload: the run id) in the commit that
records the reply, and in the one that ends a run of a replying flow (it may end without
replying). One thread per process LISTENs on its own connection and wakes the requests
waiting for that run, which then read the run from the store::

    watch = ReplyWatch(store.url, store.reply_channel)
    event = await watch.expect(run_id)      # before reading the run: no lost wake-up
    ... read the run; not replied yet: await event.wait(), with a slow poll as fallback
    watch.forget(run_id, event)

A LISTEN connection that breaks is logged once per outage and opened again with backoff;
meanwhile the waiters' slow poll still sees the reply.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from .pgstore import REPLY  # a run's reply was recorded, or a run of a replying flow ended

log = logging.getLogger("flowrun.replies")


class ReplyWatch:
    def __init__(self, url: str, channel: str = REPLY):
        self.url, self.channel = url, channel  # (the store's: engine.pgstore.channels)
        self._waiting: dict[str, set[asyncio.Event]] = {}  # run id -> events of the requests waiting
        self._listening: Any = None  # engine.pgconn.Listening, for the event loop it tells
        self._down = False

    async def expect(self, run_id: str) -> asyncio.Event:
        """An event set when ``run_id``'s reply or end is announced (from now on: LISTEN is
        established before this returns)."""
        from .backoff import Backoff
        from .pgconn import Listening

        loop = asyncio.get_running_loop()
        if self._listening is None or self._listening.loop is not loop:  # (a new event loop: a thread that tells it)
            if self._listening is not None:
                self._listening.stop()
            self._waiting.clear()
            self._listening = Listening(self.url, "replies", [self.channel], loop, on_note=self._heard,
                                        on_back=self._back, on_lost=self._lost, backoff=Backoff(base=0.5, cap=10.0))
        await self._listening.ready.wait()
        event = asyncio.Event()
        self._waiting.setdefault(run_id, set()).add(event)
        return event

    def forget(self, run_id: str, event: asyncio.Event) -> None:
        events = self._waiting.get(run_id)
        if events is not None:
            events.discard(event)
            if not events:
                del self._waiting[run_id]

    def _heard(self, channel: str, run_id: str) -> None:
        for event in self._waiting.get(run_id, ()):
            event.set()

    def _back(self) -> None:
        """LISTEN is back: every waiter looks again (a NOTIFY may have been missed meanwhile)."""
        log.info("LISTEN %s back", self.channel)
        for events in self._waiting.values():
            for event in events:
                event.set()

    def _lost(self, text: str, first: bool, down_for: float) -> None:
        if first:
            log.warning("LISTEN %s failed (%s); replies are found by polling until it is back", self.channel, text)

    def close(self) -> None:
        if self._listening is not None:
            self._listening.stop()
