"""A webhook's W3C ``traceparent`` becomes the parent of its run's span, and is stored with the
run (so the run's resumes, in any process, stay in the caller's trace)."""
from __future__ import annotations

import json

import pytest

from tests.support.tracing import REMOTE, traceparent, traced

from .inprocess import serving, wait_for

FLOWS = {"hook.yaml": """\
name: hook
triggers:
  in: {type: Request, auth: {type: none}}
actions:
  take: {type: Compose, inputs: "{{ triggerBody() }}"}
"""}


def _run(app, headers: dict) -> dict:
    r = app.client.post("/flows/hook/triggers/in", json={"n": 1}, headers=headers)
    assert r.status_code == 202, r.text
    run_id = r.json()["runId"]
    return wait_for(lambda: next((x for x in app.runs("hook") if x["id"] == run_id and x["status"] == "Succeeded"),
                                 None), "the run to finish")


def test_a_webhooks_traceparent_is_the_parent_of_the_runs_span_and_is_stored_with_the_run(tmp_path, monkeypatch):
    with traced() as spans, serving(tmp_path / "flows", FLOWS, state=tmp_path / "state.db",
                                    monkeypatch=monkeypatch) as app:
        row = _run(app, {"traceparent": REMOTE, "tracestate": "vendor=1"})
        wait_for(lambda: spans.runs(), "the run's span")
    [run] = spans.runs()
    _, trace, parent, _ = REMOTE.split("-")
    assert (f"{run.context.trace_id:032x}", f"{run.parent.span_id:016x}") == (trace, parent)
    assert run.parent.is_remote and run.attributes["flowrun.trigger"] == "in"
    assert [s.name for s in spans.children(run)] == ["take"]
    assert json.loads(row["trace"]) == {"traceparent": REMOTE, "tracestate": "vendor=1"}
    assert "trace" not in json.loads(row["request"])


@pytest.mark.parametrize("header", ["00-zz-00f067aa0ba902b7-01", "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
                                    "{{ 7*7 }}", REMOTE + "-" + "x" * 5000])
def test_a_malformed_traceparent_is_ignored_the_run_starts_its_own_trace(tmp_path, monkeypatch, header):
    with traced() as spans, serving(tmp_path / "flows", FLOWS, state=tmp_path / "state.db",
                                    monkeypatch=monkeypatch) as app:
        row = _run(app, {"traceparent": header})
        wait_for(lambda: spans.runs(), "the run's span")
    [run] = spans.runs()
    assert run.parent is None
    assert json.loads(row["trace"]) == {"traceparent": traceparent(run)}  # its own, for resumes
