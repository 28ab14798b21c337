"""OpenTelemetry traces of runs (engine/telemetry.py): a span per run execution, a child per
action attempt, errors as redacted events, the W3C trace context in and out, trace ids on log
records, OTLP chosen by the environment, and nothing at all (not even an import) without it."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from urllib.parse import quote

import anyio
import pytest

from engine import telemetry
from engine.api import Engine
from tests.support.recorder import Recorder
from tests.support.tracing import REMOTE, span_id, trace_id, traceparent, traced

ROOT = Path(__file__).resolve().parents[2]

TREE = """
actions:
  first: {type: Compose, inputs: 1}
  group:
    type: Scope
    runAfter: {first: [Succeeded]}
    actions:
      inner: {type: Compose, inputs: 2}
  loop:
    type: Foreach
    runAfter: {group: [Succeeded]}
    foreach: "{{ [10, 20] }}"
    actions:
      each: {type: Compose, inputs: "{{ item() }}"}
"""


def test_a_run_is_one_span_with_a_child_per_action_attempt_and_containers_hold_their_inner_actions(run_flow):
    with traced() as spans:
        result = run_flow(TREE)
    assert result.status == "Succeeded"
    [run] = spans.runs()
    assert run.name == "run flow" and run.parent is None
    assert [s.name for s in spans.children(run)] == ["first", "group", "loop"]
    [group] = spans.named("group")
    [loop] = spans.named("loop")
    assert [s.name for s in spans.children(group)] == ["inner"]
    assert [s.name for s in spans.children(loop)] == ["each", "each"]
    assert {trace_id(s) for s in spans.all()} == {trace_id(run)}
    assert dict(run.attributes) == {"flowrun.flow": "flow", "flowrun.run_id": result.id, "flowrun.trigger": "manual",
                                    "flowrun.run.execution": 1, "flowrun.status": "Succeeded"}


def test_each_attempt_span_carries_the_flow_run_path_type_status_attempt_and_iteration(run_flow):
    with traced() as spans:
        result = run_flow(TREE)
    first, *_ = spans.named("first")
    assert dict(first.attributes) == {"flowrun.flow": "flow", "flowrun.run_id": result.id,
                                      "flowrun.action.path": "first", "flowrun.action.type": "Compose",
                                      "flowrun.attempt": 1, "flowrun.action.status": "Succeeded"}
    each = spans.named("each")
    assert sorted((s.attributes["flowrun.action.path"], s.attributes["flowrun.iteration"]) for s in each) == [
        ("loop[0]/each", 0), ("loop[1]/each", 1)]
    assert "flowrun.iteration" not in spans.named("loop")[0].attributes
    assert spans.named("inner")[0].attributes["flowrun.action.path"] == "group/inner"


def test_a_retried_action_is_a_span_per_attempt_the_failed_one_with_its_error_as_an_event(run_flow):
    with Recorder() as api, traced() as spans:
        api.route("GET", "/flaky", status=503, body="busy", times=1)
        api.route("GET", "/flaky", body="ok")
        result = run_flow(f"""
            actions:
              call:
                type: Http
                inputs: {{method: GET, uri: "{api.url}/flaky"}}
                retryPolicy: {{type: fixed, count: 1, interval: PT0S}}
            """)
    assert result.status == "Succeeded"
    one, two = spans.named("call")
    assert (one.attributes["flowrun.attempt"], two.attributes["flowrun.attempt"]) == (1, 2)
    assert (one.attributes["flowrun.action.status"], two.attributes["flowrun.action.status"]) == ("Retrying",
                                                                                                  "Succeeded")
    [event] = one.events
    assert event.name == "flowrun.error" and event.attributes["flowrun.error.code"] == "Http503"
    assert one.status.status_code.name == "ERROR" and two.status.status_code.name == "UNSET"
    assert two.events == ()


SECRET = 'tok"en\\x/+%=y'  # quotes, a backslash, '/', '+', '%': masked in every form


def test_errors_on_spans_are_redacted_with_the_engines_scrubbing(run_flow, monkeypatch):
    monkeypatch.setenv("TRACE_TEST_TOKEN", SECRET)
    with Recorder() as api, traced() as spans:
        api.route("GET", "/who", handler=lambda req: (401, {}, f"denied: {req.header('authorization')} "
                                                             f"{json.dumps(req.header('authorization'))}".encode()))
        result = run_flow(f"""
            actions:
              call:
                type: Http
                connection: api
                inputs: {{method: GET, uri: "{api.url}/who"}}
            """, connections="connections:\n  api: {kind: http, settings: {auth: bearer}, "
                             "secrets: {token: TRACE_TEST_TOKEN}}\n")
    assert result.status == "Failed"
    [call] = spans.named("call")
    [run] = spans.runs()
    [event] = call.events
    assert event.attributes["flowrun.error.code"] == "Http401" and "denied: Bearer ***" in event.attributes[
        "flowrun.error.message"]
    everything = repr([(s.attributes, [(e.name, e.attributes) for e in s.events], s.status.description)
                       for s in spans.all()])
    for form in (SECRET, json.dumps(SECRET)[1:-1], "en\\\\x/+%=y", "en\\x/+%=y"):
        assert form not in everything
    assert run.attributes["flowrun.status"] == "Failed" and run.events[0].name == "flowrun.error"


def test_an_http_action_sends_the_traceparent_of_its_attempt_span_to_the_server(run_flow):
    with Recorder() as api, traced() as spans:
        api.route("POST", "/hook", json={"ok": True})
        result = run_flow(f"""
            actions:
              call:
                type: Http
                inputs: {{method: POST, uri: "{api.url}/hook", body: {{a: 1}}}}
              own:
                type: Http
                runAfter: {{call: [Succeeded]}}
                inputs: {{method: POST, uri: "{api.url}/hook", headers: {{TraceParent: "{REMOTE}"}}}}
            """)
    assert result.status == "Succeeded"
    [call] = spans.named("call")
    sent, own = api.requests
    assert sent.header("traceparent") == traceparent(call)
    assert own.header("traceparent") == REMOTE  # a flow that sets its own keeps it


def test_a_stored_traceparent_becomes_the_parent_of_the_runs_span(tmp_path, flow_file):
    path = flow_file(TREE)
    with traced() as spans:
        engine = Engine(tmp_path / "state.db")
        try:
            flow = engine.load(path)
            run_id = engine.start(flow, trace={"traceparent": REMOTE, "tracestate": "a=b"})
            anyio.run(engine.execute, run_id, flow)
        finally:
            engine.close()
    [run] = spans.runs()
    assert trace_id(run) == REMOTE.split("-")[1] and f"{run.parent.span_id:016x}" == REMOTE.split("-")[2]
    assert run.parent.is_remote and run.context.trace_state.to_header() == "a=b"


def test_a_resumed_run_continues_the_trace_of_its_first_execution(tmp_path, flow_file):
    calls: list = []
    release = threading.Event()

    def slow(req):
        calls.append(req)
        if len(calls) == 1:
            release.wait(20)
        return 200, {}, b"ok"

    with Recorder() as api, traced() as spans:
        api.route("GET", "/slow", handler=slow)
        path = flow_file(f"""
            actions:
              call: {{type: Http, inputs: {{method: GET, uri: "{api.url}/slow"}}}}
              after: {{type: Compose, inputs: done, runAfter: {{call: [Succeeded]}}}}
            """)
        first = Engine(tmp_path / "state.db")

        async def interrupted() -> str:
            flow = first.load(path)
            run_id = first.start(flow)
            async with anyio.create_task_group() as tg:
                tg.start_soon(first.execute, run_id, flow)
                while not calls:
                    await anyio.sleep(0.005)
                first.stopping = True  # as a shutdown: the run stays unfinished
                tg.cancel_scope.cancel()
            return run_id

        try:
            run_id = anyio.run(interrupted)
        finally:
            release.set()
            first.close()
        second = Engine(tmp_path / "state.db")
        try:
            assert anyio.run(second.resume, run_id).status == "Succeeded"
            stored = second.result(run_id).trace
            second_json = second.result(run_id).to_json(steps=False)
        finally:
            second.close()
    one, two = spans.runs()
    assert one.attributes["flowrun.status"] == "Interrupted" and two.attributes["flowrun.status"] == "Succeeded"
    assert trace_id(two) == trace_id(one) and two.parent.span_id == one.context.span_id
    assert stored == {"traceparent": traceparent(one)}
    assert second_json["traceparent"] == traceparent(one)  # `flowrun show --json` names it
    assert [s.name for s in spans.children(two)] == ["call", "after"]


def test_log_records_made_while_a_run_is_traced_carry_its_trace_and_span_ids(run_flow):
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler, logger = Keep(), logging.getLogger("flowrun.run")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        with Recorder() as api, traced() as spans:
            api.route("GET", "/flaky", status=503, times=1)
            api.route("GET", "/flaky", body="ok")
            run_flow(f"""
                actions:
                  call:
                    type: Http
                    inputs: {{method: GET, uri: "{api.url}/flaky"}}
                    retryPolicy: {{type: fixed, count: 1, interval: PT0S}}
                """)
        untraced = logging.getLogger("flowrun.run").makeRecord("flowrun.run", logging.INFO, __file__, 1, "x", (), None)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    [run] = spans.runs()
    [retrying] = [r for r in records if "retrying" in r.getMessage()]
    assert (retrying.trace_id, retrying.span_id) == (trace_id(run), span_id(run))
    assert not hasattr(untraced, "trace_id")


def test_the_json_log_line_carries_the_trace_and_span_ids():
    from engine.listener.logs import JsonFormatter

    record = logging.LogRecord("flowrun.run", logging.INFO, __file__, 1, "hello", (), None)
    record.trace_id, record.span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    line = json.loads(JsonFormatter().format(record))
    assert (line["trace_id"], line["span_id"]) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")


@pytest.mark.parametrize("headers, expected", [
    ({"traceparent": REMOTE}, {"traceparent": REMOTE}),
    ({"TraceParent": f" {REMOTE} ", "TRACESTATE": "a=1,b=2"}, {"traceparent": REMOTE, "tracestate": "a=1,b=2"}),
    ([("traceparent", REMOTE.encode())], {"traceparent": REMOTE}),  # Kafka: (name, bytes) pairs
    ({"traceparent": {"DataType": "String", "StringValue": REMOTE}}, {"traceparent": REMOTE}),  # an SQS attribute
    ({"traceparent": REMOTE, "tracestate": "x" * 513}, {"traceparent": REMOTE}),  # too long: dropped
    ({"traceparent": REMOTE, "tracestate": "a=\x00"}, {"traceparent": REMOTE}),
    ({"traceparent": REMOTE.upper()}, None),
    ({"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}, None),  # all-zero trace id
    ({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01"}, None),
    ({"traceparent": "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, None),
    ({"traceparent": REMOTE + "-extra"}, None),  # version 00 has exactly four fields
    ({"traceparent": "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later"},
     {"traceparent": "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}),
    ({"traceparent": "{{ 7 * 7 }}"}, None),
    ({"traceparent": 7}, None), ({}, None), (None, None), ("traceparent", None), ([("a",)], None),
])
def test_an_incoming_trace_context_is_read_from_any_headers_and_a_malformed_one_is_ignored(headers, expected):
    assert telemetry.carrier(headers) == expected


from hypothesis import given, strategies as st  # noqa: E402


@given(st.dictionaries(st.sampled_from(["traceparent", "TraceParent", "tracestate", "other"]),
                       st.one_of(st.text(max_size=80), st.binary(max_size=80), st.integers(), st.none())))
def test_any_headers_give_a_valid_carrier_or_none_never_an_error(headers):
    got = telemetry.carrier(headers)
    assert got is None or (set(got) <= {"traceparent", "tracestate"} and telemetry.carrier(got) == got)


def _python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**base, **(env or {})})


def test_importing_the_engine_the_listener_and_the_nodes_imports_no_opentelemetry():
    proc = _python("""
        import sys
        import engine, engine.api, engine.cli, engine.executor, engine.telemetry, engine.listener.app
        import nodes.http, nodes.kafka, nodes.aws, nodes.twilio, nodes.salesforce
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_without_otel_configuration_a_run_is_not_traced_and_opentelemetry_is_never_imported(tmp_path):
    (tmp_path / "flow.yaml").write_text(TREE)
    proc = _python(f"""
        import sys
        import engine
        from engine import telemetry
        result = engine.run_file({str(tmp_path / 'flow.yaml')!r}, state={str(tmp_path / 'state.db')!r})
        print(result.status, telemetry.active(), sorted(m for m in sys.modules if m.startswith("opentelemetry")),
              result.trace)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["Succeeded", "None", "[]", "None"]


@pytest.mark.parametrize("env", [{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SDK_DISABLED": "true"},
                                 {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_TRACES_EXPORTER": "none"},
                                 {"OTEL_SERVICE_NAME": "x"}, {}])
def test_otel_variables_that_ask_for_no_traces_give_none(env):
    assert telemetry._wants_tracing(env) is None


def test_the_endpoint_variables_or_an_exporter_name_ask_for_traces():
    assert telemetry._wants_tracing({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) == "otlp"
    assert telemetry._wants_tracing({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}) == "otlp"
    assert telemetry._wants_tracing({"OTEL_TRACES_EXPORTER": "otlp"}) == "otlp"
    assert telemetry._wants_tracing({"OTEL_TRACES_EXPORTER": "console"}) == "console"


def test_with_an_otlp_endpoint_flowrun_run_posts_its_spans_to_the_collector(tmp_path):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    (tmp_path / "flow.yaml").write_text(TREE)
    with Recorder() as collector:
        collector.route("POST", "/v1/traces", body=b"")
        base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        proc = subprocess.run([sys.executable, "-m", "engine.cli", "--state", str(tmp_path / "state.db"), "run",
                               str(tmp_path / "flow.yaml")], cwd=ROOT, capture_output=True, text=True, timeout=120,
                              env={**base, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
                                   "OTEL_SERVICE_NAME": "orders-svc"})
        assert proc.returncode == 0, proc.stderr
        posts = [r for r in collector.requests if r.path == "/v1/traces"]
    assert posts and all(r.header("content-type") == "application/x-protobuf" for r in posts)
    spans, services = [], set()
    for post in posts:
        request = ExportTraceServiceRequest.FromString(post.body)
        for rs in request.resource_spans:
            services |= {a.value.string_value for a in rs.resource.attributes if a.key == "service.name"}
            spans += [s.name for ss in rs.scope_spans for s in ss.spans]
    assert services == {"orders-svc"}
    assert sorted(spans) == sorted(["run flow", "first", "group", "inner", "loop", "each", "each"])


OTLP_TOKEN = 'otlp"to\\ken+/='  # quotes, a backslash, base64- and URL-hostile characters


@pytest.mark.parametrize("variable, value", [
    ("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization: Bearer {OTLP_TOKEN}"),  # a colon: the SDK logs it whole
    ("OTEL_EXPORTER_OTLP_HEADERS", f"x-tenant=acme,api-key={OTLP_TOKEN} ,bad header {OTLP_TOKEN}"),
    ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", f"authorization=Bearer%20{quote(OTLP_TOKEN, safe='')},x=y z {OTLP_TOKEN}"),
])
def test_the_exporters_credentials_from_otel_headers_reach_no_output_in_any_form(tmp_path, variable, value):
    """OpenTelemetry logs a header of OTEL_EXPORTER_OTLP_HEADERS it cannot parse as it is, value
    and all: the values of those variables are secrets of the process like a connection's."""
    from engine.vendor import secret_forms

    (tmp_path / "flow.yaml").write_text(TREE)
    with Recorder() as collector:
        collector.route("POST", "/v1/traces", body=b"")
        base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        proc = subprocess.run([sys.executable, "-m", "engine.cli", "--state", str(tmp_path / "state.db"), "run",
                               str(tmp_path / "flow.yaml")], cwd=ROOT, capture_output=True, text=True, timeout=120,
                              env={**base, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, variable: value})
    assert proc.returncode == 0, proc.stderr
    assert "Header format invalid" in proc.stderr  # the SDK did log the header it could not parse
    out = proc.stdout + proc.stderr
    assert not [f for f in secret_forms(OTLP_TOKEN) if f in out]


def test_asking_for_traces_without_the_otel_extra_warns_once_and_runs_untraced(tmp_path):
    (tmp_path / "flow.yaml").write_text(TREE)
    proc = _python(f"""
        import sys
        sys.modules["opentelemetry"] = None  # as if flowrun[otel] were not installed
        import engine
        result = engine.run_file({str(tmp_path / 'flow.yaml')!r}, state={str(tmp_path / 'state.db')!r})
        print(result.status)
    """, env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["Succeeded"]
    assert proc.stderr.count("pip install 'flowrun[otel]'") == 1


def test_serves_json_log_carries_an_exporters_warning_as_a_json_line():
    import io

    from engine.listener import logs

    stream = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("opentelemetry", "flowrun", "uvicorn", "uvicorn.error", "uvicorn.access")]
    saved = [(lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in loggers]
    try:
        logs.configure(lambda s: s, "info", stream)
        logging.getLogger("opentelemetry.exporter.otlp").warning("Transient error %s", "refused")
        logging.getLogger("opentelemetry.exporter.otlp").info("chatter")
    finally:
        for lg, (handlers, level, propagate, disabled) in zip(loggers, saved):
            lg.handlers[:], lg.propagate, lg.disabled = handlers, propagate, disabled
            lg.setLevel(level)
    [line] = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert (line["level"], line["logger"], line["msg"]) == ("warning", "opentelemetry.exporter.otlp",
                                                            "Transient error refused")


def test_after_kill_9_flowrun_resume_continues_the_trace_the_killed_process_stored(tmp_path):
    import signal
    import sqlite3

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from tests.support.waiting import wait_until

    release, calls = threading.Event(), []

    def slow(req):
        calls.append(req)
        if len(calls) == 1:
            release.wait(60)
        return 200, {}, b"ok"

    state = tmp_path / "state.db"
    with Recorder() as api, Recorder() as collector:
        api.route("GET", "/slow", handler=slow)
        collector.route("POST", "/v1/traces", body=b"")
        (tmp_path / "flow.yaml").write_text(textwrap.dedent(f"""
            actions:
              first: {{type: Compose, inputs: 1}}
              call: {{type: Http, runAfter: {{first: [Succeeded]}}, inputs: {{method: GET, uri: "{api.url}/slow"}}}}
            """))
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
               "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url}
        cli = [sys.executable, "-m", "engine.cli", "--state", str(state)]
        proc = subprocess.Popen([*cli, "run", str(tmp_path / "flow.yaml")], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: calls, "the Http action in flight")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            release.set()
        with sqlite3.connect(state) as db:
            run_id, stored = db.execute("SELECT id, trace FROM runs").fetchone()
        stored = json.loads(stored)["traceparent"]
        resumed = subprocess.run([*cli, "resume", run_id], cwd=ROOT, env=env, capture_output=True, text=True,
                                 timeout=120)
        assert resumed.returncode == 0, resumed.stderr
        spans = [s for post in collector.requests if post.path == "/v1/traces"
                 for rs in ExportTraceServiceRequest.FromString(post.body).resource_spans
                 for ss in rs.scope_spans for s in ss.spans]
    [run] = [s for s in spans if s.name == "run flow"]
    _, trace, parent, _ = stored.split("-")
    assert (run.trace_id.hex(), run.parent_span_id.hex()) == (trace, parent)
    assert [s.name for s in spans if s.parent_span_id == run.span_id] == ["call"]  # `first` was reused


@pytest.mark.parametrize("state, kept", [
    ("vendor=1", True), ("a=1,b=2", True), ("t@sys=v", True), (" a=1 , b=2 ", True),
    ("not valid !!", False), ("A=1", False), ("a=", False), ("a=1=2", False), ("a=1," * 33, False),
    ("a=" + "x" * 257, False), ("a=1\tb", False), ("a=\x7f", False), ("," * 10, False),
])
def test_a_tracestate_that_is_not_w3c_is_dropped_and_the_traceparent_kept(state, kept):
    got = telemetry.carrier({"traceparent": REMOTE, "tracestate": state})
    assert got == ({"traceparent": REMOTE, "tracestate": state.strip()} if kept else {"traceparent": REMOTE})


def test_a_tracestate_holding_a_secret_the_process_knows_is_dropped():
    from engine.connections import Redactor

    redact = Redactor()
    redact.add('s3cr"et\\val')
    state = 'vendor=s3cr"et\\val'
    assert telemetry.carrier({"traceparent": REMOTE, "tracestate": state}, redact=redact) == {"traceparent": REMOTE}
    assert telemetry.carrier({"traceparent": REMOTE, "tracestate": "vendor=1"}, redact=redact)["tracestate"] == "vendor=1"


@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x7f), max_size=600))
def test_every_tracestate_kept_is_one_opentelemetry_reads_without_a_warning(state):
    import logging

    from opentelemetry import propagate, trace

    got = telemetry.carrier({"traceparent": REMOTE, "tracestate": state})
    if "tracestate" not in (got or {}):
        return
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("opentelemetry").addHandler(handler)
    try:
        span = trace.get_current_span(propagate.extract(got))
    finally:
        logging.getLogger("opentelemetry").removeHandler(handler)
    assert records == [] and len(span.get_span_context().trace_state) >= 1
