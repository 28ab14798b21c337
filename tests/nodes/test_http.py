"""Http's error table (its request/response behaviour is specified in tests/engine and
tests/test_flows.py against real local servers)."""
from __future__ import annotations

import json

import httpx
import pytest

from nodes.http.node import HTTP
from tests.support.recorder import Recorder
from tests.support.sdk import unmapped


def test_every_httpx_exception_class_is_mapped_by_a_declared_row():
    classes = [getattr(httpx, name) for name in httpx.__all__
               if isinstance(getattr(httpx, name), type)
               and issubclass(getattr(httpx, name), Exception)]
    roots = {httpx.HTTPError, httpx.RequestError}
    assert len(classes) > 20
    assert unmapped(HTTP, [c for c in classes if c not in roots]) == []


def test_timeouts_and_transport_failures_are_retried_and_a_bad_uri_is_not():
    assert HTTP.table.rule_for(httpx.ReadTimeout).retryable is True
    assert HTTP.table.rule_for(httpx.ConnectError).retryable is True
    assert HTTP.table.rule_for(httpx.InvalidURL).retryable is False


def test_a_refused_connection_fails_the_action_with_a_code_and_the_request_named(run_flow):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_flow(f"""
        actions:
          call:
            type: Http
            inputs: {{method: GET, uri: "http://127.0.0.1:{port}/x"}}
            retryPolicy: {{type: none}}
        """)
    step = result.steps["call"]
    assert (result.status, step.status, step.attempts) == ("Failed", "Failed", 1)
    assert step.error["code"] == "HttpConnectionError"
    assert step.error["message"].startswith(f"GET http://127.0.0.1:{port}/x: ConnectError")


@pytest.mark.parametrize("uri_query, queries, expected", [
    ("?a=1&b=2", None, {"a": ["1"], "b": ["2"]}),
    ("?a=1&b=2", {}, {"a": ["1"], "b": ["2"]}),
    ("?a=1&b=2", {"c": 3}, {"a": ["1"], "b": ["2"], "c": ["3"]}),
    ("?a=1", {"a": "override", "flag": True}, {"a": ["override"], "flag": ["true"]}),
    ("?x=%2F%2B%25%20&y=%C3%A9", None, {"x": ["/+% "], "y": ["é"]}),
    ("?a=1&a=2", None, {"a": ["1", "2"]}),
    ("", {"q": "a&b=c"}, {"q": ["a&b=c"]}),
])
def test_the_query_string_of_uri_is_kept_and_queries_add_to_it(run_flow, uri_query, queries, expected):
    with Recorder() as api:
        api.route("GET", r"/echo", json={"ok": True})
        inputs = {"method": "GET", "uri": f"{api.url}/echo{uri_query}"}
        if queries is not None:
            inputs["queries"] = queries
        result = run_flow(json.dumps({"actions": {"call": {"type": "Http", "inputs": inputs}}}))
        assert result.status == "Succeeded", result.steps["call"].error
        assert [(r.path, r.query) for r in api.requests] == [("/echo", expected)]


@pytest.mark.parametrize("where", ["input header", "connection secret"])
def test_a_non_ascii_header_value_fails_clearly_and_never_shows_the_value(run_flow, monkeypatch, where):
    secret = 'tøken-"q\\\\/+%'
    monkeypatch.setenv("HTTP_TEST_TOKEN", secret)
    with Recorder() as api:
        api.route("GET", r"/x", json={"ok": True})
        if where == "input header":
            inputs = {"method": "GET", "uri": f"{api.url}/x", "headers": {"X-Name": "Zoë"}}
            result = run_flow(json.dumps({"actions": {"call": {"type": "Http", "inputs": inputs}}}))
        else:
            inputs = {"method": "GET", "uri": f"{api.url}/x"}
            result = run_flow(json.dumps({"actions": {"call": {"type": "Http", "connection": "api", "inputs": inputs}}}),
                              connections="connections:\n  api: {kind: http, settings: {auth: bearer}, secrets: {token: HTTP_TEST_TOKEN}}\n")
        assert api.requests == []  # nothing was sent
    error = result.steps["call"].error
    assert error["code"] == "InvalidHeader" and "non-ASCII" in error["message"]
    assert ("'api' connection's secret" in error["message"]) == (where == "connection secret")
    assert "Zoë" not in error["message"] and "tøken" not in json.dumps(error)
