"""snowflake.* nodes, run by the real snowflake-connector-python against fakesnow in server
mode on loopback (one server per test session); assertions read what the connector sent."""
from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
import yaml

import engine
from tests.support.snowflake import FakeSnowflake
from tests.support.waiting import wait_until

ROOT = Path(__file__).parents[2]
PASSWORD = "p'a\"s\\s/+%é-wörd"  # quotes, backslash, /, +, %, non-ASCII
_schemas = itertools.count()


@pytest.fixture(scope="session")
def fakesnow_server():
    import snowflake.connector

    fake = FakeSnowflake().start()
    conn = snowflake.connector.connect(user="setup", password="x", account="fakesnow", host="127.0.0.1",
                                       port=fake.port, protocol="http")
    conn.cursor().execute("CREATE DATABASE IF NOT EXISTS FLOWRUN")
    conn.close()
    yield fake
    fake.stop()


@pytest.fixture
def snow(fakesnow_server, tmp_path, monkeypatch):
    """A fresh schema in the shared fake, a connections.yaml pointing at it, the password set."""
    import snowflake.connector

    schema = f"T{next(_schemas)}_{abs(hash(str(tmp_path))) % 10**8}"
    conn = snowflake.connector.connect(user="setup", password="x", account="fakesnow", host="127.0.0.1",
                                       port=fakesnow_server.port, protocol="http", database="FLOWRUN")
    conn.cursor().execute(f"CREATE SCHEMA IF NOT EXISTS FLOWRUN.{schema}")
    monkeypatch.setenv("TEST_SNOWFLAKE_PASSWORD", PASSWORD)
    write_connections(tmp_path, fakesnow_server.endpoint, schema, {"password": "TEST_SNOWFLAKE_PASSWORD"})
    fakesnow_server.release()
    yield type("Snow", (), {"fake": fakesnow_server, "schema": schema,
                            "sql": lambda self, text, *a: _sql(conn, schema, text, *a)})()
    conn.close()


def _sql(conn, schema, text, params=None):
    cur = conn.cursor()
    cur.execute(f"USE SCHEMA FLOWRUN.{schema}")
    cur.execute(text, params)
    return cur.fetchall() if cur.description else cur.rowcount


def write_connections(tmp_path, endpoint, schema, secrets, **settings):
    (tmp_path / "connections.yaml").write_text(yaml.safe_dump({"connections": {"snowflake": {
        "kind": "snowflake", "endpoint": endpoint,
        "settings": {"account": "fakesnow", "user": "flowrun", "warehouse": "WH", "database": "FLOWRUN",
                     "schema": schema, "role": "LOADER", **settings},
        "secrets": secrets}}}))


def write_flow(tmp_path, actions: dict) -> Path:
    flow = tmp_path / "flow.yaml"
    flow.write_text(yaml.safe_dump({"triggers": {"manual": {"type": "Manual"}}, "actions": actions},
                                   sort_keys=False))
    return flow


def run(tmp_path, actions: dict):
    return engine.run_file(write_flow(tmp_path, actions), state=tmp_path / "state.db",
                           connections=tmp_path / "connections.yaml")


def act(type_: str, inputs: dict, **extra) -> dict:
    return {"type": "snowflake." + type_, "connection": "snowflake", "inputs": inputs, **extra}


# -- the module ------------------------------------------------------------------------------

def test_importing_the_module_does_not_import_the_connector():
    code = "import nodes.snowflake, sys; assert 'snowflake.connector' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- Query -----------------------------------------------------------------------------------

