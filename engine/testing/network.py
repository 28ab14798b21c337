"""No network during a flow test or a plan: every socket connect and name lookup over IP is refused
and noted against the action that tried it.

The guard patches ``socket.socket.connect``/``connect_ex`` and ``socket.getaddrinfo`` in this
process for as long as it is entered (Unix sockets stay allowed: the engine needs nothing else,
SQLite uses none). The action is the one the node boundary is running (``ACTION``, a context
variable: the worker threads SDK calls run in inherit it), so a refused call names it.
"""
from __future__ import annotations

import contextvars
import socket
import threading
from dataclasses import dataclass
from typing import Any

from ..errors import NetworkBlocked

ACTION: contextvars.ContextVar[str | None] = contextvars.ContextVar("flowrun_action", default=None)


@dataclass(frozen=True)
class Attempt:
    action: str | None
    host: str

    def __str__(self) -> str:
        who = f"action '{self.action}'" if self.action else "code outside any action"
        return f"{who} tried to reach {self.host}"


class NetworkGuard:
    """Refuses network access while entered (nestable, process-wide); ``attempts`` lists who tried."""

    _lock = threading.Lock()
    _depth = 0
    _saved: tuple[Any, Any, Any] | None = None
    _active: list["NetworkGuard"] = []

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []

    def tried(self, action: str | None) -> list[Attempt]:
        return [a for a in self.attempts if a.action == action]

    def __enter__(self) -> "NetworkGuard":
        cls = NetworkGuard
        with cls._lock:
            cls._active.append(self)
            if cls._depth == 0:
                cls._saved = (socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo)
                connect, connect_ex, getaddrinfo = cls._saved

                def guarded_connect(sock: socket.socket, address: Any) -> Any:
                    if sock.family in (socket.AF_INET, socket.AF_INET6):
                        raise cls._refuse(address)
                    return connect(sock, address)

                def guarded_connect_ex(sock: socket.socket, address: Any) -> Any:
                    if sock.family in (socket.AF_INET, socket.AF_INET6):
                        raise cls._refuse(address)
                    return connect_ex(sock, address)

                def guarded_getaddrinfo(host: Any, port: Any, *args: Any, **kw: Any) -> Any:
                    raise cls._refuse((host, port), lookup=True)

                socket.socket.connect = guarded_connect  # type: ignore[method-assign]
                socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign]
                socket.getaddrinfo = guarded_getaddrinfo  # type: ignore[assignment]
            cls._depth += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        cls = NetworkGuard
        with cls._lock:
            cls._active.remove(self)
            cls._depth -= 1
            if cls._depth == 0 and cls._saved is not None:
                socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = cls._saved  # type: ignore
                cls._saved = None

    @classmethod
    def _refuse(cls, address: Any, *, lookup: bool = False) -> NetworkBlocked:
        host = _show(address)
        attempt = Attempt(ACTION.get(), host)
        with cls._lock:
            for guard in cls._active:
                if attempt not in guard.attempts:
                    guard.attempts.append(attempt)
        return NetworkBlocked(f"network access is blocked here ({'lookup of' if lookup else 'connect to'} {host})")


def _show(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        host = host.decode("ascii", "replace") if isinstance(host, bytes) else str(host)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(address)
