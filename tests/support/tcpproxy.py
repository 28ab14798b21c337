"""A TCP forwarder on 127.0.0.1 in front of a real server, that a test can cut.

    with TcpProxy(5432) as proxy:            # 127.0.0.1:proxy.port -> 127.0.0.1:5432
        url = proxy.url(postgres_url)        # the same URL through the proxy
        proxy.down()                         # every connection cut, new ones refused
        proxy.up()                           # accepting again, on the same port

What a server restart (or a cut both ends see) looks like: established connections end on both
sides (the server ends their backends), new connections are refused until the proxy is up again. ``port=0`` first: the
port is chosen once and kept across down/up. ``TcpProxy.closed_port()`` is a port where
nothing listens (a worker started against it is refused).
"""
from __future__ import annotations

import re
import socket
import threading


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.port = self.closed_port()
        self._server: socket.socket | None = None
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self.accepted = 0  # connections forwarded so far

    @staticmethod
    def closed_port() -> int:
        """A loopback port nothing listens on (bound and released: the kernel does not hand it
        out again at once)."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def url(self, url: str) -> str:
        """``url`` (a postgresql:// URL on 127.0.0.1) pointed at this proxy."""
        return re.sub(r"@127\.0\.0\.1:\d+/", f"@127.0.0.1:{self.port}/", url, count=1)

    def up(self) -> "TcpProxy":
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return self

    def down(self) -> None:
        """Refuse new connections and reset every open one."""
        server, self._server = self._server, None
        if server is not None:
            try:
                server.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone leaves it listening)
            except OSError:
                pass
            server.close()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            for s in (a, b):  # both ends learn at once: the client, and the server (its backend ends)
                try:
                    s.shutdown(socket.SHUT_RDWR)  # (close alone waits for the pipe thread's recv to return)
                except OSError:
                    pass
                s.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # down()
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
                self.accepted += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def __enter__(self) -> "TcpProxy":
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()