def test_a_query_binds_its_params_on_the_server_and_returns_json_safe_rows(snow, tmp_path):
    snow.sql("CREATE TABLE t (id INT, amount NUMBER(38,2), big NUMBER(38,0), d DATE, ts TIMESTAMP_NTZ, "
             "v VARIANT, s VARCHAR, f FLOAT, b BOOLEAN, bin BINARY, tm TIME)")
    snow.sql("INSERT INTO t SELECT 1, 12.5, 1234567890123456789, '2024-01-02', '2024-01-02 03:04:05.123', "
             "PARSE_JSON('{\"a\": [1, 2]}'), 'hé', 1.25, TRUE, TO_BINARY('ABCD', 'HEX'), '12:34:56'")
    snow.sql("INSERT INTO t (id, s) VALUES (2, 'it''s')")
    hostile = "x' OR '1'='1"
    result = run(tmp_path, {"q": act("Query", {"sql": "SELECT * FROM t WHERE id = ? OR s = ? ORDER BY id",
                                               "params": [1, hostile]})})
    assert result.status == "Succeeded", result.error
    out = result.outputs_of("q") if hasattr(result, "outputs_of") else result.steps["q"].outputs
    assert out["rows"] == [{"ID": 1, "AMOUNT": 12.5, "BIG": "1234567890123456789", "D": "2024-01-02",
                            "TS": "2024-01-02T03:04:05.123000", "V": {"a": [1, 2]}, "S": "hé", "F": 1.25,
                            "B": True, "BIN": "abcd", "TM": "12:34:56"}]
    assert out["truncated"] is False and out["rowCount"] == 1
    assert out["queryId"] and [c["name"] for c in out["columns"]][:3] == ["ID", "AMOUNT", "BIG"]
    sent = snow.fake.query("SELECT * FROM t WHERE id = ?")[0]
    assert sent["sqlText"] == "SELECT * FROM t WHERE id = ? OR s = ? ORDER BY id"  # never formatted in
    assert sent["asyncExec"] is True
    assert [b["value"] for b in sent["bindings"].values()] == ["1", hostile]


def test_named_params_bind_by_position_and_leave_casts_paths_and_literals_alone(snow, tmp_path):
    snow.sql("CREATE TABLE n (id INT, v VARIANT)")
    snow.sql("INSERT INTO n SELECT 7, PARSE_JSON('{\"k\": \"v\"}')")
    sql = "SELECT id::VARCHAR AS s, v:k::VARCHAR AS k, ':nope' AS lit FROM n WHERE id = :id AND :id > 0"
    result = run(tmp_path, {"q": act("Query", {"sql": sql, "params": {"id": 7}})})
    assert result.status == "Succeeded", result.error
    assert result.steps["q"].outputs["rows"] == [{"S": "7", "K": "v", "LIT": ":nope"}]
    sent = snow.fake.query("AS lit FROM n")[0]
    assert sent["sqlText"].endswith("WHERE id = ? AND ? > 0")
    assert [b["value"] for b in sent["bindings"].values()] == ["7", "7"]


@pytest.mark.parametrize("params, message", [
    ({"id": 1, "other": 2}, "not used in the SQL"),
    ({}, "params has no 'id'"),
])
def test_named_params_that_do_not_match_the_sql_fail_before_anything_is_sent(snow, tmp_path, params, message):
    result = run(tmp_path, {"q": act("Query", {"sql": "SELECT :id AS x", "params": params})})
    assert result.status == "Failed"
    assert message in result.steps["q"].error["message"]
    assert not snow.fake.query("SELECT :id AS x") and not snow.fake.query("SELECT ? AS x")


def test_max_rows_truncates_and_says_so(snow, tmp_path):
    snow.sql("CREATE TABLE r AS SELECT range AS i FROM range(25)")
    result = run(tmp_path, {"q": act("Query", {"sql": "SELECT i FROM r ORDER BY i", "maxRows": 10})})
    out = result.steps["q"].outputs
    assert [r["I"] for r in out["rows"]] == list(range(10))
    assert out["truncated"] is True and out["rowCount"] == 10


@pytest.mark.parametrize("value, expected", [
    ("12345678901234567.25::NUMBER(38,2)", "12345678901234567.25"),
    ("0.1::NUMBER(10,1)", 0.1),
    ("9007199254740991::NUMBER(38,0)", 9007199254740991),
    ("9007199254740993::NUMBER(38,0)", "9007199254740993"),
    ("-5::NUMBER(38,0)", -5),
])
def test_decimals_are_numbers_unless_a_number_would_lose_precision(snow, tmp_path, value, expected):
    result = run(tmp_path, {"q": act("Query", {"sql": f"SELECT {value} AS x"})})
    assert result.steps["q"].outputs["rows"] == [{"X": expected}]


def test_a_sql_error_fails_the_action_at_once_with_its_code_and_line(snow, tmp_path):
    retry = {"type": "fixed", "count": 3, "interval": "PT0.01S"}
    result = run(tmp_path, {"q": act("Query", {"sql": "SELECT *\nFROM no_such_table"}, retryPolicy=retry)})
    step = result.steps["q"]
    assert step.status == "Failed" and step.attempts == 1
    assert step.error["code"] == "SqlError"
    assert step.error["details"]["errorCode"] == "002003"
    assert "no_such_table" in step.error["message"].lower()


