"""The run page for every container (If, Switch, Until, nested loops) and for a loop too big
to draw whole: its iterations come a page at a time."""
from __future__ import annotations

import re

from ..inprocess import serving, wait_for
from .conftest import ADMIN

BEARER = {"Authorization": f"Bearer {ADMIN}"}
SHAPES = """\
name: shapes
triggers:
  manual: {type: Request, auth: {type: none}}
actions:
  check:
    type: If
    expression: "{{ triggerBody().n > 1 }}"
    actions:
      big: {type: Compose, inputs: big}
    else:
      actions:
        small: {type: Compose, inputs: small}
  pick:
    type: Switch
    expression: "{{ triggerBody().kind }}"
    cases:
      a: {case: a, actions: {was_a: {type: Compose, inputs: a}}}
    default:
      actions:
        other: {type: Compose, inputs: other}
  count:
    type: Until
    expression: "{{ variables('i') >= 2 }}"
    runAfter: {init: [Succeeded]}
    limit: {count: 5}
    actions:
      bump: {type: IncrementVariable, inputs: {name: i, value: 1}}
  init:
    type: InitializeVariable
    inputs: {variables: [{name: i, type: integer, value: 0}]}
  outer:
    type: Foreach
    foreach: "{{ [[1, 2], [3]] }}"
    actions:
      inner:
        type: Foreach
        foreach: "{{ item() }}"
        actions:
          square: {type: Compose, inputs: "{{ item() * item() }}"}
"""
MANY = """\
name: many
triggers:
  manual: {type: Request, auth: {type: none}}
actions:
  each:
    type: Foreach
    foreach: "{{ range(1200) | list }}"
    concurrency: 50
    actions:
      one: {type: Compose, inputs: "{{ item() }}"}
"""


def test_every_kind_of_container_opens_with_its_statuses(tmp_path, monkeypatch, state):
    with serving(tmp_path / "flows", {"shapes.yaml": SHAPES}, state=state, monkeypatch=monkeypatch,
                 admin_token=ADMIN, worker=True) as app:
        run_id = app.client.post("/flows/shapes/triggers/manual", json={"n": 2, "kind": "b"}).json()["runId"]
        wait_for(lambda: app.runs("shapes")[0]["status"] == "Succeeded", "the run to succeed")
        page = app.client.get(f"/ui/runs/{run_id}", headers=BEARER).text
        chosen = app.client.get(f"/ui/runs/{run_id}?it=outer[0]/inner[1]", headers=BEARER).text
    for block in ("block-check", "block-check-else", "block-pick-case:a", "block-pick-default", "block-count",
                  "block-outer", "block-inner"):
        assert f'id="{block}"' in page, block
    assert 'data-action="big" data-status="Succeeded"' in page
    assert 'data-action="small" data-status="Skipped"' in page  # the branch not taken
    assert 'data-action="other" data-status="Succeeded"' in page and 'data-action="was_a" data-status="Skipped"' in page
    assert 'aria-label="Iterations of outer"' in page and 'aria-label="Iterations of count"' in page
    # choosing an iteration of the inner loop opens both loops at it
    assert 'id="step-outer[0]/inner[1]/square"' in chosen
    assert re.search(r'class="cell st-Succeeded chosen"[^>]*data-iteration="1"', chosen)


def test_a_big_loop_shows_its_iterations_a_page_at_a_time(tmp_path, monkeypatch, state):
    with serving(tmp_path / "flows", {"many.yaml": MANY}, state=state, monkeypatch=monkeypatch,
                 admin_token=ADMIN, worker=True) as app:
        run_id = app.client.post("/flows/many/triggers/manual", json={}).json()["runId"]
        wait_for(lambda: app.runs("many")[0]["status"] == "Succeeded", "the run to succeed", timeout=60)
        first = app.client.get(f"/ui/runs/{run_id}", headers=BEARER).text
        later = app.client.get(f"/ui/runs/{run_id}?start=1000", headers=BEARER).text
    assert first.count('class="cell st-') == 500 and "1200 iterations" in first
    assert 'data-iteration="499"' in first and 'data-iteration="500"' not in first
    assert f"/ui/runs/{run_id}?start=500" in first
    assert later.count('class="cell st-') == 200 and 'data-iteration="1000"' in later
    assert first.count('class="step"') <= 10  # the actions list holds no iteration unless one is chosen


FLAKY = """\
name: flaky
triggers:
  manual: {type: Request, auth: {type: none}}
actions:
  call:
    type: Http
    connection: flaky
    inputs: {method: GET, uri: "{{ triggerBody().url }}"}
    retryPolicy: {type: fixed, count: 3, interval: PT0.01S}
"""


def test_a_retried_action_lists_its_attempts_with_their_times_and_no_secret(tmp_path, monkeypatch):
    from tests.support.recorder import Recorder

    from ..conftest import CONNECTIONS, SECRETS, write_flows

    write_flows(tmp_path / "flows", {"flaky.yaml": FLAKY}, CONNECTIONS + "  flaky: {kind: http, settings: {auth: bearer}, "
                                                                        "secrets: {token: TEST_INBOUND_KEY}}\n")

    def echo(req):  # a 503 whose body carries the credential it was sent
        return 503, {"Content-Type": "application/json"}, ('{"auth": "%s"}' % req.header("authorization")).encode()

    with Recorder() as api, serving(tmp_path / "flows", None, state=tmp_path / "state.db",
                                    monkeypatch=monkeypatch, admin_token=ADMIN) as app:
        api.route("GET", "/flaky", handler=echo, times=2)
        api.route("GET", "/flaky", json={"ok": True})
        run_id = app.client.post("/flows/flaky/triggers/manual", json={"url": api.url + "/flaky"}).json()["runId"]
        wait_for(lambda: app.runs("flaky")[0]["status"] == "Succeeded", "the run to succeed")
        page = app.client.get(f"/ui/runs/{run_id}", headers=BEARER).text
        assert api.requests[0].header("authorization") == "Bearer " + SECRETS["TEST_INBOUND_KEY"]
    table = page[page.index('<table class="attempts">'):]
    table = table[:table.index("</table>")]
    rows = re.findall(r'<tr class="attempt"><td>(\d)</td><td><span class="badge st-(\w+)">.*?<td class="mono">'
                      r'([0-9: .-]+)</td><td class="mono">([0-9: .-]+)</td><td>(\d+ ms)</td>'
                      r'<td class="error-text">([^<]*)</td>', table)
    assert [(n, status) for n, status, *_ in rows] == [("1", "Failed"), ("2", "Failed"), ("3", "Succeeded")]
    assert all(started <= ended for _, _, started, ended, _, _ in rows)
    assert "503" in rows[0][5] and rows[2][5] == ""
    assert SECRETS["TEST_INBOUND_KEY"] not in page and "***" in rows[0][5]
