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
import threading

from .pgstore import REPLY  # a run's reply was recorded, or a run of a replying flow ended

log = logging.getLogger("flowrun.replies")


class ReplyWatch:
    def __init__(self, url: str, channel: str = REPLY):
        self.url, self.channel = url, channel  # (the store's: engine.pgstore.channels)
        self._waiting: dict[str, set[asyncio.Event]] = {}  # run id -> events of the requests waiting
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None
        self._closing = False
        self._stop = threading.Event()  # interrupts the thread's backoff when closing

    async def expect(self, run_id: str) -> asyncio.Event:
        """An event set when ``run_id``'s reply or end is announced (from now on: LISTEN is
        established before this returns)."""
        loop = asyncio.get_running_loop()
        if self._thread is None or self._loop is not loop:  # (a new event loop: a thread that tells it)
            self._closing, self._loop, self._ready = False, loop, asyncio.Event()
            self._stop = threading.Event()
            self._waiting.clear()
            self._thread = threading.Thread(target=self._listen, args=(loop, self._ready),
                                            name="flowrun-replies", daemon=True)
            self._thread.start()
        await self._ready.wait()
        event = asyncio.Event()
        self._waiting.setdefault(run_id, set()).add(event)
        return event

    def forget(self, run_id: str, event: asyncio.Event) -> None:
        events = self._waiting.get(run_id)
        if events is not None:
            events.discard(event)
            if not events:
                del self._waiting[run_id]

    def _ring(self, run_id: str) -> None:
        for event in self._waiting.get(run_id, ()):
            event.set()

    def _listen(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Event) -> None:
        """LISTEN until closed. A lost connection is opened again with backoff (one warning per
        outage); once back, every waiter looks again: a NOTIFY may have been missed meanwhile.
        While it is away the waiters' slow poll still reads the replies."""
        from .backoff import Backoff
        from .pgconn import connect

        backoff, down = Backoff(base=0.5, cap=10.0), False
        while not self._closing and self._loop is loop:
            try:
                with connect(self.url, "replies") as conn:
                    conn.execute(f"LISTEN {self.channel}")
                    backoff.reset()
                    if down:
                        log.info("LISTEN %s back", self.channel)
                        down = False
                        for run_id in list(self._waiting):
                            loop.call_soon_threadsafe(self._ring, run_id)
                    loop.call_soon_threadsafe(ready.set)
                    while not self._closing and self._loop is loop:
                        for note in conn.notifies(timeout=1.0):
                            loop.call_soon_threadsafe(self._ring, note.payload)
                            if self._closing or self._loop is not loop:
                                break
            except Exception as exc:  # noqa: BLE001  the database went away: the waiters' poll still reads
                if self._closing or loop.is_closed():
                    return
                if not down:
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    log.warning("LISTEN %s failed (%s); replies are found by polling until it is back",
                                self.channel, first)
                    down = True
                try:
                    loop.call_soon_threadsafe(ready.set)
                except RuntimeError:  # the loop closed just now
                    return
                self._stop.wait(backoff.next())

    def close(self) -> None:
        self._closing = True  # the thread ends within a second (a daemon: it never holds the exit)
        self._stop.set()