def test_a_syntax_error_names_the_line(snow, tmp_path):
    result = run(tmp_path, {"q": act("Query", {"sql": "SELECT 1;\nSELECT syntax error FROM"})})
    err = result.steps["q"].error
    assert err["code"] == "SqlError" and err["details"]["line"] >= 1 and err["details"]["errorCode"]


def test_the_query_is_polled_durably_until_it_finishes(snow, tmp_path):
    snow.fake.hold_next(2)
    result = run(tmp_path, {"q": act("Query", {"sql": "SELECT 42 AS answer"})})
    assert result.status == "Succeeded", result.error
    qid = result.steps["q"].outputs["queryId"]
    assert snow.fake.status_checks[qid] >= 3  # two RUNNING answers, then done (the connector checks again)
    assert len(snow.fake.query("SELECT 42 AS answer")) == 1


def test_a_timeout_aborts_the_query_with_system_cancel_query(snow, tmp_path):
    snow.fake.hold_next(None)
    result = run(tmp_path, {"q": act("Query", {"sql": "SELECT 43 AS slow"}, timeout="PT1S")})
    assert result.steps["q"].status == "TimedOut"
    qid = snow.fake.submitted["SELECT 43 AS slow"]
    cancels = snow.fake.query("SYSTEM$CANCEL_QUERY")
    assert len(cancels) == 1
    assert cancels[0]["sqlText"] == "SELECT SYSTEM$CANCEL_QUERY(?)"
    assert [b["value"] for b in cancels[0]["bindings"].values()] == [qid]


def test_resume_after_kill_9_re_attaches_to_the_recorded_query_and_never_submits_it_again(snow, tmp_path):
    snow.fake.hold_next(None)
    flow = write_flow(tmp_path, {"q": act("Query", {"sql": "SELECT 44 AS resumed"})})
    state = tmp_path / "state.db"
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "--state", str(state), "--connections",
                             str(tmp_path / "connections.yaml"), "run", str(flow)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def polled():
            qid = snow.fake.submitted.get("SELECT 44 AS resumed")
            return qid and snow.fake.status_checks.get(qid, 0) >= 2
        wait_until(lambda: polled() or proc.poll() is not None, "the query was never polled")
        assert proc.poll() is None, proc.communicate()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    snow.fake.release()
    eng = engine.Engine(state)
    try:
        run_id = eng.list_runs()[0].id
        result = anyio.run(eng.resume, run_id)
        steps = result.steps
    finally:
        eng.close()
    assert result.status == "Succeeded", result.error
    assert steps["q"].outputs["rows"] == [{"RESUMED": 44}]
    assert len(snow.fake.query("SELECT 44 AS resumed")) == 1
    assert steps["q"].outputs["queryId"] == snow.fake.submitted["SELECT 44 AS resumed"]
    assert snow.fake.status_checks[steps["q"].outputs["queryId"]] >= 3


