"""montecarlo.CircuitBreaker: run a custom SQL rule as a circuit breaker, polled durably."""
from __future__ import annotations

import json
from typing import Any

from engine.plugin import ActionError, Job, Pending, inputs_schema

from .client import ask, call, no_retry, plain

TELEMETRY = {"x-mcd-telemetry-reason": "service", "x-mcd-telemetry-service": "circuit_breaker_service"}


def _trigger(client: Any, inputs: dict, log: Any) -> list[str]:
    from pycarlo.features.circuit_breakers import CircuitBreakerService

    service = CircuitBreakerService(mc_client=client, print_func=log.info)
    return service.trigger_all(rule_uuid=inputs.get("rule_uuid"), namespace=inputs.get("namespace"),
                               rule_name=inputs.get("rule_name"),
                               runtime_variables=inputs.get("runtime_variables") or None)


def _states(client: Any, uuids: list[str]) -> list[dict]:
    """One read of the executions' states (what CircuitBreakerService.poll_all loops on)."""
    from pycarlo.core import Query

    query = Query()
    query.get_circuit_breaker_rule_state_v2(job_execution_uuids=uuids).__fields__("status", "log")
    answer = ask(client, query, retry_backoff=no_retry(), additional_headers=TELEMETRY)
    return [{"status": str(s.status) if s.status is not None else None,
             "log": None if s.log is None else str(s.log)}
            for s in (answer.get_circuit_breaker_rule_state_v2 or [])]


def _payload(log: str | None) -> dict:
    """The last log entry with a payload, as pycarlo reads it (its _get_log_payload)."""
    try:
        entries = json.loads(log or "[]")
    except (ValueError, RecursionError):  # not JSON, or nested past the recursion limit
        return {}
    for entry in reversed(entries if isinstance(entries, list) else []):
        if isinstance(entry, dict) and isinstance(entry.get("payload"), dict):
            return entry["payload"]
    return {}


class CircuitBreaker(Job):
    type = "montecarlo.CircuitBreaker"
    title = "Check a Monte Carlo circuit breaker"
    description = (
        "Triggers a custom SQL rule (by `rule_uuid`, or `rule_name` with an optional "
        "`namespace`) as a circuit breaker through pycarlo's CircuitBreakerService, records "
        "the job execution ids, then polls their state durably (a resumed run polls the same "
        "executions; it never triggers twice). When every execution has finished, a breach "
        "(breach count > 0) fails the action with code CircuitBreakerBreached and the breach "
        "details, or, with `onBreach: output`, succeeds with `breached: true` so later "
        "actions can branch on it. An execution that errored fails the action "
        "(circuit_breaker_error). Use the action's `timeout` to bound the wait.")
    connection = "montecarlo"
    reads_only = True
    poll_interval = 5.0
    max_poll_interval = 30.0
    input_schema = {
        **inputs_schema(
            [],
            rule_uuid={"type": "string", "minLength": 1, "description": "The rule's UUID."},
            rule_name={"type": "string", "minLength": 1, "description": "The rule's name."},
            namespace={"type": "string", "minLength": 1,
                       "description": "The rule's namespace (with rule_name)."},
            runtime_variables={"type": "object", "additionalProperties": {"type": "string"},
                               "description": "Values for the rule's runtime variables."},
            onBreach={"enum": ["fail", "output"], "default": "fail",
                      "description": "fail: a breach fails the action; output: it succeeds "
                                     "with breached: true."},
        ),
        "oneOf": [{"required": ["rule_uuid"], "not": {"required": ["rule_name"]}},
                  {"required": ["rule_name"], "not": {"required": ["rule_uuid"]}}],
    }
    outputs = {"type": "object", "properties": {
        "breached": {"type": "boolean"},
        "breach_count": {"type": "integer", "description": "Summed over the executions."},
        "job_execution_uuids": {"type": "array", "items": {"type": "string"}},
        "executions": {"type": "array", "description": "Each execution's status and final "
                                                       "log payload (breach_count, query, ...)."},
    }}
    example = {"type": "montecarlo.CircuitBreaker", "connection": "montecarlo",
               "timeout": "PT20M",
               "inputs": {"rule_name": "orders_not_empty", "namespace": "analytics",
                          "onBreach": "output"}}

    async def start(self, inputs: dict, context: Any) -> dict:
        uuids = await call(context, _trigger, inputs, context.log)
        uuids = [str(u) for u in uuids or []]
        if not uuids:
            raise ActionError("Monte Carlo started no execution of the rule", code="circuit_breaker_error")
        return {"job_execution_uuids": uuids, "onBreach": inputs.get("onBreach", "fail")}

    async def poll(self, handle: dict, context: Any) -> Any:
        from pycarlo.features.circuit_breakers import CircuitBreakerService

        uuids = list(handle["job_execution_uuids"])
        states = await call(context, _states, uuids)
        if len(states) < len(uuids):  # partial data: never decide on executions not read
            return Pending(progress=f"{len(states)} of {len(uuids)} executions reported")
        status = CircuitBreakerService._get_aggregated_status(
            [_State(s["status"]) for s in states])
        if status not in CircuitBreakerService._TERM_STATES:
            return Pending(progress=str(status))
        executions = [{"status": s["status"], "payload": _payload(s["log"])}
                      for s in states if s["status"] == status]
        errors = [e["payload"].get("error") for e in executions if e["payload"].get("error")]
        if status == "HAS_ERROR" or errors:
            raise ActionError(f"the circuit breaker rule errored: {errors[0] if errors else status}",
                              code="circuit_breaker_error",
                              details={"job_execution_uuids": uuids, "executions": plain(executions)})
        counts = [_count(e["payload"]) for e in executions]
        if not executions or all(c is None for c in counts):
            raise ActionError("Monte Carlo answered without a breach count (a malformed log)",
                              code="circuit_breaker_malformed", details={"executions": executions})
        total = sum(c or 0 for c in counts)
        out = {"breached": total > 0, "breach_count": total, "job_execution_uuids": uuids,
               "executions": executions}
        if total > 0 and handle.get("onBreach", "fail") != "output":
            raise ActionError(f"circuit breaker breached: {total} breach(es)",
                              code="CircuitBreakerBreached", details=out)
        return out


class _State:
    """The shape CircuitBreakerService._get_aggregated_status reads."""

    def __init__(self, status: str | None):
        self.status = status


def _count(payload: dict) -> int | None:
    for key in ("breach_count", "breachCount"):
        value = payload.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


