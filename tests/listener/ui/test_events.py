"""Event streams of the web UI do not hold `flowrun serve` up when it is told to stop."""
from __future__ import annotations

import threading
import time

from .conftest import ADMIN, BATCH


def test_an_open_event_stream_ends_when_serve_is_stopped(make_server):
    server = make_server({"batch.yaml": BATCH}, "--sync-timeout", "60")
    opened = threading.Event()
    ended = threading.Event()

    def listen() -> None:
        with server.client(timeout=120) as http:
            with http.stream("GET", "/ui/events", headers={"Authorization": f"Bearer {ADMIN}"}) as stream:
                for line in stream.iter_lines():
                    if line.startswith("event:"):
                        opened.set()
        ended.set()

    threading.Thread(target=listen, daemon=True).start()
    assert opened.wait(20)
    t0 = time.monotonic()
    server.stop(timeout=30)
    assert time.monotonic() - t0 < 20  # not the 65 s uvicorn would wait for an open response
    assert ended.wait(10)
