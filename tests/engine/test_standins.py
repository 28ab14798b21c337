"""The node boundary (engine/standins.py): one place where an action's node runs or a stand-in
answers: a Logic Apps static result, a test's mock, a plan's example."""
from __future__ import annotations

import textwrap

import anyio
import pytest

from engine.api import Engine
from engine.standins import StandIn, iteration, pick, stand_in
from engine.testing.network import NetworkGuard


@pytest.mark.parametrize("path, index", [
    ("call", None), ("loop[3]/call", 3), ("outer[1]/inner[7]/call", 7), ("outer[2]/scope/call", 2),
    ("a[10]/b[0]/c/d", 0)])
def test_the_innermost_iteration_of_a_path(path, index):
    assert iteration(path) == index


@pytest.mark.parametrize("path, expected", [("x", "first"), ("l[0]/x", "first"), ("l[1]/x", "second"),
                                            ("l[9]/x", "second")])
def test_a_list_answers_per_iteration_and_its_last_entry_repeats(path, expected):
    entries = [StandIn(outputs="first"), StandIn(outputs="second")]
    assert pick(entries, path).outputs == expected


@pytest.mark.parametrize("written, status, error", [
    ({"outputs": 1}, "Succeeded", None),
    ({"status": "failed", "error": "boom"}, "Failed", {"message": "boom"}),
    ({"status": "TIMEDOUT"}, "TimedOut", None)])
def test_the_written_form(written, status, error):
    got = stand_in(written)
    assert (got.status, got.error) == (status, error)


def test_a_failed_stand_in_ends_the_action_failed_with_its_outputs():
    from engine.standins import StoodIn

    with pytest.raises(StoodIn) as caught:
        StandIn("Failed", {"statusCode": 404}, {"code": "Gone", "message": "no such order"}).answer()
    assert (caught.value.status, caught.value.outputs, caught.value.error) == (
        "Failed", {"statusCode": 404}, {"code": "Gone", "message": "no such order"})


STATIC = """\
name: static
staticResults:
  HTTP0: {status: Succeeded, outputs: {statusCode: 200, body: {orders: [1, 2, 3]}}}
actions:
  call:
    type: Http
    inputs: {method: GET, uri: "http://127.0.0.1:9/orders"}
    runtimeConfiguration: {staticResult: {name: HTTP0, staticResultOptions: Enabled}}
  read:
    type: Compose
    runAfter: {call: [Succeeded]}
    inputs: "{{ body('call').orders | length }}"
  off:
    type: Http
    runAfter: {read: [Succeeded]}
    inputs: {method: GET, uri: "http://127.0.0.1:9/off"}
    runtimeConfiguration: {staticResult: {name: HTTP0, staticResultOptions: Disabled}}
"""


def test_a_logic_apps_static_result_answers_through_the_same_boundary(tmp_path):
    path = tmp_path / "static.yaml"
    path.write_text(textwrap.dedent(STATIC))
    from engine.clock import VirtualClock

    engine = Engine(tmp_path / "state.db", clock=VirtualClock())  # ("off" retries its refused call: no wall time)
    try:
        flow = engine.load(path)
        with NetworkGuard() as guard:
            run = anyio.run(lambda: engine.run(flow))
        steps = {s.path: s for s in engine.steps(run.id)}
    finally:
        engine.close()
    assert steps["call"].status == "Succeeded" and steps["read"].outputs == 3
    # Disabled: the node itself runs (and here finds the network blocked)
    assert steps["off"].status == "Failed"
    assert [a.host for a in guard.attempts] == ["127.0.0.1:9"]


def test_a_static_result_is_answered_in_a_flow_test_too(tmp_path):
    from engine.testing.runner import run_files

    (tmp_path / "static.yaml").write_text(textwrap.dedent(STATIC).replace("Disabled", "Enabled"))
    (tmp_path / "static.test.yaml").write_text(
        "tests:\n  static results need no mocks and no network:\n"
        "    expect: {status: Succeeded, actions: {read: Succeeded, off: Succeeded}}\n")
    [result] = run_files([str(tmp_path / "static.test.yaml")])
    assert result.passed, result.failures


def test_the_network_guard_names_the_action_and_restores_sockets():
    import socket

    from engine.testing.network import ACTION

    before = (socket.socket.connect, socket.getaddrinfo)
    with NetworkGuard() as guard:
        token = ACTION.set("loop[2]/notify")
        try:
            with pytest.raises(ConnectionError):
                socket.create_connection(("127.0.0.1", 9), timeout=1)
            with pytest.raises(ConnectionError):
                socket.getaddrinfo("example.com", 443)
        finally:
            ACTION.reset(token)
        a, b = socket.socketpair()  # Unix sockets (the event loop's wake-up pipe) stay allowed
        a.close(), b.close()
    assert [str(a) for a in guard.attempts] == ["action 'loop[2]/notify' tried to reach 127.0.0.1:9",
                                                "action 'loop[2]/notify' tried to reach example.com:443"]
    assert (socket.socket.connect, socket.getaddrinfo) == before


@pytest.mark.parametrize("status, code", [("Skipped", None), ("Cancelled", None), ("TimedOut", "StaticResult")])
def test_a_static_result_may_end_an_action_as_logic_apps_allows(tmp_path, status, code):
    path = tmp_path / "static.yaml"
    path.write_text(textwrap.dedent(STATIC))
    engine = Engine(tmp_path / "state.db")
    try:
        flow = engine.load(path)
        flow.raw["staticResults"]["HTTP0"] = {"status": status}  # as if the file said so
        run = anyio.run(lambda: engine.run(flow))
        steps = {s.path: s for s in engine.steps(run.id)}
    finally:
        engine.close()
    assert steps["call"].status == status and steps["read"].status == "Skipped"
    assert (steps["call"].error or {}).get("code") == code
