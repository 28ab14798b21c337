"""Running the app: one ``flowrun serve`` per state file (a lock), uvicorn on a socket we bind.

Binding the socket here (port 0 for an ephemeral port) means the real address is known
before uvicorn starts, and is what the ``listening`` log line says. Uvicorn handles
SIGTERM/SIGINT: it stops accepting, lets open requests finish (sync replies included,
up to --sync-timeout), then the app's lifespan waits up to --shutdown-timeout for the
runs in flight to reach a persisted state; whatever is left is cancelled with every
finished step committed, and resumes at the next start.
"""
from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

from engine.errors import StoreError

log = logging.getLogger("flowrun.listener")


class StateLock:
    """An exclusive flock on ``<state>.serve.lock``: two servers must not resume the same runs."""

    def __init__(self, state: str | Path):
        self.path = Path(str(state) + ".serve.lock")
        self.fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StoreError(f"another flowrun serve (pid {other}) is using {str(self.path)[:-len('.serve.lock')]}; "
                             f"one server per state file") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StoreError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def run(listener: Any, host: str, port: int) -> None:
    """Serve until a signal stops the server."""
    import uvicorn

    from .app import build_app

    sock = bind(host, port)
    listener.options.host, listener.options.port = host, sock.getsockname()[1]
    config = uvicorn.Config(build_app(listener), log_config=None, access_log=False, lifespan="on",
                            server_header=False, proxy_headers=False, timeout_keep_alive=15, backlog=4096,
                            timeout_graceful_shutdown=int(listener.options.sync_timeout) + 5)
    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            listener.closing = True  # the web UI's event streams end: an open tab does not hold the shutdown
            super().handle_exit(sig, frame)

    Server(config).run(sockets=[sock])
