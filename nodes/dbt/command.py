"""dbt.Command: one dbt invocation (build, run, test, ...) in a child process."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from engine.plugin import ActionError, Node, inputs_schema

from .artifacts import FAILED, read_json, summarize
from .connection import DBT, child_environment
from .process import run_dbt

COMMANDS = ("build", "run", "test", "seed", "snapshot", "compile", "source freshness",
            "docs generate")
# which command takes which option (dbt refuses the others)
RUNS = {"build", "run", "test", "seed", "snapshot", "compile"}
OPTIONS = {
    "select": set(COMMANDS), "exclude": set(COMMANDS), "selector": set(COMMANDS),
    "vars": set(COMMANDS), "threads": set(COMMANDS), "target": set(COMMANDS),
    "full_refresh": {"build", "run", "seed", "compile"},
    "fail_fast": {"build", "run", "test", "seed", "snapshot"},
    "state": RUNS | {"source freshness", "docs generate"},
    "defer": RUNS,
}
# no value may start with "-": it would reach dbt's command line as an option of its own
# (dbt's --select/--exclude take every following word up to the next one starting with "-")
MAX_VALUE = 10_000  # characters of one option value
MAX_VARS = 1_000_000  # characters of --vars, encoded
WORD = {"type": "string", "minLength": 1, "maxLength": MAX_VALUE, "pattern": "^[^-\\s]"}
SELECTION = {"oneOf": [{**WORD, "pattern": "^[^-\\s]((?!\\s-).)*$"},
                       {"type": "array", "items": WORD, "minItems": 1, "maxItems": 1000}]}

RESULT = {"type": "object", "description": "One node's result (run_results.json).", "properties": {
    "unique_id": {"type": "string"}, "resource_type": {"type": "string"},
    "name": {"type": "string"},
    "status": {"type": "string", "description": "success, error, skipped, pass, fail, warn, "
                                                "runtime error, no-op"},
    "execution_time": {"type": "number", "description": "Seconds."},
    "timing": {"type": "object", "description": "compile/execute: started_at, completed_at."},
    "rows_affected": {"type": ["integer", "null"]},
    "message": {"type": ["string", "null"]},
    "failures": {"type": ["integer", "null"], "description": "Rows a test found."}}}


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "action"


def _word(option: str, value: Any) -> str:
    """One option value as it goes on dbt's command line; refused (InvalidInputs) when it
    could be read as something else: an option of its own, or one cut short."""
    text = value if isinstance(value, str) else str(value)
    if not text or text[0] == "-" or text[0].isspace() or "\0" in text or len(text) > MAX_VALUE:
        raise ActionError(f"inputs.{option}: {_shown(text)} is not a valid value (it must not be "
                          f"empty, start with '-' or a space, hold a NUL character or pass "
                          f"{MAX_VALUE} characters)", code="InvalidInputs")
    return text


def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:60] + "...")


def _selection(option: str, value: Any) -> list[str]:
    """--select/--exclude words. dbt splits each on spaces, and a word starting with '-'
    would end the list and be read as an option: no part may start with '-'."""
    words = [_word(option, v) for v in _list(value)]
    for word in words:
        if re.search(r"\s-", word):
            raise ActionError(f"inputs.{option}: {_shown(word)}: no part of a selection may start "
                              f"with '-'", code="InvalidInputs")
    return words


def _plain_text(value: str) -> str:
    """A string var as a Jinja template that renders to exactly ``value``: dbt renders string
    vars (var() of a value holding ``{{``, ``{%`` or ``{#`` would run it), and vars carry data,
    which is never evaluated. Each ``{`` becomes an expression printing it, so no tag can
    form."""
    return value.replace("{", "{{ '{' }}") if "{" in value else value


def _surrogates(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, dict):
        return any(_surrogates(k) or _surrogates(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_surrogates(v) for v in value)
    return False


def encode_vars(values: Any) -> str:
    """--vars: YAML (dbt reads it with yaml.safe_load) that loads back to exactly ``values``,
    string vars protected from dbt's Jinja rendering. JSON was not enough: dbt's YAML loader
    refuses JSON's surrogate-pair escapes (any emoji), and reads NaN as a string."""
    import yaml

    if not isinstance(values, dict):
        raise ActionError("inputs.vars: must be an object (name: value)", code="InvalidInputs")
    if _surrogates(values):
        raise ActionError("inputs.vars: holds a lone UTF-16 surrogate, which is not text",
                          code="InvalidInputs")
    safe = {k: _plain_text(v) if isinstance(v, str) else v for k, v in values.items()}
    try:
        text = yaml.safe_dump(safe, default_flow_style=True, allow_unicode=False,
                              width=float("inf"), sort_keys=False).strip()
    except yaml.YAMLError as exc:
        raise ActionError(f"inputs.vars: cannot be sent to dbt: {exc}", code="InvalidInputs") from None
    if len(text) > MAX_VARS:
        raise ActionError(f"inputs.vars: {len(text)} characters, more than {MAX_VARS}",
                          code="InvalidInputs")
    return text


def dbt_args(inputs: dict, project: Any, target_path: Path) -> list[str]:
    """The dbt command line of one action (without the leading ``dbt``). Every value is
    checked here too, whatever validated it before: no input may add an option or a command."""
    command = inputs["command"]
    if command not in COMMANDS:
        raise ActionError(f"inputs.command: {_shown(str(command))} is not a dbt command "
                          f"({', '.join(COMMANDS)})", code="InvalidInputs")
    problems = option_problems(inputs)
    if problems:
        raise ActionError("; ".join(f"{p}: {m}" for p, m in problems), code="InvalidInputs")
    args = command.split()
    args += ["--project-dir", str(project.project_dir), "--target-path", str(target_path),
             "--log-path", str(target_path)]
    if project.profiles_dir is not None:
        args += ["--profiles-dir", str(project.profiles_dir)]
    if project.profile:
        args += ["--profile", project.profile]
    if inputs.get("target"):
        args += ["--target", _word("target", inputs["target"])]
    elif project.target:
        args += ["--target", project.target]
    for option, flag in (("select", "--select"), ("exclude", "--exclude")):
        values = _selection(option, inputs.get(option))
        if values:
            args += [flag, *values]
    if inputs.get("selector"):
        args += ["--selector", _word("selector", inputs["selector"])]
    if inputs.get("vars"):
        args += ["--vars", encode_vars(inputs["vars"])]
    if inputs.get("threads") is not None:
        threads = inputs["threads"]
        if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 256:
            raise ActionError("inputs.threads: a whole number from 1 to 256", code="InvalidInputs")
        args += ["--threads", str(threads)]
    if inputs.get("full_refresh"):
        args.append("--full-refresh")
    if inputs.get("fail_fast"):
        args.append("--fail-fast")
    if inputs.get("state"):
        args += ["--state", str((project.project_dir / _word("state", inputs["state"])).resolve())]
    if inputs.get("defer"):
        args.append("--defer")
    return args


def option_problems(inputs: Any) -> list[tuple[str, str]]:
    """Options the command does not take, and ``defer`` without ``state``."""
    if not isinstance(inputs, dict) or not isinstance(inputs.get("command"), str):
        return []
    command = inputs["command"]
    if command not in COMMANDS:
        return []
    problems = [(f"inputs.{name}", f"dbt {command} does not take '{name}' (it does: "
                                    f"{', '.join(o for o in OPTIONS if command in OPTIONS[o])})")
                for name in inputs if name in OPTIONS and command not in OPTIONS[name]]
    if inputs.get("defer") is True and "state" not in inputs:
        problems.append(("inputs.defer", "defer needs 'state': the folder of the artifacts "
                                         "to defer to (e.g. the production manifest)"))
    return problems


class Command(Node):
    type = "dbt.Command"
    title = "Run a dbt command"
    description = (
        "Runs one dbt-core command (build, run, test, seed, snapshot, compile, "
        "`source freshness`, `docs generate`) in a child process, so invocations never share "
        "a process and a timeout or Terminate can stop it: dbt is interrupted (it cancels its "
        "queries), then its process group is killed after the connection's `cancel_grace`. "
        "If flowrun itself dies, the child notices and stops too. dbt's log streams to the "
        "action's log with secrets masked. Outputs come from run_results.json (sources.json "
        "for `source freshness`): each node's status, timing, rows affected, message and "
        "failures, counts by status, the invocation id and the artifact paths. A node with "
        "status error, fail or runtime error fails the action (code DbtFailed) and the "
        "error's details list what failed; `warn` does not. Each action writes its artifacts "
        "to its own folder (`<artifacts_dir>/<run id>/<action>`), so concurrent actions on "
        "one project never overwrite each other's.")
    connection = "dbt"
    transport = "subprocess"  # dbt and its adapter's connections live in a child process
    input_schema = inputs_schema(
        ["command"],
        command={"enum": list(COMMANDS), "description": "The dbt command."},
        select={**SELECTION, "description": "--select: node selection (`tag:nightly`, "
                                             "`+orders`, ...); a list or a space-separated string."},
        exclude={**SELECTION, "description": "--exclude."},
        selector={**WORD,
                  "description": "--selector: a named selector from selectors.yml."},
        vars={"type": "object", "description": "--vars: values for var(), sent as YAML that "
                                               "dbt reads back exactly; a string var reaches var() "
                                               "as written (dbt never renders it as Jinja)."},
        full_refresh={"type": "boolean", "description": "--full-refresh (build, run, seed)."},
        threads={"type": "integer", "minimum": 1, "maximum": 256, "description": "--threads."},
        fail_fast={"type": "boolean", "description": "--fail-fast: stop at the first failure."},
        state={**WORD,
               "description": "--state: a folder of artifacts to compare with (state:modified) "
                              "or defer to; relative to the project."},
        defer={"type": "boolean", "description": "--defer to the `state` artifacts for "
                                                 "unselected upstream nodes."},
        target={**WORD,
                "description": "The profile target, instead of the connection's."},
    )
    outputs = {"type": "object", "properties": {
        "command": {"type": "string"},
        "success": {"type": "boolean", "description": "dbt's own verdict (false with warnings "
                                                      "only when warnings are errors)."},
        "invocation_id": {"type": "string"},
        "dbt_version": {"type": "string"},
        "elapsed_time": {"type": "number", "description": "Seconds, as dbt measured it."},
        "counts": {"type": "object", "description": "Nodes by status, e.g. {pass: 5, warn: 1}."},
        "results": {"type": "array", "items": RESULT},
        "failed": {"type": "array", "description": "The nodes that failed (empty when the "
                                                   "action succeeded)."},
        "warned": {"type": "array", "description": "The nodes with status warn."},
        "artifacts": {"type": "object", "description": "Absolute paths: target_path, "
                      "run_results, manifest, sources, catalog, log (null when not written)."},
    }}
    example = {"type": "dbt.Command", "connection": "dbt", "timeout": "PT30M",
               "inputs": {"command": "build", "select": "tag:nightly+",
                          "vars": {"run_date": "{{ utcNow() | dateformat('%Y-%m-%d') }}"},
                          "fail_fast": True}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would run dbt {inputs.get('command')}" + (f" --select {inputs['select']}" if inputs.get("select") else "")

    @classmethod
    def check(cls, action: dict) -> list[tuple[str, str]]:
        return option_problems(action.get("inputs"))

    async def run(self, inputs: dict, context: Any) -> Any:
        problems = option_problems(inputs)
        if problems:  # before the connection is resolved (dbt_args checks again)
            raise ActionError("; ".join(f"{p}: {m}" for p, m in problems), code="InvalidInputs")
        project = await DBT.client(context)
        target_path = project.artifacts_dir / _slug(context.run_id) / _slug(context.path)
        args = dbt_args(inputs, project, target_path)  # refuses bad values before any write
        try:
            target_path.mkdir(parents=True, exist_ok=True)
            for stale in ("run_results.json", "sources.json"):  # a previous attempt's
                (target_path / stale).unlink(missing_ok=True)
        except OSError as exc:
            raise ActionError(f"cannot write dbt artifacts to {target_path}: {exc.strerror}",
                              code="DbtArtifactsNotWritable") from None
        secrets = tuple(context.connection.secret_values()) if context.connection else ()
        context.log.info("dbt %s", " ".join(args))
        done = await run_dbt(args, env=child_environment(project), cwd=project.project_dir,
                             grace=project.cancel_grace, secrets=secrets, log=context.log,
                             on_start=lambda pid: context.log.info("dbt started (pid %s)", pid))
        return self.outcome(inputs["command"], target_path, done, secrets)

    @staticmethod
    def outcome(command: str, target_path: Path, done: Any, secrets: tuple[str, ...]) -> dict:
        from engine.plugin import scrub

        artifact = target_path / ("sources.json" if command == "source freshness" else "run_results.json")
        paths = {"target_path": str(target_path)}
        for key, name in (("run_results", "run_results.json"), ("manifest", "manifest.json"),
                          ("sources", "sources.json"), ("catalog", "catalog.json"),
                          ("log", "dbt.log")):
            paths[key] = str(target_path / name) if (target_path / name).is_file() else None
        data = None
        if artifact.is_file():
            try:
                data = read_json(artifact)
            except (OSError, ValueError) as exc:
                raise ActionError(f"dbt {command}: cannot read {artifact.name}: {exc}",
                                  code="DbtArtifactUnreadable") from None
        if not isinstance(data, dict):  # dbt stopped before running anything
            reason = done.exception or next((l.strip() for l in reversed(done.tail) if l.strip()), "")
            raise ActionError(
                f"dbt {command} did not run (exit code {done.returncode}): {reason}"[:4000],
                code="DbtError", details={"exit_code": done.returncode,
                                          "log_tail": done.tail[-40:], "artifacts": paths})
        out = {"command": command, "success": bool(done.success), **summarize(data),
               "artifacts": paths}
        out = scrub(out, secrets)
        if out["failed"]:
            names = ", ".join(f"{f['resource_type']} {f['name']} ({f['status']})" for f in out["failed"][:20])
            more = len(out["failed"]) - 20
            raise ActionError(f"dbt {command}: {len(out['failed'])} failed: {names}"
                              + (f" and {more} more" if more > 0 else ""),
                              code="DbtFailed", details=out)
        if not done.success and not any(s in FAILED for s in out["counts"]):
            reason = done.exception or "dbt reported failure"
            raise ActionError(f"dbt {command} failed: {reason}"[:4000], code="DbtError", details=out)
        return out
