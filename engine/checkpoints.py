"""Trigger checkpoints: where a pull trigger got to (a cursor per trigger and key).

A consumer keeps one checkpoint per source partition (a Kafka partition, a Kinesis
shard; a schedule keeps one, under the key ``""``). Values are JSON, written through the
store's redactor. ``put`` writes in the store's open transaction without committing, so a
checkpoint saved with a run (``Engine.accept``) commits with it, or not at all.

The table is created on first use (``Store.ensure_table``), outside the numbered
migrations: it belongs to triggers, not to runs and steps.
"""
from __future__ import annotations

import json
import time
from typing import Any

TABLE = "trigger_checkpoints"
DDL = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    flow TEXT NOT NULL, trigger TEXT NOT NULL, key TEXT NOT NULL, value TEXT, updated REAL NOT NULL,
    PRIMARY KEY (flow, trigger, key)
)"""


class Checkpoints:
    def __init__(self, store: Any):
        self.store = store
        store.ensure_table(TABLE, DDL)

    def get(self, flow: str, trigger: str, key: str = "") -> Any:
        row = self.store.db.execute(f"SELECT value FROM {TABLE} WHERE flow = ? AND trigger = ? AND key = ?",
                                    (flow, trigger, key)).fetchone()
        return None if row is None or row[0] is None else json.loads(row[0])

    def all(self, flow: str, trigger: str) -> dict[str, Any]:
        rows = self.store.db.execute(f"SELECT key, value FROM {TABLE} WHERE flow = ? AND trigger = ? ORDER BY key",
                                     (flow, trigger)).fetchall()
        return {k: (None if v is None else json.loads(v)) for k, v in rows}

    @staticmethod
    def encode(key: Any, value: Any) -> tuple[str, str]:
        """(key, JSON text) of one checkpoint, or ValueError naming the key when it is not a
        string or the value is not JSON (a trigger's bug: nothing is written)."""
        if not isinstance(key, str):
            raise ValueError(f"checkpoint key {key!r} is not a string")
        try:
            return key, json.dumps(value, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"checkpoint {key!r}: the value is not JSON ({exc})") from None

    def put(self, flow: str, trigger: str, key: str, value: Any) -> None:
        """Write (uncommitted: the caller commits, usually with ``store.durable()``)."""
        self.put_encoded(flow, trigger, *self.encode(key, value))

    def put_encoded(self, flow: str, trigger: str, key: str, text: str) -> None:
        self.store.db.execute(
            f"INSERT INTO {TABLE} (flow, trigger, key, value, updated) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (flow, trigger, key) DO UPDATE SET value = excluded.value, updated = excluded.updated",
            (flow, trigger, key, self.store.redact(text), time.time()))
