"""No network during a flow test or a plan: every socket connect and name lookup over IP is refused
and noted against the action that tried it.

The guard patches ``socket.socket``'s ``connect``, ``connect_ex``, ``sendto`` and ``sendmsg`` and
the socket module's name lookups in this process for as long as it is entered (Unix sockets stay
allowed: the engine needs nothing else, SQLite uses none). The action is the one the node boundary is running (``ACTION``, a context
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
    _saved: list[tuple[Any, str, Any]] | None = None
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
                cls._saved = _patch(cls._refuse)
            cls._depth += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        cls = NetworkGuard
        with cls._lock:
            cls._active.remove(self)
            cls._depth -= 1
            if cls._depth == 0 and cls._saved is not None:
                for owner, name, original in cls._saved:
                    setattr(owner, name, original)
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


_LOOKUPS = ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo")


def _patch(refuse: Any) -> list[tuple[Any, str, Any]]:
    """Refuse every way to the network over IP: a connect (TCP, or a UDP socket's peer), a
    datagram sent to an address (``sendto``/``sendmsg``: DNS over UDP, statsd), and every name
    lookup the socket module offers (``gethostbyname`` does not go through ``getaddrinfo``).
    Returns what to put back: (owner, name, original)."""
    saved = [(socket.socket, n, getattr(socket.socket, n)) for n in ("connect", "connect_ex", "sendto", "sendmsg")]
    saved += [(socket, n, getattr(socket, n)) for n in _LOOKUPS]
    original = {n: f for _, n, f in saved}

    def ip(sock: socket.socket) -> bool:
        return sock.family in (socket.AF_INET, socket.AF_INET6)

    def connect(sock: socket.socket, address: Any) -> Any:
        if ip(sock):
            raise refuse(address)
        return original["connect"](sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> Any:
        if ip(sock):
            raise refuse(address)
        return original["connect_ex"](sock, address)

    def sendto(sock: socket.socket, data: Any, *args: Any) -> Any:
        if ip(sock) and args:
            raise refuse(args[-1])
        return original["sendto"](sock, data, *args)

    def sendmsg(sock: socket.socket, buffers: Any, *args: Any) -> Any:
        if ip(sock) and len(args) >= 3 and args[2] is not None:
            raise refuse(args[2])
        return original["sendmsg"](sock, buffers, *args)

    def lookup(host: Any, port: Any = None, *args: Any, **kw: Any) -> Any:
        raise refuse(host if port is None else (host, port), lookup=True)

    for name, patched in (("connect", connect), ("connect_ex", connect_ex), ("sendto", sendto),
                          ("sendmsg", sendmsg)):
        setattr(socket.socket, name, patched)
    for name in _LOOKUPS:
        setattr(socket, name, lookup)
    return saved


def _show(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        host = host.decode("ascii", "replace") if isinstance(host, bytes) else str(host)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(address)
