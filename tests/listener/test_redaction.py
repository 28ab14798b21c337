"""Nothing `flowrun serve` sends out holds a secret: trigger replies, error answers (schema
problems echo values), GET /runs/{id}, and the log records. Secrets with characters that
JSON, URLs and base64 change (`"`, `\\`, `/`, `+`, `%`, non-ASCII) included."""
from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest

from .conftest import CONNECTIONS, SECRETS, write_flows
from .inprocess import serving

ODD = {"TEST_ODD_QUOTE": 'q"uo\\te/sl+pl%us-ÄöΩ-1234', "TEST_ODD_PLAIN": "plain-S3cret-value-98765"}
FLOWS = {
    "echo.yaml": """\
name: echo
triggers:
  hook: {type: Request, auth: {type: none}}
actions:
  reply:
    type: Response
    inputs:
      statusCode: 200
      headers: {X-Echo: "{{ triggerBody().secret }}"}
      body: {got: "{{ triggerBody() }}", text: "{{ triggerBody().secret }}"}
outputs:
  seen: {value: "{{ triggerBody() }}"}
""",
    "guarded.yaml": """\
name: guarded
triggers:
  hook:
    type: Request
    auth: {type: key, connection: plain}
    inputs:
      schema: {type: object, properties: {code: {type: integer}}}
actions:
  a: {type: Compose, inputs: 1}
""",
    "plain.yaml": """\
name: plain
triggers:
  hook: {type: Request, auth: {type: key, connection: plain}}
  odd: {type: Request, auth: {type: key, connection: odd}}
actions:
  a: {type: Compose, inputs: 1}
""",
}
CONNS = CONNECTIONS + "  odd: {kind: http, secrets: {token: TEST_ODD_QUOTE}}\n" \
                      "  plain: {kind: http, secrets: {token: TEST_ODD_PLAIN}}\n"


def _forms(secret: str) -> list[str]:
    raw = secret.encode()
    return [secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1], quote(secret, safe=""),
            base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()]


def _clean(text: str) -> None:
    for secret in ODD.values():
        for form in _forms(secret):
            assert form not in text, f"a form of a secret leaked: {form!r}"


@pytest.fixture
def app(tmp_path, monkeypatch):
    for k, v in ODD.items():
        monkeypatch.setenv(k, v)
    write_flows(tmp_path / "flows", FLOWS, connections=CONNS)
    with serving(tmp_path / "flows", state=tmp_path / "state.db", monkeypatch=monkeypatch,
                 admin_token=SECRETS["FLOWRUN_ADMIN_TOKEN"]) as served:
        yield served


@pytest.mark.parametrize("name", list(ODD))
def test_a_reply_never_echoes_a_secret(app, name):
    _reply_is_clean(app, name)


def _reply_is_clean(app, name):
    secret = ODD[name]
    r = app.client.post("/flows/echo/triggers/hook", json={"secret": secret, "again": [secret]})
    assert r.status_code == 200, r.text
    _clean(r.text)
    _clean(json.dumps(dict(r.headers)))
    from .inprocess import wait_for

    # (a worker may answer with the reply before it records the run's end: 202 until then)
    run = wait_for(lambda: (got := app.client.get(f"/runs/{r.headers['x-flowrun-run-id']}", headers={
        "Authorization": f"Bearer {SECRETS['FLOWRUN_ADMIN_TOKEN']}"})).status_code != 202 and got, "the run's end")
    assert run.status_code == 200 and run.json()["status"] == "Succeeded"
    _clean(run.text)


@pytest.mark.parametrize("name", list(ODD))
def test_a_reply_a_worker_recorded_never_echoes_a_secret_either(tmp_path, monkeypatch, name):
    """serve without --worker on PostgreSQL answers with the reply a `flowrun worker` recorded:
    as clean as the reply of a run serve executes itself."""
    import os
    import signal

    from tests.engine.test_worker import start_worker
    from tests.support import postgres

    if postgres.skip_reason is not None:
        pytest.skip(postgres.skip_reason)
    for k, v in ODD.items():
        monkeypatch.setenv(k, v)
    url, schema = postgres.postgres_url()
    write_flows(tmp_path / "flows", FLOWS, connections=CONNS)
    worker = start_worker(url, capacity=2)
    try:
        with serving(tmp_path / "flows", state=url, monkeypatch=monkeypatch, sync_timeout=60,
                     admin_token=SECRETS["FLOWRUN_ADMIN_TOKEN"]) as served:
            assert served.listener.runs.executes is False
            _reply_is_clean(served, name)
        import psycopg

        with psycopg.connect(url) as conn:  # nor did the worker write it to the state database
            for table in ("runs", "steps"):
                _clean(json.dumps(conn.execute(f"SELECT * FROM {table}").fetchall(), default=str))
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        postgres.drop(schema)


def test_error_answers_never_echo_a_secret(app):
    odd = ODD["TEST_ODD_QUOTE"]
    schema = app.client.post("/flows/guarded/triggers/hook", json={"code": odd},
                             headers={"X-API-Key": ODD["TEST_ODD_PLAIN"]})
    assert schema.status_code == 400 and schema.json()["problems"]
    _clean(schema.text)
    for body in (odd, ODD["TEST_ODD_PLAIN"]):
        wrong = app.client.post("/flows/plain/triggers/hook", content=json.dumps({"x": body}),
                                headers={"X-API-Key": "nope", "Content-Type": "application/json"})
        assert wrong.status_code == 403
        _clean(wrong.text)


def test_a_reply_header_that_http_cannot_carry_is_percent_encoded_not_a_500(app):
    r = app.client.post("/flows/echo/triggers/hook", json={"secret": "Ω\r\nSet-Cookie: a=b"})
    assert r.status_code == 200
    assert r.headers["x-echo"] == "%CE%A9%0D%0ASet-Cookie: a=b" and "set-cookie" not in r.headers


def test_the_log_records_hold_no_secret(app):
    for secret in ODD.values():
        app.client.post("/flows/echo/triggers/hook", json={"secret": secret})
        app.client.post("/flows/guarded/triggers/hook", json={"code": secret},
                        headers={"X-API-Key": ODD["TEST_ODD_PLAIN"]})
    _clean(json.dumps(app.records.records, ensure_ascii=False))
