"""The listener app in this process: Starlette's TestClient drives the real ASGI app (its
lifespan included: pull triggers start, runs resume), with an injectable clock, a registry
that can hold test plugins, and waits on conditions instead of the wall clock."""
from __future__ import annotations

import contextlib
import importlib
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import anyio

from .conftest import SECRETS, write_flows


class FakeClock:
    """Time that moves only when a test says so (``advance``); pull triggers sleep on it."""

    def __init__(self, now: float):
        self.t = now
        self._waiters: list[tuple[float, anyio.Event]] = []
        self.portal: Any = None  # the server's event loop, while one runs

    def now(self) -> float:
        return self.t

    async def sleep_until(self, when: float) -> None:
        while self.t < when:
            event = anyio.Event()
            self._waiters.append((when, event))
            await event.wait()

    def advance(self, seconds: float) -> None:
        """Move time on; the sleepers due wake up (in the server's loop when it runs)."""
        def move() -> None:
            self.t += seconds
            due = [w for w in self._waiters if w[0] <= self.t]
            self._waiters = [w for w in self._waiters if w[0] > self.t]
            for _, event in due:
                event.set()
        if self.portal is not None:
            self.portal.call(move)
        else:
            move()


def registry_with(*modules: str) -> Any:
    """The built-in registry plus plugin modules, added as an entry point would add them."""
    from engine.registry import Registry, default_registry

    reg = Registry()
    for name in default_registry().modules:
        reg.add_module(importlib.import_module(name))
    for name in modules:
        reg.add_module(importlib.import_module(name))
    return reg


class Records(logging.Handler):
    """The listener's log records, as dicts of their fields (``event``, ``count`` ...)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append({"msg": record.getMessage(), "level": record.levelname, "exc": bool(record.exc_info),
                             **{k: v for k, v in record.__dict__.items()
                                if k in ("event", "count", "scheduled", "run_id", "flow", "trigger", "reason",
                                         "http_status")}})

    def events(self, name: str) -> list[dict]:
        return [r for r in self.records if r.get("event") == name]


class App:
    """A served folder of flows: ``client`` (httpx API over the ASGI app), the listener, logs."""

    def __init__(self, client: Any, listener: Any, records: Records, state: Path):
        self.client, self.listener, self.records, self.state = client, listener, records, state

    def db(self) -> Any:
        """A connection of the test's own to the state database (what is committed), with rows
        readable by name and ``?`` placeholders, on either backend."""
        from engine.storage import is_url

        if not is_url(str(self.state)):
            con = sqlite3.connect(str(self.state), timeout=10)
            con.row_factory = sqlite3.Row
            return con
        import psycopg
        from psycopg.rows import dict_row

        return _Questions(psycopg.connect(str(self.state), autocommit=True, row_factory=dict_row))

    def runs(self, flow: str) -> list[dict]:
        with contextlib.closing(self.db()) as con:
            return [dict(r) for r in con.execute("SELECT * FROM runs WHERE flow = ? ORDER BY created", (flow,))]


class _Questions:
    """A psycopg connection taking SQLite's ``?`` placeholders (the tests' queries are simple).
    Its rows are dicts; ``[0]`` reads the first column, as a sqlite3.Row does."""

    def __init__(self, conn: Any):
        self.conn = conn

    def execute(self, sql: str, args: Any = ()) -> Any:
        return _Rows(self.conn.execute(sql.replace("?", "%s"), tuple(args)))

    def close(self) -> None:
        self.conn.close()


class _Rows:
    def __init__(self, cur: Any):
        self.cur = cur

    def _row(self, r: Any) -> Any:
        return None if r is None else _Row(r)

    def fetchone(self) -> Any:
        return self._row(self.cur.fetchone())

    def fetchall(self) -> list:
        return [_Row(r) for r in self.cur.fetchall()]

    def __iter__(self) -> Any:
        return iter(self.fetchall())


class _Row(dict):
    def __getitem__(self, key: Any) -> Any:
        return list(self.values())[key] if isinstance(key, int) else super().__getitem__(key)


@contextlib.contextmanager
def serving(folder: Path, flows: dict[str, str] | None = None, *, state: Path, clock: Any = None,
            registry: Any = None, monkeypatch: Any = None, **options: Any) -> Iterator[App]:
    """Serve ``folder`` (written from ``flows`` when given) until the block ends (a graceful stop)."""
    import warnings

    with warnings.catch_warnings():  # starlette 1.x prefers httpx2 for its TestClient; httpx works
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from engine.api import Engine
    from engine.listener.app import Listener, Options, build_app

    if monkeypatch is not None:
        for k, v in SECRETS.items():
            monkeypatch.setenv(k, v)
    if flows is not None:
        write_flows(folder, flows)
    engine = Engine(state, connections=folder / "connections.yaml", registry=registry)
    listener = Listener(engine, Options(flows=str(folder), clock=clock, **options))
    records = Records()
    logger = logging.getLogger("flowrun.listener")
    logger.addHandler(records)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        listener.load()
        with TestClient(build_app(listener)) as client:
            if clock is not None:
                clock.portal = client.portal
            try:
                yield App(client, listener, records, state)
            finally:
                if clock is not None:
                    clock.portal = None
    finally:
        logger.removeHandler(records)
        logger.setLevel(old_level)
        engine.close()


def wait_for(condition: Callable[[], Any], what: str = "the condition", timeout: float = 20) -> Any:
    """Wait until ``condition()`` is true (checked every few ms; the timeout only guards a hang)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)
