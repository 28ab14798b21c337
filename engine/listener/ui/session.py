"""Who may use the web UI: the admin token, as a bearer header or through a login form.

    Authorization: Bearer <admin token>          scripts and tests
    POST /ui/login  token=<admin token>           sets an HttpOnly, SameSite=Strict session cookie

A session cookie is ``<expiry>.<nonce>.<mac>``: an HMAC (a key kept in the state database)
over the expiry, the nonce and a digest of the admin token, so changing the token ends
every session; nothing in it is the token. Every POST carries a CSRF token, the HMAC of the
session's nonce (``bearer`` for header auth; the login form's own pre-session nonce for
the login itself), compared in constant time. Without an admin token the UI is closed.
Signing out ends the session on the server too: its nonce is kept in the state database
(``Ended``) until the cookie would have expired, so a copy of the cookie opens nothing.
Wrong tokens, in the login form or as a bearer header, count against the client's address in
one ``Throttle``; cookies are ``Secure`` when the UI is reached over https (``--base-url``).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from typing import Any

COOKIE = "flowrun_ui"
TRIES, WINDOW = 10, 600.0  # wrong tokens from one address within WINDOW seconds before it must wait
PRE_COOKIE = "flowrun_ui_login"  # the login form's nonce, before there is a session
LIFETIME = 12 * 3600  # seconds a session lasts


class Ended:
    """Sessions signed out before their expiry: nonces in a table of the state database (every
    process serving it sees them), each kept until its cookie would have expired anyway."""

    TABLE = "ui_sessions_ended"
    DDL = f"CREATE TABLE IF NOT EXISTS {TABLE} (nonce TEXT PRIMARY KEY, expiry BIGINT NOT NULL)"

    def __init__(self, store: Any, clock: Any = time.time):
        self.store, self.clock = store, clock

    def add(self, nonce: str, expiry: int) -> None:
        self.store.ensure_table(self.TABLE, self.DDL)
        db = self.store.db
        db.execute(f"DELETE FROM {self.TABLE} WHERE expiry < ?", (int(self.clock()),))
        db.execute(f"INSERT OR IGNORE INTO {self.TABLE} (nonce, expiry) VALUES (?, ?)", (nonce, expiry))
        self.store.flush()

    def __contains__(self, nonce: str) -> bool:
        self.store.ensure_table(self.TABLE, self.DDL)
        return self.store.db.execute(f"SELECT 1 FROM {self.TABLE} WHERE nonce = ?", (nonce,)).fetchone() is not None


class Sessions:
    def __init__(self, key: bytes, admin_token: str | None, *, clock: Any = time.time, ended: Ended | None = None):
        self.key = key
        self.ended = ended
        self.token = admin_token.encode() if admin_token else None
        self._token_digest = hashlib.sha256(self.token).hexdigest()[:32] if self.token else ""
        self.clock = clock

    @property
    def enabled(self) -> bool:
        return self.token is not None

    def _mac(self, *parts: str) -> str:
        return hmac.new(self.key, "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()

    # -- credentials ----------------------------------------------------------------------
    def token_ok(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.strip().encode("utf-8", "replace"), self.token)

    @staticmethod
    def offers_bearer(headers: Any) -> bool:
        """The request carries ``Authorization: Bearer ...`` (right or wrong)."""
        scheme, _, _ = (headers.get("authorization") or "").partition(" ")
        return scheme.lower() == "bearer"

    def bearer(self, headers: Any) -> bool:
        scheme, _, value = (headers.get("authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and self.token_ok(value)

    def new_cookie(self) -> str:
        expiry = str(int(self.clock()) + LIFETIME)
        nonce = secrets.token_hex(16)
        return f"{expiry}.{nonce}.{self._mac('session', expiry, nonce, self._token_digest)}"

    def nonce(self, cookie: str | None) -> str | None:
        """The nonce of a valid, unexpired session cookie, else None."""
        if not self.enabled or not cookie or len(cookie) > 200:
            return None
        parts = cookie.split(".")
        if len(parts) != 3 or not parts[0].isdigit():
            return None
        expiry, nonce, mac = parts
        if not hmac.compare_digest(mac, self._mac("session", expiry, nonce, self._token_digest)):
            return None
        if int(expiry) <= self.clock() or (self.ended is not None and nonce in self.ended):
            return None
        return nonce

    def end(self, cookie: str | None) -> None:
        """Sign the session of ``cookie`` out for good (nothing for no session, or no ``ended``)."""
        nonce = self.nonce(cookie)
        if nonce is not None and self.ended is not None:
            self.ended.add(nonce, int(str(cookie).split(".")[0]))

    def who(self, request: Any) -> str | None:
        """'bearer' or the session nonce of an authenticated request, else None."""
        if self.bearer(request.headers):
            return "bearer"
        return self.nonce(request.cookies.get(COOKIE))

    # -- CSRF -------------------------------------------------------------------------------
    def csrf(self, who: str) -> str:
        return self._mac("csrf", who)

    def csrf_ok(self, who: str, given: Any) -> bool:
        return isinstance(given, str) and hmac.compare_digest(given.encode("utf-8", "replace"),
                                                              self.csrf(who).encode())

    @staticmethod
    def pre_nonce() -> str:
        return secrets.token_hex(16)

    def login_csrf(self, pre: str) -> str:
        return self._mac("login", pre)


class Throttle:
    """Wrong admin tokens counted per client address: past TRIES within WINDOW seconds, that
    address may not try again until the window has passed (guessing is slowed to a crawl)."""

    def __init__(self, clock: Any = time.monotonic):
        self.clock = clock
        self.failures: dict[str, list[float]] = {}

    def _recent(self, client: str) -> list[float]:
        now = self.clock()
        kept = [t for t in self.failures.get(client, []) if now - t < WINDOW]
        if kept:
            self.failures[client] = kept
        else:
            self.failures.pop(client, None)
        return kept

    def wait(self, client: str) -> float:
        """Seconds ``client`` must wait before trying again (0: it may try now)."""
        recent = self._recent(client)
        return 0.0 if len(recent) < TRIES else max(0.0, WINDOW - (self.clock() - recent[0]))

    def failed(self, client: str) -> None:
        if len(self.failures) > 10_000:  # bounded memory whatever the number of addresses
            self.failures.clear()
        self.failures.setdefault(client, []).append(self.clock())
        del self.failures[client][:-TRIES]

    def succeeded(self, client: str) -> None:
        self.failures.pop(client, None)


def token_file(state: str | Path) -> tuple[str, Path]:
    """(token, file): the admin token ``flowrun serve`` uses when none is set, kept in
    ``<state>.ui-token`` (created once, readable by its owner only) so a restart keeps it. For a
    database URL (PostgreSQL) it is kept in ~/.flowrun/, one file per database; instances behind
    a load balancer share FLOWRUN_ADMIN_TOKEN instead."""
    text = str(state)
    if "://" in text:
        import hashlib

        from engine.pgconn import shown

        path = Path.home() / ".flowrun" / f"ui-token-{hashlib.sha256(shown(text).encode()).hexdigest()[:16]}"
    else:
        path = Path(text + ".ui-token")
    try:
        token = path.read_text(encoding="utf-8").strip()
        if len(token) >= 20:
            return token, path
    except (OSError, UnicodeDecodeError):
        pass
    token = secrets.token_urlsafe(24)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(token + "\n")
    os.replace(tmp, path)
    return token, path
