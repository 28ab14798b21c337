"""The harness's counting server: a request whose client was killed never takes a token, so the
process started after a kill is never left waiting at the gate (the old stall after a kill
right after a commit)."""
import socket
import threading

import httpx

from tests.chaos.test_kill9 import counting  # noqa: F401  (a shared fixture)
from tests.support.waiting import wait_until


def test_a_request_whose_client_died_takes_no_token_and_counts_nothing(counting):
    counting.clear()
    host, port = counting.url.removeprefix("http://").split(":")
    dead = socket.create_connection((host, int(port)))
    dead.sendall(b"POST /item/1 HTTP/1.1\r\nHost: x\r\nIdempotency-Key: dead\r\nContent-Length: 0\r\n\r\n")
    dead.close()  # killed after sending: the server may read the request after the kill
    counting.gate.allow(1)  # one token, which only a live client may take
    got = {}
    live = threading.Thread(target=lambda: got.update(r=httpx.post(f"{counting.url}/item/2", timeout=30,
                                                                   headers={"Idempotency-Key": "live"})))
    live.start()
    try:
        live.join(30)
        assert got["r"].json() == {"n": 2}
        wait_until(lambda: "dead" not in counting.counts() and counting.counts() == {"live": 1}, "the counts")
    finally:
        counting.gate.close()
