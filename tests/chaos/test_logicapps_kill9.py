"""Chaos for Logic Apps definitions: ``flowrun run`` of a workflow.json with an Until and a
Foreach, killed with SIGKILL each time a new step is committed, then ``flowrun resume``d until
it finishes. The final outputs equal an uninterrupted run's, and no Succeeded step runs again.

Kills come on observed progress (a new Succeeded step in the state file), never on timers.
``FLOWRUN_CHAOS_LA_KILLS`` sets how many (8)."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import engine
from tests.support.waiting import wait_until

FLOWRUN = [sys.executable, "-m", "engine.cli"]
ROOT = Path(__file__).parents[2]
KILLS = int(os.environ.get("FLOWRUN_CHAOS_LA_KILLS", "8"))

DEFINITION = {"definition": {
    "$schema": "https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/"
               "workflowdefinition.json#",
    "contentVersion": "1.0.0.0",
    "triggers": {"manual": {"type": "Request", "kind": "Http"}},
    "actions": {
        "Count": {"type": "InitializeVariable", "runAfter": {},
                  "inputs": {"variables": [{"name": "n", "type": "integer", "value": 0}]}},
        "Names": {"type": "InitializeVariable", "runAfter": {"Count": ["Succeeded"]},
                  "inputs": {"variables": [{"name": "names", "type": "array", "value": []}]}},
        "Until_ten": {"type": "Until", "runAfter": {"Names": ["Succeeded"]},
                      "expression": "@greaterOrEquals(variables('n'), 10)", "limit": {"count": 60},
                      "actions": {"Add": {"type": "IncrementVariable", "runAfter": {},
                                          "inputs": {"name": "n", "value": 1}}}},
        "Each": {"type": "Foreach", "runAfter": {"Until_ten": ["Succeeded"]}, "foreach": "@range(0, 12)",
                 "operationOptions": "Sequential",
                 "actions": {"Name": {"type": "Compose", "runAfter": {},
                                      "inputs": "@concat('item-', string(mul(items('Each'), variables('n'))))"},
                             "Keep": {"type": "AppendToArrayVariable", "runAfter": {"Name": ["Succeeded"]},
                                      "inputs": {"name": "names", "value": "@outputs('Name')"}}}},
        "Response": {"type": "Response", "kind": "Http", "runAfter": {"Each": ["Succeeded"]},
                     "inputs": {"statusCode": 200, "body": {"n": "@variables('n')", "names": "@variables('names')"}}},
    },
}, "kind": "Stateful"}


def _succeeded(state: Path) -> int:
    if not state.exists():
        return 0
    try:
        with sqlite3.connect(state, timeout=5) as db:
            return db.execute("SELECT count(*) FROM steps WHERE status = 'Succeeded'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _result(state: Path, run_id: str) -> dict:
    """What a run ended with, read before the engine is closed."""
    eng = engine.Engine(state)
    try:
        run = eng.result(run_id)
        return {"terminal": run.status.is_terminal, "status": run.status, "response": run.response,
                "steps": {s.path: (s.status, s.outputs) for s in run.steps.values()}}
    finally:
        eng.close()


def test_a_definition_with_until_and_foreach_killed_and_resumed_ends_as_an_uninterrupted_run(tmp_path):
    folder = tmp_path / "app" / "loops"
    folder.mkdir(parents=True)
    (folder / "workflow.json").write_text(json.dumps(DEFINITION))
    whole_state = tmp_path / "whole.db"
    done = subprocess.run([*FLOWRUN, "--state", str(whole_state), "run", str(folder / "workflow.json")], cwd=ROOT,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(whole_state) as db:
        whole = _result(whole_state, db.execute("SELECT id FROM runs").fetchone()[0])
    assert whole["response"]["body"]["n"] == 10 and len(whole["response"]["body"]["names"]) == 12

    state, run_id, kills = tmp_path / "state.db", None, 0
    while True:
        args = ["resume", run_id] if run_id else ["run", str(folder / "workflow.json")]
        proc = subprocess.Popen([*FLOWRUN, "--state", str(state), *args], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kills < KILLS:
            seen = _succeeded(state)
            wait_until(lambda: proc.poll() is not None or _succeeded(state) > seen, "no progress", interval=0.002)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait(timeout=30)
            proc.stderr.close()
        else:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
        if run_id is None:
            with sqlite3.connect(state) as db:
                row = db.execute("SELECT id FROM runs").fetchone()
            run_id = row[0] if row else None
            if run_id is None:
                continue
        if _result(state, run_id)["terminal"]:
            break
    final = _result(state, run_id)
    assert kills >= 3  # a resume may finish the run before the next kill lands
    assert final["status"] == whole["status"] and final["response"] == whole["response"]
    assert final["steps"] == whole["steps"]
