"""The dbt connection: where the project is, which profile target to use, and the secrets its
profile reads.

dbt-core is never imported in the flowrun process: every invocation runs in a child process
(``nodes/dbt/child.py``), so the "client" here is only the resolved project settings. The
profile reads its secrets the dbt way, ``{{ env_var('DBT_ENV_SECRET_PASSWORD') }}``: each
secret of the connection reaches the child as ``DBT_ENV_SECRET_<NAME>`` (dbt masks such
values in its own logs, flowrun masks them in the action's log, outputs and errors).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.plugin import ActionError, Connection, ConnectionSpec, Vendor, secret

SECRETS = ("password", "token", "private_key", "private_key_passphrase", "client_secret")
SECRET_PREFIX = "DBT_ENV_SECRET_"

SETTINGS = {
    "type": "object",
    "additionalProperties": False,
    "required": ["project_dir"],
    "properties": {
        "project_dir": {"type": "string", "minLength": 1,
                        "description": "The dbt project (the folder holding dbt_project.yml); "
                                       "relative paths are read from the working directory."},
        "profiles_dir": {"type": "string", "minLength": 1,
                         "description": "The folder holding profiles.yml. Default: dbt's "
                                        "(DBT_PROFILES_DIR, the project folder, ~/.dbt)."},
        "profile": {"type": "string", "description": "The profile to use instead of the "
                                                     "project's `profile:`."},
        "target": {"type": "string", "description": "The profile's target (dev, prod, ...); "
                                                    "an action's `target` overrides it."},
        "env": {"type": "object", "additionalProperties": {"type": "string"},
                "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                "description": "Non-secret environment variables for dbt (what the profile and "
                               "models read with env_var()). Names starting DBT_ENV_SECRET_ "
                               "are refused: secrets come from `secrets:`."},
        "artifacts_dir": {"type": "string", "minLength": 1,
                          "description": "Where each invocation's target folder (run_results.json, "
                                         "manifest.json, dbt.log) is written, one sub-folder per "
                                         "run and action. Default: <project_dir>/target/flowrun."},
        "cancel_grace": {"type": "number", "minimum": 0, "maximum": 600, "default": 10,
                         "description": "Seconds dbt gets to cancel its queries after an "
                                        "interrupt (timeout, Terminate) before its process "
                                        "group is killed."},
        **{name: secret(f"Passed to dbt as {SECRET_PREFIX}{name.upper()}; the profile reads it "
                        f"with env_var('{SECRET_PREFIX}{name.upper()}').") for name in SECRETS},
    },
}


@dataclass(frozen=True)
class DbtProject:
    """A connection, resolved: absolute paths and the child's extra environment."""

    project_dir: Path
    profiles_dir: Path | None
    profile: str | None
    target: str | None
    artifacts_dir: Path
    cancel_grace: float
    env: dict[str, str] = field(repr=False)
    secrets: tuple[str, ...] = field(repr=False)


def build_client(conn: Connection) -> DbtProject:
    project = Path(str(conn.get("project_dir"))).expanduser().resolve()
    if not (project / "dbt_project.yml").is_file():
        raise ActionError(f"connection '{conn.name}': no dbt_project.yml in {project}",
                          code="DbtProjectNotFound", details={"project_dir": str(project)})
    profiles = conn.get("profiles_dir")
    profiles_dir = Path(str(profiles)).expanduser().resolve() if profiles else None
    if profiles_dir is not None and not profiles_dir.is_dir():
        raise ActionError(f"connection '{conn.name}': profiles_dir {profiles_dir} is not a folder",
                          code="DbtProjectNotFound", details={"profiles_dir": str(profiles_dir)})
    env = {str(k): str(v) for k, v in (conn.get("env") or {}).items()}
    bad = sorted(k for k in env if k.upper().startswith(SECRET_PREFIX))
    if bad:
        raise ActionError(f"connection '{conn.name}': env {', '.join(bad)}: secrets come from "
                          f"`secrets:` (environment variables), not settings", code="InvalidSetting")
    values = []
    for name in SECRETS:
        value = conn.secret(name)
        if value:
            env[SECRET_PREFIX + name.upper()] = value
            values.append(value)
    artifacts = conn.get("artifacts_dir")
    artifacts_dir = (Path(str(artifacts)).expanduser().resolve() if artifacts
                     else project / "target" / "flowrun")
    return DbtProject(project_dir=project, profiles_dir=profiles_dir, profile=conn.get("profile"),
                      target=conn.get("target"), artifacts_dir=artifacts_dir,
                      cancel_grace=float(conn.get("cancel_grace", 10)), env=env,
                      secrets=tuple(values))


def child_environment(project: DbtProject) -> dict[str, str]:
    """The child's environment: flowrun's, no telemetry or version check, colours off, the
    connection's variables and secrets on top."""
    env = dict(os.environ)
    env.update({"DBT_SEND_ANONYMOUS_USAGE_STATS": "False", "DO_NOT_TRACK": "1",
                "DBT_VERSION_CHECK": "False", "DBT_USE_COLORS": "False",
                "DBT_USE_COLORS_FILE": "False", "PYTHONUNBUFFERED": "1"})
    env.update(project.env)
    return env


class DbtVendor(Vendor):
    """dbt-core runs in a child process; nothing of it is imported here. Its failures are
    read from run_results.json and the child's exit, not from exceptions."""

    name = "dbt"
    modules = ("dbt.cli",)
    extra = "dbt"


DBT = DbtVendor()
CONNECTION = ConnectionSpec(
    kind="dbt",
    description="A dbt project run with dbt-core in a child process: the project folder, the "
                "profiles folder and target, environment variables, and the profile's secrets "
                "(each given to dbt as DBT_ENV_SECRET_<NAME>).",
    settings=SETTINGS,
    client=build_client,
    vendor=DBT,
    example={"kind": "dbt", "settings": {"project_dir": "analytics", "profiles_dir": "analytics",
                                         "target": "prod", "env": {"DBT_SCHEMA": "analytics"}},
             "secrets": {"password": "WAREHOUSE_PASSWORD"}},
)
