"""Credential headers a SAS flow reads, kept for a resume without ever being stored in clear (encrypted at rest).

A Logic Apps definition often checks an API key itself (an If on
``triggerOutputs()['headers']['x-api-key']``): the listener lets such a flow see the header as
sent (``engine.listener.app.Listener._reveal``) while every persisted copy holds it masked. A
run resumed after its process died (kill -9) reads its trigger outputs back from the store,
masked: it must not then compare ``***`` with the key and take the wrong branch.

So the run's stored request carries the revealed values sealed: AES-256-GCM, each value bound
to its flow and header name (associated data), under a key that exists only in the
environment, ``$FLOWRUN_SECRETS_KEY`` (else one derived from ``$FLOWRUN_SAS_KEY``): never in
the state database, which holds only the ciphertext and a 4-byte key id. A resume in a
process with the same key opens them and the flow sees the same real value as the first
attempt.

Without such a key the values live only in the memory of the process that received the
request, and the stored request lists the header names. A resume elsewhere (or after a
crash) that reads ``trigger()`` / ``triggerOutputs()`` then fails that read with a clear error
(``SecretNotKept``) naming the headers and the variable to set; actions that finished before
the crash are reused as they were. The same happens when the key changed (``SecretNotOpened``).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

ENV = "FLOWRUN_SECRETS_KEY"
_FALLBACK_ENV = "FLOWRUN_SAS_KEY"
_LABEL = b"flowrun sealed request headers v1"
VERSION = 1


def key() -> bytes | None:
    """The sealing key, from the environment only (None: values are kept in memory only)."""
    raw = os.environ.get(ENV) or os.environ.get(_FALLBACK_ENV)
    if not raw:
        return None
    return hmac.new(raw.encode("utf-8", "surrogatepass"), _LABEL, hashlib.sha256).digest()


def key_id(k: bytes) -> str:
    return hashlib.sha256(b"kid:" + k).hexdigest()[:8]


def _aad(flow: str, name: str) -> bytes:
    return f"{flow}\n{name}".encode("utf-8", "surrogatepass")


def seal(values: dict[str, str], flow: str) -> dict:
    """What the stored request keeps of ``values`` (header -> real value): ciphertexts under
    the environment's key, or only the names when there is none."""
    k = key()
    if k is None:
        return {"v": VERSION, "names": sorted(values)}
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead = AESGCM(k)
    out = {}
    for name, value in values.items():
        nonce = os.urandom(12)
        ct = aead.encrypt(nonce, value.encode("utf-8", "surrogatepass"), _aad(flow, name))
        out[name] = base64.b64encode(nonce + ct).decode("ascii")
    return {"v": VERSION, "kid": key_id(k), "headers": out}


def open_outputs(outputs: Any, request: Any, flow: str, redactor: Any, held: dict | None = None) -> Any:
    """The trigger outputs of a resumed run: sealed headers opened (each value made a secret of
    ``redactor`` first), or taken from ``held`` (this process still has them in memory), or,
    when neither can be, marked lost (``lost_error``)."""
    sealed = request.get("sealed") if isinstance(request, dict) else None
    if not isinstance(sealed, dict) or not isinstance(outputs, dict):
        return outputs
    headers = dict(outputs.get("headers") or {})
    names = sorted(sealed.get("headers") or {}) or [n for n in sealed.get("names") or [] if isinstance(n, str)]
    k = key()
    opened: dict[str, str] = {n: v for n, v in (held or {}).items() if n in names and isinstance(v, str)}
    why = "SecretNotKept"
    if len(opened) < len(names) and k is not None and isinstance(sealed.get("headers"), dict):
        if sealed.get("kid") != key_id(k):
            why = "SecretNotOpened"
        else:
            from cryptography.exceptions import InvalidTag
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            aead = AESGCM(k)
            for name, token in sealed["headers"].items():
                try:
                    blob = base64.b64decode(str(token), validate=True)
                    opened[name] = aead.decrypt(blob[:12], blob[12:], _aad(flow, name)).decode("utf-8", "surrogatepass")
                except (InvalidTag, ValueError):
                    why = "SecretNotOpened"
    for value in opened.values():
        redactor.add(value)
    headers.update(opened)
    lost = [n for n in names if n not in opened]
    result = {**outputs, "headers": headers}
    if lost:
        result[LOST] = {"names": lost, "code": why}
    return result


LOST = "$lostHeaders"  # in a resumed run's trigger outputs (in memory only): what could not be opened


def lost_error(outputs: Any) -> tuple[str, str] | None:
    """(code, message) when a resumed run's trigger outputs lack headers it was given, else None."""
    lost = outputs.get(LOST) if isinstance(outputs, dict) else None
    if not lost:
        return None
    names = ", ".join(lost["names"])
    if lost["code"] == "SecretNotOpened":
        return lost["code"], (f"the request's credential header(s) {names} were sealed with another key than "
                              f"this process's ${ENV} (or ${_FALLBACK_ENV}); they cannot be read on this resume")
    return lost["code"], (f"the request's credential header(s) {names} were kept only in the memory of the "
                          f"process that received it, which stopped; set ${ENV} on the server so a resumed run "
                          f"can read them (they are stored sealed with it, never in clear)")