def test_a_template_inside_the_sql_is_a_validate_warning_that_points_to_params(snow, tmp_path):
    flow = write_flow(tmp_path, {"q": act("Query", {"sql": "SELECT * FROM t WHERE id = {{ triggerBody().id }}"}),
                                 "ok": act("Query", {"sql": "SELECT 1", "params": ["{{ triggerBody().id }}"]})})
    out = subprocess.run([sys.executable, "-m", "engine.cli", "--connections", str(tmp_path / "connections.yaml"),
                          "validate", str(flow)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [line for line in out.stdout.splitlines() if "(warning)" in line]
    assert len(lines) == 1 and "actions.q.inputs.sql" in lines[0] and "params" in lines[0]
    assert lines[0].startswith(f"{flow}:")


# -- ExecuteScript ---------------------------------------------------------------------------

def test_a_script_runs_each_statement_and_returns_each_result(snow, tmp_path):
    script = "CREATE TABLE s (i INT);\nINSERT INTO s VALUES (1), (2);\n-- a comment; with a semicolon\nSELECT COUNT(*) AS n FROM s;"
    result = run(tmp_path, {"s": act("ExecuteScript", {"sql": script})})
    assert result.status == "Succeeded", result.error
    res = result.steps["s"].outputs["results"]
    assert len(res) == 3 and res[1]["rowCount"] == 2 and res[2]["rows"] == [{"N": 2}]
    assert all(r["queryId"] for r in res)


def test_a_failing_statement_in_a_transaction_rolls_back_the_ones_before_it(snow, tmp_path):
    snow.sql("CREATE TABLE tx (i INT)")
    script = "INSERT INTO tx VALUES (1);\nINSERT INTO tx VALUES (2);\nINSERT INTO nowhere VALUES (3);"
    result = run(tmp_path, {"s": act("ExecuteScript", {"sql": script, "transaction": True})})
    err = result.steps["s"].error
    assert result.status == "Failed" and err["code"] == "SqlError"
    assert err["details"]["statement"] == 3 and err["details"]["rolledBack"] is True
    assert snow.sql("SELECT COUNT(*) FROM tx") == [(0,)]
    sent = snow.fake.sql()
    assert "BEGIN" in sent and "ROLLBACK" in sent and "COMMIT" not in sent


# -- InsertRows ------------------------------------------------------------------------------

def test_insert_rows_binds_objects_in_batches_and_counts_them(snow, tmp_path):
    snow.sql('CREATE TABLE people (id INT, name VARCHAR, tags VARCHAR, "odd col" VARCHAR)')
    rows = [{"id": i, "name": f"n'{i}\\", "tags": ["a", i], "odd col": "x"} for i in range(5)]
    rows.append({"id": 5})
    result = run(tmp_path, {"i": act("InsertRows", {"table": "people", "rows": rows, "batchSize": 2})})
    assert result.status == "Succeeded", result.error
    out = result.steps["i"].outputs
    assert out["count"] == 6 and out["batches"] == 3
    assert snow.sql("SELECT id, name, tags FROM people WHERE id IN (1, 5) ORDER BY id") == [
        (1, "n'1\\", '["a", 1]'), (5, None, None)]
    inserts = snow.fake.query('INSERT INTO "PEOPLE"')
    assert inserts[0]["sqlText"] == 'INSERT INTO "PEOPLE" ("ID", "NAME", "TAGS", "odd col") VALUES (?, ?, ?, ?)'


def test_a_hostile_table_name_is_quoted_not_executed(snow, tmp_path):
    result = run(tmp_path, {"i": act("InsertRows", {"table": 'x"; DROP TABLE y; --', "rows": [{"a": 1}]})})
    assert result.status == "Failed" and result.steps["i"].error["code"] == "SqlError"
    assert snow.fake.query('INSERT INTO "x""; DROP TABLE y; --"')


# -- connection and secrets --------------------------------------------------------------------

def test_the_password_reaches_the_login_and_nothing_else(snow, tmp_path):
    result = run(tmp_path, {"q": act("Query", {"sql": "SELECT 1 AS one"})})
    assert result.status == "Succeeded", result.error
    login = [b for b in snow.fake.logins() if b["data"].get("LOGIN_NAME") == "flowrun"][-1]["data"]
    assert login["PASSWORD"] == PASSWORD
    assert login["ACCOUNT_NAME"] == "fakesnow"
    assert PASSWORD.encode() not in (tmp_path / "state.db").read_bytes()


def test_key_pair_auth_signs_a_jwt_with_the_pem_from_the_environment(snow, tmp_path, monkeypatch):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    passphrase = "pa'ss\\phrase/+%ü"
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.BestAvailableEncryption(passphrase.encode())).decode()
    monkeypatch.setenv("TEST_SF_KEY", pem)
    monkeypatch.setenv("TEST_SF_PASS", passphrase)
    write_connections(tmp_path, snow.fake.endpoint, snow.schema,
                      {"private_key": "TEST_SF_KEY", "private_key_passphrase": "TEST_SF_PASS"}, user="keyuser")
    result = run(tmp_path, {"q": act("Query", {"sql": "SELECT 2 AS two"})})
    assert result.status == "Succeeded", result.error
    login = [b for b in snow.fake.logins() if b["data"].get("LOGIN_NAME") == "keyuser"][-1]["data"]
    assert login["AUTHENTICATOR"] == "SNOWFLAKE_JWT" and login["TOKEN"].count(".") == 2
    import jwt
    claims = jwt.decode(login["TOKEN"], key.public_key(), algorithms=["RS256"],
                        options={"verify_aud": False})
    assert claims["sub"].endswith("KEYUSER")


def test_a_wrong_passphrase_fails_clearly_without_the_key(snow, tmp_path, monkeypatch):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.BestAvailableEncryption(b"right")).decode()
    monkeypatch.setenv("TEST_SF_KEY", pem)
    monkeypatch.setenv("TEST_SF_PASS", "wrong")
    write_connections(tmp_path, snow.fake.endpoint, snow.schema,
                      {"private_key": "TEST_SF_KEY", "private_key_passphrase": "TEST_SF_PASS"})
    result = run(tmp_path, {"q": act("Query", {"sql": "SELECT 1"})})
    err = result.steps["q"].error
    assert err["code"] == "InvalidPrivateKey" and "BEGIN" not in err["message"]


