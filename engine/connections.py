"""connections.yaml: named connections, their non-secret settings, and the environment
variables their secrets come from. Secrets are never written in a file.

    connections:
      stripe:
        kind: stripe
        endpoint: http://127.0.0.1:12111     # optional override: sandboxes, proxies, tests
        settings: {api_version: "2024-06-20"}
        secrets: {api_key: STRIPE_API_KEY}    # setting -> environment variable

The ``Redactor`` knows every secret value resolved in this process and removes them (in
every form ``engine.vendor.secret_forms`` lists) from node outputs before templates see
them, from logs, errors, everything the store writes and everything the CLI prints.
"""
from __future__ import annotations

import logging
import os
import re
import traceback
from pathlib import Path
from typing import Any, Mapping


from . import yamlpos
from .errors import ConnectionError_, FlowError, Problem
from .planner import suggest
from .plugin import Connection
from .vendor import secret_forms
from .registry import Registry

MASK = "***"

# An app setting or environment variable whose name says it holds a secret (an API key, a
# password, a connection string): its value joins the redactor as soon as a flow reads it
# (``appsetting()``, a definition's app settings). One rule, used wherever a setting is read.
SECRET_SETTING = re.compile(r"key|secret|passw|pwd|token|connectionstring|sas|sig|credential", re.I)


# the shell's working directories: "pwd" in their names is the command, not a password (masked,
# every path under the current directory printed as *** once an app folder was loaded)
NOT_SECRET = frozenset({"PWD", "OLDPWD"})


def secret_setting(name: str) -> bool:
    return bool(SECRET_SETTING.search(name)) and name.upper() not in NOT_SECRET


