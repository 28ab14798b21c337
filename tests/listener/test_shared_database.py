"""Several `flowrun serve` on one PostgreSQL database: de-duplication across instances by a
unique constraint, each Recurrence firing once, runs queued for workers or run with --worker."""
import json

import httpx
import psycopg
import pytest

from tests.listener.conftest import SECRETS
from tests.support import postgres

pytestmark = pytest.mark.skipif(postgres.skip_reason is not None, reason=postgres.skip_reason or "")

FLOWS = {
    "stripe.yaml": """\
name: stripe_events
triggers:
  webhook: {type: Request, auth: {type: stripe, connection: stripe, tolerance: 300}}
actions:
  seen: {type: Compose, inputs: "{{ triggerBody().id }}"}
""",
    "tick.yaml": """\
name: tick
triggers:
  every: {type: Recurrence, recurrence: {frequency: Second, interval: 1}}
actions:
  at: {type: Compose, inputs: "{{ triggerBody().scheduledTime }}"}
""",
}


def query(url, sql, *args):
    with psycopg.connect(url) as conn:
        return conn.execute(sql, args).fetchall()


def poll(condition, timeout=60.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = condition()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError("condition not met")


def test_two_servers_get_the_same_stripe_event_and_one_recurrence_and_start_one_run_each(make_server, pg_state):
    from stripe import WebhookSignature

    queued = make_server(FLOWS, state=pg_state)               # commits runs Queued for the workers
    working = make_server(FLOWS, "--worker", state=pg_state)  # also executes runs
    payload = json.dumps({"id": "evt_shared_1", "object": "event", "type": "payment_intent.succeeded", "data": {}})
    answers = []
    for server in (queued, working, queued):
        header = WebhookSignature.generate_signature_header(payload, SECRETS["TEST_STRIPE_WHSEC"])
        answers.append(httpx.post(f"{server.url}/flows/stripe_events/triggers/webhook", content=payload.encode(),
                                  headers={"Stripe-Signature": header, "Content-Type": "application/json"}))
    assert [a.status_code for a in answers][0] == 202 and all(a.status_code in (200, 202) for a in answers)
    runs = query(pg_state, "SELECT id, status FROM runs WHERE flow = 'stripe_events'")
    assert len(runs) == 1
    # the --worker server executes the run the other one queued
    poll(lambda: query(pg_state, "SELECT 1 FROM runs WHERE flow = 'stripe_events' AND status = 'Succeeded'"))
    # both schedules fire every second: each scheduled time makes exactly one run
    fired = poll(lambda: (rows := query(pg_state, "SELECT dedupe_key FROM runs WHERE flow = 'tick'"))
                 and len(rows) >= 3 and rows)
    assert len(fired) == len(set(fired))
    poll(lambda: any(r.get("event") == "schedule_fired" for r in queued.logs())
         or any(r.get("event") == "schedule_fired" for r in working.logs()))
    duplicates = [r for s in (queued, working) for r in s.logs() if r.get("event") == "schedule_fired"]
    assert len({r["scheduled"] for r in duplicates}) == len(duplicates)  # no time fired by both


FEED = """\
name: feed
triggers:
  lines: {{type: testplugin.FileFeed, path: "{path}"}}
actions:
  seen: {{type: Compose, inputs: "{{{{ triggerBody().id }}}}"}}
"""


def test_a_leased_pull_trigger_is_consumed_by_one_instance_and_taken_over_when_it_is_killed(make_server, pg_state,
                                                                                              tmp_path):
    from tests.listener.conftest import ROOT

    feed = tmp_path / "feed.jsonl"
    feed.write_text("".join(json.dumps({"id": i}) + "\n" for i in range(20)))
    flows = {"feed.yaml": FEED.format(path=feed)}
    env = {"PYTHONPATH": f"{ROOT}{__import__('os').pathsep}{ROOT / 'tests' / 'plugins'}"}
    first = make_server(flows, state=pg_state, env=env)
    second = make_server(flows, state=pg_state, env=env)
    poll(lambda: query(pg_state, "SELECT count(*) FROM runs WHERE flow = 'feed'")[0][0] == 20)
    lifecycle = lambda: (tmp_path / "feed.jsonl.lifecycle").read_text().split()  # noqa: E731
    assert lifecycle().count("started") == 1  # one consumer across the two instances
    standby = [s for s in (first, second) if any(r.get("event") == "trigger_standby" for r in s.logs())]
    assert len(standby) == 1
    holder = first if standby[0] is second else second
    holder.kill9()
    with feed.open("a") as f:
        f.write("".join(json.dumps({"id": i}) + "\n" for i in range(20, 30)))
    poll(lambda: query(pg_state, "SELECT count(*) FROM runs WHERE flow = 'feed'")[0][0] == 30, timeout=90)
    assert lifecycle().count("started") == 2  # the instance standing by took the trigger over
    keys = [r[0] for r in query(pg_state, "SELECT dedupe_key FROM runs WHERE flow = 'feed'")]
    assert len(keys) == len(set(keys)) == 30
