"""A loopback Confluent Schema Registry: the REST API subset confluent-kafka's SchemaRegistryClient
and its Avro / JSON Schema serializers use, on a real HTTP server (tests/support/recorder.py)
that records every request.

    with SchemaRegistry(user="key", password="s3cret") as registry:
        ... connection settings: schema_registry_url=registry.url ...
        registry.subjects["orders-value"]        # [(id, schema dict)], in version order
        registry.api.requests                    # what the client sent

Endpoints (as the registry documents them; bodies ``application/vnd.schemaregistry.v1+json``):

- ``POST /subjects/{subject}/versions``: register ``{"schema", "schemaType"?, "references"?}``;
  the same schema again gives its existing id; answers ``{"id": N}``.
- ``POST /subjects/{subject}``: look a schema up: ``{"subject", "id", "version", "schema"}``, or
  404 with error_code 40403 (schema not found) / 40401 (subject not found).
- ``GET /subjects/{subject}/versions/latest`` and ``/versions/{n}``: that version.
- ``GET /schemas/ids/{id}``: ``{"schema", "schemaType"?}`` or 404 with error_code 40403.

With a user and password, every request must carry that HTTP Basic authorisation, else 401
with error_code 401.
"""
from __future__ import annotations

import base64
import json
import threading
from typing import Any
from urllib.parse import unquote

from .recorder import Recorded, Recorder

CT = {"Content-Type": "application/vnd.schemaregistry.v1+json"}


def _canonical(schema: str) -> str:
    try:
        return json.dumps(json.loads(schema), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return schema


class SchemaRegistry:
    def __init__(self, user: str | None = None, password: str | None = None):
        self.api = Recorder()
        self.user, self.password = user, password
        self.schemas: dict[int, dict] = {}  # id -> {"schema", "schemaType"?}
        self.subjects: dict[str, list[int]] = {}  # subject -> ids by version
        self._lock = threading.Lock()
        r = r"/subjects/([^/]+)"
        self.api.route("POST", r + r"/versions", handler=self._guard(self._register))
        self.api.route("POST", r, handler=self._guard(self._lookup))
        self.api.route("GET", r + r"/versions/(latest|\d+)", handler=self._guard(self._version))
        self.api.route("GET", r"/schemas/ids/(\d+)", handler=self._guard(self._by_id))

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.api.url

    def __enter__(self) -> "SchemaRegistry":
        self.api.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.api.stop()

    # -- handlers -------------------------------------------------------------------------
    @staticmethod
    def _answer(status: int, body: dict) -> tuple[int, dict, bytes]:
        return status, CT, json.dumps(body).encode()

    def _guard(self, handler: Any) -> Any:
        def guarded(req: Recorded) -> tuple[int, dict, bytes]:
            if self.user is not None:
                token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
                if req.header("authorization") != f"Basic {token}":
                    return self._answer(401, {"error_code": 401, "message": "Unauthorized"})
            try:
                return handler(req)
            except (ValueError, KeyError) as exc:
                return self._answer(422, {"error_code": 42201, "message": f"Invalid schema: {exc}"})
        return guarded

    @staticmethod
    def _subject(req: Recorded) -> str:
        return unquote(req.path.split("/")[2])

    def _find(self, subject: str, body: dict) -> int | None:
        want = (_canonical(body["schema"]), body.get("schemaType", "AVRO"))
        for sid in self.subjects.get(subject, []):
            s = self.schemas[sid]
            if (_canonical(s["schema"]), s.get("schemaType", "AVRO")) == want:
                return sid
        return None

    def _register(self, req: Recorded) -> tuple[int, dict, bytes]:
        body, subject = req.json(), self._subject(req)
        with self._lock:
            sid = self._find(subject, body)
            if sid is None:
                for known, s in self.schemas.items():  # the same schema under another subject: its id
                    if _canonical(s["schema"]) == _canonical(body["schema"]) and \
                            s.get("schemaType", "AVRO") == body.get("schemaType", "AVRO"):
                        sid = known
                        break
                else:
                    sid = len(self.schemas) + 1
                    entry = {"schema": body["schema"]}
                    if body.get("schemaType", "AVRO") != "AVRO":
                        entry["schemaType"] = body["schemaType"]
                    self.schemas[sid] = entry
                self.subjects.setdefault(subject, []).append(sid)
        return self._answer(200, {"id": sid})

    def _lookup(self, req: Recorded) -> tuple[int, dict, bytes]:
        body, subject = req.json(), self._subject(req)
        if subject not in self.subjects:
            return self._answer(404, {"error_code": 40401, "message": f"Subject '{subject}' not found."})
        sid = self._find(subject, body)
        if sid is None:
            return self._answer(404, {"error_code": 40403, "message": "Schema not found"})
        version = self.subjects[subject].index(sid) + 1
        return self._answer(200, {"subject": subject, "id": sid, "version": version, **self.schemas[sid]})

    def _version(self, req: Recorded) -> tuple[int, dict, bytes]:
        subject, which = self._subject(req), req.path.rsplit("/", 1)[1]
        ids = self.subjects.get(subject)
        if not ids:
            return self._answer(404, {"error_code": 40401, "message": f"Subject '{subject}' not found."})
        version = len(ids) if which == "latest" else int(which)
        if not 1 <= version <= len(ids):
            return self._answer(404, {"error_code": 40402, "message": f"Version {which} not found."})
        sid = ids[version - 1]
        return self._answer(200, {"subject": subject, "id": sid, "version": version, **self.schemas[sid]})

    def _by_id(self, req: Recorded) -> tuple[int, dict, bytes]:
        sid = int(req.path.rsplit("/", 1)[1])
        if sid not in self.schemas:
            return self._answer(404, {"error_code": 40403, "message": "Schema not found"})
        return self._answer(200, dict(self.schemas[sid]))
