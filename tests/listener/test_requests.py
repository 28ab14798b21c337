"""Request triggers on a real server: bodies, schema, sync replies, 202 and polling,
de-duplication, limits, operations endpoints, and flows with problems."""
from __future__ import annotations

import time

import pytest

from .conftest import SECRETS

KEY = {"X-API-Key": SECRETS["TEST_INBOUND_KEY"]}
ADMIN = {"Authorization": f"Bearer {SECRETS['FLOWRUN_ADMIN_TOKEN']}"}


def test_json_body_headers_and_query_reach_the_flow(server):
    with server.client() as c:
        r = c.post("/flows/echo/triggers/hook?tag=a&n=2", json={"name": "Ada", "tags": ["x"]},
                   headers={"X-Custom": "v1"})
    assert r.status_code == 200
    assert r.headers["x-echo"] == "yes"
    out = r.json()
    assert out["body"] == {"name": "Ada", "tags": ["x"]}
    assert out["headers"]["x-custom"] == "v1"
    assert out["queries"] == {"tag": "a", "n": "2"}
    assert out["relativePathParameters"] == {}
    assert r.headers["x-flowrun-run-id"] == server.runs("echo")[-1]["id"]


@pytest.mark.parametrize("content, ctype, expected", [
    (b"From=%2B15551234567&Body=hi+there&Media=a&Media=b", "application/x-www-form-urlencoded",
     {"From": "+15551234567", "Body": "hi there", "Media": ["a", "b"]}),
    ("caf\u00e9 {{ 7*7 }}".encode(), "text/plain; charset=utf-8", "caf\u00e9 {{ 7*7 }}"),
    (b"\x00\x01\xff", "application/octet-stream", {"$content-type": "application/octet-stream", "$content": "AAH/"}),
    (b"", "application/json", None),
])
def test_content_types_become_the_trigger_body(server, content, ctype, expected):
    with server.client() as c:
        r = c.post("/flows/echo/triggers/hook", content=content, headers={"Content-Type": ctype})
    assert r.status_code == 200, r.text
    assert r.json()["body"] == expected


def test_relative_path_parameters_and_method(server):
    with server.client() as c:
        r = c.put("/flows/echo_path/triggers/item/items/42/notes/n-7")
        assert r.status_code == 200, r.text
        assert r.json() == {"itemId": "42", "noteId": "n-7"}
        assert c.post("/flows/echo_path/triggers/item/items/42/notes/n-7").status_code == 405
        assert c.put("/flows/echo_path/triggers/item/items/42").status_code == 404


