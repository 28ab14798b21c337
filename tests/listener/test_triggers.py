"""What serving a flow checks at load time, one problem per line with file:line:column
(no server needed), and how requests become trigger outputs."""
from __future__ import annotations

import pytest

from engine.api import Engine
from engine.errors import FlowError
from engine.listener import inbound
from engine.listener.triggers import load_flow, load_folder

from .conftest import CONNECTIONS, SECRETS


@pytest.fixture
def engine(tmp_path, monkeypatch):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    (tmp_path / "connections.yaml").write_text(CONNECTIONS)
    e = Engine(tmp_path / "state.db", connections=tmp_path / "connections.yaml")
    yield e
    e.close()


def problems(engine, tmp_path, text: str) -> list[str]:
    f = tmp_path / "f.yaml"
    f.write_text(text)
    with pytest.raises(FlowError) as err:
        load_flow(engine, f)
    return [str(p).split("f.yaml:", 1)[1] for p in err.value.problems]


HEAD = "actions:\n  a: {type: Compose, inputs: 1}\ntriggers:\n  t:\n    type: Request\n"


@pytest.mark.parametrize("trigger, expected", [
    ("", ["4:3 triggers.t: 'auth' is required"]),
    ("    auth: {type: hmca}\n", ["6:18 triggers.t.auth.type: unknown auth type 'hmca' (did you mean 'hmac'?); "
                                  "known: eventgrid, hmac, key, none, sas, stripe, twilio"]),
    ("    auth: {type: key}\n", ["6:5 triggers.t.auth: auth type key needs a connection holding its secret "
                                 "(connection: NAME)"]),
    ("    auth: {type: stripe, connection: inbund}\n",
     ["6:38 triggers.t.auth.connection: unknown connection 'inbund' (did you mean 'inbound'?) in "]),
    ("    auth: {type: stripe, connection: inbound}\n",
     ["6:38 triggers.t.auth.connection: connection 'inbound' is of kind 'http', auth type stripe needs 'stripe'"]),
    ("    auth: {type: key, connection: inbound, hedaer: X-Key}\n",
     ["6:52 triggers.t.auth.hedaer: unknown option 'hedaer' for auth type key (did you mean 'header'?)"]),
    ("    auth: {type: key, connection: inbound, header: X-A, query: k}\n", None),
    ("    auth: {type: none, connection: inbound}\n",
     ["6:36 triggers.t.auth.connection: auth type none takes no connection"]),
    ("    auth: {type: none}\n    dedupe: \"{{ body('a') }}\"\n",
     ["7:13 triggers.t.dedupe: body() is not available here: dedupe reads only the request (trigger(), "
      "triggerBody(), triggerOutputs())"]),
    ("    auth: {type: none}\n    inputs: {relativePath: \"a/{x}/b/{x}\"}\n",
     ["7:28 triggers.t.inputs.relativePath: path parameters must be distinct names: x"]),
    ("    auth: {type: none}\n    inputs: {schema: {type: objekt}}\n",
     ["7:29 triggers.t.inputs.schema.type: not a valid JSON Schema: 'objekt' is not valid under any of the given "
      "schemas"]),
])
def test_trigger_problems(engine, tmp_path, trigger, expected):
    found = problems(engine, tmp_path, HEAD + trigger)
    if expected is None:
        assert len(found) == 1 and "triggers.t.auth" in found[0]
        return
    assert len(found) == len(expected), found
    for f, e in zip(found, expected):
        assert f.startswith(e), f  # a message ending in a path is compared up to it


def test_missing_secret_is_reported_before_serving(engine, tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_STRIPE_WHSEC")
    found = problems(engine, tmp_path, HEAD + "    auth: {type: stripe, connection: stripe}\n")
    assert found == ["6:38 triggers.t.auth.connection: connection 'stripe': environment variable TEST_STRIPE_WHSEC "
                     "(for 'webhook_secret') is not set"]


def test_recurrence_problems_point_at_the_field(engine, tmp_path):
    text = ("actions:\n  a: {type: Compose, inputs: 1}\ntriggers:\n  r:\n    type: Recurrence\n"
            "    recurrence:\n      frequency: Minute\n      interval: 1\n      timeZone: Mars/Base\n")
    assert problems(engine, tmp_path, text) == [
        "9:17 triggers.r.recurrence.timeZone: unknown time zone 'Mars/Base'; use a Windows id such as 'W. Europe Standard Time' or an IANA name such as Europe/Paris"]


def test_a_folder_serves_what_loads_and_reports_the_rest(engine, tmp_path):
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "good.yaml").write_text(HEAD + "    auth: {type: none}\n")
    (folder / "bad.yaml").write_text(HEAD)
    (folder / "twin.yaml").write_text("name: good\n" + HEAD + "    auth: {type: none}\n")
    table = load_folder(engine, folder)
    assert list(table.flows) == ["good"]
    assert sorted(p.rsplit("/", 1)[-1] for p in table.problems) == ["bad.yaml", "twin.yaml"]
    assert "flow name 'good' is also used by" in str(table.problems[str(folder / "twin.yaml")][0])


@pytest.mark.parametrize("body, ctype, expected", [
    (b'{"a": [1, 2]}', "application/json", {"a": [1, 2]}),
    (b'{"a": 1}', "application/cloudevents+json; charset=utf-8", {"a": 1}),
    (b"a=1&b=&a=2", "application/x-www-form-urlencoded", {"a": ["1", "2"], "b": ""}),
    (b"<x/>", "text/xml", "<x/>"),
    (b"caf\xe9", "text/plain; charset=latin-1", "caf\u00e9"),
    (b"\x89PNG", "image/png", {"$content-type": "image/png", "$content": "iVBORw=="}),
    (b"", "", None),
])
def test_bodies_as_the_flow_sees_them(body, ctype, expected):
    assert inbound.parse_body(body, {"content-type": ctype} if ctype else {}) == expected


def test_credentials_are_redacted_generically():
    headers = {"authorization": "Bearer x", "x-api-key": "k", "stripe-signature": "t=1", "cookie": "c",
               "x-hub-signature-256": "sha256=..", "idempotency-key": "i-1", "i-twilio-idempotency-token": "t-1",
               "x-github-delivery": "d-1", "content-type": "application/json"}
    out = inbound.redact_headers(headers, frozenset({"x-custom-secret"}))
    assert {k for k, v in out.items() if v == "***"} == {"authorization", "x-api-key", "stripe-signature", "cookie",
                                                         "x-hub-signature-256"}
    assert inbound.redact_url("https://h/p?code=abc&x=1&sig=zz") == "https://h/p?code=***&x=1&sig=***"


def test_importing_the_cli_and_the_listener_commands_is_cheap():
    import subprocess
    import sys

    from .conftest import ROOT

    code = ("import sys, engine.cli, engine.listener, engine.listener.commands, nodes.azure_eventgrid\n"
            "heavy = [m for m in ('starlette', 'uvicorn', 'prometheus_client', 'croniter', 'stripe', 'twilio')"
            " if m in sys.modules]\nassert not heavy, heavy")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