def test_oauth_sends_the_token_with_the_oauth_authenticator(snow, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_SF_TOKEN", "ver:1-hint:abc/+%'\"\\ü")
    write_connections(tmp_path, snow.fake.endpoint, snow.schema, {"token": "TEST_SF_TOKEN"}, user="oauthuser")
    result = run(tmp_path, {"q": act("Query", {"sql": "SELECT 3 AS three"})})
    assert result.status == "Succeeded", result.error
    login = [b for b in snow.fake.logins() if b["data"].get("LOGIN_NAME") == "oauthuser"][-1]["data"]
    assert login["AUTHENTICATOR"] == "OAUTH" and login["TOKEN"] == "ver:1-hint:abc/+%'\"\\ü"


def test_an_unreachable_server_is_a_retryable_error(tmp_path, monkeypatch):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("TEST_SNOWFLAKE_PASSWORD", PASSWORD)
    write_connections(tmp_path, f"http://127.0.0.1:{port}", "S", {"password": "TEST_SNOWFLAKE_PASSWORD"},
                      login_timeout=2)
    result = run(tmp_path, {"q": act("Query", {"sql": "SELECT 1"},
                                     retryPolicy={"type": "fixed", "count": 1, "interval": "PT0.01S"})})
    step = result.steps["q"]
    assert step.status == "Failed" and step.attempts == 2, step.error
    assert PASSWORD not in json.dumps(step.error)


# -- hostile input (property tests, a few seconds) ----------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

from engine.errors import ActionError  # noqa: E402
from nodes.snowflake.rows import json_safe, positional  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab:'\"$-/*\n ?_1", max_size=40), st.dictionaries(st.sampled_from(["a", "b", "_1"]),
                                                                          st.integers(), max_size=3))
def test_named_param_rewriting_never_crashes_and_only_touches_placeholders(sql, params):
    try:
        out, values = positional(sql, params)
    except ActionError:
        return
    assert out.count("?") - sql.count("?") == len(values)
    if ":" not in sql:
        assert out == sql and values == []


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(), st.floats(), st.decimals(), st.text(), st.binary(), st.datetimes(), st.dates()))
def test_every_cell_value_becomes_json_that_reads_back(value):
    converted = json_safe(value)
    assert json.loads(json.dumps(converted, allow_nan=False)) == converted


# -- adversarial pass: injection, payload data, secrets, crashes, types ----------------------

import base64  # noqa: E402
import datetime as dt  # noqa: E402
from decimal import Decimal  # noqa: E402

from engine.vendor import secret_forms  # noqa: E402

HOSTILE = ["x' OR '1'='1", "\\'; DROP TABLE t; --", "?", ":a", "$$ :b $$", "/* :c */", "-- :d",
           '"q""', "é€😀\u202e", "\\\\", ""]


def leaks(secret: str, data: bytes) -> list[str]:
    """Every form of ``secret`` (plain, JSON-escaped once and twice, repr, URL, base64, hex)
    found in ``data``."""
    forms = secret_forms(secret) | {secret.encode().hex(), secret.encode().hex().upper(),
                                    base64.b64encode(secret.encode()).decode()}
    text = data.decode("utf-8", "replace")
    return sorted(f for f in forms if f in text or f.encode() in data)


@pytest.mark.parametrize("style", ["list", "object"])
def test_hostile_param_values_are_bound_never_spliced_and_come_back_exactly(snow, tmp_path, style):
    names = [f"v{i}" for i in range(len(HOSTILE))]
    if style == "list":
        sql, params = "SELECT " + ", ".join(f"? AS {n}" for n in names), list(HOSTILE)
    else:
        sql, params = "SELECT " + ", ".join(f":{n} AS {n}" for n in names), dict(zip(names, HOSTILE))
    result = run(tmp_path, {"q": act("Query", {"sql": sql, "params": params})})
    assert result.status == "Succeeded", result.error
    assert result.steps["q"].outputs["rows"] == [dict(zip([n.upper() for n in names], HOSTILE))]
    sent = snow.fake.query("AS v0")[0]
    assert sent["sqlText"] == "SELECT " + ", ".join(f"? AS {n}" for n in names)
    assert [b["value"] for b in sent["bindings"].values()] == HOSTILE


