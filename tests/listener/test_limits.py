"""Request heads are bounded: too many headers, or too many bytes of them, get 431 and start
nothing, in process and behind a real `flowrun serve` (uvicorn) alike; stored headers stay
within the same bounds."""
from __future__ import annotations

import json
import socket

import pytest

from engine.listener.limits import MAX_HEADER_BYTES, MAX_HEADERS

from .inprocess import serving

FLOWS = {"open.yaml": """\
name: open
triggers:
  hook: {type: Request, auth: {type: none}}
actions:
  seen: {type: Compose, inputs: "{{ triggerBody() }}"}
"""}
HOOK = "/flows/open/triggers/hook"

TOO_LARGE = {
    "one 8 MB header": [("X-Big", "a" * 8_000_000)],
    "one header just past the byte limit": [("X-Big", "a" * MAX_HEADER_BYTES)],
    "1,000 headers": [(f"X-H{i}", "1") for i in range(1_000)],  # 10,000: on the real server below
    "one header past the count limit": [(f"X-H{i}", "1") for i in range(MAX_HEADERS)],
    "many medium headers": [(f"X-H{i}", "b" * 400) for i in range(60)],
}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("limits")
    with pytest.MonkeyPatch.context() as mp, serving(tmp / "flows", FLOWS, state=tmp / "state.db",
                                                     monkeypatch=mp) as served:
        yield served


@pytest.mark.parametrize("path", [HOOK, "/runs/some-run", "/healthz"])
@pytest.mark.parametrize("case", list(TOO_LARGE))
def test_oversized_request_heads_get_431_and_start_nothing(app, case, path):
    before, logged = len(app.runs("open")), len(app.records.records)
    r = app.client.post(path, json={}, headers=TOO_LARGE[case]) if path == HOOK else \
        app.client.get(path, headers=TOO_LARGE[case])
    assert r.status_code == 431, r.text
    assert "limit" in r.json()["error"] or "exceed" in r.json()["error"]
    assert len(app.runs("open")) == before
    new = app.records.records[logged:]
    assert len(new) == 1 and new[0]["http_status"] == 431 and not new[0]["exc"]


def test_heads_within_the_limits_are_served_and_stored_bounded(app):
    headers = [(f"X-H{i}", "c" * 100) for i in range(MAX_HEADERS - 10)]
    r = app.client.post(HOOK, json={}, headers=headers)
    assert r.status_code == 202, r.text
    stored = json.loads(next(x for x in app.runs("open") if x["id"] == r.json()["runId"])["request"])["headers"]
    assert len(stored) <= MAX_HEADERS
    assert sum(len(k) + len(v) + 4 for k, v in stored.items()) <= MAX_HEADER_BYTES


def _raw_request(url: str, head_lines: list[str]) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    request = (f"POST {HOOK} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
               f"Content-Length: 2\r\n" + "".join(f"{line}\r\n" for line in head_lines) + "\r\n{}").encode()
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(request)
        chunks = []
        while b"\r\n\r\n" not in b"".join(chunks):
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_real_server_answers_431_like_the_app_in_process(make_server):
    server = make_server(FLOWS)
    heads = {"one 8 MB header": TOO_LARGE["one 8 MB header"], "10,000 headers": [(f"X-H{i}", "1") for i in range(10_000)],
             "one header past the count limit": TOO_LARGE["one header past the count limit"]}
    for name, head in heads.items():
        answer = _raw_request(server.url, [f"{k}: {v}" for k, v in head])
        assert answer.startswith(b"HTTP/1.1 431"), (name, answer[:200])
    with server.client() as c:
        assert c.post(HOOK, json={}).status_code == 202
    assert len(server.runs("open")) == 1
