"""engine.vendor: the plumbing every vendor package shares, specified on its own."""
from __future__ import annotations

import json
import threading
from email.utils import format_datetime
from datetime import datetime, timezone

import anyio
import pytest

from engine import vendor
from engine.errors import ActionError, RetryableError
from engine.plugin import (Connection, ConnectionSpec, Fault, Rule, Vendor, compact,
                           endpoint_url, inputs_schema, retry_after, secret)

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=timezone.utc).timestamp()


def clock() -> float:
    return NOW


@pytest.mark.parametrize("value, expected", [
    ("120", 120.0),
    ("0.5", 0.5),
    (7, 7.0),
    (b"3", 3.0),
    ("-4", 0.0),
    (format_datetime(datetime(2026, 11, 23, 12, 0, 30, tzinfo=timezone.utc), usegmt=True), 30.0),
    ("Mon, 23 Nov 2026 11:59:00 GMT", 0.0),  # a date in the past: retry now
    ({"Retry-After": "9"}, 9.0),
    ({"retry-after": "9"}, 9.0),              # any case of the header name
    ({"Content-Type": "text/plain"}, None),
    ("soon", None),
    ("", None),
    ("nan", None),
    (None, None),
])
def test_retry_after_reads_seconds_or_an_http_date(value, expected):
    assert retry_after(value, now=clock) == expected


def test_compact_drops_only_none_values():
    assert compact({"a": None, "b": 0, "c": "", "d": False, "e": []}) == \
        {"b": 0, "c": "", "d": False, "e": []}


def test_inputs_schema_is_a_closed_object():
    assert inputs_schema(["to"], to={"type": "string"}) == {
        "type": "object", "additionalProperties": False, "required": ["to"],
        "properties": {"to": {"type": "string"}}}


@pytest.mark.parametrize("url, endpoint, expected", [
    ("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json?Page=2",
     "http://127.0.0.1:8080", "http://127.0.0.1:8080/2010-04-01/Accounts/AC1/Messages.json?Page=2"),
    ("https://login.salesforce.com/services/oauth2/token", "http://127.0.0.1:9/sf/",
     "http://127.0.0.1:9/sf/services/oauth2/token"),
    ("https://api.stripe.com", "http://localhost:12111", "http://localhost:12111"),
    ("https://api.stripe.com/v1/customers", None, "https://api.stripe.com/v1/customers"),
])
def test_the_endpoint_override_replaces_scheme_and_host_and_keeps_path_and_query(url, endpoint,
                                                                                  expected):
    assert endpoint_url(url, endpoint) == expected


# -- the error table --------------------------------------------------------------------------

class SdkError(Exception):
    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.code = status, code


class RateLimited(SdkError):
    pass


class CardDeclined(SdkError):
    pass


class SpecialCardDeclined(CardDeclined):
    pass


class Example(Vendor):
    name = "Example"
    modules = ("example_sdk_that_is_not_installed",)
    extra = "example"

    def rules(self):
        return [
            Rule((RateLimited,), "rate_limited", retryable=True),
            Rule((CardDeclined,), lambda fault, exc: fault.code or "card_declined"),
            Rule((SdkError,), lambda fault, exc: f"http_{fault.status}",
                 retryable=lambda fault, exc: (fault.status or 0) >= 500, fallback=True),
        ]

    def describe(self, exc):
        return Fault(f"Example says: {exc}", code=exc.code, status=exc.status,
                     headers={"Retry-After": "3"}, details={"status": exc.status, "code": exc.code})


def test_the_most_specific_declared_class_wins():
    table = Example().table
    assert table.rule_for(SpecialCardDeclined).code != "rate_limited"
    assert table.rule_for(SpecialCardDeclined) is table.rule_for(CardDeclined)
    assert table.rule_for(SdkError).fallback
    assert table.rule_for(KeyError) is None


def test_a_mapped_error_keeps_the_vendors_code_message_and_cause_and_its_retry_after():
    async def fail():
        raise RateLimited("slow down", status=429, code="rate_limit_exceeded")

    vendor = Example()
    with pytest.raises(RetryableError) as info:
        with vendor.mapped():
            anyio.run(fail)
    err = info.value
    assert (err.code, err.message, err.retry_after) == ("rate_limited", "Example says: slow down", 3.0)
    assert err.details == {"status": 429, "code": "rate_limit_exceeded"}
    assert isinstance(err.__cause__, RateLimited)