@pytest.mark.parametrize("sql, params, expected", [
    ("SELECT a$$, :p", {"p": 1}, ("SELECT a$$, ?", [1])),                      # $ inside a name
    ("SELECT $$ :p $$, :p", {"p": 1}, ("SELECT $$ :p $$, ?", [1])),
    ("SELECT '\\' :p', :p", {"p": 1}, ("SELECT '\\' :p', ?", [1])),            # backslash escape
    ("SELECT 'it''s :p', :p", {"p": 1}, ("SELECT 'it''s :p', ?", [1])),
    ('SELECT "a "":p" FROM t WHERE x = :p', {"p": 1}, ('SELECT "a "":p" FROM t WHERE x = ?', [1])),
    ("SELECT v:p, v[0]:p, \"V\":p, :p // :q\n", {"p": 1}, ("SELECT v:p, v[0]:p, \"V\":p, ? // :q\n", [1])),
    ("SELECT :p::INT /* :q */ -- :q", {"p": {"k": "'"}}, ("SELECT ?::INT /* :q */ -- :q", ['{"k": "\'"}'])),
    ("SELECT :é", {"é": "ü"}, ("SELECT ?", ["ü"])),
])
def test_named_params_are_found_only_outside_literals_names_and_comments(sql, params, expected):
    assert positional(sql, params) == expected


@pytest.mark.parametrize("sql, params, code", [
    ("SELECT ?, :p", {"p": 1}, "InvalidParams"),     # two styles: the ? would bind to nothing
    ("SELECT :p", {"p": 1, "q": 2}, "InvalidParams"),
    ("SELECT '", {"p": 1}, "InvalidParams"),          # an open literal hides nothing
])
def test_named_params_that_cannot_bind_exactly_are_refused(sql, params, code):
    with pytest.raises(ActionError) as info:
        positional(sql, params)
    assert info.value.code == code


_LITERALS = st.one_of(
    st.builds(lambda t: "'" + t + "'", st.lists(st.one_of(
        st.text(alphabet=st.characters(blacklist_characters="'\\", blacklist_categories=("Cs",)), max_size=6),
        st.sampled_from(["''", "\\'", "\\\\", ":p", "?", "--", "$$", "/*"])), max_size=4).map("".join)),
    st.builds(lambda t: '"' + t + '"', st.lists(st.one_of(
        st.text(alphabet=st.characters(blacklist_characters='"', blacklist_categories=("Cs",)), min_size=1, max_size=6),
        st.sampled_from(['""', ":p", "'"])), min_size=1, max_size=4).map("".join)),
    st.builds(lambda t: "$$" + t + "$$", st.text(alphabet="ab :p'\"?\n-*/é", max_size=8).filter(lambda t: "$" not in t)),
    st.builds(lambda t: "--" + t + "\n", st.text(alphabet="ab :p'\"?$*/é", max_size=8)),
    st.builds(lambda t: "/*" + t + "*/", st.text(alphabet="ab :p'\"?$\n-é", max_size=8).filter(lambda t: "*" not in t)),
    st.sampled_from(["x::INT", "v:p", "v[0]:p", "t.c", "a$$b", "1", "(", ")", ",", "=", "é"]),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_LITERALS, st.sampled_from(["#p", "#q", "#r"])), max_size=12))
def test_the_named_param_rewriter_only_ever_replaces_placeholders(tokens):
    """SQL built from literals, quoted names, comments, casts, paths and :name placeholders:
    the rewrite is the same text with exactly the placeholders turned into ? in order."""
    params = {"p": "P", "q": "Q", "r": "R"}
    sql = " ".join(":" + t[1:] if t.startswith("#") else t for t in tokens)
    expected = " ".join("?" if t.startswith("#") else t for t in tokens)
    values = [params[t[1:]] for t in tokens if t.startswith("#")]
    used = {t[1:] for t in tokens if t.startswith("#")}
    out, bound = positional(sql, {k: v for k, v in params.items() if k in used})
    assert (out, bound) == (expected, values)


