"""Bodies no parser should choke on: nested past the depth limit, huge or non-finite numbers,
invalid UTF-8, and a body on a GET. Each gets 400 and exactly one log line, no traceback,
no run; whichever trigger (and whichever verifier that parses bodies itself) they reach.
In process: the ASGI app under Starlette's TestClient, which re-raises any server error."""
from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from engine.safejson import MAX_DEPTH

from .conftest import SECRETS
from .inprocess import serving

FLOWS = {
    "open.yaml": """\
name: open
triggers:
  hook: {type: Request, auth: {type: none}}
  poll: {type: Request, auth: {type: none}, inputs: {method: GET}}
actions:
  seen: {type: Compose, inputs: "{{ triggerBody() }}"}
""",
    "blobs.yaml": """\
name: blobs
triggers:
  events: {type: Request, auth: {type: eventgrid, connection: eventgrid}}
actions:
  seen: {type: Compose, inputs: "{{ triggerBody() }}"}
""",
    "stripe.yaml": """\
name: stripe_events
triggers:
  webhook: {type: Request, auth: {type: stripe, connection: stripe}}
actions:
  seen: {type: Compose, inputs: "{{ triggerBody().id }}"}
""",
}
EG = f"/flows/blobs/triggers/events?code={SECRETS['TEST_EG_KEY']}"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bodies")
    with pytest.MonkeyPatch.context() as mp, serving(tmp / "flows", FLOWS, state=tmp / "state.db",
                                                     monkeypatch=mp) as served:
        yield served


def _deep(kind: str, n: int) -> str:
    return {"array": "[" * n + "]" * n, "object": '{"a":' * n + "1" + "}" * n,
            "mixed": '[{"a":' * (n // 2 + 1) + "1" + "}]" * (n // 2 + 1), "unclosed": "[" * n}[kind]


def _stripe_headers(body: bytes) -> dict:
    from stripe import WebhookSignature

    return {"Content-Type": "application/json",
            "Stripe-Signature": WebhookSignature.generate_signature_header(body.decode("utf-8", "replace"),
                                                                           SECRETS["TEST_STRIPE_WHSEC"])}


def _refused_once(app, send) -> dict:
    """Send a request; it must get 400, log one warning without a traceback, start no run."""
    runs = sum(len(app.runs(f)) for f in ("open", "blobs", "stripe_events"))
    before = len(app.records.records)
    r = send(app.client)
    new = app.records.records[before:]
    assert r.status_code == 400, r.text
    assert len(new) == 1 and new[0]["level"] == "WARNING" and not new[0]["exc"], new
    assert sum(len(app.runs(f)) for f in ("open", "blobs", "stripe_events")) == runs
    return r.json()


DEPTHS = [MAX_DEPTH + 1, 990, 100_000]
KINDS = ["array", "object", "mixed", "unclosed"]


@pytest.mark.parametrize("n", DEPTHS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
def test_deeply_nested_json_gets_400_and_one_log_line(app, kind, n, content_type):
    body = _deep(kind, n).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    answer = _refused_once(app, lambda c: c.post("/flows/open/triggers/hook", content=body, headers=headers))
    assert "nests deeper than" in answer["error"]


@pytest.mark.parametrize("n", [MAX_DEPTH + 1, 100_000])
@pytest.mark.parametrize("kind", KINDS)
def test_deep_json_never_reaches_a_verifier_that_parses_bodies(app, kind, n):
    body = _deep(kind, n).encode()
    _refused_once(app, lambda c: c.post(EG, content=body, headers={"Content-Type": "application/json"}))
    _refused_once(app, lambda c: c.post("/flows/stripe_events/triggers/webhook", content=body,
                                        headers=_stripe_headers(body)))


@pytest.mark.parametrize("kind", KINDS)
def test_deep_json_in_a_form_field_gets_400(app, kind):
    body = f"Body=hi&AddOns={quote(_deep(kind, 1_000))}"
    answer = _refused_once(app, lambda c: c.post("/flows/open/triggers/hook", content=body,
                                                 headers={"Content-Type": "application/x-www-form-urlencoded"}))
    assert "form field 'AddOns'" in answer["error"]


@pytest.mark.parametrize("body", [b"1e99999", b'{"n": -1e400}', b"[" + b"9" * 400 + b".0]", b"1" * 100_000,
                                  b'{"n": ' + b"4" * 5_000 + b"}", b"NaN", b'{"n": Infinity}',
                                  b"\xff\xfe", b'{"a": "\xc3("}', b'["\xed\xa0\x80"]'])
def test_huge_numbers_and_invalid_utf8_get_400(app, body):
    answer = _refused_once(app, lambda c: c.post("/flows/open/triggers/hook", content=body,
                                                 headers={"Content-Type": "application/json"}))
    assert answer["error"].startswith("the body is not valid JSON")


def test_a_lone_surrogate_written_as_a_json_escape_is_accepted_and_its_run_records_it(app):
    """``"\\ud800"`` is valid JSON (bytes that encode a surrogate are not: 400 above), and
    json.loads makes it a lone surrogate, which no UTF-8 holds: the run's INSERT raised, a
    500 with a traceback, on either backend. It is stored as the same escape (safejson.utf8_json)."""
    from .inprocess import wait_for

    before = len(app.runs("open"))
    body = b'{"s": "a\\ud800b", "\\udfff": [1]}'
    r = app.client.post("/flows/open/triggers/hook", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 202, r.text
    run = wait_for(lambda: next((x for x in app.runs("open")[before:] if x["status"] == "Succeeded"), None)
                   if len(app.runs("open")) > before else None, "the run finished")
    import contextlib

    with contextlib.closing(app.db()) as con:
        seen = con.execute("SELECT outputs FROM steps WHERE run_id = ? AND path = 'seen'", (run["id"],)).fetchone()[0]
    assert json.loads(seen) == {"s": "a\ud800b", "\udfff": [1]}
    assert not any(rec["exc"] for rec in app.records.records)


def test_json_within_the_limits_is_accepted(app):
    body = {"deep": json.loads(_deep("array", MAX_DEPTH - 1)), "text": "[" * 10_000, "n": 12345678901234567890}
    r = app.client.post("/flows/open/triggers/hook", json=body)
    assert r.status_code == 202, r.text


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded", "text/plain"])
def test_a_body_on_a_get_trigger_is_refused(app, content_type):
    body = b"a=1" if "form" in content_type else b'{"attacker": "chosen"}'
    answer = _refused_once(app, lambda c: c.request("GET", "/flows/open/triggers/poll", content=body,
                                                    headers={"Content-Type": content_type}))
    assert answer["error"] == "a GET request carries no body"
    assert app.client.request("GET", "/flows/open/triggers/poll").status_code == 202  # no body: fine
