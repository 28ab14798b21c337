"""engine/flowcache.py: validated flows remembered by content hash in the state database."""
from __future__ import annotations

import json
import sqlite3
import textwrap

import pytest

from engine import loader, yamlpos
from engine.api import Engine
from engine.errors import FlowError
from engine.flowcache import TABLE

FLOW = """
actions:
  a: {type: Compose, inputs: "{{ 1 + 1 }}"}
  b: {type: Compose, inputs: "{{ outputs('a') }}", runAfter: {a: [succeeded]}}
"""


@pytest.fixture
def parses(monkeypatch):
    """How many times a flow text was parsed (a cache hit parses nothing)."""
    count = [0]
    real = yamlpos.load

    def counting(text, file):
        if "actions" in text:
            count[0] += 1
        return real(text, file)
    monkeypatch.setattr(loader.yamlpos, "load", counting)
    return count


def engine(tmp_path):
    return Engine(tmp_path / "state.db")


def write(tmp_path, text, name="flow.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_flow_validated_once_is_rebuilt_from_the_state_database_by_any_later_process(tmp_path, parses):
    path = write(tmp_path, FLOW)
    first = engine(tmp_path)
    flow = first.load(path)
    first.close()
    again = engine(tmp_path)  # a new process on the same state file
    cached = again.load(path)
    again.close()
    assert parses[0] == 1
    assert cached.hash == flow.hash and cached.raw == flow.raw and list(cached.actions) == ["a", "b"]
    assert cached.actions["b"].run_after == {"a": ("Succeeded",)}  # canonical, as validated
    assert cached.root.chain == ["a", "b"]


@pytest.mark.parametrize("change", ["text", "connections", "file"])
def test_a_change_to_what_the_verdict_depends_on_checks_the_flow_again(tmp_path, parses, change):
    path = write(tmp_path, FLOW)
    eng = engine(tmp_path)
    eng.load(path)
    if change == "text":
        path.write_text(textwrap.dedent(FLOW) + "# edited\n")
    elif change == "connections":
        write(tmp_path, "connections:\n  api: {kind: http, secrets: {token: T}}\n", "connections.yaml")
        eng.close()
        eng = engine(tmp_path)
    else:
        path = write(tmp_path, FLOW, "other.yaml")
    eng.load(path)
    eng.close()
    assert parses[0] == 2


def test_a_flow_with_problems_is_never_cached_and_every_problem_is_reported_each_time(tmp_path, parses):
    path = write(tmp_path, "actions:\n  a: {type: Compse, inputs: 1}\n  b: {type: Compose, runAfter: {zz: [Failed]}}\n")
    eng = engine(tmp_path)
    seen = []
    for _ in range(2):
        with pytest.raises(FlowError) as err:
            eng.load(path)
        seen.append([str(p) for p in err.value.problems])
    eng.close()
    assert parses[0] == 2 and seen[0] == seen[1] and len(seen[0]) == 2


@pytest.mark.parametrize("garbage", ["not json", "[1, 2]", '{"actions": 5}', '{"actions": {"a": {"type": "Nope"}}}'])
def test_a_damaged_cache_row_is_a_miss_never_a_wrong_flow(tmp_path, garbage):
    path = write(tmp_path, FLOW)
    eng = engine(tmp_path)
    eng.load(path)
    eng.close()
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute(f"UPDATE {TABLE} SET data = ?", (garbage,))
    eng = engine(tmp_path)
    flow = eng.load(path)
    eng.close()
    assert list(flow.actions) == ["a", "b"] and flow.actions["a"].type == "Compose"


@pytest.mark.parametrize("secret", ["pl41n-S3cret", "q\"uo\\te/+%é"])
def test_a_flow_holding_a_secret_value_is_never_stored_in_the_cache(tmp_path, monkeypatch, secret):
    monkeypatch.setenv("FLOWRUN_TEST_CACHE_TOKEN", secret)
    write(tmp_path, "connections:\n  api: {kind: http, secrets: {token: FLOWRUN_TEST_CACHE_TOKEN}}\n",
          "connections.yaml")
    path = tmp_path / "flow.yaml"
    path.write_text("actions:\n  a: {type: Compose, inputs: " + json.dumps(secret) + "}\n")
    eng = engine(tmp_path)
    eng.load(path)
    eng.close()
    raw = (tmp_path / "state.db").read_bytes()
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute(f"SELECT count(*) FROM {TABLE}").fetchone() == (0,)
    assert secret.encode() not in raw and json.dumps(secret).encode() not in raw


def test_a_plain_run_of_a_flow_validated_before_imports_no_parser_nor_validator(tmp_path):
    """What keeps `flowrun run` fast: the flow comes from the cache (bench/validate.py measures it)."""
    import subprocess
    import sys

    path = write(tmp_path, FLOW)
    script = ("import sys\nfrom engine.cli import main\n"
              f"sys.argv = ['flowrun', '--state', {str(tmp_path / 'state.db')!r}, 'run', {str(path)!r}, '--json']\n"
              "try:\n    main()\nexcept SystemExit:\n    pass\n"
              "print(sorted(m for m in ['yaml', 'jsonschema', 'jsonschema_rs', 'networkx', 'jinja2.meta', 'rich',"
              " 'starlette', 'uvicorn', 'httpx'] if m in sys.modules))\n")
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
            for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    assert runs[1].stdout.strip().splitlines()[-1] == "[]"
