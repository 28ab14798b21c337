"""Cassettes: `flowrun test --record` stores each vendor call, redacted, at the HTTP transports
(urllib3 for requests-based SDKs, httpx, urllib.request); later runs replay them offline. Tested
with the real Twilio SDK (urllib3), flowrun's Http node (httpx) and the real SendGrid SDK (urllib)
against a loopback server, and with secrets holding quotes, backslashes and non-ASCII text."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from engine.testing.cassettes import cassette_path, mask_tokens
from engine.testing.runner import run_files
from engine.vendor import secret_forms
from tests.support.recorder import Recorder

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = 'tw"i\\lio\'tok+en/=é'  # quotes, a backslash, base64-hostile characters, non-ASCII
BEARER = 'be"ar\\er+/=tok'
SENDGRID_KEY = 'SG."k\\ey'
MESSAGE = {"account_sid": ACCOUNT, "sid": "SM" + "1" * 32, "status": "queued", "to": "+15551234567",
           "from": "+15017122661", "body": "hi", "uri": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/SM1.json",
           "echo": TOKEN, "access_token": "vendor-issued-session-token"}

FLOW = """\
name: notify
actions:
  sms:
    type: twilio.SendSms
    connection: twilio
    inputs: {to: "+15551234567", from: "+15017122661", body: "hi {{ triggerBody().name }}"}
  hook:
    type: Http
    connection: hooks
    runAfter: {sms: [Succeeded]}
    inputs: {method: POST, uri: "sent", body: {sid: "{{ body('sms').sid }}"}}
  mail:
    type: sendgrid.SendEmail
    connection: sendgrid
    runAfter: {hook: [Succeeded]}
    inputs: {to: ada@example.com, from: shop@example.com, subject: hi, text: "sms {{ body('sms').sid }}"}
"""

TESTS = """\
tests:
  texts, calls the hook and emails:
    input: {name: Ada}
    expect:
      status: Succeeded
      values:
        "{{ body('sms').sid }}": SM11111111111111111111111111111111
        "{{ body('hook').ok }}": true
