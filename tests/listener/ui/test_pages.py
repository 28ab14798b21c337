"""The web UI over HTTP, in process (Starlette's TestClient on the real app): who may see it,
CSRF on every POST, no secret in any page or event, pages of runs, hostile query strings."""
from __future__ import annotations

import html
import json
import re
import stat
from urllib.parse import quote, quote_plus
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ..inprocess import serving, wait_for
from .conftest import ADMIN, BATCH, ITEMS

BEARER = {"Authorization": f"Bearer {ADMIN}"}
UI = Path(__file__).resolve().parents[3] / "engine" / "listener" / "ui"


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


@pytest.fixture
def app(tmp_path, monkeypatch, state):
    # on PostgreSQL serve only queues runs for workers: --worker executes them here too
    with serving(tmp_path / "flows", {"batch.yaml": BATCH}, state=state, monkeypatch=monkeypatch,
                 admin_token=ADMIN, worker=True) as app:
        yield app


@pytest.fixture
def queued(tmp_path, monkeypatch, state):
    """A server whose started runs wait in the queue (no --worker on PostgreSQL)."""
    with serving(tmp_path / "flows", {"batch.yaml": BATCH}, state=state, monkeypatch=monkeypatch,
                 admin_token=ADMIN) as app:
        yield app


def start(app, body=ITEMS) -> str:
    run_id = app.client.post("/flows/batch/triggers/manual", json=body).json()["runId"]
    wait_for(lambda: app.runs("batch") and all(r["status"] not in ("Queued", "Running") for r in app.runs("batch")),
             "the run to finish")
    return run_id


