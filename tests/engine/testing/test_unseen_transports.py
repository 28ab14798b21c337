"""Transports the network guard cannot see: librdkafka's own sockets (kafka.Produce) and a child
process (dbt.Command). In `flowrun test` such an action that no mock answers fails before it
runs, naming itself and the remedy; under `--record` it runs for real and the result says it
was not recorded; a mock answers for it as for any other. `flowrun plan` never runs one."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from engine.cli import main
from engine.testing.runner import run_files
from tests.support.kafka import kafka_cluster  # noqa: F401  (the session's mock cluster)

KAFKA_FLOW = """\
name: publish
actions:
  announce:
    type: kafka.Produce
    connection: kafka
    inputs: {{topic: {topic}, value: {{order: "{{{{ triggerBody().id }}}}"}}}}
  after:
    type: Compose
    runAfter: {{announce: [Succeeded, Failed]}}
    inputs: done
"""

UNMOCKED = """\
tests:
  publishes the order:
    input: {id: 7}
    expect: {status: Succeeded}
"""


def kafka_project(folder: Path, cluster, tests: str) -> tuple[Path, str]:
    topic = cluster.create_topic(cluster.topic("unseen"), 1)
    (folder / "publish.yaml").write_text(KAFKA_FLOW.format(topic=topic))
    (folder / "connections.yaml").write_text(yaml.safe_dump({"connections": {"kafka": cluster.connection()}}))
    path = folder / "publish.test.yaml"
    path.write_text(textwrap.dedent(tests))
    return path, topic


def end_offsets(cluster, topic: str) -> int:
    """How many messages the topic holds (its high watermark, every partition)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "offsets", "log_level": 0})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
    finally:
        c.close()


def test_an_unmocked_kafka_produce_fails_the_test_before_it_runs_and_the_cluster_receives_nothing(
        tmp_path, kafka_cluster):
    path, topic = kafka_project(tmp_path, kafka_cluster, UNMOCKED)
    [result] = run_files([str(path)])
    assert not result.passed
    text = "\n".join(result.failures)
    assert "action 'announce' (kafka.Produce) reaches outside through its SDK's own native sockets" in text
    assert "mock it in the test file: mocks: {announce: {outputs: ...}}" in text
    assert end_offsets(kafka_cluster, topic) == 0


def test_the_refusal_fails_the_test_even_when_the_test_expects_the_action_to_fail(tmp_path, kafka_cluster):
    path, topic = kafka_project(tmp_path, kafka_cluster, """\
        tests:
          a failure is fine:
            input: {id: 7}
            expect: {actions: {announce: Failed, after: Succeeded}}
        """)
    [result] = run_files([str(path)])
    assert not result.passed and "kafka.Produce" in "\n".join(result.failures)
    assert end_offsets(kafka_cluster, topic) == 0


def test_a_mocked_kafka_produce_passes_and_sends_nothing(tmp_path, kafka_cluster):
    path, topic = kafka_project(tmp_path, kafka_cluster, """\
        tests:
          mocked:
            input: {id: 7}
            mocks: {announce: {outputs: {count: 1, messages: [{partition: 0, offset: 41}]}}}
            expect: {status: Succeeded, values: {"{{ body('announce').count }}": 1}}
        """)
    [result] = run_files([str(path)])
    assert result.passed, result.line()
    assert end_offsets(kafka_cluster, topic) == 0


def test_record_runs_it_for_real_and_says_plainly_it_was_not_recorded(tmp_path, kafka_cluster):
    path, topic = kafka_project(tmp_path, kafka_cluster, UNMOCKED)
    result = CliRunner().invoke(main, ["--state", "unused.db", "--connections", str(tmp_path / "connections.yaml"),
                                       "test", "--record", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "note: action 'announce' (kafka.Produce) ran for real through its SDK's own native sockets and " \
           "was NOT recorded: replay will refuse it" in result.output
    assert end_offsets(kafka_cluster, topic) == 1  # it really ran
    cassette = path.parent / "publish.test.cassette.json"
    assert not cassette.exists() or "announce" not in json.loads(cassette.read_text())["tests"].get(
        "publishes the order", {})
    [replayed] = run_files([str(path)])  # and a replay refuses it, as before
    assert not replayed.passed and "mock it in the test file" in "\n".join(replayed.failures)
    assert end_offsets(kafka_cluster, topic) == 1


def test_a_plan_never_runs_a_kafka_produce(tmp_path, kafka_cluster):
    path, topic = kafka_project(tmp_path, kafka_cluster, UNMOCKED)
    result = CliRunner().invoke(main, ["--state", "unused.db", "plan", str(tmp_path / "publish.yaml"),
                                       "--input", '{"id": 7}'], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"would produce 1 message(s) to Kafka {topic}" in result.output
    assert end_offsets(kafka_cluster, topic) == 0


# -- dbt: the work happens in a child process ----------------------------------------------------
def test_an_unmocked_dbt_command_fails_the_test_and_starts_no_child_process(tmp_path):
    project = Path(__file__).resolve().parents[2] / "nodes/dbt_project"
    artifacts = tmp_path / "artifacts"
    (tmp_path / "connections.yaml").write_text(yaml.safe_dump({"connections": {"dbt": {
        "kind": "dbt", "settings": {"project_dir": str(project), "profiles_dir": str(project),
                                    "artifacts_dir": str(artifacts),
                                    "env": {"SHOP_DUCKDB_PATH": str(tmp_path / "shop.duckdb")}},
        "secrets": {"password": "UNSEEN_DBT_PASSWORD"}}}}))  # unset: the test gives it a placeholder
    (tmp_path / "build.yaml").write_text(textwrap.dedent("""\
        name: build
        actions:
          models: {type: dbt.Command, connection: dbt, inputs: {command: build}}
        """))
    path = tmp_path / "build.test.yaml"
    path.write_text("tests:\n  builds:\n    expect: {status: Succeeded}\n")
    [result] = run_files([str(path)])
    assert not result.passed
    assert "action 'models' (dbt.Command) reaches outside through a child process" in "\n".join(result.failures)
    # no dbt ran: it would have made the DuckDB file and written its artifacts
    assert not artifacts.exists() and not (tmp_path / "shop.duckdb").exists()


def test_an_unmocked_kafka_produce_in_a_child_flow_is_refused_and_the_remedy_is_the_workflow_action(
        tmp_path, kafka_cluster):
    topic = kafka_cluster.create_topic(kafka_cluster.topic("child"), 1)
    (tmp_path / "publish.yaml").write_text(KAFKA_FLOW.format(topic=topic))
    (tmp_path / "connections.yaml").write_text(yaml.safe_dump({"connections": {"kafka": kafka_cluster.connection()}}))
    (tmp_path / "parent.yaml").write_text(textwrap.dedent("""\
        name: parent
        actions:
          child: {type: Workflow, inputs: {flow: publish.yaml, body: {id: 7}}}
        """))
    path = tmp_path / "parent.test.yaml"
    path.write_text("tests:\n  runs the child:\n    expect: {status: Succeeded}\n")
    [result] = run_files([str(path)])
    assert not result.passed
    assert ("action 'announce' (kafka.Produce) of the child flow publish.yaml reaches outside through its SDK's "
            "own native sockets, which flowrun test can neither block nor record: mock the Workflow action that "
            "runs that flow in the test file") in "\n".join(result.failures)
    assert end_offsets(kafka_cluster, topic) == 0
