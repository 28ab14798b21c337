"""montecarlo.UploadDbtRun: a dbt invocation's artifacts to Monte Carlo (pycarlo's importer)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.plugin import ActionError, Node, inputs_schema

from .client import call


def _import(client: Any, inputs: dict, log: Any) -> None:
    from pycarlo.features.dbt import DbtImporter

    DbtImporter(mc_client=client, print_func=log.info).import_run(
        manifest_path=inputs["manifest"], run_results_path=inputs["run_results"],
        logs_path=inputs.get("logs"), project_name=inputs["project_name"],
        job_name=inputs["job_name"], resource_id=inputs.get("resource_id"))


def _invocation(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            meta = json.load(fh).get("metadata") or {}
        return meta.get("invocation_id")
    except (OSError, ValueError, AttributeError):
        return None


class UploadDbtRun(Node):
    type = "montecarlo.UploadDbtRun"
    title = "Send a dbt run's artifacts to Monte Carlo"
    description = (
        "Sends manifest.json and run_results.json (and dbt.log when given) of one dbt "
        "invocation through pycarlo's DbtImporter: it asks Monte Carlo for upload URLs, "
        "uploads each file, then sends the sendDbtArtifactsEvent mutation. Give `artifacts` "
        "(a dbt.Command's `artifacts` output, or `error.details.artifacts` of a failed one) "
        "or the file paths.")
    connection = "montecarlo"
    input_schema = inputs_schema(
        ["project_name", "job_name"],
        artifacts={"type": "object", "description": "A dbt.Command's artifacts: manifest, "
                   "run_results, log (paths)."},
        manifest={"type": "string", "minLength": 1, "description": "Path of manifest.json."},
        run_results={"type": "string", "minLength": 1, "description": "Path of run_results.json."},
        logs={"type": "string", "minLength": 1, "description": "Path of the dbt log to send."},
        send_logs={"type": "boolean", "default": False,
                   "description": "Send the dbt.Command's dbt.log from `artifacts` too."},
        project_name={"type": "string", "minLength": 1, "description": "Monte Carlo project."},
        job_name={"type": "string", "minLength": 1, "description": "Monte Carlo job."},
        resource_id={"type": "string", "minLength": 1,
                     "description": "The warehouse's UUID (needed when the account has several)."},
    )
    outputs = {"type": "object", "properties": {
        "invocation_id": {"type": "string"}, "project_name": {"type": "string"},
        "job_name": {"type": "string"}, "files": {"type": "array", "items": {"type": "string"}}}}
    example = {"type": "montecarlo.UploadDbtRun", "connection": "montecarlo",
               "inputs": {"manifest": "analytics/target/manifest.json",
                          "run_results": "analytics/target/run_results.json",
                          "project_name": "analytics", "job_name": "nightly"}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would upload dbt artifacts to Monte Carlo ({inputs.get('project_name')}/{inputs.get('job_name')})"

    async def run(self, inputs: dict, context: Any) -> Any:
        arts = inputs.get("artifacts") or {}
        spec = {"manifest": inputs.get("manifest") or arts.get("manifest"),
                "run_results": inputs.get("run_results") or arts.get("run_results"),
                "logs": inputs.get("logs") or (arts.get("log") if inputs.get("send_logs") else None),
                "project_name": inputs["project_name"], "job_name": inputs["job_name"],
                "resource_id": inputs.get("resource_id")}
        for key in ("manifest", "run_results", "logs"):
            if key in ("manifest", "run_results") and not spec[key]:
                raise ActionError(f"no {key} path: give `{key}` or `artifacts`", code="InvalidInputs")
            if spec[key] and not Path(spec[key]).is_file():
                raise ActionError(f"{key}: no file at {spec[key]}", code="ArtifactNotFound")
        await call(context, _import, spec, context.log)
        return {"invocation_id": _invocation(spec["run_results"]),
                "project_name": spec["project_name"], "job_name": spec["job_name"],
                "files": [Path(spec[k]).name for k in ("manifest", "run_results", "logs") if spec[k]]}