# -- who may see it ---------------------------------------------------------------------------
def test_without_credentials_pages_send_to_the_login_form_and_data_answers_401(app):
    page = app.client.get("/ui/runs?status=Failed", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/ui/login?next=%2Fui%2Fruns"
    for url in ("/ui/events?events=1", "/ui/blobs/" + "0" * 64, "/ui/runs/x/value/payload"):
        assert app.client.get(url, follow_redirects=False).status_code == 401
    wrong = app.client.get("/ui/runs", headers={"Authorization": "Bearer nope"}, follow_redirects=False)
    assert wrong.status_code == 401 and "not the admin token" in wrong.text  # a wrong token is refused, not a sign-in


def test_the_login_form_sets_an_httponly_strict_cookie_that_is_not_the_token(app):
    form = app.client.get("/ui/login?next=/ui/flows")
    refused = app.client.post("/ui/login", data={"csrf": csrf_of(form.text), "token": "wrong"}, follow_redirects=False)
    assert refused.status_code == 403 and "not the admin token" in refused.text
    form = app.client.get("/ui/login?next=/ui/flows")
    ok = app.client.post("/ui/login", data={"csrf": csrf_of(form.text), "token": ADMIN, "next": "/ui/flows"},
                         follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/ui/flows"
    cookie = [c for c in ok.headers.get_list("set-cookie") if c.startswith("flowrun_ui=")][0]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and "Path=/ui" in cookie
    assert ADMIN not in cookie
    assert app.client.get("/ui/runs").status_code == 200  # the client keeps the cookie
    app.client.cookies.clear()
    value = cookie.split(";")[0].split("=", 1)[1]
    app.client.cookies.set("flowrun_ui", value[:-1] + ("1" if value.endswith("0") else "0"), path="/ui")
    assert app.client.get("/ui/runs", follow_redirects=False).status_code == 303  # a forged cookie is no session


def sign_in(client) -> str:
    form = client.get("/ui/login")
    client.post("/ui/login", data={"csrf": csrf_of(form.text), "token": ADMIN}, follow_redirects=False)
    return client.cookies.get("flowrun_ui")


def test_signing_out_ends_the_session_on_the_server_so_a_copied_cookie_opens_nothing(app):
    run_id = start(app)
    stolen = sign_in(app.client)
    page = app.client.get(f"/ui/runs/{run_id}")
    csrf = csrf_of(page.text)
    out = app.client.post("/ui/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303
    gone = [c for c in out.headers.get_list("set-cookie") if c.startswith("flowrun_ui=")][0]
    assert "HttpOnly" in gone and "strict" in gone.lower()
    other = sign_in(app.client)  # another session of the same browser is not touched
    app.client.cookies.clear()
    app.client.cookies.set("flowrun_ui", stolen, path="/ui")
    assert app.client.get("/ui/runs", follow_redirects=False).status_code == 303
    for url in (f"/ui/runs/{run_id}/value/payload", "/ui/events?events=1"):
        assert app.client.get(url, follow_redirects=False).status_code == 401, url
    assert app.client.post(f"/ui/runs/{run_id}/rerun", data={"csrf": csrf, "from": "start"},
                           follow_redirects=False).status_code == 401
    assert len(app.runs("batch")) == 1
    app.client.cookies.set("flowrun_ui", other, path="/ui")
    assert app.client.get("/ui/runs", follow_redirects=False).status_code == 200


def test_guessing_the_token_is_slowed_to_a_crawl(app):
    from engine.listener.ui.session import TRIES

    for _ in range(TRIES):
        form = app.client.get("/ui/login")
        assert app.client.post("/ui/login", data={"csrf": csrf_of(form.text), "token": "guess"}).status_code == 403
    form = app.client.get("/ui/login")
    refused = app.client.post("/ui/login", data={"csrf": csrf_of(form.text), "token": ADMIN}, follow_redirects=False)
    assert refused.status_code == 429 and "Too many wrong tokens" in refused.text
    assert app.client.get("/ui/runs", headers=BEARER).status_code == 429  # the same counter holds the bearer header


def test_wrong_bearer_tokens_count_with_the_login_forms_on_every_page_post_and_stream(app):
    from engine.listener.ui.session import TRIES

    wrong = {"Authorization": "Bearer guess"}
    urls = ["/ui/runs", "/ui/flows", "/ui/events?events=1", "/ui/blobs/" + "0" * 64]
    for i in range(TRIES - 1):
        answer = app.client.get(urls[i % len(urls)], headers=wrong, follow_redirects=False)
        assert answer.status_code == 401 and "WWW-Authenticate" in answer.headers
    assert app.client.post("/ui/runs/x/cancel", headers=wrong, data={"csrf": "x"}).status_code == 401  # the TRIES-th
    form = app.client.get("/ui/login")  # the login form shares the counter: this address now waits
    refused = app.client.post("/ui/login", data={"csrf": csrf_of(form.text), "token": ADMIN}, follow_redirects=False)
    assert refused.status_code == 429
    for url in urls:
        answer = app.client.get(url, headers=BEARER, follow_redirects=False)
        assert answer.status_code == 429 and int(answer.headers["Retry-After"]) > 0
    assert app.client.post("/ui/runs/x/cancel", headers=BEARER, data={"csrf": "x"}).status_code == 429


def test_wrong_bearer_tokens_on_the_run_status_api_count_with_the_uis(app):
    from engine.listener.ui.session import TRIES

    run_id = start(app)
    for _ in range(TRIES - 1):
        assert app.client.get(f"/runs/{run_id}", headers={"Authorization": "Bearer guess"}).status_code == 401
    assert app.client.get("/ui/runs", headers={"Authorization": "Bearer guess"}).status_code == 401  # the TRIES-th
    for url in (f"/runs/{run_id}", "/ui/runs"):
        answer = app.client.get(url, headers=BEARER)
        assert answer.status_code == 429 and int(answer.headers["Retry-After"]) > 0


def test_a_right_bearer_token_clears_the_count_of_its_address(app):
    from engine.listener.ui.session import TRIES

    for _ in range(TRIES - 1):
        assert app.client.get("/ui/runs", headers={"Authorization": "Bearer guess"}).status_code == 401
    assert app.client.get("/ui/runs", headers=BEARER).status_code == 200
    for _ in range(TRIES - 1):
        assert app.client.get("/ui/runs", headers={"Authorization": "Bearer guess"}).status_code == 401
    assert app.client.get("/ui/runs", headers=BEARER).status_code == 200


@pytest.mark.parametrize("base_url, secure", [("https://flows.example.com/hooks", True),
                                              ("http://flows.example.com", False), (None, False)])
def test_cookies_are_secure_behind_a_tls_terminating_proxy_named_by_base_url(tmp_path, monkeypatch, base_url, secure):
    with serving(tmp_path / "flows", {"batch.yaml": BATCH}, state=tmp_path / "state.db", monkeypatch=monkeypatch,
                 admin_token=ADMIN, base_url=base_url) as app:  # the proxy speaks plain http to serve
        form = app.client.get("/ui/login")
        pre = [c for c in form.headers.get_list("set-cookie") if c.startswith("flowrun_ui_login=")][0]
        nonce = pre.split(";")[0].split("=", 1)[1]  # the test client keeps no Secure cookie over http: sent by hand
        ok = app.client.post("/ui/login", data={"csrf": csrf_of(form.text), "token": ADMIN}, follow_redirects=False,
                             headers={"Cookie": f"flowrun_ui_login={nonce}"})
        cookie = [c for c in ok.headers.get_list("set-cookie") if c.startswith("flowrun_ui=")][0]
        for made in (pre, cookie):
            assert ("; secure" in made.lower()) is secure, made


def test_the_throttle_forgets_after_its_window():
    from engine.listener.ui.session import TRIES, WINDOW, Throttle

    now = [1000.0]
    throttle = Throttle(clock=lambda: now[0])
    for _ in range(TRIES):
        assert throttle.wait("a") == 0
        throttle.failed("a")
    assert throttle.wait("a") == WINDOW and throttle.wait("b") == 0
    now[0] += WINDOW
    assert throttle.wait("a") == 0


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/ui/", "/ui/\r\nSet-Cookie: x=1", "/elsewhere"])
def test_after_signing_in_only_a_ui_path_is_followed(app, target):
    form = app.client.get("/ui/login")
    ok = app.client.post("/ui/login", data={"csrf": csrf_of(form.text), "token": ADMIN, "next": target},
                         follow_redirects=False)
    assert ok.headers["location"] == "/ui/runs"


def test_the_login_form_itself_needs_its_csrf_token(app):
    app.client.get("/ui/login")
    assert app.client.post("/ui/login", data={"token": ADMIN}, follow_redirects=False).status_code == 403
    app.client.cookies.clear()
    assert app.client.post("/ui/login", data={"token": ADMIN, "csrf": "x"}, follow_redirects=False).status_code == 403


def test_every_post_needs_the_csrf_token_of_its_session(app):
    run_id = start(app)
    page = app.client.get(f"/ui/runs/{run_id}", headers=BEARER)
    token = csrf_of(page.text)
    for action in ("rerun", "resume", "cancel", "replay"):
        for data in ({}, {"csrf": "forged"}, {"csrf": token + "0"}):
            answer = app.client.post(f"/ui/runs/{run_id}/{action}", data={"from": "work", **data}, headers=BEARER)
            assert answer.status_code == 403 and "CSRF" in answer.text
    assert len(app.runs("batch")) == 1  # nothing started
    assert app.client.post(f"/ui/runs/{run_id}/cancel", data={"csrf": token}).status_code == 401  # no session
    assert app.client.post("/ui/logout", data={}, headers=BEARER).status_code == 403


def test_a_rerun_from_the_ui_shows_its_plan_then_runs_linked_to_the_old_run(app):
    run_id = start(app)
    plan = app.client.get(f"/ui/runs/{run_id}/rerun?from=each[2]", headers=BEARER)
    assert plan.status_code == 200
    again = re.search(r'id="plan-again">(.*?)</ul>', plan.text, re.S).group(1)
    reused = re.search(r'id="plan-reused">(.*?)</ul>', plan.text, re.S).group(1)
    assert "each" in again and "report" in again and "start" in reused and "start" not in again
    answer = app.client.post(f"/ui/runs/{run_id}/rerun", headers=BEARER, follow_redirects=False,
                             data={"csrf": csrf_of(plan.text), "from": "each[2]", "definition": "recorded"})
    assert answer.status_code == 303
    new_id = answer.headers["location"].rsplit("/", 1)[-1]
    wait_for(lambda: app.db().execute("SELECT status FROM runs WHERE id = ?", (new_id,)).fetchone()[0] == "Failed",
             "the rerun to fail again (same definition)")
    assert app.db().execute("SELECT rerun_of FROM runs WHERE id = ?", (new_id,)).fetchone()[0] == run_id
    old = app.client.get(f"/ui/runs/{run_id}", headers=BEARER).text
    assert f'href="/ui/runs/{new_id}" class="rerun-link"' in old
    unknown = app.client.get(f"/ui/runs/{run_id}/rerun?from=nope", headers=BEARER)
    assert unknown.status_code == 409 and "no action" in html.unescape(unknown.text)


@pytest.mark.parametrize("start_from", ["each[5]", "each[10]", "each[99999999999999999999]"])
def test_a_rerun_of_an_iteration_the_loop_never_ran_is_refused_and_starts_nothing(app, start_from):
    """Five items ran: a rerun 'from each[5]' would re-run nothing and copy the old run."""
    run_id = start(app)
    plan = app.client.get(f"/ui/runs/{run_id}/rerun", params={"from": start_from}, headers=BEARER)
    assert plan.status_code == 409 and "recorded 5 iterations" in html.unescape(plan.text)
    token = csrf_of(app.client.get(f"/ui/runs/{run_id}", headers=BEARER).text)
    answer = app.client.post(f"/ui/runs/{run_id}/rerun", headers=BEARER, follow_redirects=False,
                             data={"csrf": token, "from": start_from, "definition": "recorded"})
    assert answer.status_code == 409 and "has no iteration" in html.unescape(answer.text)
    assert len(app.runs("batch")) == 1


def test_resume_and_cancel_of_a_finished_run_are_refused_with_a_reason(app):
    run_id = start(app)
    token = csrf_of(app.client.get(f"/ui/runs/{run_id}", headers=BEARER).text)
    for action in ("resume", "cancel"):
        answer = app.client.post(f"/ui/runs/{run_id}/{action}", data={"csrf": token}, headers=BEARER)
        assert answer.status_code == 409 and "already finished" in answer.text


def test_a_webhook_is_replayed_from_the_ui(app):
    run_id = start(app, {"items": [1]})
    token = csrf_of(app.client.get(f"/ui/runs/{run_id}", headers=BEARER).text)
    answer = app.client.post(f"/ui/runs/{run_id}/replay", data={"csrf": token}, headers=BEARER, follow_redirects=False)
    new_id = answer.headers["location"].rsplit("/", 1)[-1]
    wait_for(lambda: app.db().execute("SELECT status FROM runs WHERE id = ?", (new_id,)).fetchone()[0] == "Succeeded",
             "the replay to succeed")
    assert "replay of" in app.client.get(f"/ui/runs/{new_id}", headers=BEARER).text


# -- pages of runs ------------------------------------------------------------------------------
def test_the_runs_list_pages_filters_and_counts(queued):
    app = queued
    flow = app.listener.table.flows["batch"]
    ids = [app.listener.engine.start(flow, input={"n": i}, dedupe_key=f"order-{i:03d}") for i in range(120)]
    def rows(url):
        page = app.client.get(url, headers=BEARER)
        assert page.status_code == 200
        return re.findall(r'<tr class="run" data-run="([0-9a-f]+)"', page.text), page.text
    first, text = rows("/ui/runs")
    assert len(first) == 50 and first[0] == ids[-1]  # newest first
    assert re.search(r'Queued <b>120</b>', text) and "120 runs" in text
    second, _ = rows("/ui/runs?page=2")
    third, _ = rows("/ui/runs?page=3")
    assert len(second) == 50 and len(third) == 20 and not set(first) & set(second)
    assert set(first + second + third) == set(ids)
    assert rows("/ui/runs?page=99")[0] == []
    assert rows("/ui/runs?q=order-007")[0] == [ids[7]]  # the dedupe key
    assert rows(f"/ui/runs?q={ids[3][:10]}")[0] == [ids[3]]  # the run id
    assert rows("/ui/runs?status=failed")[0] == []
    assert len(rows("/ui/runs?status=QUEUED&flow=batch&trigger=manual")[0]) == 50
    assert rows("/ui/runs?until=2000-01-01")[0] == [] and len(rows("/ui/runs?since=2000-01-01")[0]) == 50
    bad, text = rows("/ui/runs?status=Exploded&since=yesterday")
    assert len(bad) == 50 and "unknown status" in text and "since: not an ISO 8601" in text


@pytest.mark.parametrize("field", ["since", "until"])
@pytest.mark.parametrize("when", ["0001-01-01T00:00+14:00", "9999-12-31T23:59-14:00", "0001-01-01",
                                  "9999-12-31T23:59:59",
                                  "2026-12-07T08:00+24:00", "-2026-01-01", "+12026-01-01"])
def test_a_time_filter_at_or_past_the_ends_of_the_calendar_is_a_named_problem_or_a_filter_never_a_500(app, field, when):
    page = app.client.get("/ui/runs", params={field: when, "page": "2"}, headers=BEARER)
    assert page.status_code == 200, page.text[:300]
    assert f"{field}: not an ISO 8601" in page.text or html.escape(when[:10]) in page.text


def test_the_run_page_shows_the_graph_iterations_and_errors(app):
    run_id = start(app)
    page = app.client.get(f"/ui/runs/{run_id}?it=work/each[2]", headers=BEARER).text
    assert re.search(r'data-action="work" data-status="Failed"', page)
    assert re.search(r'data-action="start" data-status="Succeeded"', page)
    assert re.search(r'data-action="report" data-status="Skipped"', page)
    assert page.count('class="cell st-') == 5
    assert "division by zero" in html.unescape(page)
    assert f"{run_id}:work/each[2]/divide" in page  # the idempotency key
    failed = app.client.get(f"/ui/runs/{run_id}?failed=1", headers=BEARER).text
    assert failed.count('class="cell st-') == 1
    # without a chosen iteration, the loop's body is counted over every iteration
    assert re.search(r'data-action="divide" data-status="Failed"', app.client.get(f"/ui/runs/{run_id}", headers=BEARER).text)


def test_stored_values_download_and_offloaded_blobs_are_links(tmp_path, monkeypatch, state):
    from engine.api import Engine

    big = {"items": list(range(3))}
    with serving(tmp_path / "flows", {"batch.yaml": BATCH}, state=state, monkeypatch=monkeypatch,
                 admin_token=ADMIN, worker=True) as app:
        app.listener.engine.store.blob_threshold = 20  # every value past 20 bytes is stored apart
        run_id = start(app, big)
        page = app.client.get(f"/ui/runs/{run_id}", headers=BEARER).text
        links = re.findall(r'href="/ui/blobs/([0-9a-f]{64})"', page)
        assert links
        blob = app.client.get(f"/ui/blobs/{links[0]}", headers=BEARER)
        assert blob.status_code == 200 and "attachment" in blob.headers["content-disposition"]
        json.loads(blob.text)
        payload = app.client.get(f"/ui/runs/{run_id}/value/payload", headers=BEARER)
        assert json.loads(payload.text)["body"] == big
        for url in ("/ui/blobs/../../etc/passwd", "/ui/blobs/" + "a" * 64, f"/ui/runs/{run_id}/value/definition",
                    f"/ui/runs/{run_id}/value/outputs?path=nope"):
            assert app.client.get(url, headers=BEARER).status_code == 404, url
    assert Engine  # imported for the type only


@pytest.mark.parametrize("name", [b"caf\xe9.yaml", b"\xff\xfe.yaml", b"x\xed\xa0\x80.yaml"])
def test_a_flow_file_whose_name_is_not_utf8_is_listed_with_its_problem_and_the_pages_still_load(tmp_path, monkeypatch,
                                                                                                name):
    import os

    folder = tmp_path / "flows"
    folder.mkdir()
    with open(os.path.join(os.fsencode(folder), name), "w") as out:
        out.write(BATCH.replace("name: batch", "name: other"))
    with serving(folder, {"batch.yaml": BATCH}, state=tmp_path / "state.db", monkeypatch=monkeypatch,
                 admin_token=ADMIN) as app:
        assert app.client.get("/ui/runs", headers=BEARER).status_code == 200
        page = app.client.get("/ui/flows", headers=BEARER)
        assert page.status_code == 200
    text = html.unescape(page.text)
    assert "the file's path is not UTF-8 text: rename it" in text
    assert "".join(f"\\u{ord(c):04x}" if 0xd800 <= ord(c) < 0xe000 else c for c in os.fsdecode(name)) in text


def test_the_flows_page_keeps_a_broken_flow_listed_with_its_problem_at_its_line(tmp_path, monkeypatch, state):
    flows = {"batch.yaml": BATCH, "broken.yaml": "name: broken\nactions:\n  a:\n    type: Compose\n    runAfter: {b: [Succeeded]}\n"}
    with serving(tmp_path / "flows", flows, state=state, monkeypatch=monkeypatch,
                 admin_token=ADMIN, worker=True) as app:
        start(app)
        page = html.unescape(app.client.get("/ui/flows", headers=BEARER).text)
    assert re.search(r"broken\.yaml:5:\d+ actions\.a\.runAfter", page)
    assert "manual" in page and "Request" in page and "0%" in page  # batch: its trigger, 0 of 1 succeeded


def test_events_stream_the_runs_and_one_run(app):
    run_id = start(app)
    stream = app.client.get("/ui/events?events=1", headers=BEARER)
    assert stream.headers["content-type"].startswith("text/event-stream")
    data = json.loads(re.search(r"event: runs\ndata: (.*)\n", stream.text).group(1))
    assert data["counts"] == {"Failed": 1} and data["runs"][0]["id"] == run_id
    one = app.client.get(f"/ui/events?events=1&run={run_id}", headers=BEARER).text
    assert json.loads(re.search(r"event: run\ndata: (.*)\n", one).group(1))["status"] == "Failed"
    assert app.client.get("/ui/events?events=1&run=nope", headers=BEARER).status_code == 404


# -- secrets ------------------------------------------------------------------------------------
SECRET = 'p4ss"w\\rd\'<&>-9f8e7d'
SECRET_FLOW = """\
name: secretive
triggers:
  manual: {type: Request, auth: {type: key, connection: vault}}
actions:
  echo:
    type: Compose
    inputs: {heard: "{{ triggerBody() }}", header: "{{ triggerOutputs().headers }}"}
  fail:
    type: Compose
    runAfter: {echo: [Succeeded]}
    inputs: "{{ triggerBody().word | fromjson }}"
"""


def forms(secret: str) -> list[str]:
    once = json.dumps(secret)[1:-1]
    return [secret, html.escape(secret), html.escape(secret, quote=False), once, html.escape(once),
            json.dumps(once)[1:-1], secret.replace("\\", "\\\\"), quote(secret, safe=""), quote_plus(secret),
            html.escape(quote(secret, safe="")), html.escape(quote_plus(secret))]


def test_no_secret_reaches_any_page_download_or_event(tmp_path, monkeypatch, state):
    monkeypatch.setenv("VAULT_KEY", SECRET)
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "connections.yaml").write_text("connections:\n  vault: {kind: http, secrets: {token: VAULT_KEY}}\n")
    (tmp_path / "flows" / "secretive.yaml").write_text(SECRET_FLOW)
    with serving(tmp_path / "flows", state=state, admin_token=ADMIN, worker=True) as app:
        answer = app.client.post("/flows/secretive/triggers/manual", headers={"X-API-Key": SECRET, "X-Echo": SECRET},
                                 json={"word": SECRET, "again": [SECRET]})
        assert answer.status_code == 202, answer.text
        run_id = answer.json()["runId"]
        wait_for(lambda: app.runs("secretive")[0]["status"] == "Failed", "the run to fail")
        pages = [app.client.get(url, headers=BEARER) for url in (
            "/ui/runs", f"/ui/runs?q={quote(SECRET)}", f"/ui/runs?q={quote(SECRET)}&flow={quote(SECRET)}&status=Failed", f"/ui/runs/{run_id}", f"/ui/runs/{run_id}?it=x[0]", "/ui/flows",
            f"/ui/runs/{run_id}/rerun?from=echo", f"/ui/runs/{run_id}/value/payload", f"/ui/runs/{run_id}/value/request",
            f"/ui/runs/{run_id}/value/inputs?path=echo", f"/ui/runs/{run_id}/value/error?path=fail",
            "/ui/events?events=1", f"/ui/events?events=1&run={run_id}", f"/ui/runs/{SECRET}", "/ui/login")]
        assert all(p.status_code < 500 for p in pages)
        assert "***" in pages[2].text  # the run page shows where the secret was
        for page in pages:
            for form in forms(SECRET):
                assert form not in page.text, (page.url, form)


SCRIPT_SECRET = 'p4ss"w\\rd\'</script><!--&>-9f8e7d'
LEAKY_FLOW = """\
name: leaky
triggers:
  manual: {type: Request, auth: {type: key, connection: vault}}
actions:
  call:
    type: Http
    connection: api
    inputs: {method: GET, uri: "{{ triggerBody().url }}"}
    retryPolicy: {type: fixed, count: 3, interval: PT0.01S}
  echo:
    type: Compose
    runAfter: {call: [Succeeded]}
    inputs: {heard: "{{ triggerBody() }}", header: "{{ triggerOutputs().headers }}", got: "{{ body('call') }}"}
  fail:
    type: Compose
    runAfter: {echo: [Succeeded]}
    inputs: "{{ triggerBody().word | fromjson }}"
"""


def test_a_secret_with_quotes_backslashes_and_script_tags_reaches_no_page_event_span_or_log_record(tmp_path, monkeypatch):
    """In the trigger's payload and headers, echoed by a vendor in errors (retried: each attempt's
    summary) and in outputs, and in the error of a failed action: searched for in every UI page
    and download, the event streams, every span (attributes, events, status) and every log record."""
    import logging

    from tests.support.recorder import Recorder
    from tests.support.tracing import traced

    def echo(status):
        def answer(req):
            return status, {"Content-Type": "application/json"}, json.dumps({"auth": req.header("authorization")}).encode()
        return answer

    monkeypatch.setenv("VAULT_KEY", SCRIPT_SECRET)
    monkeypatch.setenv("API_TOKEN", SCRIPT_SECRET)
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "connections.yaml").write_text(
        "connections:\n  vault: {kind: http, secrets: {token: VAULT_KEY}}\n"
        "  api: {kind: http, settings: {auth: bearer}, secrets: {token: API_TOKEN}}\n")
    (tmp_path / "flows" / "leaky.yaml").write_text(LEAKY_FLOW)
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record) + repr(record.__dict__))
    keep = Keep(logging.DEBUG)
    keep.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(keep)
    root.setLevel(logging.DEBUG)
    try:
        with Recorder() as api, traced() as spans, serving(tmp_path / "flows", state=tmp_path / "state.db",
                                                           admin_token=ADMIN) as app:
            api.route("GET", "/echo", handler=echo(503), times=2)
            api.route("GET", "/echo", handler=echo(200))
            answer = app.client.post("/flows/leaky/triggers/manual",
                                     headers={"X-API-Key": SCRIPT_SECRET, "X-Echo": SCRIPT_SECRET,
                                              "tracestate": "k=" + SCRIPT_SECRET.replace(",", "")},
                                     json={"word": SCRIPT_SECRET, "url": api.url + "/echo", "again": [SCRIPT_SECRET]})
            assert answer.status_code == 202, answer.text
            run_id = answer.json()["runId"]
            wait_for(lambda: app.runs("leaky")[0]["status"] == "Failed", "the run to fail")
            assert api.requests[0].header("authorization") == "Bearer " + SCRIPT_SECRET  # really sent
            pages = [app.client.get(url, headers=BEARER) for url in (
                "/ui/runs", f"/ui/runs/{run_id}", "/ui/flows", f"/ui/runs/{run_id}/rerun?from=call",
                f"/ui/runs/{run_id}/value/payload", f"/ui/runs/{run_id}/value/request",
                f"/ui/runs/{run_id}/value/outputs?path=call", f"/ui/runs/{run_id}/value/outputs?path=echo",
                f"/ui/runs/{run_id}/value/error?path=fail", "/ui/events?events=1", f"/ui/events?events=1&run={run_id}")]
            texts = [p.text for p in pages]
            assert all(p.status_code < 500 for p in pages)
            assert '<table class="attempts">' in texts[1] and "***" in texts[1]
        texts += [span.to_json() for span in spans.all()]
        texts += [str(span.context.trace_state) for span in spans.all()]
        texts += records
        assert spans.all() and records
        for text in texts:
            for form in forms(SCRIPT_SECRET):
                assert form not in text, (text[:300], form)
    finally:
        root.removeHandler(keep)
        root.setLevel(old_level)


