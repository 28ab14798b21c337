"""A secret with quotes, backslashes, NUL or non-ASCII letters is masked in every form it takes on
its way to an error, a log line or the state database: as is, inside a JSON body (escaped once),
inside that body stored as a JSON string (escaped twice), in an exception's repr, URL-encoded,
base64. The carriers are the real ones: a vendor's error table (``Vendor.map_error``), the
store's redaction on write, and a log record."""
import json
import logging
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.connections import Redactor, RedactingAdapter
from engine.store import Store
from engine.vendor import Fault, Rule, Vendor

SECRETS = ['sk_"q\\uote\'s\\1234', 'p@ss\\word"', "tab\there\x00nul", "pässwörd\\\"x", "a'b\"c\\d\\\\e"]


def carriers(secret: str) -> list[str]:
    body = json.dumps({"api_key": secret, "error": "invalid"})
    return [secret, body, json.dumps({"body": body}), repr({"k": secret}), f"Key '{secret}' rejected",
            quote(secret, safe=""), str(KeyError(secret)), json.dumps(repr(secret))]


class _Boom(Exception):
    pass


class _Vendor(Vendor):
    name = "Test"

    def rules(self):
        return [Rule((_Boom,), code="Denied")]

    def describe(self, exc):
        text = str(exc)
        return Fault(message=text, details={"body": text, "nested": [{"raw": text}]})


@pytest.mark.parametrize("secret", SECRETS, ids=range(len(SECRETS)))
def test_a_vendor_error_never_carries_a_secret_in_any_encoding(secret):
    for text in carriers(secret):
        err = _Vendor().map_error(_Boom(text), [secret])
        dumped = json.dumps(err.to_dict(), ensure_ascii=False) + json.dumps(err.to_dict())
        for plain in (secret, json.dumps(secret)[1:-1]):
            assert plain not in err.message and plain not in dumped, text


@pytest.mark.parametrize("secret", SECRETS, ids=range(len(SECRETS)))
def test_the_state_database_never_holds_a_secret_in_any_encoding(tmp_path, secret):
    redactor = Redactor()
    redactor.add(secret)
    store = Store(tmp_path / "state.db", redact=redactor)
    try:
        for text in carriers(secret):
            stored = store.encode({"message": text, "details": {"body": text, "list": [text]}})
            for form in (secret, json.dumps(secret)[1:-1], json.dumps(json.dumps(secret)[1:-1])[1:-1],
                         repr(secret)[1:-1]):
                assert form not in stored, text
    finally:
        store.close()


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab1'\"\\\x00\n\t/é%+=")), min_size=6, max_size=16))
def test_any_secret_is_masked_in_json_bodies_reprs_and_the_store(secret):
    redactor = Redactor()
    redactor.add(secret)
    store = Store.__new__(Store)  # only its encoding (no file): encode is what writes pass through
    store.redact, store.blob_threshold = redactor, 10**9
    for text in carriers(secret):
        assert secret not in redactor(text)
        stored = store.encode({"details": {"body": text}})
        assert secret not in json.loads(stored)["details"]["body"]
        assert json.dumps(secret)[1:-1] not in stored


@pytest.mark.parametrize("secret", SECRETS, ids=range(len(SECRETS)))
def test_a_log_line_never_carries_a_secret_in_any_encoding(secret, caplog):
    redactor = Redactor()
    redactor.add(secret)
    log = RedactingAdapter(logging.getLogger("flowrun.node.test"), {}, redactor)
    with caplog.at_level(logging.INFO, logger="flowrun.node.test"):
        for text in carriers(secret):
            log.info("job started: %s", json.dumps({"handle": text}))
    for record in caplog.records:
        assert secret not in record.getMessage()
        assert json.dumps(secret)[1:-1] not in record.getMessage()
