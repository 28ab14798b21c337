"""``flowrun replay RUN``: a new run from exactly the request an earlier run received.

The stored request (raw body, headers and query with credentials redacted) is parsed
again as the listener parses it, checked against the trigger's schema, and started as a
new run linked to the old one (``rerun_of``). No authentication (the operator is trusted
and the credentials were never stored) and no de-duplication (a replay is deliberate).
By default the flow file as it is now runs (replaying after a fix is the usual case);
``--definition recorded`` runs the definition the old run used.
"""
from __future__ import annotations

from typing import Any



from engine.errors import ReplayError  # noqa: F401  (its home is engine.errors)

from . import inbound


def start_replay(engine: Any, run_id: str, definition: str = "current") -> tuple[Any, str]:
    """(flow, new run id): the replay is committed as Queued; execute it with engine.execute."""
    run = engine.get_run(run_id)
    request = run.request
    if not isinstance(request, dict):
        raise ReplayError(f"run {run.id} did not arrive through a trigger: no request was stored "
                          f"(use `flowrun rerun` for runs started from the command line)")
    flow = engine.load_recorded(run) if definition == "recorded" else engine.load(run.file)
    trigger = flow.triggers.get(run.trigger)
    if request.get("via") != "http":  # a pull trigger's message (a schedule's firing): as it was
        outputs = run.payload
    else:
        if trigger is None:
            raise ReplayError(f"flow '{flow.name}' has no trigger '{run.trigger}' any more")
        outputs = inbound.outputs_from_stored(request)
        if "splitIndex" in request and isinstance(run.payload, dict):  # one run of a splitOn: its item
            outputs["body"] = run.payload.get("body")
        cls = engine.registry.trigger(trigger.type)
        if cls is not None and cls.mode == "push":
            errors = [f"{p['path']}: {p['message']}" for p in cls(trigger.raw, None).body_problems(outputs["body"])]
            if errors:
                raise ReplayError(f"the stored body no longer matches trigger '{run.trigger}''s schema: "
                                  + "; ".join(errors))
    replayed = dict(request, via="replay", replayOf=run.id)
    replayed.pop("sealed", None)  # a replay sees credential headers masked, as stored (engine.encrypted)
    new_id = engine.start(flow, params=run.params, trigger=run.trigger, trigger_outputs=outputs,
                          request=replayed, rerun_of=run.id)
    return flow, new_id
