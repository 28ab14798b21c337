"""Logic Apps definitions as flows: which file is which, and what it means for a flow.

A flow file is YAML (flowrun's own format) unless its text is a JSON object that is one of

- a Standard ``workflow.json``: ``{"definition": {...}, "kind": "Stateful" | "Stateless"}``;
- a bare definition: ``{"$schema": ".../workflowdefinition.json#", "triggers", "actions", ...}``;
- a Consumption ARM template: ``{"resources": [{"type": "Microsoft.Logic/workflows",
  "properties": {"definition": {...}, "parameters": {...}}}], "parameters": {...}}``. ARM
  (deployment-time) expressions, the strings written ``"[...]"``, are resolved here:
  ``parameters('x')`` from ``--arm-parameters FILE`` (``$FLOWRUN_ARM_PARAMETERS``) or the
  template's ``defaultValue``, ``variables('x')``, ``concat(...)``, literals and ``.x`` /
  ``['x']`` / ``[0]`` steps; any other ARM function is a problem at its string.

Detection is per file and automatic (``parse``). The definition becomes the flow's data; its
positions are those of the JSON file (the loader reports ``workflow.json:12:9``), read by
libyaml (JSON is YAML) while the values come from ``json`` (``1e5`` is a number in JSON).

Beside a Standard workflow (``app/<workflow>/workflow.json``), the app folder's
``parameters.json`` declares parameters, ``local.settings.json``'s ``Values`` and then the
environment are the app settings (``@appsetting('X')``), and ``connections.json`` lists the
app's connections (managed ones cannot run here).

What a definition means beyond its text (``Definition``): its name (the workflow folder's
name, the ARM resource's name, else the file's stem), and that a Request trigger without
``auth`` is protected as in Logic Apps, by a SAS signature in its callback URL
(``auth: {type: sas}``, see ``engine.listener.auth``).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import safejson, yamlpos
from .arm import Arm, arm_parameter_values
from .errors import Problem

ARM_PARAMETERS_ENV = "FLOWRUN_ARM_PARAMETERS"
KINDS = ("Stateful", "Stateless")
_WDL_SCHEMA = "workflowdefinition"
_ARM_SCHEMA = "deploymenttemplate"
_JSON_ERROR_AT = re.compile(r"line (\d+) column (\d+)")


@dataclass
class Definition:
    """A Logic Apps definition found in a file, ready for the loader."""

    shape: str  # "workflow.json", "definition", "arm"
    data: dict  # the definition, as the flow's data
    prefix: str  # where the definition stands in the file (dotted), "" for a bare one
    name: str
    app_settings: dict = field(default_factory=dict)
    app_folder: Path | None = None


def is_json(text: str) -> bool:
    return text.lstrip("\ufeff \t\r\n")[:1] == "{"


def parse(text: str, file: str, *, arm_parameters: str | None = None) -> tuple[Any, dict, list[Problem], Definition | None]:
    """``(data, positions, problems, definition)`` of a flow file's text. ``definition`` is
    None for a flowrun flow (YAML, or YAML's JSON subset written in flowrun's format)."""
    if not is_json(text):
        data, positions, problems = yamlpos.load(text, file)
        return data, positions, problems, None
    data, positions, problems = _load_json(text, file)
    if problems or not isinstance(data, dict):
        return data, positions, problems, None
    shape = detect(data)
    if shape is None:
        return data, positions, problems, None
    found: list[Problem] = []

    def problem(path: str, message: str) -> None:
        line, col = yamlpos.position(positions, path)
        found.append(Problem(file, line, col, path, message))

    if shape == "arm":
        definition = _from_arm(data, file, arm_parameters or os.environ.get(ARM_PARAMETERS_ENV), problem)
    elif shape == "workflow.json":
        definition = _from_workflow_json(data, file, problem)
    else:
        definition = Definition("definition", data, "", Path(file).stem)
    if definition is None:
        return None, positions, found, None
    if definition.shape != "arm":
        _app_context(definition, file, problem)
    _as_flow(definition)
    return definition.data, _within(positions, definition.prefix), found, definition


def positions(text: str, file: str) -> dict:
    """Positions of a flow's paths in its file (a definition's: inside the JSON around it)."""
    if not is_json(text):
        return yamlpos.load(text, file)[1]
    data, found, problems = _load_json(text, file)
    if problems or not isinstance(data, dict):
        return found
    prefix = {"arm": None, "workflow.json": "definition", "definition": ""}.get(detect(data) or "", "")
    if prefix is None:
        resources = data.get("resources") or []
        prefix = next((f"resources.{i}.properties.definition" for i, r in enumerate(resources)
                       if _is_workflow_resource(r)), "")
    return _within(found, prefix)


def detect(data: dict) -> str | None:
    """Which Logic Apps shape ``data`` is, or None for a flowrun flow."""
    schema = str(data.get("$schema", "")).lower()
    if _ARM_SCHEMA in schema or (isinstance(data.get("resources"), list) and "actions" not in data):
        return "arm"
    if isinstance(data.get("definition"), dict) and "actions" not in data:
        return "workflow.json"
    if _WDL_SCHEMA in schema or "contentVersion" in data or "staticResults" in data:
        return "definition"
    return None


# -- JSON with positions -------------------------------------------------------------------------
def _load_json(text: str, file: str) -> tuple[Any, dict, list[Problem]]:
    """Values from ``json`` (bounded: ``engine.safejson``), positions from libyaml; a text
    that is YAML's flow style but not JSON is read as YAML (as before definitions were known)."""
    data, positions, problems = yamlpos.load(text, file)
    try:
        values = safejson.loads(text.lstrip("\ufeff"), max_depth=yamlpos.MAX_DEPTH)
    except ValueError as exc:
        if not problems and data is not None and not file.lower().endswith(".json"):
            return data, positions, problems  # a YAML flow in flow style
        m = _JSON_ERROR_AT.search(str(exc))
        line, col = (int(m.group(1)), int(m.group(2))) if m else (1, 1)
        return None, positions, [Problem(file, line, col, "", f"invalid JSON: {str(exc).removeprefix('malformed JSON: ')}")]
    if problems:  # libyaml's own (duplicate keys, control characters): JSON allows neither here
        return None, positions, problems
    return values, positions, []


