"""Keys a server keeps in its state database: random, made once, shared by every process.

``flowrun serve`` signs capabilities with them (a run's polling token is an HMAC of the
run id), so a token stays valid across restarts and across processes on one state file,
and nothing per run needs storing. The table is created on first use, outside the numbered
migrations, like the trigger checkpoints. A key is never logged nor shown.
"""
from __future__ import annotations

import secrets
from typing import Any

from .errors import StoreError

TABLE = "server_keys"
DDL = f"CREATE TABLE IF NOT EXISTS {TABLE} (name TEXT PRIMARY KEY, key BLOB NOT NULL)"


def server_key(store: Any, name: str) -> bytes:
    """The key called ``name``, made (32 random bytes) and committed the first time."""
    store.ensure_table(TABLE, DDL)
    try:
        row = store.db.execute(f"SELECT key FROM {TABLE} WHERE name = ?", (name,)).fetchone()
        if row is None:  # two processes racing: the first insert wins, both read it back
            store.db.execute(f"INSERT OR IGNORE INTO {TABLE} (name, key) VALUES (?, ?)",
                             (name, secrets.token_bytes(32)))
            store.flush()
            row = store.db.execute(f"SELECT key FROM {TABLE} WHERE name = ?", (name,)).fetchone()
    except store.Error as exc:
        raise StoreError(f"{store.path}: cannot read the server key {name!r}: {exc}") from None
    return bytes(row[0])
