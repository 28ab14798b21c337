"""appsetting() never writes a secret in clear: a setting whose name says it is a secret (the
rule of ``engine.connections.secret_setting``) or an environment variable a connection reads
is masked in the state DB, the logs and every CLI output, in YAML flows (Jinja and ``@``) and
in Standard definitions (local.settings.json or the environment) alike, whatever characters
the value holds and however WDL re-encodes it (base64, JSON, URI)."""
from __future__ import annotations

import base64
import json
import logging
import textwrap
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner

from engine.cli import main

SECRETS = ['k3y"with\\quote\'s', "back\\\\slash\\\"and+/=%", "пароль\"\\€ key"]


def forms(value: str) -> set[str]:
    """The value as it could appear in text: as is, JSON-escaped (once, twice), URL-encoded, base64."""
    once = json.dumps(value)[1:-1]
    return {value, once, json.dumps(once)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
            quote(value, safe=""), base64.b64encode(value.encode()).decode()}


def surfaces(tmp_path: Path, flow: Path, caplog) -> tuple[dict, dict]:
    """Every place a run leaves text: run/show (plain and --json), runs, the logs, the DB bytes."""
    state, runner, out = tmp_path / "s.db", CliRunner(), {}
    caplog.set_level(logging.DEBUG)

    def cli(name, *args):
        got = runner.invoke(main, ["--state", str(state), *args])
        out[name + " stdout"], out[name + " stderr"] = got.stdout, got.stderr
        return got

    first = cli("run --json", "run", str(flow), "--json")
    shown = json.loads(first.stdout)
    cli("run", "run", str(flow))
    cli("show", "show", shown["run_id"])
    shown = json.loads(cli("show --json", "show", shown["run_id"], "--json").stdout)
    cli("runs", "runs")
    out["logs"] = "\n".join(r.getMessage() for r in caplog.records)
    raw = b"".join(p.read_bytes() for p in tmp_path.rglob("s.db*") if p.is_file())
    out["state DB"] = raw.decode("utf-8", "replace")
    return out, shown


def leaked(out: dict, value: str) -> dict:
    found = {name: sorted(f for f in forms(value) if f in text) for name, text in out.items()}
    return {k: v for k, v in found.items() if v}


@pytest.mark.parametrize("secret", SECRETS, ids=range(len(SECRETS)))
def test_a_yaml_flow_reading_secret_settings_stores_and_prints_them_masked(tmp_path, monkeypatch, caplog, secret):
    monkeypatch.setenv("PARTNER_API_KEY", secret)  # a name that says it is a secret
    monkeypatch.setenv("UPSTREAM_CRED_H11C", secret + "-conn")  # a name that does not: a connection reads it
    (tmp_path / "connections.yaml").write_text(json.dumps({"connections": {"upstream": {
        "kind": "http", "settings": {"base_url": "http://127.0.0.1:9", "auth": "bearer"},
        "secrets": {"token": "UPSTREAM_CRED_H11C"}}}}))
    flow = tmp_path / "flow.yaml"
    flow.write_text(textwrap.dedent("""
        name: settings
        actions:
          jinja: {type: Compose, inputs: {plain: "{{ appsetting('PARTNER_API_KEY') }}",
                                          b64: "{{ appsetting('PARTNER_API_KEY') | b64encode }}",
                                          conn: "{{ appsetting('UPSTREAM_CRED_H11C') }}"}}
          wdl: {type: Compose, inputs: {plain: "@appsetting('PARTNER_API_KEY')",
                                        b64: "@base64(appsetting('PARTNER_API_KEY'))",
                                        json: "@string(createArray(appsetting('PARTNER_API_KEY')))",
                                        uri: "@uriComponent(appsetting('PARTNER_API_KEY'))",
                                        conn: "@{appsetting('UPSTREAM_CRED_H11C')}"}}
          fails: {type: Compose, runAfter: {wdl: [Succeeded]}, inputs: "@int(appsetting('PARTNER_API_KEY'))"}
        outputs:
          seen: {value: "@outputs('wdl')"}
    """))
    out, shown = surfaces(tmp_path, flow, caplog)
    steps = {s["path"]: s for s in shown["steps"]}
    assert steps["wdl"]["status"] == "Succeeded" and steps["fails"]["status"] == "Failed"
    assert steps["wdl"]["outputs"]["plain"] == "***" and steps["jinja"]["outputs"]["conn"] == "***"
    assert leaked(out, secret) == {} and leaked(out, secret + "-conn") == {}


def test_a_setting_with_a_plain_name_is_an_ordinary_value(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("REGION_NAME_H11C", "west-europe")
    flow = tmp_path / "flow.yaml"
    flow.write_text("name: plain\nactions:\n  region: {type: Compose, inputs: \"@appsetting('REGION_NAME_H11C')\"}\n")
    _, shown = surfaces(tmp_path, flow, caplog)
    assert shown["steps"][0]["outputs"] == "west-europe"


@pytest.mark.parametrize("secret", SECRETS, ids=range(len(SECRETS)))
def test_a_standard_definition_reading_local_settings_stores_them_masked(tmp_path, caplog, secret):
    app = tmp_path / "app"
    (app / "wf").mkdir(parents=True)
    (app / "host.json").write_text("{}")
    (app / "local.settings.json").write_text(json.dumps({"Values": {"Storage_ConnectionString": secret,
                                                                     "Greeting": "hello"}}))
    (app / "parameters.json").write_text(json.dumps({"conn": {"type": "String",
                                                              "value": "@appsetting('Storage_ConnectionString')"}}))
    flow = app / "wf" / "workflow.json"
    flow.write_text(json.dumps({"kind": "Stateful", "definition": {
        "$schema": "https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#",
        "triggers": {}, "actions": {
            "read": {"type": "Compose", "runAfter": {}, "inputs": {
                "direct": "@appsetting('Storage_ConnectionString')", "param": "@parameters('conn')",
                "b64": "@{base64(appsetting('Storage_ConnectionString'))}", "hello": "@appsetting('Greeting')"}}}}}))
    out, shown = surfaces(tmp_path, flow, caplog)
    step = shown["steps"][0]
    assert step["status"] == "Succeeded" and step["outputs"]["hello"] == "hello"
    assert step["outputs"]["direct"] == step["outputs"]["param"] == "***"
    assert leaked(out, secret) == {}
