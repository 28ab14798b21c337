"""Hostile kafka.Consume definitions: `flowrun validate` reports each at its file:line, with no traceback,
and a topic pattern that would stall librdkafka's matcher (catastrophic backtracking) is refused."""
from __future__ import annotations

import re

import pytest
import yaml
from click.testing import CliRunner

from engine.cli import main
from nodes.kafka.consume import pattern_problem

CONNECTIONS = {"connections": {"kafka": {"kind": "kafka", "settings": {"bootstrap_servers": "127.0.0.1:9"}},
                               "aws": {"kind": "aws", "settings": {"region": "eu-west-1"}}}}


def validate(tmp_path, trigger: dict) -> tuple[int, str]:
    (tmp_path / "connections.yaml").write_text(yaml.safe_dump(CONNECTIONS))
    flow = tmp_path / "flow.yaml"
    flow.write_text(yaml.safe_dump({"triggers": {"t": {"type": "kafka.Consume", "connection": "kafka",
                                                       "groupId": "g", "topics": ["orders"], **trigger}},
                                    "actions": {"a": {"type": "Compose", "inputs": 1}}}, sort_keys=False))
    out = CliRunner().invoke(main, ["validate", str(flow)])
    return out.exit_code, out.output


@pytest.mark.parametrize("trigger, where, says", [
    ({"topics": ["^(a+)+$"]}, "triggers.t.topics.0", "catastrophic backtracking"),
    ({"topics": ["ok", "^(.*a){20}$"]}, "triggers.t.topics.1", "catastrophic backtracking"),
    ({"topics": ["^(a|ab)*$"]}, "triggers.t.topics.0", "catastrophic backtracking"),
    ({"topics": ["^(a?){30}a{30}$"]}, "triggers.t.topics.0", "catastrophic backtracking"),
    ({"topics": ["^(?=x)orders"]}, "triggers.t.topics.0", "lookahead"),
    ({"topics": ["^(o)\\1"]}, "triggers.t.topics.0", "backreferences"),
    ({"topics": ["^["]}, "triggers.t.topics.0", "not a regular expression"),
    ({"topics": ["^" + "a" * 2000]}, "triggers.t.topics.0", "at most 1000"),
    ({"topics": []}, "triggers.t.topics", "non-empty"),
    ({"batchSize": 0}, "triggers.t.batchSize", "minimum"),
    ({"batchSize": -5}, "triggers.t.batchSize", "minimum"),
    ({"batchSize": 10 ** 30}, "triggers.t.batchSize", "maximum"),
    ({"batchSize": "5"}, "triggers.t.batchSize", "integer"),
    ({"maxBytes": 0}, "triggers.t.maxBytes", "minimum"),
    ({"startFrom": "beginning"}, "triggers.t.startFrom", "is not one of"),
    ({"properties": {"enable.auto.commit": True}}, "triggers.t.properties.enable.auto.commit", "set by the trigger"),
    ({"schema": {"type": "nonsense"}}, "triggers.t.schema", "not a valid JSON Schema"),
    ({"connection": "aws"}, "triggers.t.connection", "is of kind 'aws'"),
    ({"connection": "nope"}, "triggers.t.connection", "unknown connection"),
])
def test_a_hostile_definition_is_one_clear_problem_at_its_line_from_validate(tmp_path, trigger, where, says):
    code, out = validate(tmp_path, trigger)
    assert code != 0 and "Traceback" not in out, out
    line = next(ln for ln in out.splitlines() if where in ln)
    assert re.match(r".*flow\.yaml:\d+:\d+ ", line) and says in line, out


@pytest.mark.parametrize("pattern", ["^orders-.*", "^(orders|payments)-[0-9]+$", "^(ab|cd)+$", "^eu\\.orders\\..*"])
def test_ordinary_topic_patterns_are_accepted(tmp_path, pattern):
    assert pattern_problem(pattern) is None
    code, out = validate(tmp_path, {"topics": [pattern]})
    assert code == 0, out


@pytest.mark.parametrize("pattern", ["^" + "(" * 5000 + "a" + ")" * 5000, "^" + "(?:a|b)" * 3000,
                                     "^" + "(" * 300 + "a+" + ")+" * 300, "^\\"])
def test_a_pathological_pattern_is_a_problem_or_accepted_never_a_crash(pattern):
    assert pattern_problem(pattern) is None or isinstance(pattern_problem(pattern), str)