def test_a_terminal_error_has_no_retry_after_and_the_vendor_code_when_the_row_prefers_it():
    err = Example().map_error(CardDeclined("no", status=402, code="insufficient_funds"))
    assert type(err) is ActionError
    assert (err.code, err.retry_after) == ("insufficient_funds", None)


def test_secrets_are_scrubbed_from_the_message_and_details():
    key = "sk_test_very_secret_value"
    spec = ConnectionSpec(kind="example", description="", settings={"type": "object", "properties": {
        "api_key": secret()}})
    conn = Connection("ex", spec, {}, {"api_key": key}, None)
    with pytest.raises(ActionError) as info:
        with Example().mapped(conn):
            raise SdkError(f"bad key {key}", status=401, code=key)
    assert key not in info.value.message and key not in str(info.value.details)
    assert "***" in info.value.message


def test_exceptions_no_row_declares_pass_through_unchanged():
    with pytest.raises(KeyError):
        with Example().mapped():
            raise KeyError("not an SDK error")


def test_call_runs_off_the_event_loop_without_none_arguments_and_maps_errors():
    seen = {}

    def sdk_call(a, **kw):
        seen.update(kw, a=a, thread=threading.get_ident())
        return "done"

    class Ctx:
        connection = None

    async def main():
        seen["loop"] = threading.get_ident()
        assert await Example().call(Ctx(), sdk_call, 1, email="x@y", phone=None) == "done"
        with pytest.raises(ActionError) as info:
            await Example().call(Ctx(), _raise, CardDeclined("declined", status=402))
        return info.value

    err = anyio.run(main)
    assert seen["a"] == 1 and seen["email"] == "x@y" and "phone" not in seen
    assert seen["thread"] != seen["loop"]
    assert err.code == "card_declined"


def _raise(exc):
    raise exc


def test_a_missing_sdk_is_named_with_the_extra_that_installs_it():
    assert Example().missing_sdk("example.Do") == \
        "example.Do needs the Example SDK: pip install 'flowrun[example]'"
    assert Example().missing_sdk("example.Do", find_spec=lambda name: object()) is None


# -- the client, once per connection, off the loop --------------------------------------------

def test_a_connection_builds_its_client_once_in_a_worker_thread_when_first_uses_race():
    release = threading.Event()
    builds: list[int] = []

    def build(conn):
        builds.append(threading.get_ident())
        release.wait()  # a slow login: the event loop must not wait for it
        return object()

    spec = ConnectionSpec(kind="slow", description="", settings={}, client=build)
    conn = Connection("slow", spec, {}, {}, None)
    clients: list[object] = []

    async def use():
        clients.append(await conn.get_client())

    async def main():
        loop_thread = threading.get_ident()
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(use)
            while not builds:  # the loop keeps running while the build blocks
                await anyio.sleep(0)
            release.set()
        return loop_thread

    loop_thread = anyio.run(main)
    assert len(builds) == 1 and builds[0] != loop_thread
    assert len(clients) == 5 and all(c is clients[0] for c in clients)
    assert anyio.run(conn.get_client) is clients[0]  # and kept for the connection's lifetime


def test_a_connection_without_a_client_factory_fails_the_action_clearly():
    conn = Connection("c", ConnectionSpec(kind="k", description="", settings={}), {}, {}, None)
    with pytest.raises(ActionError, match="has no client"):
        anyio.run(conn.get_client)


def test_scrub_masks_secrets_at_every_depth_of_nested_data():
    secret = 'p@ss"w\\o/rd+%é'
    data = {"a": [{"b": {"c": [f"x {secret} y", {"d": json.dumps({"e": secret})}]}}], "n": 3}
    out = vendor.scrub(data, [secret])
    assert secret not in json.dumps(out, ensure_ascii=False)
    assert out["a"][0]["b"]["c"][0] == "x *** y" and out["n"] == 3


def test_scrub_reads_each_secret_s_forms_once_however_deep_the_data(monkeypatch):
    calls = []
    real = vendor.secret_forms
    monkeypatch.setattr(vendor, "secret_forms", lambda v: calls.append(v) or real(v))
    deep: object = "secret-value"
    for _ in range(8):
        deep = {"k": [deep, "secret-value"]}
    vendor.scrub(deep, ["secret-value", "other-secret"])
    assert sorted(calls) == ["other-secret", "secret-value"]
