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


_NAMES = ["traceparent", "TraceParent", "tracestate", "TRACESTATE"]
_VALUES = [REMOTE, "vendor=1", "00-" + "f" * 32 + "-" + "f" * 16 + "-ff", "a=1," * 40, "x" * 70_000,
           "vendor=\r\nSet-Cookie: x=1", "\x00\x01\x7f", "{{ 7*7 }}"]


def test_fuzzed_trace_headers_on_a_webhook_never_fail_it_nor_log_an_error(tmp_path, monkeypatch):
    """Huge values, control bytes, many values of each header: the webhook answers 202 (or a
    4xx for a request too big), every run succeeds, nothing is logged as an error, and what is
    stored is a valid trace context or the run's own."""
    import logging

    from hypothesis import HealthCheck, given, settings, strategies as st

    otel_records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = otel_records.append
    logging.getLogger("opentelemetry").addHandler(handler)
    value = st.one_of(st.sampled_from(_VALUES), st.binary(max_size=300),
                      st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0xff), max_size=300))
    answers: list[int] = []
    try:
        with traced() as spans, serving(tmp_path / "flows", FLOWS, state=tmp_path / "state.db",
                                        monkeypatch=monkeypatch) as app:
            @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
            @given(st.lists(st.tuples(st.sampled_from(_NAMES), value), max_size=40))
            def post(headers):
                sent = [(k, v if isinstance(v, bytes) else v.encode("latin-1")) for k, v in headers]
                r = app.client.post("/flows/hook/triggers/in", json={"n": 1}, headers=sent)
                assert r.status_code == 202 or 400 <= r.status_code < 500, (r.status_code, r.text[:200])
                answers.append(r.status_code)

            post()
            wait_for(lambda: len(app.runs("hook")) == answers.count(202)
                     and all(r["status"] == "Succeeded" for r in app.runs("hook")), "every run to succeed", timeout=60)
            rows = app.runs("hook")
            errors = [r for r in app.records.records if r["level"] in ("ERROR", "CRITICAL") or r["exc"]]
        assert answers.count(202) > 0 and errors == []
        assert [r for r in otel_records if r.levelno >= logging.WARNING] == []
        from engine import telemetry

        for row in rows:
            trace = json.loads(row["trace"])
            assert telemetry.carrier(trace) == trace
        assert len(spans.runs()) == len(rows)
    finally:
        logging.getLogger("opentelemetry").removeHandler(handler)


def test_a_secret_in_a_webhooks_tracestate_reaches_no_span_and_no_stored_run(tmp_path, monkeypatch):
    from .conftest import SECRETS

    secret = SECRETS["FLOWRUN_ADMIN_TOKEN"]  # the process knows it, and masks it everywhere
    with traced() as spans, serving(tmp_path / "flows", FLOWS, state=tmp_path / "state.db",
                                    monkeypatch=monkeypatch, admin_token=secret) as app:
        row = _run(app, {"traceparent": REMOTE, "tracestate": f"vendor={secret}"})
        wait_for(lambda: spans.runs(), "the run's span")
    [run] = spans.runs()
    assert f"{run.parent.trace_id:032x}" == REMOTE.split("-")[1]  # the traceparent is kept
    for span in spans.all():
        assert secret not in str(span.context.trace_state) and secret not in span.to_json()
    assert secret not in row["trace"] and json.loads(row["trace"]) == {"traceparent": REMOTE}
