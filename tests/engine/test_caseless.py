"""engine/caseless.py: one rule for letter case. Type names and statuses are case-insensitive in
the loader, the published schema, Terminate's runStatus, `runs --status` and the docs."""
from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from engine.cli import main
from engine.errors import FlowError
from engine.registry import default_registry
from engine.schema import flow_schema

FLOW_SCHEMA = Draft202012Validator(flow_schema(default_registry()))

CASES = [
    ("actions: {a: {type: compose, inputs: 1}}", True),
    ("actions: {a: {type: COMPOSE, inputs: 1}}", True),
    ("actions: {a: {type: Compose, inputs: 1}, b: {type: compose, inputs: 2, runAfter: {a: [succeeded, FAILED]}}}",
     True),
    ("actions: {a: {type: scope, actions: {b: {type: cOmPoSe, inputs: 1}}}}", True),
    ("triggers: {t: {type: request, auth: {type: none}}}\nactions: {a: {type: compose, inputs: 1}}", True),
    ("actions: {a: {type: terminate, inputs: {runStatus: failed}}}", True),
    ("actions: {a: {type: Composer, inputs: 1}}", False),
    ("actions: {a: {type: Compose, inputs: 1}, b: {type: Compose, inputs: 2, runAfter: {a: [Done]}}}", False),
    ("actions: {a: {type: terminate, inputs: {runStatus: Skipped}}}", False),
]


@pytest.mark.parametrize("text, valid", CASES)
def test_the_published_schema_and_the_loader_agree_on_letter_case(text, valid):
    from engine.loader import load_text  # noqa: PLC0415

    schema_ok = not list(FLOW_SCHEMA.iter_errors(yaml.safe_load(text)))
    try:
        load_text(text, "f.yaml")
        loader_ok = True
    except FlowError:
        loader_ok = False
    assert (schema_ok, loader_ok) == (valid, valid)


@pytest.mark.parametrize("word", ["Compose", "Http", "Succeeded", "Service.Bus-Send_2"])
def test_a_caseless_pattern_matches_the_word_in_any_case_and_nothing_else(word):
    import re

    from engine.schema import caseless

    pattern = re.compile(f"^{caseless(word)}$")
    assert all(pattern.match(w) for w in (word, word.lower(), word.upper(), word.swapcase()))
    assert not pattern.match(word + "x") and not pattern.match(word[1:])


@pytest.mark.parametrize("written", ["failed", "FAILED", "Failed", "fAiLeD"])
def test_terminate_takes_its_run_status_in_any_case_and_the_run_ends_with_the_canonical_one(tmp_path, written):
    flow = tmp_path / "flow.yaml"
    flow.write_text(f"actions:\n  stop: {{type: terminate, inputs: {{runStatus: {written}}}}}\n")
    cli = CliRunner()
    out = cli.invoke(main, ["--state", str(tmp_path / "s.db"), "run", str(flow), "--json"], catch_exceptions=False)
    assert out.exit_code == 1, out.output
    run = json.loads(out.output)
    assert run["status"] == "Failed" and run["steps"][0]["outputs"]["runStatus"] == "Failed"
    for status in ("failed", "FAILED", "Failed"):
        listed = cli.invoke(main, ["--state", str(tmp_path / "s.db"), "runs", "--status", status, "--json"],
                            catch_exceptions=False)
        assert [r["status"] for r in json.loads(listed.output)] == ["Failed"]