# -- hostile input ------------------------------------------------------------------------------
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60) | st.sampled_from(
    ["", "0", "-1", "9" * 30, "Failed", "2026-12-07", "0001-01-01T00:00+14:00", "9999-12-31T23:59-14:00", "x[0]",
     "a[99999999999]", "../..", "%00", "\x00", "[]", "'; --"])
PAGES = ["/ui/runs", "/ui/runs/{run}", "/ui/runs/{run}/rerun", "/ui/flows", "/ui/events", "/ui/runs/{run}/value/payload",
         "/ui/runs/{other}", "/ui/runs/{other}/value/{other}", "/ui/blobs/{other}", "/ui/login"]


@pytest.fixture
def fuzz_app(tmp_path_factory, monkeypatch, state):
    tmp = tmp_path_factory.mktemp("fuzz")
    with serving(tmp / "flows", {"batch.yaml": BATCH}, state=state, monkeypatch=monkeypatch,
                 admin_token=ADMIN, worker=True) as app:
        yield app, start(app)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(page=st.sampled_from(PAGES), params=st.dictionaries(
    st.sampled_from(["flow", "status", "trigger", "since", "until", "q", "page", "it", "start", "failed", "from",
                     "definition", "fragment", "run", "path", "next"]), text, max_size=6), other=text)
