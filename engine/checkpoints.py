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

    def put(self, flow: str, trigger: str, key: str, value: Any) -> None:
        """Write (uncommitted: the caller commits, usually with ``store.durable()``)."""
        self.store.db.execute(
            f"INSERT INTO {TABLE} (flow, trigger, key, value, updated) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (flow, trigger, key) DO UPDATE SET value = excluded.value, updated = excluded.updated",
            (flow, trigger, key, self.store.redact(json.dumps(value, separators=(",", ":"))), time.time()))