def _within(positions: dict, prefix: str) -> dict:
    if not prefix:
        return positions
    out = {"": positions.get(prefix, (1, 1))}
    start, key_start = prefix + ".", "@" + prefix + "."
    for path, at in positions.items():
        if path.startswith(start):
            out[path[len(start):]] = at
        elif path.startswith(key_start):
            out["@" + path[len(key_start):]] = at
    return out


# -- the three shapes ------------------------------------------------------------------------------
def _from_workflow_json(data: dict, file: str, problem: Any) -> Definition | None:
    for key in data:
        if key not in ("definition", "kind", "$schema"):
            problem(key, f"unknown key '{key}' in a workflow.json (it holds 'definition' and 'kind')")
    kind = data.get("kind")
    if kind is not None and str(kind).capitalize() not in KINDS:
        problem("kind", f"kind {kind!r} is neither Stateful nor Stateless")
    path = Path(file)
    name = path.parent.name if path.name.lower() == "workflow.json" and path.parent.name else path.stem
    return Definition("workflow.json", data["definition"], "definition", name)


def _is_workflow_resource(resource: Any) -> bool:
    return isinstance(resource, dict) and str(resource.get("type", "")).lower() == "microsoft.logic/workflows"


def _from_arm(data: dict, file: str, parameters_file: str | None, problem: Any) -> Definition | None:
    resources = data.get("resources")
    found = [(i, r) for i, r in enumerate(resources if isinstance(resources, list) else []) if _is_workflow_resource(r)]
    if not found:
        problem("resources", "an ARM template with no Microsoft.Logic/workflows resource: nothing to run")
        return None
    if len(found) > 1:
        problem(f"resources.{found[1][0]}", f"this template holds {len(found)} Logic Apps workflows; "
                                            f"flowrun runs one per file (split the template)")
        return None
    index, resource = found[0]
    where = f"resources.{index}"
    values = arm_parameter_values(data, parameters_file, problem)
    arm = Arm(values, data.get("variables") if isinstance(data.get("variables"), dict) else {}, problem)
    # only what the flow is made of: the name, the definition and its parameters' values
    # (a location, tags or dependsOn written with resourceGroup() and the like do not matter here)
    props = resource.get("properties") if isinstance(resource.get("properties"), dict) else {}
    props = {k: arm.resolve(props[k], f"{where}.properties.{k}") for k in ("definition", "parameters") if k in props}
    resource = {"name": arm.resolve(resource.get("name"), f"{where}.name")}
    definition = props.get("definition")
    if not isinstance(definition, dict):
        problem(f"{where}.properties", "the workflow resource has no properties.definition object")
        return None
    supplied = props.get("parameters") if isinstance(props.get("parameters"), dict) else {}
    declared = definition.get("parameters") if isinstance(definition.get("parameters"), dict) else {}
    for name, given in supplied.items():
        if isinstance(given, dict) and "value" in given and isinstance(declared.get(name), dict):
            declared[name] = {**declared[name], "defaultValue": given["value"]}
    name = resource.get("name")
    name = name.rsplit("/", 1)[-1] if isinstance(name, str) and name else Path(file).stem
    return Definition("arm", definition, f"{where}.properties.definition", name)