"""


@pytest.fixture
def vendor():
    with Recorder() as api:
        api.route("POST", rf"/2010-04-01/Accounts/{ACCOUNT}/Messages\.json", status=201, json=MESSAGE)
        api.route("POST", "/hooks/sent", json={"ok": True, "token": BEARER})
        api.route("POST", "/v3/mail/send", status=202)
        api.start()
        yield api


def project(tmp_path: Path, url: str) -> Path:
    (tmp_path / "notify.yaml").write_text(FLOW)
    (tmp_path / "connections.yaml").write_text(textwrap.dedent(f"""\
        connections:
          twilio:
            kind: twilio
            endpoint: {url}
            settings: {{account_sid: {ACCOUNT}}}
            secrets: {{auth_token: CASSETTE_TWILIO_TOKEN}}
          hooks:
            kind: http
            settings: {{base_url: "{url}/hooks/", auth: bearer}}
            secrets: {{token: CASSETTE_HOOK_TOKEN}}
          sendgrid:
            kind: sendgrid
            endpoint: {url}
            secrets: {{api_key: CASSETTE_SENDGRID_KEY}}
        """))
    path = tmp_path / "notify.test.yaml"
    path.write_text(TESTS)
    return path


@pytest.fixture
def secrets(monkeypatch):
    monkeypatch.setenv("CASSETTE_TWILIO_TOKEN", TOKEN)
    monkeypatch.setenv("CASSETTE_HOOK_TOKEN", BEARER)
    monkeypatch.setenv("CASSETTE_SENDGRID_KEY", SENDGRID_KEY)
    return monkeypatch


def test_record_once_then_replay_offline_with_no_credentials(tmp_path, vendor, secrets):
    path = project(tmp_path, vendor.url)
    [recorded] = run_files([str(path)], record=True)
    assert recorded.passed, recorded.failures
    assert [r.path for r in vendor.requests] == [f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json", "/hooks/sent",
                                                 "/v3/mail/send"]
    cassette = json.loads(cassette_path(path).read_text())
    calls = cassette["tests"]["texts, calls the hook and emails"]
    assert sorted(calls) == ["hook", "mail", "sms"]
    assert calls["sms"][0]["request"]["method"] == "POST"
    assert "To=%2B15551234567" in calls["sms"][0]["request"]["body"]

    vendor.stop()  # offline from here on, and without the secrets
    for var in ("CASSETTE_TWILIO_TOKEN", "CASSETTE_HOOK_TOKEN", "CASSETTE_SENDGRID_KEY"):
        secrets.delenv(var)
    [replayed] = run_files([str(path)])
    assert replayed.passed, replayed.failures
    assert len(vendor.requests) == 3  # nothing more reached the vendor


def test_no_secret_reaches_a_cassette_in_any_form(tmp_path, vendor, secrets):
    path = project(tmp_path, vendor.url)
    [recorded] = run_files([str(path)], record=True)
    assert recorded.passed, recorded.failures
    text = cassette_path(path).read_text()
    import base64

    basic = base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    for secret in (TOKEN, BEARER, SENDGRID_KEY):
        leaked = [form for form in secret_forms(secret) if form in text]
        assert leaked == [], (secret, leaked)
    assert basic not in text
    assert "vendor-issued-session-token" not in text  # a token the vendor handed out
    assert '"Authorization": "***"' in text


def test_a_call_the_cassette_does_not_hold_fails_the_test_naming_the_action(tmp_path, vendor, secrets):
    path = project(tmp_path, vendor.url)
    run_files([str(path)], record=True)
    vendor.stop()
    (tmp_path / "notify.yaml").write_text(FLOW.replace('uri: "sent"', 'uri: "delivered"'))
    [replayed] = run_files([str(path)])
    assert not replayed.passed
    assert any("action 'hook' call 1 is POST" in f and "/hooks/delivered" in f and "--record" in f
               for f in replayed.failures), replayed.failures


def test_a_test_with_no_cassette_is_blocked_from_the_network(tmp_path, vendor, secrets):
    path = project(tmp_path, vendor.url)
    [result] = run_files([str(path)])
    assert any("action 'sms' tried to reach 127.0.0.1" in f for f in result.failures), result.failures
    assert vendor.requests == []


def test_recording_again_replaces_only_the_tests_recorded(tmp_path, vendor, secrets):
    path = project(tmp_path, vendor.url)
    path.write_text(TESTS + "  a mocked one:\n    mocks: {sms: {outputs: {sid: SM2}}, hook: {outputs: {}}, "
                            "mail: {outputs: {}}}\n")
    run_files([str(path)], record=True)
    tests = json.loads(cassette_path(path).read_text())["tests"]
    assert list(tests) == ["texts, calls the hook and emails"]  # the mocked test made no call


def test_a_broken_cassette_is_one_error_line(tmp_path, vendor, secrets):
    path = project(tmp_path, vendor.url)
    cassette_path(path).write_text("{not json")
    [result] = run_files([str(path)])
    assert result.error and "not a readable cassette" in result.error


@pytest.mark.parametrize("text, masked", [
    ('{"access_token": "abc", "n": 1}', '{"access_token": "***", "n": 1}'),
    ('{"sessionId":"a\\"b"}', '{"sessionId":"***"}'),
    ("grant_type=password&password=p%40ss&client_secret=x", "grant_type=password&password=***&client_secret=***"),
    ("<r><sessionId>00D!AQ</sessionId><sf:password>pw</sf:password></r>",
     "<r><sessionId>***</sessionId><sf:password>***</sf:password></r>"),
    ('{"tokens_left": 5, "id": "x"}', '{"tokens_left": 5, "id": "x"}'),
    ('{"data": {"token": "t1", "masterToken": "m1"}}', '{"data": {"token": "***", "masterToken": "***"}}'),
    ('{"nextPageToken": "p2"}', '{"nextPageToken": "p2"}'),  # sent back on replay: no credential
])
def test_token_like_fields_are_masked(text, masked):
    assert mask_tokens(text) == masked


def test_a_cassette_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    from engine.testing.cassettes import Cassette

    path = tmp_path / "t.test.cassette.json"
    Cassette.write_file(path, {"old": {}}, str)
    before = path.read_text()

    def crash(*args, **kw):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", crash)
    with pytest.raises(OSError):
        Cassette.write_file(path, {"new": {"a": [{"request": {}, "response": {}}]}}, str)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


@pytest.mark.parametrize("text", [
    '{"version": 1, "tests": {"t": {"sms": [{"request": {}, "response": {}}]}}}',
    '{"version": 1, "tests": {"t": {"sms": "no"}}}',
    '{"version": 1, "tests": {"t": {"sms": [{"request": {"method": "GET", "url": "/"}, "response": {"status": 9000}}]}}}',
    '{"version": 1, "tests": {"t": {"sms": [{"request": {"method": "GET", "url": "/"}, '
    '"response": {"status": 200, "headers": [1]}}]}}}',
    '{"version": 2, "tests": {}}', '[]', '\xff',
    # tampered: nested past the JSON parser's depth (a RecursionError, a traceback), and what a
    # replay would hand the SDK: headers that are not text, bodies that are not what recording writes
    '{"version": 1, "tests": ' + "[" * 100_000 + "]" * 100_000 + "}",
    *(f'{{"version": 1, "tests": {{"t": {{"sms": [{{"request": {{"method": "GET", "url": "/"}}, '
      f'"response": {{"status": 200, {part}}}}}]}}}}}}' for part in (
          '"headers": {"x": 1}', '"headers": {"x": ["a"]}', '"headers": {"x": null}',
          '"body": {"base64": 5}', '"body": {"base64": "!!!"}', '"body": {"base64": "QQ==x"}',
          '"body": {"omitted": 5}', '"body": {"other": "x"}', '"body": {"base64": "QQ==", "omitted": "x"}',
          '"body": 5', '"body": ["a"]'))])
def test_a_malformed_cassette_is_refused_before_anything_runs(tmp_path, text):
    from engine.errors import CassetteError
    from engine.testing.cassettes import Cassette

    path = tmp_path / "t.test.cassette.json"
    path.write_text(text)
    with pytest.raises(CassetteError, match="record it again|not a readable cassette"):
        Cassette.read_file(path)


def test_kill_9_while_recording_leaves_the_old_cassette_whole(tmp_path, secrets):
    """`flowrun test --record` writes its cassette once, at the end, by rename: a process killed
    mid-recording leaves the previous cassette exactly as it was."""
    import os
    import signal
    import subprocess
    import sys
    import threading

    from tests.support.waiting import wait_until

    release = threading.Event()
    with Recorder() as api:
        api.route("POST", rf"/2010-04-01/Accounts/{ACCOUNT}/Messages\.json", status=201, json=MESSAGE)
        api.route("POST", "/hooks/sent", handler=lambda req: (release.wait(60), (200, {}, b"{}"))[1])
        api.route("POST", "/v3/mail/send", status=202)
        api.start()
        path = project(tmp_path, api.url)
        old = '{"tests": {}, "version": 1}\n'
        cassette_path(path).write_text(old)
        proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "--state", str(tmp_path / "s.db"), "test",
                                 "--record", str(path)], cwd=tmp_path, env=dict(os.environ),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: any(r.path == "/hooks/sent" for r in api.requests), "the hook was never called")
            os.kill(proc.pid, signal.SIGKILL)  # mid-recording: the SMS recorded, the hook in flight
            proc.wait(timeout=30)
        finally:
            release.set()
            if proc.poll() is None:
                proc.kill()
    assert cassette_path(path).read_text() == old
    assert sorted(p.name for p in tmp_path.iterdir() if "cassette" in p.name) == [cassette_path(path).name]


# -- Snowflake: its connector carries its own (vendored) requests and urllib3 ---------------------
SNOW_PASSWORD = 'sn"ow\\fl\'ake+/=%é-pass'  # quotes, a backslash, / + = % and non-ASCII
SNOW_FLOW = """\
name: report
actions:
  q:
    type: snowflake.Query
    connection: snowflake
    inputs: {sql: "SELECT ? AS greeting, 41 + 1 AS answer", params: ["{{ triggerBody().name }}"]}
