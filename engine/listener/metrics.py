"""Prometheus metrics of one listener, in a private registry (two apps in one process, as
tests make, never share or collide).

    flowrun_triggers_received_total{flow,trigger}          requests that reached a trigger
    flowrun_triggers_accepted_total{flow,trigger}          runs committed and acknowledged
    flowrun_triggers_rejected_total{flow,trigger,reason}   refused: unauthenticated, forbidden,
                                                           invalid_body, schema, too_large, busy,
                                                           method, not_found, draining, dedupe, error
    flowrun_triggers_duplicate_total{flow,trigger}         redeliveries answered from the first run
    flowrun_triggers_ignored_total{flow,trigger}           authentic, acknowledged, no run (e.g. an
                                                           event type the trigger does not take)
    flowrun_handshakes_total{flow,trigger}                 protocol handshakes answered
    flowrun_trigger_ack_seconds{flow,trigger}              request received -> acknowledgement sent
    flowrun_runs_finished_total{flow,status}               runs this server executed, by final status
    flowrun_runs_in_flight                                 runs executing now
    flowrun_action_duration_seconds{flow,action,status}    action durations
    flowrun_trigger_events_total{flow,trigger,outcome}     what pull triggers report (host.count): a
                                                           Recurrence's fired, caught_up, missed,
                                                           already_fired, error
    flowrun_flows_served / flowrun_flows_invalid           flow files served / refused
"""
from __future__ import annotations

from typing import Any


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = self.registry = CollectorRegistry(auto_describe=True)
        ft = ["flow", "trigger"]
        self.received = Counter("flowrun_triggers_received", "Requests that reached a trigger", ft, registry=r)
        self.accepted = Counter("flowrun_triggers_accepted", "Runs committed and acknowledged", ft, registry=r)
        self.rejected = Counter("flowrun_triggers_rejected", "Requests refused, by reason", ft + ["reason"],
                                registry=r)
        self.duplicates = Counter("flowrun_triggers_duplicate", "Redeliveries answered from the first run", ft,
                                  registry=r)
        self.ignored = Counter("flowrun_triggers_ignored", "Authentic requests acknowledged without a run", ft,
                               registry=r)
        self.handshakes = Counter("flowrun_handshakes", "Protocol handshakes answered", ft, registry=r)
        self.ack = Histogram("flowrun_trigger_ack_seconds", "Request received to acknowledgement sent", ft,
                             registry=r, buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5,
                                                  5, 10, 30))
        self.runs = Counter("flowrun_runs_finished", "Runs executed by this server, by final status",
                            ["flow", "status"], registry=r)
        self.in_flight = Gauge("flowrun_runs_in_flight", "Runs executing now", registry=r)
        self.actions = Histogram("flowrun_action_duration_seconds", "Action durations",
                                 ["flow", "action", "status"], registry=r,
                                 buckets=(.0005, .001, .005, .01, .05, .1, .5, 1, 5, 10, 60, 300))
        self.events = Counter("flowrun_trigger_events", "Pull trigger events, by outcome",
                              ["flow", "trigger", "outcome"], registry=r)
        self.flows = Gauge("flowrun_flows_served", "Flow files served", registry=r)
        self.invalid = Gauge("flowrun_flows_invalid", "Flow files refused for problems", registry=r)
        self._children: dict[tuple, Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: label lookups were a visible share of each trigger."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