@pytest.mark.parametrize("column", ["order", "rows", "odd col", 'a"b', "x.y", "é", "Mixed"])
def test_insert_rows_takes_any_column_name_as_a_name_never_as_sql(snow, tmp_path, column):
    quoted = ('"' + column.upper() + '"') if column.isidentifier() and column.isascii() else \
        '"' + column.replace('"', '""') + '"'
    snow.sql(f'CREATE TABLE h (id INT, {quoted} VARCHAR)')
    result = run(tmp_path, {"i": act("InsertRows", {"table": "h", "rows": [{"id": 1, column: "it's"}]})})
    assert result.status == "Succeeded", result.error
    assert snow.sql("SELECT * FROM h") == [(1, "it's")]


@pytest.mark.parametrize("inputs", [
    {"table": "a..b", "rows": [{"x": 1}]},
    {"table": "t", "rows": [{"": 1}]},
    {"table": "t\0", "rows": [{"x": 1}]},
    {"table": "t", "rows": [{"x": 1}], "columns": ["x\0y"]},
])
def test_an_unusable_name_fails_clearly_before_anything_is_sent(snow, tmp_path, inputs):
    before = len(snow.fake.sql())
    result = run(tmp_path, {"i": act("InsertRows", inputs)})
    err = result.steps["i"].error
    assert result.status == "Failed" and err["code"] == "InvalidInputs" and "not a valid name" in err["message"]
    assert not [s for s in snow.fake.sql()[before:] if "INSERT" in (s or "")]


def test_a_script_skips_pieces_that_are_only_comments(snow, tmp_path):
    script = "SELECT 1 AS a; /* done; */ ;\n-- trailing; comment\n;"
    result = run(tmp_path, {"s": act("ExecuteScript", {"sql": script})})
    assert result.status == "Succeeded", result.error
    assert result.steps["s"].outputs["statementCount"] == 1


def test_row_values_that_look_like_templates_reach_later_actions_unevaluated(snow, tmp_path):
    snow.sql("CREATE TABLE p (s VARCHAR, v VARIANT)")
    snow.sql("INSERT INTO p SELECT '{{ 1 + 1 }}', PARSE_JSON('{\"k\": \"{{ body(''q'') }}\"}')")
    result = run(tmp_path, {
        "q": act("Query", {"sql": "SELECT s, v FROM p"}),
        "c": {"type": "Compose", "inputs": {"s": "{{ body('q').rows[0].S }}", "v": "{{ body('q').rows[0].V }}"},
              "runAfter": {"q": ["Succeeded"]}}})
    assert result.status == "Succeeded", result.error
    assert result.steps["c"].outputs == {"s": "{{ 1 + 1 }}", "v": {"k": "{{ body('q') }}"}}


@pytest.mark.parametrize("password", [PASSWORD, "pa\"ss'w\\\\ord/+%==", "ünïcødé-🔑-+/%20"])
def test_a_login_refusal_that_echoes_the_password_leaks_it_nowhere(snow, tmp_path, monkeypatch, caplog, password):
    monkeypatch.setenv("TEST_SNOWFLAKE_PASSWORD", password)
    snow.fake.refuse_logins("Incorrect password {} (json: " + json.dumps(password)[1:-1] + ")")
    try:
        result = run(tmp_path, {"q": act("Query", {"sql": "SELECT 1"})})
    finally:
        snow.fake.refuse_logins(None)
    err = result.steps["q"].error
    assert result.status == "Failed" and "Incorrect password" in err["message"], err
    assert [b for b in snow.fake.logins() if b["data"].get("PASSWORD") == password]  # it was sent
    assert leaks(password, json.dumps(err).encode()) == []
    assert leaks(password, (tmp_path / "state.db").read_bytes()) == []
    assert leaks(password, caplog.text.encode()) == []


def test_a_bad_key_or_passphrase_leaks_neither_into_the_state(snow, tmp_path, monkeypatch):
    passphrase = "pa'ss\"phr\\ase/+%ü"
    garbage = "-----BEGIN PRIVATE KEY-----\nnot'a\"key\\/+%ü\n-----END PRIVATE KEY-----\n"
    monkeypatch.setenv("TEST_SF_KEY", garbage)
    monkeypatch.setenv("TEST_SF_PASS", passphrase)
    write_connections(tmp_path, snow.fake.endpoint, snow.schema,
                      {"private_key": "TEST_SF_KEY", "private_key_passphrase": "TEST_SF_PASS"})
    result = run(tmp_path, {"q": act("Query", {"sql": "SELECT 1"})})
    assert result.steps["q"].error["code"] == "InvalidPrivateKey"
    db = (tmp_path / "state.db").read_bytes()
    assert leaks(passphrase, db) == [] and leaks(garbage, db) == [] and b"not'a" not in db


