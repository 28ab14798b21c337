"""The test node package ``tests/plugins/flowrun_jobplugin`` for in-process engines, and the
environment that lets a ``flowrun`` subprocess find it through its entry point."""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

from engine.registry import Registry, default_registry

PLUGINS = Path(__file__).parents[1] / "plugins"


def plugin_module():
    """Import the package without putting tests/plugins on sys.path (which would add it to the
    default registry of every later test)."""
    if "flowrun_jobplugin" not in sys.modules:
        spec = importlib.util.spec_from_file_location("flowrun_jobplugin", PLUGINS / "flowrun_jobplugin" / "__init__.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["flowrun_jobplugin"] = module
        spec.loader.exec_module(module)
    return sys.modules["flowrun_jobplugin"]


def registry() -> Registry:
    """The built-in nodes plus the test plugin's."""
    reg = Registry()
    for name in default_registry().modules:
        reg.add_module(importlib.import_module(name))
    reg.add_module(plugin_module())
    return reg


def subprocess_env() -> dict:
    """A ``flowrun`` subprocess finds the plugin by its entry point, as if pip-installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PLUGINS), env.get("PYTHONPATH")) if p)
    return env
