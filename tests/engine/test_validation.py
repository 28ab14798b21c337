"""engine/validation.py and `flowrun validate`: every check `serve` runs, and `run --input`
checked against the trigger's schema as `serve` checks a request body."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.api import Engine
from engine.cli import main
from engine.errors import FlowError
from engine.listener.triggers import load_flow

CONNECTIONS = """
connections:
  api: {kind: http, settings: {auth: bearer}, secrets: {token: FLOWRUN_TEST_TOKEN}}
  hooks: {kind: http, settings: {auth: bearer}, secrets: {token: FLOWRUN_TEST_HOOK_SECRET}}
"""
ACTIONS = "actions:\n  a: {type: Compose, inputs: 1}\n"


def write(tmp_path: Path, text: str, name: str = "flow.yaml") -> Path:
    (tmp_path / "connections.yaml").write_text(textwrap.dedent(CONNECTIONS))
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def validate(tmp_path: Path, *args: str):
    return CliRunner().invoke(main, ["--state", str(tmp_path / "s.db"), "validate", *args], catch_exceptions=False)


# Files serve refuses though the loader alone accepts them: validate must refuse them too.
SERVE_ONLY = [
    ("triggers: {t: {type: Recurrence, recurrence: {frequency: Day, interval: 1, timeZone: Mars/Olympus}}}\n"
     + ACTIONS, "timeZone"),
    ("triggers: {t: {type: Recurrence, recurrence: {cron: '61 * * * *'}}}\n" + ACTIONS, "cron"),
    ("triggers: {t: {type: Request, auth: {type: sorcery}}}\n" + ACTIONS, "unknown auth type 'sorcery'"),
    ("triggers: {t: {type: Request, auth: {type: hmac}}}\n" + ACTIONS, "needs a connection"),
    ("triggers: {t: {type: Request, auth: {type: hmac, connection: nope}}}\n" + ACTIONS, "unknown connection 'nope'"),
    ("triggers: {t: {type: Request, auth: {type: none, connection: api}}}\n" + ACTIONS, "takes no connection"),
    ("triggers: {t: {type: Request, auth: {type: none}, dedupe: \"{{ body('a') }}\"}}\n" + ACTIONS,
     "dedupe reads only the request"),
]


@pytest.mark.parametrize("text, expected", SERVE_ONLY)
def test_validate_refuses_what_serve_refuses_at_the_same_line(tmp_path, monkeypatch, text, expected):
    monkeypatch.setenv("FLOWRUN_TEST_TOKEN", "t")
    monkeypatch.setenv("FLOWRUN_TEST_HOOK_SECRET", "s")
    path = write(tmp_path, text)
    engine = Engine(tmp_path / "serve.db")
    try:
        with pytest.raises(FlowError) as serve:
            load_flow(engine, path)
    finally:
        engine.close()
    out = validate(tmp_path, str(path))
    assert out.exit_code == 1
    assert any(expected in str(p) for p in serve.value.problems), serve.value.problems
    for problem in serve.value.problems:
        assert str(problem) in out.output


def test_a_secret_variable_not_set_is_a_warning_and_an_error_under_strict(tmp_path, monkeypatch):
    monkeypatch.delenv("FLOWRUN_TEST_TOKEN", raising=False)
    path = write(tmp_path, "actions:\n  call: {type: Http, connection: api, inputs: {method: GET, uri: /x}}\n")
    out = validate(tmp_path, str(path))
    assert out.exit_code == 0, out.output
    assert ("flow.yaml:2:34 actions.call.connection: environment variable FLOWRUN_TEST_TOKEN "
            "(secret 'token' of connection 'api') is not set here; the flow cannot run where it is not set "
            "(warning)") in out.output
    assert "1 of 1 flow file(s) valid, 1 with warnings" in out.output
    strict = validate(tmp_path, "--strict", str(path))
    assert strict.exit_code == 1 and "0 of 1 flow file(s) valid" in strict.output


def test_a_secret_of_a_trigger_auth_connection_not_set_is_a_warning_too(tmp_path, monkeypatch):
    monkeypatch.delenv("FLOWRUN_TEST_HOOK_SECRET", raising=False)
    path = write(tmp_path, "triggers: {t: {type: Request, auth: {type: hmac, connection: hooks}}}\n" + ACTIONS)
    out = validate(tmp_path, str(path))
    assert out.exit_code == 0, out.output
    assert "triggers.t.auth.connection: environment variable FLOWRUN_TEST_HOOK_SECRET" in out.output


def test_no_secret_value_is_ever_printed_by_validate(tmp_path, monkeypatch):
    secret = "s3cr\"et\\/+%é"
    monkeypatch.setenv("FLOWRUN_TEST_TOKEN", secret)
    path = write(tmp_path, "triggers: {t: {type: Request, auth: {type: sorcery, connection: api}}}\n"
                           "actions:\n  call: {type: Http, connection: api, inputs: {method: GET, uri: /x}}\n")
    out = validate(tmp_path, str(path))
    assert out.exit_code == 1 and secret not in out.output


def test_the_bundled_flows_validate_as_serve_sees_them(tmp_path):
    root = Path(__file__).parents[2]
    out = validate(tmp_path, str(root / "flows"))
    assert out.exit_code == 0, out.output


REQUEST = """
triggers:
  t:
    type: Request
    auth: {type: none}
    inputs: {schema: {type: object, required: [name], properties: {name: {type: string}}}}
actions:
  a: {type: Compose, inputs: "{{ triggerBody().name }}"}
"""


@pytest.mark.parametrize("body, ok, message", [
    ('{"name": "Ada"}', True, ""),
    ('{"name": 5}', False, "/name: 5 is not of type 'string'"),
    ('{}', False, "/: 'name' is a required property"),
    ('[1]', False, "is not of type 'object'"),
])
def test_run_input_is_checked_against_the_request_trigger_schema_as_serve_checks_it(tmp_path, body, ok, message):
    path = write(tmp_path, REQUEST)
    out = CliRunner().invoke(main, ["--state", str(tmp_path / "s.db"), "run", str(path), "--input", body],
                             catch_exceptions=False)
    if ok:
        assert out.exit_code == 0, out.output
    else:
        assert out.exit_code == 2, out.output
        assert "--input does not match the trigger's schema" in out.output and message in out.output
        assert "Traceback" not in out.output