def test_hostile_query_strings_never_get_a_500(fuzz_app, page, params, other):
    app, run_id = fuzz_app
    params = dict(params, events="1")  # an event stream ends after its first event
    url = page.replace("{run}", run_id).replace("{other}", quote(other, safe="") or "x")
    answer = app.client.get(url, params=params, headers=BEARER)
    assert answer.status_code < 500, (url, params, answer.text[:500])


@pytest.mark.parametrize("url, status", [
    ("/ui/static/ui.js", 200), ("/ui/static/ui.css", 200), ("/ui/static/nope.js", 404), ("/ui/nope", 404),
    ("/ui/static/%2e%2e/%2e%2e/__init__.py", 404),
    ("/ui/static/..%2f__init__.py", 404), ("/ui/runs/x/value", 404), ("/ui/static/", 404)])
def test_every_answer_under_ui_carries_the_uis_security_headers_and_no_path_leaves_its_folders(app, url, status):
    answer = app.client.get(url, headers=BEARER)
    assert answer.status_code == status
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "import" not in answer.text and "root:" not in answer.text


def test_the_ui_ships_its_own_assets_and_names_no_other_site(app):
    for path in list((UI / "templates").iterdir()) + list((UI / "static").iterdir()):
        assert "://" not in path.read_text(), path
    css = app.client.get("/ui/static/ui.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    page = app.client.get("/ui/runs", headers=BEARER)
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


def test_serve_without_an_admin_token_keeps_one_beside_the_state_database(tmp_path):
    from engine.listener.ui.session import token_file

    token, path = token_file(tmp_path / "state.db")
    assert len(token) >= 20 and path == tmp_path / "state.db.ui-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert token_file(tmp_path / "state.db") == (token, path)  # kept across restarts


@pytest.mark.parametrize("body, headers", [
    (b"csrf=x&" + b"a=1&" * 200, {}),  # more fields than any form has
    (b"x" * 70_000, {}),  # past the form size limit
    (b"csrf=\xff\xfe&from=\x00", {}),  # not UTF-8
    (b"", {"content-length": "999999999"}),  # a length that lies
])
def test_hostile_form_bodies_are_refused_without_a_500(app, body, headers):
    run_id = start(app)
    answer = app.client.post(f"/ui/runs/{run_id}/rerun", content=body,
                             headers={**BEARER, "content-type": "application/x-www-form-urlencoded", **headers})
    assert answer.status_code in (403, 413)
    assert len(app.runs("batch")) == 1


@pytest.mark.parametrize("hostile", ["%00", "run%00x", "%25", "_", "%27%3B--", "%ED%A0%80", "x" * 3000])
def test_hostile_run_ids_are_404_on_every_route_that_takes_one_and_never_a_500(app, hostile):
    for url in (f"/runs/{hostile}", f"/ui/runs/{hostile}", f"/ui/runs/{hostile}/value/payload",
                f"/ui/runs/{hostile}/rerun?from=a"):
        assert app.client.get(url, headers=BEARER).status_code == 404, url
    # in a query string text with NUL is no text: the stream of all runs, without it
    assert app.client.get(f"/ui/events?events=1&run={hostile}", headers=BEARER).status_code in (200, 404)


def test_serve_on_a_database_url_keeps_its_admin_token_in_the_home_folder_without_the_password(tmp_path, monkeypatch):
    from engine.listener.ui.session import token_file

    monkeypatch.setenv("HOME", str(tmp_path))
    url = "postgresql://flowrun:s3cr%27et@db.internal:5432/flowrun"
    token, path = token_file(url)
    assert path.parent == tmp_path / ".flowrun" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "s3cr" not in path.name and "s3cr" not in path.read_text()
    assert token_file(url.replace("s3cr%27et", "rotated")) == (token, path)  # a new password: the same file
    assert token_file(url.replace("/flowrun", "/other"))[1] != path


# -- what a page shows is what the value holds ----------------------------------------------------
HIDDEN_FLOW = """\
name: hidden
triggers:
  manual: {type: Request, auth: {type: none}, dedupe: "{{ triggerBody()['key'] }}"}
actions:
  echo: {type: Compose, inputs: "{{ triggerBody()['key'] }}"}
  parse: {type: Compose, runAfter: {echo: [Succeeded]}, inputs: "{{ int(triggerBody()['key']) }}"}
"""


@pytest.mark.parametrize("char", ["\x1b", "\x07", "\x7f", "\x9b", "\u202e", "\u2066", "\u2069", "\u200b", "\u200f",
                                  "\ufeff", "\u061c"])
def test_controls_and_bidi_overrides_in_values_are_shown_as_escapes_on_every_page(tmp_path, monkeypatch, char):
    """A dedupe key, payload, output or error message holding an ANSI escape, a bidi override or a
    zero-width character reads as its escape: it cannot reverse or hide what the page says."""
    key = f"inv{char}[31m-2026-evil"
    with serving(tmp_path / "flows", {"hidden.yaml": HIDDEN_FLOW}, state=tmp_path / "state.db",
                 monkeypatch=monkeypatch, admin_token=ADMIN, worker=True) as app:
        run_id = app.client.post("/flows/hidden/triggers/manual", json={"key": key}).json()["runId"]
        wait_for(lambda: app.runs("hidden") and app.runs("hidden")[0]["status"] == "Failed", "the run to fail")
        for url in ("/ui/runs", "/ui/runs?fragment=live", f"/ui/runs/{run_id}", f"/ui/runs?q={quote(key)}"):
            page = app.client.get(url, headers=BEARER)
            assert page.status_code == 200, url
            assert char not in page.text, url
            assert f"\\u{ord(char):04x}[31m-2026-evil" in page.text, url  # shown, as its escape
