"""A Logic Apps definition served as Logic Apps serves it: each Request trigger on a signed
callback URL (``sig`` with ``sp`` and ``sv``); a missing sig is 401, a wrong one 403, and
nothing starts. A flow that checks an API key itself sees the real header; nothing persisted
or answered holds it."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from engine import sas
from tests.listener.inprocess import serving, wait_for

SCHEMA = "https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#"
API_KEY = "Key-With\"Quote\\And-0xC0FFEE"


def write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


@pytest.fixture
def app(tmp_path):
    folder = tmp_path / "app"
    write(folder / "host.json", {"version": "2.0"})
    write(folder / "connections.json", {})
    (folder / "connections.yaml").write_text("connections: {}\n")
    write(folder / "greet" / "workflow.json", {"kind": "Stateful", "definition": {
        "$schema": SCHEMA, "contentVersion": "1.0.0.0",
        "triggers": {"manual": {"type": "Request", "kind": "Http",
                                "inputs": {"method": "POST", "schema": {"type": "object"}}}},
        "actions": {
            "Table": {"type": "Table", "runAfter": {},
                      "inputs": {"format": "CSV", "from": [{"ID": 0, "Product_Name": "Apples"},
                                                           {"ID": 1, "Product_Name": "Oranges, sweet"}]}},
            "Response": {"type": "Response", "kind": "Http", "runAfter": {"Table": ["Succeeded"]},
                         "inputs": {"statusCode": 201, "headers": {"Content-Type": "text/plain"},
                                    "body": "done"}}}}})
    key = "{{ triggerOutputs().headers['x-api-key'] }}"
    (folder / "keyed.yaml").write_text(yaml.safe_dump({
        "name": "keyed",
        "triggers": {"manual": {"type": "Request", "auth": {"type": "sas"}}},
        "actions": {"check": {
            "type": "If", "expression": "{{ triggerOutputs().headers['x-api-key'] == %s }}" % json.dumps(API_KEY),
            "actions": {"echo": {"type": "Compose", "inputs": key},
                        "ok": {"type": "Response", "runAfter": {"echo": ["Succeeded"]},
                               "inputs": {"statusCode": 200, "body": {"seen": "{{ outputs('echo') }}"}}}},
            "else": {"actions": {"no": {"type": "Response", "inputs": {"statusCode": 401,
                                                                         "body": {"error": "bad key"}}}}}}}}))
    return folder


def path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def count_runs(state: Path, flow: str) -> int:
    with sqlite3.connect(state) as con:
        return con.execute("SELECT count(*) FROM runs WHERE flow = ?", (flow,)).fetchone()[0]


def test_a_served_definition_answers_on_its_signed_callback_url(app, tmp_path):
    state = tmp_path / "s.db"
    with serving(app, state=state, base_url="https://flows.example") as served:
        entry = served.listener.table.request("greet", "manual")
        url = entry.callback_url("https://flows.example")
        assert served.listener.table.flows["greet"].callback_url == url  # listCallbackUrl()
        query = parse_qs(urlsplit(url).query)
        assert urlsplit(url).path == "/flows/greet/triggers/manual/invoke"
        assert query["api-version"] == [sas.API_VERSION] and query["sp"] == ["/triggers/manual/run"]
        assert query["sv"] == ["1.0"] and len(query["sig"][0]) == 43
        assert any(url in r["msg"] for r in served.records.events("callback_url"))
        ok = served.client.post(path_and_query(url), json={"x": 1})
        assert ok.status_code == 201 and ok.text == "done"
        run = served.runs("greet")[-1]
        assert run["status"] == "Succeeded"
        assert query["sig"][0] not in json.dumps(run)  # the sig is masked in the stored request

        missing = served.client.post("/flows/greet/triggers/manual/invoke?api-version=2022-05-01", json={})
        forged = served.client.post(path_and_query(url)[:-2] + "xx", json={})
        other_sp = served.client.post(path_and_query(url).replace("%2Frun", "%2Fread"), json={})
        assert missing.status_code == 401 and forged.status_code == 403 and other_sp.status_code == 403
        assert count_runs(state, "greet") == 1


def test_the_signature_depends_on_the_key_flow_and_trigger(monkeypatch):
    base = sas.signature(b"k", "greet", "manual", "/triggers/manual/run")
    assert base != sas.signature(b"k2", "greet", "manual", "/triggers/manual/run")
    assert base != sas.signature(b"k", "other", "manual", "/triggers/manual/run")
    assert base != sas.signature(b"k", "greet", "manual2", "/triggers/manual/run")
    monkeypatch.setenv(sas.ENV, "from-the-environment")
    assert sas.key(None) == b"from-the-environment"


def test_the_key_from_the_environment_makes_urls_every_server_accepts(app, tmp_path, monkeypatch):
    monkeypatch.setenv(sas.ENV, "shared-Key-123")
    url = sas.callback_url(b"shared-Key-123", "", "greet", "manual")
    with serving(app, state=tmp_path / "s.db") as served:
        assert served.client.post(url, json={}).status_code == 201


def test_a_flow_checking_an_api_key_itself_sees_it_and_nothing_persisted_holds_it(app, tmp_path):
    state = tmp_path / "s.db"
    with serving(app, state=state) as served:
        url = path_and_query(served.listener.table.request("keyed", "manual").callback_url(""))
        good = served.client.post(url, json={}, headers={"x-api-key": API_KEY})
        bad = served.client.post(url, json={}, headers={"x-api-key": "wrong-key-value"})
        assert bad.status_code == 401
        assert good.status_code == 200
        assert good.json() == {"seen": "***"}  # outputs are scrubbed like every secret's
        wait_for(lambda: all(r["status"] == "Succeeded" for r in served.runs("keyed")) and len(served.runs("keyed")) == 2)
    # the flow file compares with the key (a real one reads it from a setting): the stored
    # definition holds it; nothing about the runs does
    with sqlite3.connect(state) as con:
        stored = json.dumps([list(map(str, row)) for table in ("runs", "steps")
                             for row in con.execute(f"SELECT * FROM {table}")])
    assert stored.count('"Succeeded"') >= 2
    for form in (API_KEY, json.dumps(API_KEY)[1:-1], json.dumps(json.dumps(API_KEY)[1:-1])[1:-1]):
        assert form not in stored
    assert "wrong-key-value" not in stored


def test_list_callback_url_returns_the_triggers_signed_url(tmp_path):
    folder = tmp_path / "app"
    write(folder / "host.json", {})
    (folder / "connections.yaml").write_text("connections: {}\n")
    write(folder / "whoami" / "workflow.json", {"kind": "Stateful", "definition": {
        "$schema": SCHEMA, "triggers": {"manual": {"type": "Request", "kind": "Http"}},
        "actions": {"Response": {"type": "Response", "kind": "Http", "runAfter": {},
                                 "inputs": {"statusCode": 200, "body": {"url": "@listCallbackUrl()"}}}}}})
    with serving(folder, state=tmp_path / "s.db", base_url="https://hooks.example") as served:
        url = served.listener.table.request("whoami", "manual").callback_url("https://hooks.example")
        answer = served.client.post(path_and_query(url), json={})
        assert answer.status_code == 200
        # the answer passes through the redactor like every answer: the sig is not a secret of it
        assert answer.json() == {"url": url}


def test_the_openapi_document_describes_the_sas_signature(app, tmp_path):
    with serving(app, state=tmp_path / "s.db") as served:
        doc = served.client.get("/openapi.json").json()
    scheme = doc["components"]["securitySchemes"]["greet.manual"]
    assert scheme["in"] == "query" and scheme["name"] == "sig"


def test_reload_watches_the_app_folders_parameters_connections_and_settings(tmp_path):
    folder = tmp_path / "app"
    write(folder / "host.json", {})
    (folder / "connections.yaml").write_text("connections: {}\n")
    write(folder / "parameters.json", {"greeting": {"type": "String", "value": "hello"}})
    write(folder / "hi" / "workflow.json", {"kind": "Stateful", "definition": {
        "$schema": SCHEMA, "parameters": {"greeting": {"type": "String"}},
        "triggers": {"manual": {"type": "Request", "kind": "Http"}},
        "actions": {"Response": {"type": "Response", "kind": "Http", "runAfter": {},
                                 "inputs": {"statusCode": 200,
                                            "body": "@{parameters('greeting')} @{appsetting('Audience')}"}}}}})
    write(folder / "local.settings.json", {"Values": {"Audience": "world"}})
    with serving(folder, state=tmp_path / "s.db", reload=True, reload_interval=0.01) as served:
        def answer() -> str:
            url = path_and_query(served.listener.table.request("hi", "manual").callback_url(""))
            return served.client.post(url, json={}).text

        assert answer() == "hello world"
        write(folder / "parameters.json", {"greeting": {"type": "String", "value": "good morning"}})
        wait_for(lambda: answer() == "good morning world", "parameters.json to be read again")
        write(folder / "local.settings.json", {"Values": {"Audience": "everyone here"}})
        wait_for(lambda: answer() == "good morning everyone here", "local.settings.json to be read again")
        before = served.records.events("flows_reloaded")
        write(folder / "connections.json", {"managedApiConnections": {}})  # appearing counts too
        wait_for(lambda: len(served.records.events("flows_reloaded")) > len(before), "connections.json's change")