def test_invalid_json_is_400_and_starts_nothing(server):
    before = len(server.runs("echo"))
    with server.client() as c:
        r = c.post("/flows/echo/triggers/hook", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert "not valid JSON" in r.json()["error"]
    assert len(server.runs("echo")) == before


def test_schema_rejection_lists_every_problem_and_starts_nothing(server):
    before = len(server.runs("orders"))
    with server.client() as c:
        r = c.post("/flows/orders/triggers/new", json={"orderId": "X-1", "qty": 0, "extra": True}, headers=KEY)
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "the body does not match the trigger's schema"
    problems = {(p["path"], p["message"]) for p in body["problems"]}
    assert ("/orderId", "'X-1' does not match '^O-[0-9]+$'") in problems
    assert ("/qty", "0 is less than the minimum of 1") in problems
    assert any(p[0] == "/" and "extra" in p[1] for p in problems)
    assert len(problems) == 3
    assert len(server.runs("orders")) == before


def test_accepted_202_with_location_then_polling(server):
    with server.client() as c:
        r = c.post("/flows/orders/triggers/new", json={"orderId": "O-1", "qty": 2}, headers=KEY)
        assert r.status_code == 202, r.text
        run_id = r.json()["runId"]
        location = r.headers["location"]
        assert location.startswith(f"/runs/{run_id}?token=") and r.json()["location"] == location
        # committed before the acknowledgement
        assert server.run(run_id)["status"] in ("Queued", "Running", "Succeeded")
        first = c.get(location)
        assert first.status_code == 202 and first.json()["status"] in ("Queued", "Running")
        assert first.headers["retry-after"] == "1"
        deadline = time.time() + 10
        while True:
            polled = c.get(location)
            if polled.status_code == 200 or time.time() > deadline:
                break
            time.sleep(0.1)
    assert polled.status_code == 200
    assert polled.json()["status"] == "Succeeded"
    assert polled.json()["outputs"] == {"order": {"order": "O-1", "qty": 2}}


def test_polling_needs_the_runs_own_token_or_the_admin_token(server):
    with server.client() as c:
        run_id = c.post("/flows/orders/triggers/new", json={"orderId": "O-2", "qty": 1}, headers=KEY).json()["runId"]
        assert c.get(f"/runs/{run_id}").status_code == 401
        assert c.get(f"/runs/{run_id}", headers=KEY).status_code == 401  # the trigger's key is no credential here
        assert c.get(f"/runs/{run_id}?token=wrong").status_code == 403
        assert c.get(f"/runs/{run_id}", headers=ADMIN).status_code in (200, 202)
        assert c.get(f"/runs/{run_id[:8]}", headers=ADMIN).status_code == 404  # whole ids only
        assert c.get("/runs/does-not-exist", headers=ADMIN).status_code == 404


def test_sync_response_longer_than_the_limit_gets_202_then_the_reply_by_polling(server):
    with server.client() as c:
        t0 = time.time()
        r = c.post("/flows/slow_reply/triggers/hook", json={})
        assert r.status_code == 202
        assert 0.9 < time.time() - t0 < 3  # --sync-timeout 1 (the reply comes after 1.5 s)
        run_id = r.headers["x-flowrun-run-id"]
        run = server.wait_run(run_id)
        final = c.get(r.headers["location"])
    assert run["status"] == "Succeeded"
    assert final.status_code == 200
    assert final.json()["response"] == {"statusCode": 201, "headers": {}, "body": {"done": True}}


def test_a_run_ending_without_its_response_is_502(server):
    with server.client() as c:
        r = c.post("/flows/no_reply/triggers/hook", json={})
    assert r.status_code == 502
    assert r.json()["status"] == "Failed"


def test_dedupe_expression_answers_a_redelivery_with_the_first_run(server):
    headers = dict(KEY, **{"Idempotency-Key": "order-77"})
    with server.client() as c:
        first = c.post("/flows/orders/triggers/new", json={"orderId": "O-77", "qty": 1}, headers=headers)
        again = c.post("/flows/orders/triggers/new", json={"orderId": "O-77", "qty": 1}, headers=headers)
        other = c.post("/flows/orders/triggers/new", json={"orderId": "O-78", "qty": 1},
                       headers=dict(KEY, **{"Idempotency-Key": "order-78"}))
    assert first.status_code == again.status_code == 202
    assert again.json()["runId"] == first.json()["runId"]
    assert again.headers["x-flowrun-duplicate"] == "true"
    assert other.json()["runId"] != first.json()["runId"]
    keyed = [r for r in server.runs("orders") if r["dedupe_key"] in ("new:order-77", "new:order-78")]
    assert len(keyed) == 2


def test_body_over_the_limit_is_413_and_starts_nothing(server):
    before = len(server.runs("echo"))
    with server.client() as c:
        r = c.post("/flows/echo/triggers/hook", content=b"x" * 70_000, headers={"Content-Type": "text/plain"})

        def chunks():
            for _ in range(20):
                yield b"y" * 4096  # no Content-Length: counted while streaming
        streamed = c.post("/flows/echo/triggers/hook", content=chunks(), headers={"Content-Type": "text/plain"})
    assert r.status_code == 413 and streamed.status_code == 413
    assert len(server.runs("echo")) == before


def test_unknown_flows_and_triggers_are_404(server):
    with server.client() as c:
        assert c.post("/flows/nope/triggers/hook").status_code == 404
        r = c.post("/flows/orders/triggers/old", json={})
    assert r.status_code == 404
    assert "its HTTP triggers: new" in r.json()["error"]


def test_flows_with_problems_are_reported_and_not_served(server):
    problems = [rec["problem"] for rec in server.logs() if rec.get("event") == "flow_invalid"]
    assert any(p.endswith("bad_no_auth.yaml:3:3 triggers.hook: 'auth' is required") for p in problems), problems
    assert any("bad_kind.yaml:5:18 triggers.hook.auth.type: unknown auth type 'hmca' (did you mean 'hmac'?)" in p
               for p in problems), problems
    with server.client() as c:
        assert c.post("/flows/bad_no_auth/triggers/hook").status_code == 404
        ready = c.get("/readyz").json()
    assert ready["status"] == "ready"
    assert sorted(f.rsplit("/", 1)[-1] for f in ready["invalid"]) == ["bad_kind.yaml", "bad_no_auth.yaml"]


def test_health_readiness_and_metrics(server):
    with server.client() as c:  # self-contained: under xdist this module's tests share no order
        assert c.post("/flows/echo/triggers/hook", json={"name": "Ada"}).status_code == 200
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").status_code == 200
        c.post("/flows/orders/triggers/new", json={"orderId": "bad"}, headers=KEY)
        c.post("/flows/orders/triggers/new", json={"orderId": "O-5", "qty": 1})
        assert c.post("/flows/echo/triggers/hook", json={"name": "M"}).status_code == 200  # not left to other tests
        from tests.support.waiting import wait_until  # the run finishes just after it replies

        def finished():
            text = c.get("/metrics").text
            return text if 'flowrun_runs_finished_total{flow="echo",status="Succeeded"}' in text else None
        text = wait_until(finished, "the echo run never finished")
    assert 'flowrun_triggers_received_total{flow="orders",trigger="new"}' in text
    assert 'flowrun_triggers_rejected_total{flow="orders",reason="schema",trigger="new"}' in text
    assert 'flowrun_triggers_rejected_total{flow="orders",reason="unauthenticated",trigger="new"}' in text
    assert 'flowrun_triggers_accepted_total{flow="echo",trigger="hook"}' in text
    assert 'flowrun_runs_finished_total{flow="echo",status="Succeeded"}' in text
    assert 'flowrun_action_duration_seconds_bucket{action="reply",flow="echo"' in text
    assert "flowrun_runs_in_flight" in text
    assert "flowrun_flows_invalid 2.0" in text


def test_openapi_document_from_the_triggers(server):
    with server.client() as c:
        doc = c.get("/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    op = doc["paths"]["/flows/orders/triggers/new"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["required"] == ["orderId", "qty"]
    assert op["description"] == "A new order."
    assert set(op["responses"]) >= {"202", "400", "401", "403", "413", "429"}
    assert doc["components"]["securitySchemes"]["orders.new"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    put = doc["paths"]["/flows/echo_path/triggers/item/items/{itemId}/notes/{noteId}"]["put"]
    assert [p["name"] for p in put["parameters"]] == ["itemId", "noteId"]
    assert "200" in doc["paths"]["/flows/echo/triggers/hook"]["post"]["responses"]
    assert doc["paths"]["/flows/echo/triggers/hook"]["post"]["security"] == []
    assert "/flows/bad_no_auth/triggers/hook" not in doc["paths"]


def test_logs_are_json_with_run_and_trigger(server):
    with server.client() as c:
        assert c.post("/flows/echo/triggers/hook", json={"name": "Ada"}).status_code == 200
    accepted = [rec for rec in server.logs() if rec.get("event") == "accepted"]
    assert accepted and all(rec["run_id"] and rec["trigger"] and rec["flow"] for rec in accepted)
    assert all("raw" not in rec for rec in server.logs())
