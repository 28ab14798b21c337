"""The bundled flows/ and examples/ run as their comments say."""
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import engine
from tests.support.waiting import wait_until

ROOT = Path(__file__).parents[1]


def run(path, tmp_path, **kw):
    return engine.run_file(ROOT / path, state=tmp_path / "state.db", **kw)


def test_hello(tmp_path):
    result = run("flows/hello.yaml", tmp_path, input={"name": "Ada"}, params={"greeting": "Hi"})
    assert result.outputs == {"message": "Hi, Ada!"}


def test_orders_catches_the_bad_order_and_still_succeeds(tmp_path):
    result = run("flows/orders.yaml", tmp_path, input=json.loads((ROOT / "flows/data/orders.json").read_text()))
    assert result.status == "Succeeded"
    assert result.steps["try"].status == "Failed"
    assert result.steps["catch"].outputs["failed_actions"] == ["each_order"]
    assert result.outputs["summary"] == {"orders": 4, "total": 150.9, "rejected": ["A-3"]}


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def http_server():
    """`python -m http.server` serving flows/data, exactly as flows/http_demo.yaml documents."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                             "--directory", str(ROOT / "flows/data")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_until(lambda: accepts(port), "python -m http.server never listened")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait()


def test_http_demo_against_the_documented_local_target(tmp_path, http_server):
    result = run("flows/http_demo.yaml", tmp_path, params={"base_url": http_server})
    assert result.status == "Succeeded"
    assert result.outputs == {"in_stock": ["tea at 4.5", "cocoa at 5.25"]}
    assert result.steps["publish"].status == "Failed"
    assert result.steps["publish_failed"].outputs.startswith("the report target answered 501")


def test_order_fulfilment_example(tmp_path, recorder, monkeypatch):
    monkeypatch.setenv("INVENTORY_TOKEN", "inv-token-123456")
    prices = {"tea": 40.0, "cocoa": 25.0}
    recorder.route("POST", "/warehouses/west/reservations", handler=lambda req: (
        201, {"Content-Type": "application/json"},
        json.dumps({"reservation": f"R-{req.json()['sku']}", "price": prices[req.json()["sku"]]}).encode()))
    conns = tmp_path / "connections.yaml"
    conns.write_text((ROOT / "examples/connections.yaml").read_text().replace("http://127.0.0.1:8766", recorder.url))
    order = json.loads((ROOT / "examples/order.json").read_text())
    result = run("examples/order_fulfilment.yaml", tmp_path, input=order, params={"warehouse": "west"},
                 connections=conns)
    assert result.status == "Succeeded", result.error
    assert sorted(result.outputs["reservations"]) == ["R-cocoa", "R-tea"]
    assert result.outputs["value"] == 105.0
    assert result.response["statusCode"] == 201 and result.response["body"]["route"] == "express"
    sent = recorder.requests[0]
    assert sent.header("authorization") == "Bearer inv-token-123456"
    assert sent.header("idempotency-key").startswith(result.run_id + ":reserve/each_line[")
    assert isinstance(sent.json()["qty"], int)


def test_order_fulfilment_example_fails_cleanly_when_a_reservation_fails(tmp_path, recorder, monkeypatch):
    monkeypatch.setenv("INVENTORY_TOKEN", "inv-token-123456")
    recorder.route("POST", "/warehouses/east/reservations", status=409, json={"error": "out of stock"})
    conns = tmp_path / "connections.yaml"
    conns.write_text((ROOT / "examples/connections.yaml").read_text().replace("http://127.0.0.1:8766", recorder.url))
    result = run("examples/order_fulfilment.yaml", tmp_path, input={"id": "SO-2", "lines": [{"sku": "tea", "qty": 1}]},
                 connections=conns)
    assert result.status == "Failed"
    assert result.error == {"code": "ReservationFailed", "message": "could not reserve every line of the order"}
    assert result.steps["release"].outputs["failed"] == ["each_line"]
    assert result.steps["route"].status == "Skipped"


def test_polling_example(tmp_path, recorder):
    state = {"polls": 0}

    def job(req):
        state["polls"] += 1
        return 200, {"Content-Type": "application/json"}, json.dumps(
            {"id": "J1", "state": "done" if state["polls"] >= 3 else "running"}).encode()

    recorder.route("POST", "/jobs", json={"id": "J1"})
    recorder.route("GET", "/jobs/J1", handler=job)
    result = run("examples/polling.yaml", tmp_path, params={"base_url": recorder.url, "poll_seconds": "0.01"})
    assert result.status == "Succeeded"
    assert result.steps["outcome/done"].outputs == "job J1 finished after 3 polls"
    assert [r.header("x-poll") for r in recorder.requests[1:]] == ["0", "1", "2"]


def test_parent_and_child_example(tmp_path):
    result = run("examples/parent.yaml", tmp_path,
                 input={"customers": [{"name": "Ada", "spend": 320}, {"name": "Alan", "spend": 40}]})
    assert result.outputs == {"vips": ["Ada"]}
    children = [r for r in engine.Engine(tmp_path / "state.db").list_runs() if r.parent_id]
    assert len(children) == 2 and {c.parent_id for c in children} == {result.run_id}


# -- examples/order_confirmation: the four Connect vendors end to end --------------------------
def demo():
    sys.path.insert(0, str(ROOT / "examples/order_confirmation"))
    try:
        import demo as module
    finally:
        sys.path.pop(0)
    return module


def order_confirmation(tmp_path, **kw):
    return demo().run_direct(tmp_path, **kw)


def test_order_confirmation_reaches_all_four_vendors(tmp_path):
    result, requests = order_confirmation(tmp_path)
    assert result.status == "Succeeded", result.error
    sent = {(r.method, r.path.split("/")[1]): r for r in requests}
    stripe = sent[("GET", "v1")]
    assert stripe.header("authorization") == "Bearer sk_test_demo_4eC39HqLyjWDarjtT1zdp7dc"
    query = next(r for r in requests if r.path.endswith("/query/"))
    assert query.query["q"] == ["SELECT Id, Email FROM Contact WHERE Email = 'ada@example.com' LIMIT 1"]
    upsert = next(r for r in requests if r.method == "PATCH")
    assert upsert.json() == {"LastName": "Ada Lovelace", "Email": "ada@example.com", "Phone": "+15551234567",
                             "Last_Order_Amount__c": 42.0}
    mail = sent[("POST", "v3")].json()
    assert mail["personalizations"][0]["to"] == [{"email": "ada@example.com", "name": "Ada Lovelace"}]
    assert mail["personalizations"][0]["dynamic_template_data"]["amount"] == "42.00"
    sms = sent[("POST", "2010-04-01")].form()
    assert sms["To"] == ["+15551234567"] and "42.00 EUR" in sms["Body"][0]
    assert result.outputs["sms"].startswith("SM")
    assert result.response == {"statusCode": 200, "headers": {}, "body": {"received": True}}


def test_order_confirmation_catches_a_failed_notification(tmp_path):
    result, requests = order_confirmation(tmp_path, fail_email=True)
    assert result.status == "Failed"
    assert result.error["code"] == "NotificationFailed"
    assert result.steps["notify/email"].error["details"]["status"] == 400
    assert result.steps["notify/sms"].status == "Succeeded"
    assert result.steps["alert"].outputs["failed"] == ["email"]
    assert result.steps["reply"].status == "Skipped"


def test_order_confirmation_through_flowrun_serve_with_a_signed_stripe_webhook(tmp_path):
    status, reply, run, requests = demo().run_served(tmp_path)
    assert (status, reply) == (200, {"received": True})
    assert run["status"] == "Succeeded", run
    assert sorted(r.method + " " + r.path.split("/")[1] for r in requests) == sorted([
        "GET v1", "POST services", "GET services", "PATCH services", "POST v3", "POST 2010-04-01"])


def test_order_confirmation_demo_is_one_command():
    out = subprocess.run([sys.executable, "examples/order_confirmation/demo.py"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "HTTP 200" in out.stdout and "Succeeded" in out.stdout
