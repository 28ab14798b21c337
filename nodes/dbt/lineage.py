"""dbt.Lineage: nodes, sources and exposures of a selection, with parents and children."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.plugin import ActionError, Node, inputs_schema, run_sync

from .artifacts import SelectionError, lineage, read_json
from .command import SELECTION


class Lineage(Node):
    type = "dbt.Lineage"
    title = "Read dbt lineage from manifest.json"
    description = (
        "Reads a manifest.json (a dbt.Command's `artifacts.manifest`, or the connection's "
        "project `target/manifest.json`) and returns the selected nodes, sources and exposures, "
        "each with its parents and children (unique ids). `select` takes names, unique ids, "
        "`tag:`, `resource_type:`, `source:`, `path:`, `package:` and `exposure:` methods with "
        "dbt's graph operators (`+orders`, `orders+`, `1+orders+2`, `@orders`). Runs no dbt.")
    connection = "dbt"
    reads_only = True
    connection_optional = True
    input_schema = inputs_schema(
        [],
        manifest={"type": "string", "minLength": 1,
                  "description": "Path of a manifest.json. Default: the connection's project "
                                 "target/manifest.json."},
        select={**SELECTION, "description": "What to return (default: everything)."},
    )
    outputs = {"type": "object", "properties": {
        "nodes": {"type": "object", "description": "unique_id -> {resource_type, name, package, "
                  "path, tags, materialized, relation, description, parents, children}: models, "
                  "seeds, snapshots, tests, ..."},
        "sources": {"type": "object", "description": "Selected sources, the same shape."},
        "exposures": {"type": "object", "description": "Selected exposures, the same shape."},
        "selected": {"type": "array", "items": {"type": "string"}},
        "invocation_id": {"type": "string"},
    }}
    example = {"type": "dbt.Lineage", "connection": "dbt",  # or manifest: a dbt.Command's artifacts.manifest
               "inputs": {"select": "+customer_totals+"}}

    async def run(self, inputs: dict, context: Any) -> Any:
        path = inputs.get("manifest")
        if path is None:
            if context.connection is None:
                raise ActionError("dbt.Lineage needs `manifest` or a dbt connection",
                                  code="InvalidInputs")
            project = await context.client()
            path = project.project_dir / "target" / "manifest.json"
        select = inputs.get("select")
        select = [select] if isinstance(select, str) else select
        return await run_sync(_read, Path(path), select)


def _read(path: Path, select: list[str] | None) -> dict:
    try:
        manifest = read_json(path)
    except FileNotFoundError:
        raise ActionError(f"no manifest at {path}: run dbt (compile, build, ...) first",
                          code="ManifestNotFound") from None
    except (OSError, ValueError) as exc:
        raise ActionError(f"cannot read {path}: {exc}", code="ManifestUnreadable") from None
    if not isinstance(manifest, dict):
        raise ActionError(f"{path} is not a dbt manifest", code="ManifestUnreadable")
    try:
        return lineage(manifest, select)
    except SelectionError as exc:
        raise ActionError(str(exc), code="InvalidSelection") from None
