"""The README's promise: `flowrun serve --flows flows` shows, at /ui, the runs the README's
first command made (both use the default state database), signed in with the token serve
keeps beside it when FLOWRUN_ADMIN_TOKEN is not set."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..conftest import ROOT, Server


FIRST = ["run", "flows/orders.yaml", "--input", "@flows/data/orders.json"]


def test_the_readmes_first_command_is_the_one_tested_here_and_its_run_page_screenshot_is_shown():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    assert first_block.strip().endswith("flowrun " + " ".join(FIRST))
    assert "flowrun serve --flows flows" in readme and "](docs/ui-run.png)" in readme
    assert (ROOT / "docs/ui-run.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # taken by test_browser.py


def test_serve_shows_the_runs_of_the_readmes_first_command(tmp_path):
    shutil.copytree(ROOT / "flows", tmp_path / "flows")
    env = {k: v for k, v in os.environ.items() if k not in ("FLOWRUN_ADMIN_TOKEN", "FLOWRUN_STATE")}
    env["PYTHONPATH"] = str(ROOT)
    subprocess.run([sys.executable, "-m", "engine.cli", *FIRST],
                   cwd=tmp_path, env=env, check=True, capture_output=True)
    server = Server(tmp_path / "flows", Path(".flowrun/state.db"), env={"FLOWRUN_ADMIN_TOKEN": ""})
    server.start()
    try:
        token_file = tmp_path / ".flowrun" / "state.db.ui-token"
        said = [r for r in server.logs() if r.get("event") == "ui"]
        assert said and said[0]["url"].endswith("/ui") and str(Path(".flowrun/state.db.ui-token")) in said[0]["msg"]
        token = token_file.read_text().strip()
        assert token not in "\n".join(server.lines)  # the log says where the token is, not what
        with server.client() as http:
            assert http.get("/ui/runs", follow_redirects=False).status_code == 303
            page = http.get("/ui/runs?flow=orders", headers={"Authorization": f"Bearer {token}"})
        assert page.status_code == 200
        assert page.text.count('<tr class="run"') == 1 and "Succeeded" in page.text
    finally:
        server.stop()
