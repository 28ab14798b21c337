"""montecarlo.GetIncidents: incidents for tables or a time range, with filters."""
from __future__ import annotations

from typing import Any

from engine.plugin import Node, inputs_schema

from .client import ask, call, no_retry, plain

QUERY = """
query getIncidents($first: Int, $after: String, $startTime: DateTime, $endTime: DateTime,
                   $fullTableIds: [String], $incidentTypes: [String], $severities: [String],
                   $eventStates: [String], $projects: [String], $datasets: [String],
                   $tables: [String], $monitorIds: [UUID], $dwId: UUID) {
  getIncidents(first: $first, after: $after, startTime: $startTime, endTime: $endTime,
               fullTableIds: $fullTableIds, incidentTypes: $incidentTypes,
               severities: $severities, eventStates: $eventStates, projects: $projects,
               datasets: $datasets, tables: $tables, monitorIds: $monitorIds, dwId: $dwId) {
    pageInfo { hasNextPage endCursor }
    edges { node { uuid name incidentType incidentSubTypes severity priority feedback owner
                   createdTime updatedTime incidentTime project dataset } }
  }
}
"""
FILTERS = {"tables": "fullTableIds", "incident_types": "incidentTypes", "severities": "severities",
           "event_states": "eventStates", "projects": "projects", "datasets": "datasets",
           "table_names": "tables", "monitor_ids": "monitorIds"}
STRINGS = {"type": "array", "items": {"type": "string", "minLength": 1}}
KEYS = {"uuid": "uuid", "name": "name", "incident_type": "incidentType",
        "incident_sub_types": "incidentSubTypes", "severity": "severity", "priority": "priority",
        "feedback": "feedback", "owner": "owner", "created_time": "createdTime",
        "updated_time": "updatedTime", "incident_time": "incidentTime", "project": "project",
        "dataset": "dataset"}


def _fetch(client: Any, variables: dict, limit: int) -> tuple[list[dict], bool]:
    incidents: list[dict] = []
    after = None
    while True:
        page = ask(client, QUERY, variables={**variables, "first": min(100, limit - len(incidents)),
                                        "after": after},
                      operation_name="getIncidents", retry_backoff=no_retry())
        data = plain(page.get_incidents) or {}
        for edge in data.get("edges") or []:
            node = (edge or {}).get("node") or {}
            incidents.append({key: node.get(key) for key in KEYS})
        info = data.get("page_info") or {}
        more = bool(info.get("has_next_page"))
        if not more or not info.get("end_cursor"):
            return incidents, False
        if len(incidents) >= limit:
            return incidents, True
        after = info["end_cursor"]


class GetIncidents(Node):
    type = "montecarlo.GetIncidents"
    title = "List Monte Carlo incidents"
    description = (
        "getIncidents for tables (full table ids, e.g. `analytics:prod.orders`) and/or a "
        "time range, filtered by type, severity, state, project, dataset or monitor; pages "
        "are followed up to `limit`.")
    connection = "montecarlo"
    reads_only = True
    input_schema = inputs_schema(
        [],
        tables={**STRINGS, "description": "Full table ids (fullTableIds)."},
        start_time={"type": "string", "format": "date-time",
                    "description": "ISO 8601: incidents from this time."},
        end_time={"type": "string", "format": "date-time", "description": "ISO 8601: until."},
        incident_types={**STRINGS, "description": "e.g. anomalies, schema_changes, "
                                                  "custom_rule_anomalies."},
        severities={**STRINGS, "description": "SEV-1 ... SEV-4."},
        event_states={**STRINGS, "description": "e.g. open, resolved."},
        projects=STRINGS, datasets=STRINGS,
        table_names={**STRINGS, "description": "Table names (without project/dataset)."},
        monitor_ids={**STRINGS, "description": "Monitor UUIDs."},
        warehouse_id={"type": "string", "description": "A warehouse UUID (dwId)."},
        limit={"type": "integer", "minimum": 1, "maximum": 10000, "default": 100,
               "description": "The most incidents returned."},
    )
    outputs = {"type": "object", "properties": {
        "incidents": {"type": "array", "items": {"type": "object", "properties": {
            k: {} for k in KEYS}}},
        "count": {"type": "integer"},
        "truncated": {"type": "boolean", "description": "More incidents matched than `limit`."}}}
    example = {"type": "montecarlo.GetIncidents", "connection": "montecarlo",
               "inputs": {"tables": ["analytics:prod.orders"], "severities": ["SEV-1", "SEV-2"],
                          "start_time": "{{ utcNow() | add_time(-1, 'days') }}"}}

    async def run(self, inputs: dict, context: Any) -> Any:
        variables = {gql: inputs[key] for key, gql in FILTERS.items() if inputs.get(key)}
        for key, gql in (("start_time", "startTime"), ("end_time", "endTime"),
                         ("warehouse_id", "dwId")):
            if inputs.get(key):
                variables[gql] = inputs[key]
        incidents, truncated = await call(context, _fetch, variables, int(inputs.get("limit", 100)))
        return {"incidents": incidents, "count": len(incidents), "truncated": truncated}
