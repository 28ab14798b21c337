"""salesforce.* nodes and the `soql` filter, specified against a local Salesforce.

The recorder answers the SOAP/OAuth login and the REST API; the connection's endpoint
sends the real simple-salesforce SDK there. Flows run through engine.run_file.
"""
from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
from datetime import date, datetime, timezone
from urllib.parse import parse_qs

import pytest
import yaml

import engine
import nodes.salesforce as sf_nodes
from nodes.salesforce import soql, soql_like

V = "/services/data/v59.0"
USERNAME = "integration@acme.example.com"
PASSWORD = "Tr0ub4dor&3"
TOKEN = "aBcDeFgHiJkLmNoPqRsT1234"
FAST_RETRY = {"type": "fixed", "count": 2, "interval": "PT0.01S"}
ORG = "00D5e000000AbCdEAK"


def login_response(session: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><loginResponse><result><metadataServerUrl>https://acme.my.salesforce.com/services/Soap/m/59.0/{ORG}</metadataServerUrl><passwordExpired>false</passwordExpired><sandbox>false</sandbox><serverUrl>https://acme.my.salesforce.com/services/Soap/u/59.0/{ORG}</serverUrl><sessionId>{session}</sessionId><userId>0055e000001AbCdAAB</userId><userInfo><organizationId>{ORG}</organizationId><userName>{USERNAME}</userName></userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>"""


LOGIN_FAULT = """<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>sf:INVALID_LOGIN</faultcode><faultstring>INVALID_LOGIN: Invalid username, password, security token; or user locked out.</faultstring><detail><sf:LoginFault xsi:type="sf:LoginFault"><sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode><sf:exceptionMessage>Invalid username, password, security token; or user locked out.</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"""

EXPIRED = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def session(n: int) -> str:
    return f"{ORG}!AQ4AQSession{n}"


# -- harness -------------------------------------------------------------------------------

class Logins:
    """Answers SOAP logins, each with a fresh session id; counts them."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, req):
        self.count += 1
        return 200, {"Content-Type": "text/xml; charset=utf-8"}, \
            login_response(session(self.count)).encode()


@pytest.fixture
def salesforce(recorder, tmp_path, monkeypatch):
    """The recorder as login.salesforce.com + the instance, with password auth configured."""
    monkeypatch.setenv("TEST_SF_PASSWORD", PASSWORD)
    monkeypatch.setenv("TEST_SF_TOKEN", TOKEN)
    write_connections(tmp_path, recorder.url,
                      {"auth": "password", "username": USERNAME, "domain": "login",
                       "api_version": "59.0"},
                      {"password": "TEST_SF_PASSWORD", "security_token": "TEST_SF_TOKEN"})
    recorder.logins = Logins()
    recorder.route("POST", "/services/Soap/u/59.0", handler=recorder.logins)
    return recorder


def write_connections(tmp_path, endpoint: str, settings: dict, secrets: dict) -> None:
    (tmp_path / "connections.yaml").write_text(yaml.safe_dump({"connections": {"crm": {
        "kind": "salesforce", "endpoint": endpoint, "settings": settings,
        "secrets": secrets}}}))


def run(tmp_path, actions: dict, input=None):
    flow = tmp_path / "flow.yaml"
    flow.write_text(yaml.safe_dump({"triggers": {"manual": {"type": "Manual"}},
                                    "actions": actions}, sort_keys=False))
    return engine.run_file(flow, input=input, state=tmp_path / "state.db",
                           connections=tmp_path / "connections.yaml")


def action(type_: str, inputs: dict, **extra) -> dict:
    return {"type": type_, "connection": "crm", "inputs": inputs, **extra}


def api_calls(recorder) -> list:
    return [r for r in recorder.requests if r.path.startswith("/services/data/")]


def sf_error(code: str, message: str, fields: list | None = None) -> list:
    return [{"message": message, "errorCode": code, **({"fields": fields} if fields else {})}]


# -- the module ------------------------------------------------------------------------------

def test_importing_the_module_does_not_import_simple_salesforce():
    code = ("import nodes.salesforce, sys; "
            "assert 'simple_salesforce' not in sys.modules, 'simple_salesforce imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_module_declares_its_connection_nodes_and_soql_filters():
    assert [c.kind for c in sf_nodes.CONNECTIONS] == ["salesforce"]
    assert set(sf_nodes.CONNECTIONS[0].secret_names) == {
        "password", "security_token", "private_key", "consumer_secret"}
    assert {n.type for n in sf_nodes.NODES} == {
        "salesforce.Create", "salesforce.Update", "salesforce.Upsert", "salesforce.Delete",
        "salesforce.Get", "salesforce.Query", "salesforce.BulkInsert", "salesforce.BulkUpdate"}
    for node in sf_nodes.NODES:
        assert node.connection == "salesforce"
        assert node.example["type"] == node.type
    assert set(sf_nodes.FILTERS) == {"soql", "soql_like"}


def test_every_node_example_is_a_valid_action_of_the_flow_schema():
    from jsonschema import Draft202012Validator

    from engine.registry import default_registry
    from engine.schema import flow_schema

    validator = Draft202012Validator(flow_schema(default_registry()))
    for node in sf_nodes.NODES:
        errors = list(validator.iter_errors({"actions": {"example": node.example}}))
        assert errors == [], (node.type, [e.message for e in errors])


# -- SOQL quoting ----------------------------------------------------------------------------

@pytest.mark.parametrize("value, literal", [
    ("jenny@example.com", "'jenny@example.com'"),
    ("x' OR Name != '", r"'x\' OR Name != \''"),
    ("O'Brien", r"'O\'Brien'"),
    ("back\\slash", r"'back\\slash'"),
    ("x\\' OR Id != null OR Name = '", r"'x\\\' OR Id != null OR Name = \''"),
    ('say "hi"', r"""'say \"hi\"'"""),
    ("two\nlines\r\tand\b\f", r"'two\nlines\r\tand\b\f'"),
    ("100%_sure", "'100%_sure'"),  # wildcards are only special in LIKE
    (None, "null"),
    (True, "true"),
    (False, "false"),
    (42, "42"),
    (-3.5, "-3.5"),
    (["a", "b'c"], r"('a','b\'c')"),
    (date(2024, 2, 29), "2024-02-29"),
    (datetime(2024, 2, 29, 13, 5, 9, 123, tzinfo=timezone.utc), "2024-02-29T13:05:09Z"),
])
def test_soql_renders_a_literal_the_value_cannot_escape(value, literal):
    assert soql(value) == literal


@pytest.mark.parametrize("value, mode, pattern", [
    ("Acme", "contains", "'%Acme%'"),
    ("50%_off", "startswith", r"'50\%\_off%'"),
    ("it's", "endswith", r"'%it\'s'"),
    ("a_b", "exact", r"'a\_b'"),
])
def test_soql_like_escapes_wildcards_and_adds_the_modes_own(value, mode, pattern):
    assert soql_like(value, mode) == pattern


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [], {"a": 1}, object()])
def test_soql_refuses_values_without_a_literal(value):
    with pytest.raises(ValueError):
        soql(value)


def test_an_injection_attempt_through_a_flow_reaches_salesforce_as_one_string_literal(
        salesforce, tmp_path):
    salesforce.route("GET", f"{V}/query/", json={"totalSize": 0, "done": True, "records": []})

    result = run(tmp_path, {"find": action("salesforce.Query", {
        "soql": "SELECT Id, Name FROM Contact WHERE Email = {{ triggerBody().email | soql }}"})},
        input={"email": "x' OR Name != '"})

    assert result.status == "Succeeded", result.steps["find"].error
    [query] = api_calls(salesforce)
    assert query.query["q"] == [r"SELECT Id, Name FROM Contact WHERE Email = 'x\' OR Name != \''"]


def test_soql_like_works_in_a_flow(salesforce, tmp_path):
    salesforce.route("GET", f"{V}/query/", json={"totalSize": 0, "done": True, "records": []})

    run(tmp_path, {"find": action("salesforce.Query", {
        "soql": "SELECT Id FROM Account WHERE Name LIKE "
                "{{ triggerBody().q | soql_like('startswith') }}"})}, input={"q": "100%"})

    assert api_calls(salesforce)[0].query["q"] == [
        r"SELECT Id FROM Account WHERE Name LIKE '100\%%'"]


# -- login -------------------------------------------------------------------------------------

def test_password_login_then_bearer_session_for_every_call_of_the_run(salesforce, tmp_path):
    salesforce.route("POST", f"{V}/sobjects/Lead/", status=201,
                     json={"id": "00Q5e00000AbCdEFGH", "success": True, "errors": []})
    salesforce.route("GET", f"{V}/sobjects/Lead/00Q5e00000AbCdEFGH",
                     json={"attributes": {"type": "Lead"}, "Id": "00Q5e00000AbCdEFGH",
                           "Status": "Open - Not Contacted"})

    result = run(tmp_path, {
        "create": action("salesforce.Create", {"sobject": "Lead", "record": {
            "LastName": "Rosen", "Company": "Acme"}}),
        "get": action("salesforce.Get", {"sobject": "Lead", "id": "{{ body('create').id }}",
                                         "fields": ["Status"]},
                      runAfter={"create": ["Succeeded"]}),
    })

    assert result.status == "Succeeded"
    login, create, get = salesforce.requests
    assert login.path == "/services/Soap/u/59.0"
    assert login.header("SOAPAction") == "login"
    assert f"<n1:username>{USERNAME}</n1:username>" in login.body.decode()
    assert "<n1:password>Tr0ub4dor&amp;3" + TOKEN + "</n1:password>" in login.body.decode()
    assert salesforce.logins.count == 1  # one session per connection, shared by the run
    for call in (create, get):
        assert call.header("Authorization") == f"Bearer {session(1)}"
    assert get.query == {"fields": ["Status"]}


def test_jwt_bearer_login_signs_an_assertion_with_the_private_key(recorder, tmp_path,
                                                                  monkeypatch):
    jwt = pytest.importorskip("jwt")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    monkeypatch.setenv("TEST_SF_PRIVATE_KEY", pem)
    write_connections(tmp_path, recorder.url,
                      {"auth": "jwt", "username": USERNAME, "consumer_key": "3MVG9jwtKey"},
                      {"private_key": "TEST_SF_PRIVATE_KEY"})
    recorder.route("POST", "/services/oauth2/token", json={
        "access_token": f"{ORG}!JWTsession", "scope": "api", "token_type": "Bearer",
        "instance_url": "https://acme.my.salesforce.com",
        "id": f"https://login.salesforce.com/id/{ORG}/0055e000001AbCdAAB"})
    recorder.route("DELETE", f"{V}/sobjects/Lead/00Q5e00000AbCdEFGH", status=204)

    result = run(tmp_path, {"del": action("salesforce.Delete", {
        "sobject": "Lead", "id": "00Q5e00000AbCdEFGH"})})

    assert result.status == "Succeeded"
    assert result.steps["del"].outputs == {"id": "00Q5e00000AbCdEFGH", "deleted": True}
    token, delete = recorder.requests
    grant = parse_qs(token.body.decode())
    assert grant["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    claims = jwt.decode(grant["assertion"][0], key.public_key(), algorithms=["RS256"],
                        audience="https://login.salesforce.com")
    assert (claims["iss"], claims["sub"]) == ("3MVG9jwtKey", USERNAME)
    assert delete.header("Authorization") == f"Bearer {ORG}!JWTsession"


def test_client_credentials_login_uses_basic_auth_on_the_my_domain(recorder, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("TEST_SF_CONSUMER_SECRET", "D1F2E3secret")
    write_connections(tmp_path, recorder.url,
                      {"auth": "client_credentials", "consumer_key": "3MVG9ccKey",
                       "instance_url": "https://acme.my.salesforce.com"},
                      {"consumer_secret": "TEST_SF_CONSUMER_SECRET"})
    recorder.route("POST", "/services/oauth2/token", json={
        "access_token": f"{ORG}!CCsession", "scope": "api", "token_type": "Bearer",
        "instance_url": "https://acme.my.salesforce.com"})
    recorder.route("GET", f"{V}/query/", json={"totalSize": 0, "done": True, "records": []})

    result = run(tmp_path, {"q": action("salesforce.Query", {"soql": "SELECT Id FROM User"})})

    assert result.status == "Succeeded"
    token, query = recorder.requests
    assert parse_qs(token.body.decode()) == {"grant_type": ["client_credentials"]}
    assert token.header("Authorization") == \
        "Basic " + base64.b64encode(b"3MVG9ccKey:D1F2E3secret").decode()
    assert query.header("Authorization") == f"Bearer {ORG}!CCsession"


def test_a_refused_login_fails_the_action_without_retrying(recorder, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_SF_PASSWORD", "wrong-password")
    write_connections(tmp_path, recorder.url, {"username": USERNAME},
                      {"password": "TEST_SF_PASSWORD"})
    recorder.route("POST", "/services/Soap/u/59.0", status=500, body=LOGIN_FAULT,
                   headers={"Content-Type": "text/xml"})

    result = run(tmp_path, {"q": action("salesforce.Query", {"soql": "SELECT Id FROM User"},
                                        retryPolicy=FAST_RETRY)})

    step = result.steps["q"]
    assert (step.status, step.attempts) == ("Failed", 1)
    assert step.error["code"] == "INVALID_LOGIN"
    assert "wrong-password" not in json.dumps(step.error)
    assert len(recorder.requests) == 1


@pytest.mark.parametrize("settings, secrets, missing", [
    ({"auth": "jwt", "username": USERNAME, "consumer_key": "3MVG9jwtKey"}, {}, "private_key"),
    ({"auth": "password"}, {"password": "TEST_SF_PASSWORD"}, "username"),
    ({"auth": "client_credentials", "consumer_key": "3MVG9ccKey", "domain": "login"},
     {"consumer_secret": "TEST_SF_PASSWORD"}, "My Domain"),
])
def test_an_incomplete_connection_fails_before_any_request(recorder, tmp_path, monkeypatch,
                                                           settings, secrets, missing):
    monkeypatch.setenv("TEST_SF_PASSWORD", PASSWORD)
    write_connections(tmp_path, recorder.url, settings, secrets)

    result = run(tmp_path, {"q": action("salesforce.Query", {"soql": "SELECT Id FROM User"})})

    step = result.steps["q"]
    assert (step.status, step.attempts) == ("Failed", 1)
    assert step.error["code"] == "MissingSetting"
    assert missing in step.error["message"]
    assert recorder.requests == []


# -- expired sessions ----------------------------------------------------------------------------

def test_an_expired_session_is_rebuilt_once_and_the_call_repeated(salesforce, tmp_path):
    def contact(req):
        if req.header("Authorization") == f"Bearer {session(1)}":
            return 401, {"Content-Type": "application/json"}, json.dumps(EXPIRED).encode()
        return 204, {}, b""
    salesforce.route("PATCH", f"{V}/sobjects/Contact/0035e00000AbCdEAAV", handler=contact)

    result = run(tmp_path, {"upd": action("salesforce.Update", {
        "sobject": "Contact", "id": "0035e00000AbCdEAAV", "record": {"Title": "CTO"}})})

    step = result.steps["upd"]
    assert (step.status, step.attempts) == ("Succeeded", 1)
    assert step.outputs == {"id": "0035e00000AbCdEAAV", "success": True}
    assert salesforce.logins.count == 2
    first, second = api_calls(salesforce)
    assert first.header("Authorization") == f"Bearer {session(1)}"
    assert second.header("Authorization") == f"Bearer {session(2)}"
    assert first.json() == second.json() == {"Title": "CTO"}


def test_a_session_still_refused_after_one_rebuild_fails_the_action(salesforce, tmp_path):
    salesforce.route("GET", f"{V}/query/", status=401, json=EXPIRED)

    result = run(tmp_path, {"q": action("salesforce.Query", {"soql": "SELECT Id FROM Lead"},
                                        retryPolicy=FAST_RETRY)})

    step = result.steps["q"]
    assert (step.status, step.attempts) == ("Failed", 1)
    assert step.error["code"] == "INVALID_SESSION_ID"
    assert salesforce.logins.count == 2
    assert len(api_calls(salesforce)) == 2


# -- records -----------------------------------------------------------------------------------

RECORD_OPS = [
    # (node, inputs, method, path, status, response, expected JSON body, expected outputs)
    ("salesforce.Create", {"sobject": "Lead", "record": {"LastName": "Rosen",
                                                         "Company": "Acme"}},
     "POST", f"{V}/sobjects/Lead/", 201,
     {"id": "00Q5e00000AbCdEFGH", "success": True, "errors": []},
     {"LastName": "Rosen", "Company": "Acme"}, {"id": "00Q5e00000AbCdEFGH", "success": True}),
    ("salesforce.Update", {"sobject": "Opportunity", "id": "0065e00000AbCdEAAV",
                           "record": {"StageName": "Closed Won"}},
     "PATCH", f"{V}/sobjects/Opportunity/0065e00000AbCdEAAV", 204, None,
     {"StageName": "Closed Won"}, {"id": "0065e00000AbCdEAAV", "success": True}),
    ("salesforce.Upsert", {"sobject": "Contact", "external_id_field": "Customer_Id__c",
                           "external_id": "C-42/7", "record": {"LastName": "Rosen"}},
     "PATCH", f"{V}/sobjects/Contact/Customer_Id__c/C-42%2F7", 201,
     {"id": "0035e00000AbCdEAAV", "success": True, "errors": [], "created": True},
     {"LastName": "Rosen"}, {"id": "0035e00000AbCdEAAV", "created": True}),
    ("salesforce.Upsert", {"sobject": "Contact", "external_id_field": "Customer_Id__c",
                           "external_id": 42, "record": {"LastName": "Rosen"}},
     "PATCH", f"{V}/sobjects/Contact/Customer_Id__c/42", 200,
     {"id": "0035e00000AbCdEAAV", "success": True, "errors": [], "created": False},
     {"LastName": "Rosen"}, {"id": "0035e00000AbCdEAAV", "created": False}),
    ("salesforce.Delete", {"sobject": "Lead", "id": "00Q5e00000AbCdE"},
     "DELETE", f"{V}/sobjects/Lead/00Q5e00000AbCdE", 204, None, None,
     {"id": "00Q5e00000AbCdE", "deleted": True}),
    ("salesforce.Get", {"sobject": "Account", "id": "0015e00000XyZabAAB",
                        "fields": ["Name", "Industry"]},
     "GET", f"{V}/sobjects/Account/0015e00000XyZabAAB", 200,
     {"attributes": {"type": "Account",
                     "url": f"{V}/sobjects/Account/0015e00000XyZabAAB"},
      "Name": "Acme", "Industry": "Energy", "Id": "0015e00000XyZabAAB"},
     None, {"attributes": {"type": "Account", "url": f"{V}/sobjects/Account/0015e00000XyZabAAB"},
            "Name": "Acme", "Industry": "Energy", "Id": "0015e00000XyZabAAB"}),
]


@pytest.mark.parametrize("type_, inputs, method, path, status, response, body, outputs",
                         RECORD_OPS, ids=[f"{o[0]}-{o[4]}" for o in RECORD_OPS])
def test_record_operations(salesforce, tmp_path, type_, inputs, method, path, status,
                           response, body, outputs):
    salesforce.route(method, path, status=status, json=response)

    result = run(tmp_path, {"op": action(type_, inputs)})

    assert result.status == "Succeeded", result.steps["op"].error
    assert result.steps["op"].outputs == outputs
    [call] = api_calls(salesforce)
    assert (call.method, call.path) == (method, path)
    assert call.json() == body
    assert call.header("Authorization") == f"Bearer {session(1)}"


def test_record_ids_and_sobject_names_cannot_reach_other_paths(salesforce, tmp_path):
    result = run(tmp_path, {
        "a": action("salesforce.Get", {"sobject": "Account", "id": "{{ triggerBody().id }}"}),
        "b": action("salesforce.Delete", {"sobject": "{{ triggerBody().sobject }}",
                                          "id": "0015e00000XyZabAAB"}),
    }, input={"id": "../../limits", "sobject": "bulk/x"})

    assert result.steps["a"].error["code"] == "InvalidInputs"
    assert result.steps["b"].error["code"] == "InvalidInputs"
    assert salesforce.requests == []


# -- queries ---------------------------------------------------------------------------------

def paged_contacts(salesforce) -> None:
    def page(n: int, done: bool, ids: list[str]) -> dict:
        out = {"totalSize": 5, "done": done, "records": [
            {"attributes": {"type": "Contact", "url": f"{V}/sobjects/Contact/{i}"}, "Id": i}
            for i in ids]}
        if not done:
            out["nextRecordsUrl"] = f"{V}/query/01gD0000002HU6KIAW-{n + 2}"
        return out
    salesforce.route("GET", f"{V}/query/", json=page(0, False, ["c1", "c2"]))
    salesforce.route("GET", f"{V}/query/01gD0000002HU6KIAW-2", json=page(1, False, ["c3", "c4"]))
    salesforce.route("GET", f"{V}/query/01gD0000002HU6KIAW-3", json=page(2, True, ["c5"]))


@pytest.mark.parametrize("options, ids, paths", [
    ({}, ["c1", "c2", "c3", "c4", "c5"],
     ["/query/", "/query/01gD0000002HU6KIAW-2", "/query/01gD0000002HU6KIAW-3"]),
    ({"limit": 3}, ["c1", "c2", "c3"], ["/query/", "/query/01gD0000002HU6KIAW-2"]),
    ({"limit": 2}, ["c1", "c2"], ["/query/"]),
    ({"all": False}, ["c1", "c2"], ["/query/"]),
])
def test_query_follows_next_records_url_until_done_or_limit(salesforce, tmp_path, options,
                                                           ids, paths):
    paged_contacts(salesforce)

    result = run(tmp_path, {"q": action("salesforce.Query",
                                        {"soql": "SELECT Id FROM Contact", **options})})

    out = result.steps["q"].outputs
    assert [r["Id"] for r in out["records"]] == ids
    assert (out["totalSize"], out["returned"], out["done"]) == (5, len(ids), len(ids) == 5)
    assert [c.path[len(V):] for c in api_calls(salesforce)] == paths


def test_include_deleted_uses_query_all(salesforce, tmp_path):
    salesforce.route("GET", f"{V}/queryAll/", json={"totalSize": 1, "done": True, "records": [
        {"attributes": {"type": "Lead"}, "Id": "00Q1", "IsDeleted": True}]})

    result = run(tmp_path, {"q": action("salesforce.Query", {
        "soql": "SELECT Id, IsDeleted FROM Lead", "include_deleted": True})})

    assert result.steps["q"].outputs["records"][0]["IsDeleted"] is True


# -- errors --------------------------------------------------------------------------------------

ERRORS = [
    # (status, body, headers, expected code, retried)
    (400, sf_error("INVALID_FIELD", "\nSELECT Idx FROM Contact\n       ^\nERROR at Row:1:Column:8"
                   "\nNo such column 'Idx' on entity 'Contact'."), {}, "INVALID_FIELD", False),
    (400, sf_error("MALFORMED_QUERY", "unexpected token: OR"), {}, "MALFORMED_QUERY", False),
    (403, sf_error("INSUFFICIENT_ACCESS", "insufficient access rights on object id"), {},
     "INSUFFICIENT_ACCESS", False),
    (404, sf_error("NOT_FOUND", "The requested resource does not exist"), {}, "NOT_FOUND",
     False),
    (403, sf_error("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."), {},
     "REQUEST_LIMIT_EXCEEDED", True),
    (500, sf_error("UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this "
                   "ErrorId if you contact support: 1940307190-12345 (-1614412345)"), {},
     "UNKNOWN_EXCEPTION", True),
    (503, "<html><body>Service Unavailable</body></html>", {"Content-Type": "text/html"},
     "HTTP_503", True),
]


@pytest.mark.parametrize("status, body, headers, code, retried", ERRORS,
                         ids=[f"{e[0]}-{e[3]}" for e in ERRORS])
def test_salesforce_errors_become_step_statuses(salesforce, tmp_path, status, body, headers,
                                                code, retried):
    kw = {"json": body} if isinstance(body, list) else {"body": body}
    salesforce.route("GET", f"{V}/query/", status=status, times=1, headers=headers, **kw)
    salesforce.route("GET", f"{V}/query/", json={"totalSize": 0, "done": True, "records": []})

    result = run(tmp_path, {"q": action("salesforce.Query", {"soql": "SELECT Id FROM Contact"},
                                        retryPolicy=FAST_RETRY)})

    step = result.steps["q"]
    if retried:
        assert (step.status, step.attempts) == ("Succeeded", 2)
    else:
        assert (step.status, step.attempts) == ("Failed", 1)
        assert step.error["code"] == code
        assert step.error["message"] == body[0]["message"]
        assert step.error["details"] == {"status": status, "errors": body}


def test_a_required_field_error_names_the_fields(salesforce, tmp_path):
    salesforce.route("POST", f"{V}/sobjects/Contact/", status=400, json=sf_error(
        "REQUIRED_FIELD_MISSING", "Required fields are missing: [LastName]", ["LastName"]))

    result = run(tmp_path, {"c": action("salesforce.Create", {
        "sobject": "Contact", "record": {"FirstName": "Jenny"}}, retryPolicy=FAST_RETRY)})

    step = result.steps["c"]
    assert (step.status, step.attempts) == ("Failed", 1)
    assert step.error["code"] == "REQUIRED_FIELD_MISSING"
    assert step.error["details"]["errors"][0]["fields"] == ["LastName"]


def test_a_500_that_persists_fails_after_the_retry_policy(salesforce, tmp_path):
    salesforce.route("POST", f"{V}/sobjects/Lead/", status=500,
                     json=sf_error("UNKNOWN_EXCEPTION", "An unexpected error occurred."))

    result = run(tmp_path, {"c": action("salesforce.Create", {
        "sobject": "Lead", "record": {"LastName": "X"}}, retryPolicy=FAST_RETRY)})

    step = result.steps["c"]
    assert (step.status, step.attempts) == ("Failed", 3)
    assert step.error["code"] == "UNKNOWN_EXCEPTION"
    assert len(api_calls(salesforce)) == 3
    assert salesforce.logins.count == 1  # a server error does not cost a new login


def test_a_429_waits_for_retry_after_then_succeeds(salesforce, tmp_path):
    salesforce.route("GET", f"{V}/sobjects/Account/0015e00000XyZabAAB", status=429, times=1,
                     headers={"Retry-After": "1"},
                     json=sf_error("REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit "
                                   "exceeded."))
    salesforce.route("GET", f"{V}/sobjects/Account/0015e00000XyZabAAB",
                     json={"attributes": {"type": "Account"}, "Id": "0015e00000XyZabAAB"})

    result = run(tmp_path, {"g": action("salesforce.Get", {
        "sobject": "Account", "id": "0015e00000XyZabAAB"}, retryPolicy=FAST_RETRY)})

    step = result.steps["g"]
    assert (step.status, step.attempts) == ("Succeeded", 2)
    assert step.duration >= 1.0  # Retry-After (1 s) won over the policy's 10 ms interval


def test_an_unreachable_salesforce_is_a_retryable_connection_error(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("TEST_SF_PASSWORD", PASSWORD)
    write_connections(tmp_path, f"http://127.0.0.1:{port}", {"username": USERNAME},
                      {"password": "TEST_SF_PASSWORD"})

    result = run(tmp_path, {"q": action("salesforce.Query", {"soql": "SELECT Id FROM User"},
                                        retryPolicy=FAST_RETRY)})

    step = result.steps["q"]
    assert (step.status, step.attempts) == ("Failed", 3)
    assert step.error["code"] == "ConnectionError"


def test_more_than_one_external_id_match_fails_the_upsert(salesforce, tmp_path):
    salesforce.route("PATCH", f"{V}/sobjects/Contact/Email__c/a%40b.c", status=300, json=[
        f"{V}/sobjects/Contact/0035e00000AbCdEAAV", f"{V}/sobjects/Contact/0035e00000AbCdFAAV"])

    result = run(tmp_path, {"u": action("salesforce.Upsert", {
        "sobject": "Contact", "external_id_field": "Email__c", "external_id": "a@b.c",
        "record": {"LastName": "X"}})})

    assert result.steps["u"].error["code"] == "MULTIPLE_RECORDS"
    assert len(result.steps["u"].error["details"]["matches"]) == 2


# -- many records --------------------------------------------------------------------------------

def collection_results(req):
    """sObject Collections: one SaveResult per record; a record without Name is rejected."""
    out = []
    for i, record in enumerate(req.json()["records"]):
        if "Name" in record or "Id" in record:
            out.append({"id": record.get("Id", f"001{i:015d}"), "success": True, "errors": []})
        else:
            out.append({"success": False, "errors": [{
                "statusCode": "REQUIRED_FIELD_MISSING",
                "message": "Required fields are missing: [Name]", "fields": ["Name"]}]})
    return 200, {"Content-Type": "application/json"}, json.dumps(out).encode()


def test_bulk_insert_sends_chunks_of_200_and_returns_results_in_order(salesforce, tmp_path):
    salesforce.route("POST", f"{V}/composite/sobjects", handler=collection_results)
    records = [{"Name": f"Account {i}"} for i in range(250)]

    result = run(tmp_path, {"bulk": action("salesforce.BulkInsert", {
        "sobject": "Account", "records": "{{ triggerBody() }}", "all_or_none": True})},
        input=records)

    step = result.steps["bulk"]
    assert step.status == "Succeeded", step.error
    assert (step.outputs["succeeded"], step.outputs["failed"]) == (250, 0)
    assert len(step.outputs["results"]) == 250
    first, second = api_calls(salesforce)
    assert [len(c.json()["records"]) for c in (first, second)] == [200, 50]
    assert first.json()["allOrNone"] is True
    assert first.json()["records"][0] == {"attributes": {"type": "Account"}, "Name": "Account 0"}
    assert second.json()["records"][-1]["Name"] == "Account 249"


@pytest.mark.parametrize("allow_partial, status", [(False, "Failed"), (True, "Succeeded")])
def test_bulk_update_with_a_rejected_record(salesforce, tmp_path, allow_partial, status):
    def results(req):
        records = req.json()["records"]
        out = [{"id": r["Id"], "success": True, "errors": []} for r in records]
        out[1] = {"id": records[1]["Id"], "success": False, "errors": [{
            "statusCode": "ENTITY_IS_DELETED", "message": "entity is deleted", "fields": []}]}
        return 200, {"Content-Type": "application/json"}, json.dumps(out).encode()
    salesforce.route("PATCH", f"{V}/composite/sobjects", handler=results)
    records = [{"Id": "0065e00000AbCdEAAV", "StageName": "Closed Won"},
               {"Id": "0065e00000AbCdFAAV", "StageName": "Closed Won"}]

    result = run(tmp_path, {"bulk": action("salesforce.BulkUpdate", {
        "sobject": "Opportunity", "records": records, "allow_partial": allow_partial})})

    step = result.steps["bulk"]
    assert step.status == status
    [call] = api_calls(salesforce)
    assert call.method == "PATCH"
    assert call.json() == {"allOrNone": False, "records": [
        {"attributes": {"type": "Opportunity"}, **r} for r in records]}
    if allow_partial:
        assert (step.outputs["succeeded"], step.outputs["failed"]) == (1, 1)
    else:
        assert step.attempts == 1
        assert step.error["code"] == "ENTITY_IS_DELETED"
        assert step.error["details"]["failed_indexes"] == [1]


def test_every_exception_class_of_simple_salesforce_and_its_transport_is_mapped_by_a_declared_row():
    import requests
    from simple_salesforce import exceptions

    from nodes.salesforce.client import SALESFORCE
    from tests.support.sdk import exception_classes, unmapped

    declared = [c for c in vars(exceptions).values() if isinstance(c, type)
                and issubclass(c, Exception) and c.__module__ == exceptions.__name__]
    classes = sorted(set(declared) - {exceptions.SalesforceError}
                     | set(exception_classes(exceptions.SalesforceError)), key=str)
    transport = (exception_classes(requests.ConnectionError) + exception_classes(requests.Timeout)
                 + [requests.ConnectionError, requests.Timeout])
    assert len(classes) >= 9
    assert unmapped(SALESFORCE, classes + transport) == []


def test_a_traced_run_sends_the_attempt_spans_traceparent_to_salesforce(salesforce, tmp_path):
    from tests.support.tracing import traceparent, traced

    salesforce.route("GET", f"{V}/query/", json={"totalSize": 0, "done": True, "records": []})
    with traced() as spans:
        result = run(tmp_path, {"find": action("salesforce.Query", {"soql": "SELECT Id FROM Contact"})})
    assert result.status == "Succeeded", result.steps["find"].error
    [find] = spans.named("find")
    [query] = api_calls(salesforce)
    assert query.header("traceparent") == traceparent(find)
