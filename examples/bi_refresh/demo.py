"""Refresh a Tableau extract, export the dashboard as a PDF and email it, offline.

    python examples/bi_refresh/demo.py     # exits 0 when the run Succeeded and the mail carried the PDF

Starts on 127.0.0.1 the loopback Tableau REST API of the test suite (tests/support/tableau.py:
sign-in, the refresh job, view exports) and the vendor sandbox of examples/order_confirmation for
SendGrid, so install the test extra first: pip install -e '.[all,test]'. It sets demo secrets in
the environment (unless set), writes a connections file pointing at the fakes, fires the nightly
flow once as its schedule would, then prints the run and what each fake received.
"""
from __future__ import annotations

import base64
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "examples/order_confirmation")]

import sandbox  # noqa: E402  (examples/order_confirmation: SendGrid)
from tests.support.tableau import TableauFake  # noqa: E402

DEMO_SECRETS = {"TABLEAU_PAT_SECRET": "demo-tableau-pat", "SENDGRID_API_KEY": "SG.demo-key"}


def run_refresh(work: Path) -> tuple[Any, TableauFake, Any]:
    """Fire the flow once against fresh fakes: (Run, the Tableau fake, the SendGrid sandbox)."""
    import engine

    for key, value in DEMO_SECRETS.items():
        os.environ.setdefault(key, value)
    with TableauFake(version="3.25", job_polls=0) as tableau:
        mail = sandbox.start()
        try:
            conns = yaml.safe_load((HERE / "connections.yaml").read_text())["connections"]
            conns["tableau"]["endpoint"] = tableau.url
            conns["sendgrid"]["endpoint"] = mail.url
            path = work / "connections.yaml"
            path.write_text(yaml.safe_dump({"connections": conns}, sort_keys=False))
            result = engine.run_file(HERE / "flow.yaml", input={"scheduledTime": "2024-06-03T04:30:00Z"},
                                     state=work / "state.db", connections=path)
        finally:
            mail.stop()
    return result, tableau, mail


def report(result: Any, tableau: TableauFake, mail: Any) -> None:
    print(f"run {result.run_id}: {result.status}" + (f"  ({result.error['message']})" if result.error else ""))
    for path, step in result.steps.items():
        print(f"  {step.status:<9} {path}" + (f"  ({step.error['message']})" if step.error else ""))
    print("what the fakes received:")
    for req in tableau.recorder.requests:
        print(f"  tableau   {req.method:<4} {req.path}" + (f"?{req.query}" if req.query else ""))
    for req in mail.requests:
        body = req.json()
        files = [f"{a['filename']} ({len(base64.b64decode(a['content']))} bytes, {a.get('type')})"
                 for a in body.get("attachments", [])]
        print(f"  sendgrid  {req.method} {req.path} {body['subject']!r} to "
              f"{[t['email'] for t in body['personalizations'][0]['to']]} attachments {files}")


def main(argv: list[str]) -> int:
    work = Path(argv[argv.index("--work") + 1]) if "--work" in argv else Path(tempfile.mkdtemp(prefix="bi-refresh-"))
    work.mkdir(parents=True, exist_ok=True)
    result, tableau, mail = run_refresh(work)
    report(result, tableau, mail)
    print(f"(state database: {work / 'state.db'})")
    pdf_sent = any(a.get("type") == "application/pdf" and base64.b64decode(a["content"]).startswith(b"%PDF")
                   for req in mail.requests for a in req.json().get("attachments", []))
    return 0 if result.status == "Succeeded" and pdf_sent else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