outputs:
  answer: {value: "{{ body('q').rows[0].ANSWER }}"}
"""
SNOW_TESTS = """\
tests:
  reads the answer:
    input: {name: Ada}
    expect:
      status: Succeeded
      outputs: {answer: 42}
      values: {"{{ body('q').rows[0].GREETING }}": Ada}
"""


@pytest.fixture
def fakesnow(tmp_path, monkeypatch):
    pytest.importorskip("snowflake.connector")
    pytest.importorskip("fakesnow")
    from tests.support.snowflake import FakeSnowflake

    fake = FakeSnowflake().start()
    (tmp_path / "connections.yaml").write_text(json.dumps({"connections": {"snowflake": {
        "kind": "snowflake", "endpoint": fake.endpoint,
        "settings": {"account": "fakesnow", "user": "flowrun", "database": "FLOWRUN", "schema": "PUBLIC"},
        "secrets": {"password": "CASSETTE_SNOWFLAKE_PASSWORD"}}}}))
    (tmp_path / "report.yaml").write_text(SNOW_FLOW)
    (tmp_path / "report.test.yaml").write_text(SNOW_TESTS)
    monkeypatch.setenv("CASSETTE_SNOWFLAKE_PASSWORD", SNOW_PASSWORD)
    yield fake
    fake.stop()


def test_an_unmocked_snowflake_query_is_blocked_in_a_flow_test(tmp_path, fakesnow):
    [result] = run_files([str(tmp_path / "report.test.yaml")])
    assert not result.passed
    assert "action 'q' tried to reach 127.0.0.1" in "\n".join(result.failures)
    assert fakesnow.requests == []


def test_snowflake_calls_are_recorded_redacted_and_replayed_offline(tmp_path, fakesnow, monkeypatch):
    path = tmp_path / "report.test.yaml"
    [recorded] = run_files([str(path)], record=True)
    assert recorded.passed, recorded.line()
    assert fakesnow.logins()[-1]["data"]["PASSWORD"] == SNOW_PASSWORD  # it really logged in
    sent = len(fakesnow.requests)
    text = cassette_path(path).read_text()
    calls = json.loads(text)["tests"]["reads the answer"]["q"]
    assert [c["request"]["url"].split("?")[0].rsplit("/", 2)[-2:] for c in calls][:2] == [
        ["v1", "login-request"], ["v1", "query-request"]]
    assert "SELECT ? AS greeting" in json.dumps(calls)  # the body, decompressed, is readable
    leaked = [form for form in secret_forms(SNOW_PASSWORD) if form in text]
    assert leaked == []
    for call in calls:  # no body is kept compressed or opaque, where a secret could hide
        body = call["request"]["body"]
        assert body is None or isinstance(body, str), body
    assert not any(isinstance(c["response"]["body"], dict) for c in calls)

    fakesnow.stop()  # offline from here on, and without the password
    monkeypatch.delenv("CASSETTE_SNOWFLAKE_PASSWORD")
    [replayed] = run_files([str(path)])
    assert replayed.passed, replayed.line()
    assert len(fakesnow.requests) == sent


ISSUED = "vendor-issued-Tok3n"  # a credential the vendor hands out: no secret the process was given
URL_FLOW = """\
name: fetch
actions:
  items:
    type: Http
    inputs: {method: GET, uri: "%s/items?page=2&%s=%s", headers: {%s: "%s"}}
