"""engine/concurrency.py on both backends: a flow's limit per key, what a run over it does
(queue, cancelNew, fail), maxQueued, and why a queued run waits."""
import threading

import anyio
import pytest

import engine
from engine.concurrency import ConcurrencyLimit
from engine.storage import claim

FLOW = """\
name: limited
parameters:
  api: {{type: string}}
concurrency: {{limit: 1, key: "{{{{ triggerBody().customer }}}}", onLimit: {policy}{extra}}}
triggers:
  manual: {{type: Request, auth: {{type: none}}}}
actions:
  work:
    type: Http
    inputs: {{method: POST, uri: "{{{{ parameters('api') }}}}/work", body: "{{{{ triggerBody() }}}}"}}
"""


@pytest.fixture
def gated(recorder):
    """/work answers once the gate opens; ``entered`` is set when a request arrives."""
    gate, entered = threading.Event(), threading.Event()

    def work(req):
        entered.set()
        gate.wait(30)
        return 200, {"Content-Type": "application/json"}, b"{}"
    recorder.route("POST", "/work", handler=work)
    yield recorder, gate, entered
    gate.set()


async def _first_busy_then(e, flow, api, gate, entered, second):
    results = {}
    async with anyio.create_task_group() as tg:
        async def first():
            results["a"] = await e.run(flow, input={"customer": "acme"}, params={"api": api})
        tg.start_soon(first)
        await anyio.to_thread.run_sync(entered.wait, 30)
        results.update(await second())
        gate.set()
    return results


@pytest.mark.parametrize("policy, status", [("cancelNew", "Cancelled"), ("fail", "Failed")])
def test_a_run_over_its_keys_limit_ends_as_the_policy_says_and_another_key_runs(state, flow_file, gated, policy,
                                                                                 status):
    recorder, gate, entered = gated
    e = engine.Engine(state)
    try:
        flow = e.load(flow_file(FLOW.format(policy=policy, extra="")))

        async def second():
            over = await e.run(flow, input={"customer": "acme"}, params={"api": recorder.url})
            return {"over": over}
        got = anyio.run(_first_busy_then, e, flow, recorder.url, gate, entered, second)
        assert got["a"].status == "Succeeded"
        assert got["over"].status == status and got["over"].error["code"] == "ConcurrencyLimit"
        gate.set()
        other = anyio.run(lambda: e.run(flow, input={"customer": "globex"}, params={"api": recorder.url}))
        assert other.status == "Succeeded"
    finally:
        e.close()


def test_queued_runs_of_one_key_run_one_after_another_and_a_crashed_holder_frees_its_slot(state, flow_file, gated):
    recorder, gate, entered = gated
    e = engine.Engine(state)
    try:
        flow = e.load(flow_file(FLOW.format(policy="queue", extra="")))
        # a holder whose process died: its slot is free (its lease is not live)
        dead = e.start(flow, input={"customer": "acme"}, params={"api": recorder.url})
        with claim(e.store, dead, ttl=30):
            from engine.concurrency import acquire

            assert acquire(e.store, dead) is True
        gate.set()
        runs = []

        async def many():
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    async def one():
                        runs.append(await e.run(flow, input={"customer": "acme"}, params={"api": recorder.url}))
                    tg.start_soon(one)
        if e.store.backend == "postgresql":
            pytest.skip("on PostgreSQL a run over its limit stays Queued for the workers (tests/engine/test_worker.py)")
        anyio.run(many)
        assert [r.status for r in runs] == ["Succeeded"] * 3
        steps = sorted((s.started, s.ended) for r in runs for s in e.steps(r.id))
        assert all(a[1] <= b[0] for a, b in zip(steps, steps[1:]))  # never two at once
    finally:
        e.close()


def test_max_queued_refuses_one_run_more_and_runs_says_why_the_others_wait(state, flow_file, recorder):
    e = engine.Engine(state)
    try:
        flow = e.load(flow_file(FLOW.format(policy="queue", extra=", maxQueued: 1")))
        holder = e.start(flow, input={"customer": "acme"}, params={"api": recorder.url})
        with claim(e.store, holder, ttl=30):
            from engine.concurrency import acquire

            assert acquire(e.store, holder) is True
            waiting = e.start(flow, input={"customer": "acme"}, params={"api": recorder.url})
            with pytest.raises(ConcurrencyLimit, match="maxQueued 1"):
                e.start(flow, input={"customer": "acme"}, params={"api": recorder.url})
            (shown,) = [r for r in e.list_runs(status="Queued") if r.id == waiting]
            assert shown.waiting == "waiting for a slot of key 'acme' (limit 1)"
    finally:
        e.close()


def test_a_key_template_that_fails_on_the_trigger_refuses_the_run_with_one_clear_error(state, flow_file, recorder):
    e = engine.Engine(state)
    try:
        flow = e.load(flow_file(FLOW.format(policy="queue", extra="")))
        with pytest.raises(engine.FlowrunError, match="concurrency.key"):
            e.start(flow, input=["not", "an", "object"], params={"api": recorder.url})
        assert e.list_runs() == []
    finally:
        e.close()


def test_any_trigger_body_either_starts_a_run_with_a_key_or_is_refused_with_one_clear_error(tmp_path, flow_file):
    from hypothesis import HealthCheck, given, settings, strategies as st

    json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) |
                               st.text(max_size=20), lambda inner: st.lists(inner, max_size=3) |
                               st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=10)
    e = engine.Engine(tmp_path / "state.db")
    flow = e.load(flow_file(FLOW.format(policy="fail", extra="")))

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(json_values, st.dictionaries(st.just("customer"), json_values, min_size=1)))
    def check(body):
        try:
            run_id = e.start(flow, input=body, params={"api": "http://127.0.0.1:1"})
        except engine.FlowrunError as exc:
            assert "\n" not in str(exc) and "concurrency.key" in str(exc)
            return
        assert e.store.db.execute("SELECT slot_key FROM run_slots WHERE run_id = ?", (run_id,)).fetchone()
    try:
        check()
    finally:
        e.close()
