"""Waiting in one process for the reply of a run another process executes (PostgreSQL).

``flowrun serve`` without ``--worker`` commits a webhook's run Queued and a ``flowrun worker``
executes it. When the flow has a Response action the caller still gets that reply: the
worker's store sends ``NOTIFY flowrun_reply`` (payload: the run id) in the commit that
records the reply, and in the one that ends a run of a replying flow (it may end without
replying). One thread per process LISTENs on its own connection and wakes the requests
waiting for that run, which then read the run from the store::

    watch = ReplyWatch(store.url)
    event = await watch.expect(run_id)      # before reading the run: no lost wake-up
    ... read the run; not replied yet: await event.wait(), with a slow poll as fallback
    watch.forget(run_id, event)

A LISTEN connection that breaks is logged; the waiters' slow poll still sees the reply, and
the next request after ``RETRY`` seconds LISTENs again (a database that came back wakes its
waiters at once again, not only by the poll).
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time

from .pgstore import REPLY as CHANNEL  # a run's reply was recorded, or a run of a replying flow ended

log = logging.getLogger("flowrun.replies")


class ReplyWatch:
    RETRY = 5.0  # seconds after a LISTEN connection broke before a request sets up another

    def __init__(self, url: str):
        self.url = url
        self._waiting: dict[str, set[asyncio.Event]] = {}  # run id -> events of the requests waiting
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None
        self._closing = False
        self._retry_at = 0.0  # (monotonic) when a LISTEN that broke may be set up again
        self.backend_pid: int | None = None  # the LISTEN connection's server process (pg_stat_activity)

    async def expect(self, run_id: str) -> asyncio.Event:
        """An event set when ``run_id``'s reply or end is announced (from now on: LISTEN is
        established before this returns)."""
        loop = asyncio.get_running_loop()
        broken = self._thread is not None and not self._thread.is_alive() and time.monotonic() >= self._retry_at
        if self._thread is None or self._loop is not loop or broken:  # (a new event loop: a thread that tells it)
            if self._loop is not loop:
                self._waiting.clear()  # (events of a loop gone; those waiting here stay through a re-LISTEN)
            self._closing, self._loop, self._ready = False, loop, asyncio.Event()
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
        import psycopg

        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
                conn.execute(f"LISTEN {CHANNEL}")
                self.backend_pid = conn.info.backend_pid
                loop.call_soon_threadsafe(ready.set)
                while not self._closing and self._loop is loop:
                    for note in conn.notifies(timeout=1.0):
                        loop.call_soon_threadsafe(self._ring, note.payload)
                        if self._closing or self._loop is not loop:
                            break
        except Exception as exc:  # noqa: BLE001  the database went away: the waiters' poll still reads
            if self._closing or loop.is_closed():
                return
            self._retry_at = time.monotonic() + self.RETRY
            log.warning("LISTEN %s failed (%s); replies are found by polling", CHANNEL, exc)
            try:
                loop.call_soon_threadsafe(ready.set)
            except RuntimeError:  # the loop closed just now
                pass

    def close(self) -> None:
        self._closing = True  # the thread ends within a second (a daemon: it never holds the exit)
