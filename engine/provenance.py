"""Where a run's flow came from: the git commit of its file, recorded with every run."""
from __future__ import annotations

import subprocess
from pathlib import Path

from .model import Flow


_git_by_flow: dict[tuple[str, str], str | None] = {}


def recorded_commit(flow: Flow) -> str | None:
    """The git commit of a flow file, looked up once per file content (runs start often)."""
    key = (flow.file, flow.hash)
    if key not in _git_by_flow:
        _git_by_flow[key] = git_commit(flow.file) if Path(flow.file).exists() else None
    return _git_by_flow[key]


def git_commit(file: str) -> str | None:
    folder = str(Path(file).resolve().parent)
    try:
        out = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None
