"""A loopback proxy in front of moto that makes some entries of a batch call fail, as AWS does
under throttling: the entries are not forwarded (so they really are not delivered), and the
reply lists them as failed with the code asked for, exactly in the shape of the AWS API
(PutEvents ``Entries``/``FailedEntryCount``, PutRecords ``Records``/``FailedRecordCount``,
SendMessageBatch ``Failed``). Everything else is forwarded to moto as it is.

    with PartialFailures(moto.url) as proxy:
        proxy.fail("AWSEvents.PutEvents", {1}, "ThrottlingException", times=2)
        ... point the connection's endpoint at proxy.url ...

moto never fails an entry for throttling or an internal error; this is how the retry of
only the failed entries is exercised against a real peer.
"""
from __future__ import annotations

import json
import threading
from typing import Any

import httpx

from .recorder import Recorded, Recorder

ENTRIES = {"AWSEvents.PutEvents": "Entries", "Kinesis_20131202.PutRecords": "Records",
           "AmazonSQS.SendMessageBatch": "Entries"}


class PartialFailures:
    def __init__(self, upstream: str):
        self.upstream = upstream
        self.recorder = Recorder()
        self.recorder.route("POST", r"/.*", handler=self._handle)
        self.plans: dict[str, list[tuple[set[int], str]]] = {}
        self.sent: list[tuple[str, list[Any]]] = []  # (target, entries forwarded) per batch call
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=30)

    @property
    def url(self) -> str:
        return self.recorder.url

    def fail(self, target: str, indexes: set[int], code: str, *, times: int = 1) -> None:
        """The next ``times`` ``target`` calls fail the entries at these positions of the request."""
        with self._lock:
            self.plans.setdefault(target, []).extend([(set(indexes), code)] * times)

    def _forward(self, req: Recorded, body: bytes) -> httpx.Response:
        headers = {k: v for k, v in req.headers.items() if k not in ("host", "content-length")}
        return self._http.post(self.upstream + req.path, content=body, headers=headers)

    def _handle(self, req: Recorded) -> tuple[int, dict, bytes]:
        target = req.header("x-amz-target") or ""
        with self._lock:
            plan = self.plans.get(target)
            step = plan.pop(0) if plan else None
        if target not in ENTRIES:
            res = self._forward(req, req.body)
            return res.status_code, {"Content-Type": res.headers.get("content-type", "")}, res.content
        payload = json.loads(req.body)
        entries = payload[ENTRIES[target]]
        failing = {i for i in (step[0] if step else set()) if i < len(entries)}
        kept = [e for i, e in enumerate(entries) if i not in failing]
        with self._lock:
            self.sent.append((target, kept))
        reply: dict = {}
        if kept:
            res = self._forward(req, json.dumps({**payload, ENTRIES[target]: kept}).encode())
            if res.status_code != 200:
                return res.status_code, {"Content-Type": res.headers.get("content-type", "")}, res.content
            reply = res.json()
        code = step[1] if step else ""
        message = "Rate exceeded" if "Throttl" in code or "Throughput" in code else "Internal failure"
        if target == "AmazonSQS.SendMessageBatch":
            reply.setdefault("Successful", [])
            reply["Failed"] = reply.get("Failed", []) + [
                {"Id": entries[i]["Id"], "SenderFault": False, "Code": code, "Message": message} for i in sorted(failing)]
        else:
            key = ENTRIES[target]
            done = iter(reply.get(key, []))
            merged = [{"ErrorCode": code, "ErrorMessage": message} if i in failing else next(done)
                      for i in range(len(entries))]
            reply[key] = merged
            count = "FailedEntryCount" if target == "AWSEvents.PutEvents" else "FailedRecordCount"
            reply[count] = sum(1 for m in merged if m.get("ErrorCode"))
        return 200, {"Content-Type": "application/x-amz-json-1.1"}, json.dumps(reply).encode()

    def __enter__(self) -> "PartialFailures":
        self.recorder.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.recorder.stop()
        self._http.close()