"""


@pytest.mark.parametrize("query, header", [
    ("access_token", "X-Session-Token"), ("sig", "X-CSRF-Token"), ("api_key", "X-Subject-Token"),
    ("refresh_token", "X-Auth-Signature"), ("client_secret", "Proxy-Authorization"), ("code", "X-Vendor-Api-Key"),
])
def test_credentials_a_vendor_hands_out_reach_no_cassette_in_urls_or_headers_and_it_still_replays(tmp_path, query,
                                                                                                     header):
    """A credential in a query string, a header whose name says it holds one, a redirect's
    Location or a URL's userinfo is masked in requests and responses, whatever the vendor calls it."""
    with Recorder() as api:
        api.route("GET", "/items", json={"ok": True},
                  headers={header: ISSUED, "Location": f"https://u:{ISSUED}@cb.example/done?{query}={ISSUED}&n=1"})
        api.start()
        (tmp_path / "fetch.yaml").write_text(URL_FLOW % (api.url, query, ISSUED, header, ISSUED))
        path = tmp_path / "fetch.test.yaml"
        path.write_text('tests:\n  fetches:\n    expect: {values: {"{{ body(\'items\').ok }}": true}}\n')
        [recorded] = run_files([str(path)], record=True)
        assert recorded.passed, recorded.failures
        assert api.requests[0].path == "/items"
    text = cassette_path(path).read_text()
    assert ISSUED not in text, text
    call = json.loads(text)["tests"]["fetches"]["items"][0]
    assert f"{query}=***" in call["request"]["url"] and "page=2" in call["request"]["url"]
    headers = {k.lower(): v for k, v in call["response"]["headers"].items()}
    assert headers["location"] == f"https://***@cb.example/done?{query}=***&n=1"
    assert headers[header.lower()] == "***"
    [replayed] = run_files([str(path)])  # offline: the vendor is gone, the masked URL still matches
    assert replayed.passed, replayed.failures