def test_kill_9_before_the_query_id_is_recorded_with_on_interrupted_fail_never_runs_it_twice(snow, tmp_path):
    snow.sql("CREATE TABLE once (i INT)")
    flow = write_flow(tmp_path, {"q": act("Query", {"sql": "INSERT INTO once VALUES (1)"}, onInterrupted="fail")})
    state = tmp_path / "state.db"
    snow.fake.stall("INSERT INTO once")
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "--state", str(state), "--connections",
                             str(tmp_path / "connections.yaml"), "run", str(flow)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: snow.fake.stalled.is_set() or proc.poll() is not None, "the insert never arrived")
        assert proc.poll() is None, proc.communicate()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        snow.fake.unstall()
    eng = engine.Engine(state)
    try:
        result = anyio.run(eng.resume, eng.list_runs()[0].id)
        step = result.steps["q"]
    finally:
        eng.close()
    assert step.status == "Failed" and step.error["code"] == "Interrupted"
    assert len(snow.fake.query("INSERT INTO once")) == 1
    assert snow.sql("SELECT COUNT(*) FROM once") == [(1,)]


@pytest.mark.parametrize("sql, expected", [
    ("SELECT '1969-07-20'::DATE AS x", "1969-07-20"),
    ("SELECT '0001-01-01'::DATE AS x", "0001-01-01"),
    ("SELECT '9999-12-31'::DATE AS x", "9999-12-31"),
    ("SELECT '1901-12-13 20:45:52'::TIMESTAMP_NTZ AS x", "1901-12-13T20:45:52"),
    ("SELECT '2024-01-02 03:04:05 +05:30'::TIMESTAMP_TZ AS x", "2024-01-01T21:34:05+00:00"),
    ("SELECT 'NaN'::FLOAT AS x", "NaN"),
    ("SELECT '-inf'::FLOAT AS x", "-inf"),
    ("SELECT NULL::VARIANT AS x", None),
    ("SELECT TO_BINARY('', 'HEX') AS x", ""),
    ("SELECT PARSE_JSON('" + "[" * 300 + "]" * 300 + "') AS x", None),
])
def test_edge_values_come_back_json_safe(snow, tmp_path, sql, expected):
    result = run(tmp_path, {"q": act("Query", {"sql": sql})})
    assert result.status == "Succeeded", result.error
    rows = result.steps["q"].outputs["rows"]
    json.dumps(rows, allow_nan=False)
    if expected is not None or "VARIANT" in sql:
        assert rows == [{"X": expected}]


def test_an_empty_result_is_no_rows_with_its_columns(snow, tmp_path):
    result = run(tmp_path, {"q": act("Query", {"sql": "SELECT 1 AS x WHERE 1 = 0"})})
    out = result.steps["q"].outputs
    assert out["rows"] == [] and out["rowCount"] == 0 and out["truncated"] is False


@pytest.mark.parametrize("value, expected", [
    (Decimal("99999999999999999999999999999999999999"), "99999999999999999999999999999999999999"),
    (Decimal("-99999999999999999999999999999999999999"), "-99999999999999999999999999999999999999"),
    (Decimal("0.00000000000000000000000000000000000001"), 1e-38),  # the double reads back exactly
    (Decimal("0.10000000000000000000000000000000000001"), "0.10000000000000000000000000000000000001"),
    (Decimal("1E+5"), 100000),
    (Decimal("NaN"), "NaN"),
    (dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-14))), "0001-01-01T00:00:00-14:00"),
    (dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone.utc), "9999-12-31T23:59:59.999999+00:00"),
    (dt.time(23, 59, 59, 999999), "23:59:59.999999"),
    (float("inf"), "inf"),
    (bytearray(b"\x00\xff"), "00ff"),
    ({"a": [Decimal("1.5"), None, {"b": 2 ** 70}]}, {"a": [1.5, None, {"b": str(2 ** 70)}]}),
])
def test_cell_values_past_json_become_exact_strings(value, expected):
    assert json_safe(value) == expected
