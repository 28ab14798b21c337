"""The network guard of `flowrun test` and `flowrun plan`: every way to the network over IP the
socket module offers is refused and noted against the action that tried it; Unix sockets stay
open, and everything is put back when the guard exits."""
from __future__ import annotations

import asyncio
import socket
import urllib.request

import pytest

from engine.errors import NetworkBlocked
from engine.testing.network import ACTION, NetworkGuard


@pytest.fixture
def udp():
    """A UDP socket on loopback: a datagram the guard let through would arrive here."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def _asyncio_connect(port: int) -> None:
    asyncio.run(asyncio.open_connection("127.0.0.1", port))


def _asyncio_datagram(port: int) -> None:
    async def send() -> None:
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            asyncio.DatagramProtocol, family=socket.AF_INET)
        try:
            transport.sendto(b"x", ("127.0.0.1", port))
            await asyncio.sleep(0)
        finally:
            transport.close()
    asyncio.run(send())


WAYS = {
    "connect": lambda port: socket.socket().connect(("127.0.0.1", port)),
    "connect_ex": lambda port: socket.socket().connect_ex(("127.0.0.1", port)),
    "create_connection": lambda port: socket.create_connection(("127.0.0.1", port)),
    "urllib": lambda port: urllib.request.urlopen(f"http://127.0.0.1:{port}/"),
    "getaddrinfo": lambda port: socket.getaddrinfo("example.com", 443),
    "gethostbyname": lambda port: socket.gethostbyname("example.com"),
    "gethostbyname_ex": lambda port: socket.gethostbyname_ex("example.com"),
    "gethostbyaddr": lambda port: socket.gethostbyaddr("127.0.0.1"),
    "getnameinfo": lambda port: socket.getnameinfo(("127.0.0.1", port), 0),
    "udp sendto": lambda port: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", port)),
    "udp sendto flags": lambda port: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", 0, ("127.0.0.1", port)),
    "udp sendmsg": lambda port: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendmsg([b"x"], [], 0,
                                                                                          ("127.0.0.1", port)),
    "asyncio connect": _asyncio_connect,
    "asyncio datagram": _asyncio_datagram,
}


@pytest.mark.parametrize("way", sorted(WAYS))
def test_every_way_to_the_network_is_refused_and_named(udp, way):
    port = udp.getsockname()[1]
    token = ACTION.set("fetch")
    try:
        with NetworkGuard() as guard:
            try:
                WAYS[way](port)
            except (NetworkBlocked, OSError):  # asyncio's datagram transport reports it to its protocol
                pass
    finally:
        ACTION.reset(token)
    assert [a.action for a in guard.attempts] == ["fetch"], guard.attempts
    with pytest.raises(BlockingIOError):
        udp.recv(10)  # nothing arrived
    assert socket.gethostbyname("127.0.0.1") == "127.0.0.1"  # all put back on exit


def test_unix_sockets_stay_open_under_the_guard():
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b, NetworkGuard() as guard:
        a.sendall(b"ok")
        assert b.recv(2) == b"ok"
    assert guard.attempts == []