# -- the Standard app folder around a workflow.json --------------------------------------------------
def app_folder(file: str | Path) -> Path | None:
    """The Standard app folder of a workflow file (its parent's parent, holding host.json)."""
    path = Path(file)
    folder = path.parent.parent if path.name.lower() == "workflow.json" else path.parent
    return folder if (folder / "host.json").is_file() else None


def _read_json(path: Path, problem: Any) -> dict:
    try:
        data = safejson.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        problem("", f"cannot read {path}: {exc}")
        return {}
    if not isinstance(data, dict):
        problem("", f"{path} must hold a JSON object")
        return {}
    return data


def app_settings(folder: Path | None, problem: Any = None) -> dict:
    """``local.settings.json``'s ``Values``, then the environment (which wins)."""
    settings: dict = {}
    if folder is not None and (folder / "local.settings.json").is_file():
        values = _read_json(folder / "local.settings.json", problem or (lambda *a: None)).get("Values")
        if isinstance(values, dict):
            settings.update({str(k): v if isinstance(v, str) else json.dumps(v) for k, v in values.items()})
    settings.update(os.environ)
    _secret_settings(settings)
    return settings


def _secret_settings(settings: dict) -> None:
    """App settings whose names say they hold a secret (an API key, a connection string) join
    the process's redactor: ``@appsetting('ApiKey')`` in a header is stored and shown masked."""
    from .connections import PROCESS_REDACTOR, secret_setting

    for name, value in settings.items():
        if isinstance(value, str) and secret_setting(name):
            PROCESS_REDACTOR.add(value)


_APPSETTING = re.compile(r"^@appsetting\('((?:[^']|'')*)'\)$", re.IGNORECASE)


def _app_context(definition: Definition, file: str, problem: Any) -> None:
    folder = app_folder(file)
    definition.app_folder = folder
    definition.app_settings = app_settings(folder, problem)
    if folder is None or not (folder / "parameters.json").is_file():
        return
    params = _read_json(folder / "parameters.json", problem)
    declared = definition.data.setdefault("parameters", {})
    if not isinstance(declared, dict):
        return
    for name, spec in params.items():
        if not isinstance(spec, dict):
            problem("", f"{folder / 'parameters.json'}: parameter '{name}' must be an object with type and value")
            continue
        value = spec.get("value")
        m = _APPSETTING.match(value) if isinstance(value, str) else None
        if m:  # the usual indirection: a parameter whose value is an app setting
            value = definition.app_settings.get(m.group(1).replace("''", "'"))
        entry = {"type": str(spec.get("type", "object")), "defaultValue": value}
        declared[name] = {**entry, **declared[name]} if isinstance(declared.get(name), dict) else entry