class Redactor:
    """Replaces known secret values in text. Callable: ``redactor(text) -> text``."""

    def __init__(self) -> None:
        self._values: list[str] = []

    def add(self, value: str | None) -> None:
        forms = secret_forms(value or "")  # as is, JSON-escaped (once, twice), repr, URL, base64
        if not forms:
            return
        self._values = sorted(set(self._values) | forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        if not self._values or not isinstance(text, str):
            return text
        for v in self._values:
            if v in text:
                text = text.replace(v, MASK)
        return text

    def scrub(self, value: Any) -> Any:
        """``value`` (a node's outputs or error: strings, lists, mappings, at any depth, keys
        included) with every secret form masked; the executor calls it on each result before
        any template can see it, so no template ever holds a secret to transform."""
        if not self._values:
            return value
        return self._scrub(value, 0)

    def _scrub(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self(value)
        if depth > 200:  # deeper than the store or templates go: as text, masked
            return self(str(value))
        if isinstance(value, dict):
            return {self._scrub(k, depth + 1) if isinstance(k, str) else k: self._scrub(v, depth + 1)
                    for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._scrub(v, depth + 1) for v in value]
        if isinstance(value, (bytes, bytearray)):
            text = bytes(value).decode("utf-8", "replace")
            masked = self(text)
            return value if masked == text else masked
        return value

    def __bool__(self) -> bool:
        return bool(self._values)


PROCESS_REDACTOR = Redactor()  # secrets are the process's environment: one redactor for all engines


def redact_all_logs() -> None:
    """Redact every log record made in this process, whatever the logger or handler.

    SDKs and HTTP libraries log request headers at DEBUG (httpcore, twilio, ...), so a
    filter on our own loggers is not enough: the record factory itself is wrapped."""
    if getattr(logging.getLogRecordFactory(), "_flowrun", False):
        return
    base = logging.getLogRecordFactory()
    redact = PROCESS_REDACTOR

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        if redact:
            try:
                text = record.getMessage()
            except Exception:  # a malformed record: leave it to logging to report
                return record
            record.msg, record.args = redact(text), None
            if record.exc_info:
                text = "".join(traceback.format_exception(*record.exc_info))
                record.exc_text = redact(text).rstrip("\n")
        return record

    factory._flowrun = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


class RedactingAdapter(logging.LoggerAdapter):
    def __init__(self, logger: logging.Logger, extra: dict, redactor: Any):
        super().__init__(logger, extra)
        self.redactor = redactor

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            super().log(level, self.redactor(text), **kwargs)


class Connections:
    """The parsed, validated connections file (secrets not yet resolved)."""

    def __init__(self, file: str, specs: dict[str, dict], registry: Registry):
        self.file = file
        self.specs = specs
        self.registry = registry
        self._resolved: dict[str, Connection] = {}

    @classmethod
    def empty(cls, registry: Registry) -> "Connections":
        return cls("<no connections.yaml>", {}, registry)

    @classmethod
    def load(cls, path: str | Path, registry: Registry) -> "Connections":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise FlowError([Problem(str(path), 1, 1, "", f"cannot read connections file: {exc}")]) from None
        data, positions, problems = yamlpos.load(text, str(path))

        def problem(where: str, message: str) -> None:
            line, col = yamlpos.position(positions, where)
            problems.append(Problem(str(path), line, col, where, message))

        entries = (data or {}).get("connections") if isinstance(data, dict) else None
        if data is not None and not isinstance(entries, dict):
            problem("connections", "expected a mapping 'connections: {name: {kind: ..., ...}}'")
            entries = {}
        specs: dict[str, dict] = {}
        for name, entry in (entries or {}).items():
            where = f"connections.{name}"
            if not isinstance(entry, dict):
                problem(where, "expected a mapping with 'kind'")
                continue
            for key in entry:
                if key not in ("kind", "settings", "secrets", "endpoint", "description"):
                    problem(f"{where}.{key}", f"unknown key '{key}'"
                            f"{suggest(str(key), ['kind', 'settings', 'secrets', 'endpoint', 'description'])}")
            kind = entry.get("kind")
            spec = registry.connections.get(kind) if isinstance(kind, str) else None
            if spec is None:
                problem(f"{where}.kind", f"unknown connection kind {kind!r}{suggest(str(kind), registry.connections)}")
                continue
            settings = entry.get("settings") or {}
            secrets = entry.get("secrets") or {}
            if not isinstance(settings, dict) or not isinstance(secrets, dict):
                problem(where, "'settings' and 'secrets' must be mappings")
                continue
            for key in settings:
                if key in spec.secret_names:
                    problem(f"{where}.settings.{key}", f"'{key}' is a secret: reference an environment "
                                                       f"variable instead (secrets: {{{key}: ENV_VAR}})")
            for key, env in secrets.items():
                if key not in spec.secret_names:
                    problem(f"{where}.secrets.{key}", f"'{key}' is not a secret of kind '{kind}'"
                                                      f"{suggest(str(key), spec.secret_names)}")
                elif not isinstance(env, str) or not env.replace("_", "").isalnum():
                    problem(f"{where}.secrets.{key}", "expected the NAME of an environment variable")
            schema = dict(spec.settings)
            schema["properties"] = {k: v for k, v in schema.get("properties", {}).items()
                                    if k not in spec.secret_names}
            schema["required"] = [k for k in schema.get("required", []) if k not in spec.secret_names]
            from jsonschema import Draft202012Validator  # only when there are settings to check

            for err in Draft202012Validator(schema).iter_errors(settings):
                sub = ".".join(str(p) for p in err.absolute_path)
                problem(f"{where}.settings" + (f".{sub}" if sub else ""), err.message)
            specs[name] = {"kind": kind, "settings": settings, "secrets": secrets,
                           "endpoint": entry.get("endpoint")}
        if problems:
            raise FlowError(problems)
        return cls(str(path), specs, registry)

    def env_vars(self) -> set[str]:
        """The environment variables the connections read their secrets from."""
        return {var for entry in self.specs.values() for var in entry.get("secrets", {}).values()
                if isinstance(var, str)}

    def close(self) -> None:
        """Close the clients of every connection built so far (a producer is flushed)."""
        for conn in self._resolved.values():
            conn.close()

    def resolve(self, names: set[str], redactor: Redactor,
                env: Mapping[str, str] | None = None) -> dict[str, Connection]:
        """Build the named connections, reading secrets from the environment.

        Every missing variable is reported at once, before anything runs."""
        env = os.environ if env is None else env
        missing, out = [], {}
        for name in sorted(names):
            if name in self._resolved:
                out[name] = self._resolved[name]
                continue
            entry = self.specs.get(name)
            if entry is None:
                missing.append(f"unknown connection '{name}'{suggest(name, self.specs)} in {self.file}")
                continue
            spec = self.registry.connections[entry["kind"]]
            values = {}
            for key, var in entry["secrets"].items():
                if env.get(var):
                    values[key] = env[var]
                else:
                    missing.append(f"connection '{name}': environment variable {var} (for '{key}') is not set")
            required = [k for k in spec.settings.get("required", []) if k in spec.secret_names]
            for key in required:
                if key not in entry["secrets"]:
                    missing.append(f"connection '{name}': secret '{key}' is required "
                                   f"(secrets: {{{key}: ENV_VAR}} in {self.file})")
            if not missing:
                conn = Connection(name, spec, dict(entry["settings"]), values, entry.get("endpoint"))
                conn.redactor = redactor  # tokens the vendor issues later are redacted too
                for v in conn.secret_values():
                    redactor.add(v)
                self._resolved[name] = out[name] = conn
        if missing:
            raise ConnectionError_("; ".join(missing))
        return out


def find_file(flow_file: str | Path) -> Path | None:
    """connections.yaml beside the flow, or in a parent folder, or in the working directory."""
    start = Path(flow_file).resolve().parent
    for folder in [start, *start.parents]:
        candidate = folder / "connections.yaml"
        if candidate.is_file():
            return candidate
        if (folder / ".git").exists():
            break
    cwd = Path.cwd() / "connections.yaml"
    return cwd if cwd.is_file() else None
