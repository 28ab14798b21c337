"""Connections: secrets only from the environment, checked before a run, never stored or logged."""
import base64
import logging

import pytest

import engine
from engine.connections import Connections
from engine.errors import FlowError
from engine.registry import default_registry

SECRET = "sk_live_9f8e7d6c5b4a39281706"
CONNECTIONS = """
    connections:
      api:
        kind: http
        settings: {auth: basic, username: flow}
        secrets: {password: API_PASSWORD}
"""


def test_a_missing_environment_variable_is_reported_before_the_run_starts(run_flow, recorder, monkeypatch):
    monkeypatch.delenv("API_PASSWORD", raising=False)
    with pytest.raises(engine.FlowrunError) as info:
        run_flow(f"""
            actions:
              call: {{type: Http, inputs: {{method: GET, uri: "{recorder.url}/x"}}, connection: api}}
        """, connections=CONNECTIONS)
    assert str(info.value) == "connection 'api': environment variable API_PASSWORD (for 'password') is not set"
    assert recorder.requests == []


def test_a_literal_secret_in_the_connections_file_is_refused(tmp_path):
    path = tmp_path / "connections.yaml"
    path.write_text("connections:\n  api:\n    kind: http\n    settings: {auth: basic, password: hunter2}\n")
    with pytest.raises(FlowError) as info:
        Connections.load(path, default_registry())
    assert str(info.value.problems[0]).startswith(f"{path}:4:")
    assert "'password' is a secret: reference an environment variable" in str(info.value)


@pytest.mark.parametrize("text, expected", [
    ("connections:\n  x: {kind: htp}\n", "unknown connection kind 'htp' (did you mean 'http'?)"),
    ("connections:\n  x: {kind: http, secrets: {pasword: ENV}}\n", "'pasword' is not a secret of kind 'http'"),
    ("connections:\n  x: {kind: http, settings: {auth: magic}}\n", "'magic' is not one of"),
    ("connections:\n  x: {kind: http, endpoint: http://x, extra: 1}\n", "unknown key 'extra'"),
])
def test_connection_file_problems(tmp_path, text, expected):
    path = tmp_path / "connections.yaml"
    path.write_text(text)
    with pytest.raises(FlowError) as info:
        Connections.load(path, default_registry())
    assert expected in str(info.value)


def test_secrets_never_reach_the_state_database_or_the_logs(run_flow, recorder, monkeypatch, tmp_path, caplog):
    """The server echoes what it received, and an action fails quoting the secret: still nothing leaks."""
    monkeypatch.setenv("API_PASSWORD", SECRET)
    recorder.route("GET", "/echo", handler=lambda req: (
        200, {"Content-Type": "application/json", "X-Seen": req.header("authorization")},
        b'{"auth": "%s"}' % req.header("authorization").encode()))
    recorder.route("GET", "/fail", handler=lambda req: (
        401, {"Content-Type": "text/plain"}, f"bad credentials {SECRET} for {req.header('authorization')}".encode()))
    caplog.set_level(logging.DEBUG)
    result = run_flow(f"""
        actions:
          echo: {{type: Http, inputs: {{method: GET, uri: "{recorder.url}/echo"}}, connection: api}}
          fail: {{type: Http, inputs: {{method: GET, uri: "{recorder.url}/fail"}}, connection: api,
                  retryPolicy: {{type: none}}}}
    """, connections=CONNECTIONS)
    token = base64.b64encode(f"flow:{SECRET}".encode()).decode()
    assert recorder.requests[0].header("authorization") == f"Basic {token}"  # the vendor did get it
    assert result.steps["fail"].status == "Failed"
    assert "***" in result.steps["fail"].error["message"]
    raw = (tmp_path / "state.db").read_bytes()
    for wal in tmp_path.glob("state.db*"):
        raw += wal.read_bytes()
    for form in (SECRET, base64.b64encode(SECRET.encode()).decode(), token):
        assert form.encode() not in raw
        assert form not in caplog.text
    assert SECRET not in str(result.steps["echo"].outputs)


def test_secrets_with_json_special_characters_are_redacted_too(tmp_path):
    from engine.connections import Redactor
    from engine.store import Store

    secret = 'pa"ss\\w0rd!xyz'
    redactor = Redactor()
    redactor.add(secret)
    store = Store(tmp_path / "s.db", redact=redactor)
    assert store.encode({"error": f"boom {secret}"}) == '{"error":"boom ***"}'


def test_expressions_cannot_read_secrets(run_flow, monkeypatch):
    monkeypatch.setenv("API_PASSWORD", SECRET)
    result = run_flow("""
        actions:
          peek: {type: Compose, inputs: "{{ workflow() }} {{ trigger() }}"}
    """, connections=CONNECTIONS)
    assert SECRET not in str(result.steps["peek"].outputs)


@pytest.mark.parametrize("secret", ['ca"pp\'se\\cr/+%ü-value>>>???~~~', "\u00ff\u00fe?>?>\u00fb" * 3, SECRET])
def test_a_secret_in_base64url_without_padding_is_redacted_alone_or_inside_a_jwt_part(secret):
    """JWTs and JWKs carry values base64url-encoded with no padding (``-``/``_`` for ``+``/``/``):
    a secret in such a form, on its own or at any offset inside a larger encoded blob (a JWT's
    payload holding it as a claim), is masked like its standard base64."""
    import json as json_

    from engine.connections import Redactor

    redactor = Redactor()
    redactor.add(secret)
    raw = secret.encode()
    alone = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert redactor(f"k={alone}") == "k=***" or secret.isascii() and alone == base64.b64encode(raw).decode()
    for prefix in ("", "x", "xy"):
        blob = base64.urlsafe_b64encode(json_.dumps({"c": prefix + secret}, ensure_ascii=False).encode())
        text = blob.decode().rstrip("=")
        assert redactor(text) != text, (prefix, text)