def test_a_urls_userinfo_reaches_no_cassette():
    from engine.testing.cassettes import Cassette, mask_url

    cassette = Cassette()
    cassette.record("GET", f"https://key:{ISSUED}@api.example/v1?x=1", {}, None, 200, "OK", {}, b"")
    assert cassette.calls["-"][0]["request"]["url"] == "https://***@api.example/v1?x=1"
    assert mask_url("https://api.example/v1?x=1&y=%20") == "https://api.example/v1?x=1&y=%20"  # untouched


def test_two_record_runs_of_one_file_each_keep_their_recordings(tmp_path):
    """Another `flowrun test --record` of the same file (recording other tests) reads, merges and
    writes the cassette holding its folder locked: this run's recording, made meanwhile, waits and
    merges after it instead of being overwritten by it (or overwriting it)."""
    import fcntl
    import os
    import subprocess
    import sys
    import threading

    from engine.testing.cassettes import Cassette
    from tests.support.waiting import wait_until

    release = threading.Event()
    with Recorder() as api:
        api.route("GET", "/slow", handler=lambda req: (release.wait(60), (200, {}, b'{"ok": 1}'))[1])
        api.start()
        (tmp_path / "f.yaml").write_text(f"name: f\nactions:\n  call:\n    type: Http\n"
                                         f"    inputs: {{method: GET, uri: \"{api.url}/slow\"}}\n")
        path = tmp_path / "f.test.yaml"
        path.write_text("tests:\n  mine: {expect: {status: Succeeded}}\n  theirs: {expect: {status: Succeeded}}\n")
        proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "--state", str(tmp_path / "s.db"), "test",
                                 "--record", "-k", "mine", str(path)], cwd=tmp_path, env=dict(os.environ),
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        folder = os.open(tmp_path, os.O_RDONLY)
        try:
            wait_until(lambda: api.requests, "the recording never called the vendor")
            fcntl.flock(folder, fcntl.LOCK_EX)  # the other run: it read the (empty) cassette ...
            theirs = Cassette.read_file(cassette_path(path))
            release.set()
            assert proc.stdout.readline().startswith("PASS")  # this run is done and about to write
            theirs["theirs"] = {"call": [{"request": {"method": "GET", "url": f"{api.url}/slow"},
                                          "response": {"status": 200, "headers": {}, "body": "{}"}}]}
            Cassette.write_file(cassette_path(path), theirs, str)  # ... and writes it, merged
        finally:
            os.close(folder)
            release.set()
            proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert sorted(Cassette.read_file(cassette_path(path))) == ["mine", "theirs"]