# -- Logic Apps types flowrun does not run ----------------------------------------------------------
UNSUPPORTED = {
    "apiconnection": "a managed connector call, which runs only in Azure",
    "apiconnectionwebhook": "a managed connector webhook, which runs only in Azure",
    "apiconnectionnotification": "a managed connector trigger, which runs only in Azure",
    "serviceprovider": "a Standard built-in connector (service provider) with no flowrun node for its service",
    "javascriptcode": "inline JavaScript, which flowrun does not execute",
    "csharpscriptcode": "inline C# script, which flowrun does not execute",
    "powershellcode": "inline PowerShell, which flowrun does not execute",
    "function": "an Azure Functions call (use Http with the function's URL)",
    "invokefunction": "a local function call of a Standard app",
    "httpwebhook": "an HTTP webhook (subscribe/unsubscribe), not supported yet",
    "slidingwindow": "a sliding-window trigger, not supported (use Recurrence)",
    "xslt": "an XML transform (integration account)", "xmlvalidation": "XML validation (integration account)",
    "liquid": "a Liquid transform (integration account)", "flatfiledecoding": "flat-file decoding",
    "flatfileencoding": "flat-file encoding", "xmlparse": "XML parsing (integration account)",
    "parsedocument": "document parsing (AI)", "chunktext": "text chunking (AI)", "agent": "an AI agent loop",
    "http": "a polling HTTP trigger, not supported (use Recurrence with an Http action)",
    "expression": "a legacy expression action", "batch": "a batch trigger", "sendtobatch": "a batch send",
}


def unsupported(type_name: Any) -> str | None:
    """Why a Logic Apps action or trigger type cannot run here, or None if it is not one of them."""
    if not isinstance(type_name, str):
        return None
    why = UNSUPPORTED.get(type_name.lower())
    return f"Logic Apps type '{type_name}' cannot run in flowrun: it is {why}" if why else None


# -- what a definition means for the flow ------------------------------------------------------------
# Standard's built-in connectors whose service flowrun has a node for: serviceProviderId (lower
# case) -> (node type, the parameters it takes). The action's serviceProviderConfiguration
# .connectionName becomes the node's connection (a connection of connections.yaml by that name).
SERVICE_PROVIDERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "/serviceproviders/eventgridpublisher": ("azure.eventgrid.Publish", ("events", "schema", "source")),
}


def _service_provider(action: dict) -> None:
    """A ServiceProvider action of a mapped service, rewritten as that node where its
    parameters line up (else left as it is: validate names it)."""
    inputs = action.get("inputs") if isinstance(action.get("inputs"), dict) else {}
    config = inputs.get("serviceProviderConfiguration")
    if not isinstance(config, dict):
        return
    found = SERVICE_PROVIDERS.get(str(config.get("serviceProviderId", "")).lower())
    params = inputs.get("parameters") if isinstance(inputs.get("parameters"), dict) else {}
    if found is None or not set(params) <= set(found[1]) or not isinstance(config.get("connectionName"), str):
        return
    action["type"], action["connection"] = found[0], config["connectionName"]
    action["inputs"] = dict(params)


def _each_action(actions: Any) -> Any:
    for action in (actions.values() if isinstance(actions, dict) else ()):
        if not isinstance(action, dict):
            continue
        yield action
        for key in ("actions",):
            yield from _each_action(action.get(key))
        for key in ("else", "default"):
            if isinstance(action.get(key), dict):
                yield from _each_action(action[key].get("actions"))
        for case in (action.get("cases").values() if isinstance(action.get("cases"), dict) else ()):
            if isinstance(case, dict):
                yield from _each_action(case.get("actions"))


def _as_flow(definition: Definition) -> None:
    data = definition.data
    data.setdefault("name", definition.name)
    for action in _each_action(data.get("actions")):
        if str(action.get("type", "")).lower() == "serviceprovider":
            _service_provider(action)
    triggers = data.get("triggers")
    for trigger in (triggers.values() if isinstance(triggers, dict) else ()):
        if isinstance(trigger, dict) and str(trigger.get("type", "")).lower() == "request" and "auth" not in trigger:
            trigger["auth"] = {"type": "sas"}
