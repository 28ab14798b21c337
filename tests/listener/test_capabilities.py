"""Polling a run needs the admin token or the token of that run's own Location URL.

A signed trigger request (fresh or replayed) is no credential for GET /runs/{id}; a run's
token reads that run and no other; a redelivery is not handed the token."""
from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings, strategies as st

from .conftest import SECRETS
from .inprocess import serving, wait_for

FLOWS = {
    "orders.yaml": """\
name: orders
triggers:
  new:
    type: Request
    auth: {type: key, connection: inbound}
    dedupe: "{{ triggerOutputs().headers.get('idempotency-key') }}"
  push: {type: Request, auth: {type: hmac, connection: github}}
actions:
  take: {type: Compose, inputs: "{{ triggerBody() }}"}
outputs:
  order: {value: "{{ outputs('take') }}"}
""",
}
KEY = {"X-API-Key": SECRETS["TEST_INBOUND_KEY"]}
ADMIN = {"Authorization": f"Bearer {SECRETS['FLOWRUN_ADMIN_TOKEN']}"}


@pytest.fixture
def app(tmp_path, monkeypatch):
    with serving(tmp_path / "flows", FLOWS, state=tmp_path / "state.db", monkeypatch=monkeypatch,
                 admin_token=SECRETS["FLOWRUN_ADMIN_TOKEN"]) as served:
        yield served


def _start(app, body: dict, **headers: str) -> tuple[str, str]:
    r = app.client.post("/flows/orders/triggers/new", json=body, headers={**KEY, **headers})
    assert r.status_code == 202, r.text
    return r.json()["runId"], r.headers["location"]


def _finished(app, location: str) -> dict:
    return wait_for(lambda: (r := app.client.get(location)).status_code == 200 and r.json(), "the run to finish")


def test_a_runs_token_reads_that_run_and_no_other(app):
    a, loc_a = _start(app, {"who": "A"})
    b, loc_b = _start(app, {"who": "B"})
    token_a = parse_qs(urlsplit(loc_a).query)["token"][0]
    assert _finished(app, loc_a)["outputs"] == {"order": {"who": "A"}}
    assert _finished(app, loc_b)["outputs"] == {"order": {"who": "B"}}
    stolen = app.client.get(f"/runs/{b}?token={token_a}")
    assert stolen.status_code == 403 and "B" not in json.dumps(stolen.json().get("outputs"))
    assert token_a != parse_qs(urlsplit(loc_b).query)["token"][0]


def test_a_signed_trigger_request_is_no_credential_for_polling(app):
    run_id, _ = _start(app, {"who": "A"})
    body = b""
    signature = "sha256=" + hmac.new(SECRETS["TEST_HMAC_SECRET"].encode(), body, hashlib.sha256).hexdigest()
    for headers in (KEY, {"X-Hub-Signature-256": signature}, {**KEY, "Authorization": "Bearer " + KEY["X-API-Key"]}):
        r = app.client.get(f"/runs/{run_id}", headers=headers)
        assert r.status_code == 401 and "outputs" not in r.json()


@pytest.mark.parametrize("token", ["", "x", "A" * 32, "A" * 31 + "=", "%00", "token" * 100])
def test_a_wrong_or_empty_token_reads_nothing(app, token):
    run_id, _ = _start(app, {"who": "A"})
    r = app.client.get(f"/runs/{run_id}", params={"token": token})
    assert r.status_code in (401, 403) and "outputs" not in r.json()


def test_the_admin_token_reads_any_run_and_unknown_runs_are_not_revealed(app):
    a, _ = _start(app, {"who": "A"})
    assert app.client.get(f"/runs/{a}", headers=ADMIN).status_code in (200, 202)
    assert app.client.get("/runs/no-such-run", headers=ADMIN).status_code == 404
    assert app.client.get("/runs/no-such-run").status_code == 401  # the same answer as for a real run
    assert app.client.get(f"/runs/{a[:8]}", headers=ADMIN).status_code == 404  # whole ids only
    forged = app.listener.capabilities.token("no-such-run")
    assert app.client.get(f"/runs/no-such-run?token={forged}").status_code == 404


def test_a_redelivery_is_not_handed_the_polling_token(app):
    first, location = _start(app, {"who": "A"}, **{"Idempotency-Key": "k-1"})
    again = app.client.post("/flows/orders/triggers/new", json={"who": "A"}, headers={**KEY, "Idempotency-Key": "k-1"})
    assert again.json()["runId"] == first and again.headers["x-flowrun-duplicate"] == "true"
    assert "token=" not in again.headers["location"] and "token=" in location
    assert app.client.get(again.headers["location"]).status_code == 401


def test_tokens_outlive_a_restart(tmp_path, monkeypatch):
    with serving(tmp_path / "flows", FLOWS, state=tmp_path / "state.db", monkeypatch=monkeypatch) as app:
        _, location = _start(app, {"who": "A"})
        _finished(app, location)
    with serving(tmp_path / "flows", state=tmp_path / "state.db", monkeypatch=monkeypatch) as again:
        assert again.client.get(location).status_code == 200


def test_the_polling_token_is_masked_in_the_stored_request_and_the_logs(app):
    run_id, location = _start(app, {"who": "A"})
    token = parse_qs(urlsplit(location).query)["token"][0]
    _finished(app, location)
    with app.db() as con:
        rows = " ".join(str(tuple(r)) for r in con.execute("SELECT * FROM runs"))
    assert token not in rows
    assert token not in json.dumps(app.records.records)


@pytest.fixture(scope="module")
def capabilities(tmp_path_factory):
    from engine.api import Engine
    from engine.listener.capabilities import Capabilities

    engine = Engine(tmp_path_factory.mktemp("caps") / "state.db")
    yield Capabilities(engine)
    engine.close()


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_no_runs_token_opens_another_run(capabilities, a, b):
    assert capabilities.allows(a, capabilities.token(a))
    assert capabilities.allows(b, capabilities.token(a)) == (a == b)
