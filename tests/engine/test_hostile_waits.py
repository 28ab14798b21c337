"""Hostile wait times never stall a run nor hammer a vendor: a Retry-After (or a job's
``Pending.after``) that is huge, infinite, NaN, negative or unparseable, and a Wait whose
interval is not a finite number. Time is the injected FakeClock: nothing waits on the wall clock."""
import importlib
import math
import types

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine.model import RetryPolicy
from engine.plugin import Job, Pending
from engine.registry import Registry, default_registry
from engine.vendor import retry_after
from tests.support.clock import FakeClock

HOSTILE = [10 ** 400, float("inf"), float("-inf"), float("nan"), -5, 1e14, "1e400", "nan", "inf", "\x00",
           b"\xff\xfe", "Fri, 31 Dec 9999 23:59:59 +2359", "Wed, 21 Oct 99999 07:28:00 GMT", [1], {"a": 1}, True]


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v)[:24])
def test_retry_after_of_hostile_values_is_none_or_a_finite_wait(value):
    got = retry_after(value, now=lambda: 0.0)
    assert got is None or (math.isfinite(got) and got >= 0)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.binary(), st.integers(), st.floats(),
                 st.dictionaries(st.sampled_from(["Retry-After", "retry-after", "x"]),
                                 st.one_of(st.text(), st.integers(), st.floats()))))
def test_retry_after_never_raises_and_never_gives_a_wait_that_is_not_finite(value):
    got = retry_after(value, now=lambda: 0.0)
    assert got is None or (math.isfinite(got) and got >= 0)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e300, -1.0])
def test_a_retry_policy_never_sleeps_longer_than_its_maximum_nor_a_nan(value):
    delay = RetryPolicy.from_dict({"type": "fixed", "count": 1, "interval": "PT1S"}).delay(1, value)
    assert 0 <= delay <= RetryPolicy().maximum


class HostileJob(Job):
    """Says Pending twice with the ``after`` the test gives it, then finishes."""

    type = "hostile.Job"
    input_schema = {"type": "object"}
    poll_interval = 2.0
    backoff = 1.0
    max_poll_interval = 30.0
    max_after = 600.0
    after = None
    polls: list = []

    async def start(self, inputs, context):
        return {"id": "j"}

    async def poll(self, handle, context):
        HostileJob.polls.append(context.now())
        if len(HostileJob.polls) < 3:
            return Pending(after=HostileJob.after)
        return {"done": True}


def _registry() -> Registry:
    reg = Registry()
    for name in default_registry().modules:
        reg.add_module(importlib.import_module(name))
    reg.add_module(types.SimpleNamespace(__name__="hostile_nodes", NODES=[HostileJob]))
    return reg


@pytest.mark.parametrize("after", [float("nan"), float("inf"), 1e14, -3.0, 10 ** 400, "soon"], ids=lambda v: repr(v)[:24])
def test_a_job_polls_again_within_its_max_after_whatever_after_it_is_given(tmp_path, flow_file, after):
    HostileJob.after, HostileJob.polls = after, []
    clock = FakeClock(start=1_000_000.0)
    eng = engine.Engine(tmp_path / "state.db", registry=_registry(), clock=clock)
    try:
        run = anyio.run(lambda: eng.run(flow_file("""
            actions:
              job: {type: hostile.Job, inputs: {}}
        """)))
    finally:
        eng.close()
    assert run.status == "Succeeded", run.error
    gaps = [b - a for a, b in zip(HostileJob.polls, HostileJob.polls[1:])]
    assert len(gaps) == 2 and all(0 <= g <= HostileJob.max_after for g in gaps), gaps
    if isinstance(after, float) and math.isnan(after):
        assert all(g >= HostileJob.poll_interval for g in gaps), "a NaN must not turn polling into a busy loop"


@pytest.mark.parametrize("count", [".nan", ".inf", "\"{{ 'nan' | float }}\"", "\"{{ 'inf' | float }}\"",
                                   "\"{{ '-inf' | float }}\""])
def test_a_wait_whose_interval_is_not_a_finite_number_fails_instead_of_skipping_or_hanging(run_flow, count):
    clock = FakeClock()
    run = run_flow(f"""
        actions:
          nap: {{type: Wait, inputs: {{interval: {{count: {count}, unit: Day}}}}}}
    """, clock=clock)
    assert run.status == "Failed"
    assert clock.slept == 0
