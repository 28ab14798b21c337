"""A rerun started from the web UI survives kill -9 of `flowrun serve` like any served run: the
next server resumes it, and what it reused or finished is not run again."""
from __future__ import annotations

import re

from ..inprocess import wait_for
from .conftest import ADMIN

BEARER = {"Authorization": f"Bearer {ADMIN}"}
SLOW = """\
name: slow
triggers:
  manual: {type: Request, auth: {type: none}}
actions:
  first:
    type: Compose
    inputs: "{{ triggerBody().n }}"
  check:
    type: Compose
    runAfter: {first: [Succeeded]}
    inputs: "{{ 1 / triggerBody().d }}"
  pause:
    type: Wait
    runAfter: {check: [Succeeded]}
    inputs: {interval: {count: 1.5, unit: Second}}
  last:
    type: Compose
    runAfter: {pause: [Succeeded]}
    inputs: "done"
"""
FIXED = SLOW.replace("{{ 1 / triggerBody().d }}", "{{ 1 / (triggerBody().d or 1) }}")


def test_a_rerun_from_the_ui_resumes_after_kill_9(make_server):
    server = make_server({"slow.yaml": SLOW})
    with server.client() as http:
        old = http.post("/flows/slow/triggers/manual", json={"n": 7, "d": 0}).json()["runId"]
        assert server.wait_run(old)["status"] == "Failed"
        (server.flows / "slow.yaml").write_text(FIXED)
        plan = http.get(f"/ui/runs/{old}/rerun?from=check&definition=current", headers=BEARER).text
        csrf = re.search(r'name="csrf" value="([^"]+)"', plan).group(1)
        answer = http.post(f"/ui/runs/{old}/rerun", headers=BEARER, follow_redirects=False,
                           data={"csrf": csrf, "from": "check", "definition": "current"})
    new = answer.headers["location"].rsplit("/", 1)[-1]
    wait_for(lambda: any(s["action"] == "check" and s["status"] == "Succeeded" for s in server.steps(new)),
             "the rerun's 'check' to be committed")
    server.kill9()
    assert server.run(new)["status"] in ("Queued", "Running")

    again = make_server({"slow.yaml": FIXED})
    assert new in {r["run_id"] for r in again.logs() if r.get("event") == "run_resumed"}
    run = again.wait_run(new)
    assert run["status"] == "Succeeded" and run["rerun_of"] == old
    steps = {s["action"]: s for s in again.steps(new)}
    assert steps["first"]["attempts"] == 1 and steps["check"]["attempts"] == 1  # not run again
    with again.client() as http:
        page = http.get(f"/ui/runs/{new}", headers=BEARER).text
    assert 'id="run-status">Succeeded' in page and f'href="/ui/runs/{old}"' in page
