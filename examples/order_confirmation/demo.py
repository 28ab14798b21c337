"""Run the order-confirmation flow end to end against the local vendor sandbox.

    python examples/order_confirmation/demo.py

Starts the sandbox on 127.0.0.1:8790 (the endpoint in connections.yaml), sets demo secrets in
the environment, runs flow.yaml with event.json as the Stripe event, then prints the run and
every request the four vendors' SDKs sent.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import sandbox  # noqa: E402

DEMO_SECRETS = {"STRIPE_API_KEY": "sk_test_demo_4eC39HqLyjWDarjtT1zdp7dc", "STRIPE_WEBHOOK_SECRET": "whsec_demo",
                "SF_PASSWORD": "demo-password", "SF_SECURITY_TOKEN": "demo-token",
                "SENDGRID_API_KEY": "SG.demo-key", "TWILIO_AUTH_TOKEN": "demo-twilio-token"}


def main(state: str | None = None, port: int = 8790, *, fail_email: bool = False, quiet: bool = False):
    import engine

    for key, value in DEMO_SECRETS.items():
        os.environ.setdefault(key, value)
    api = sandbox.start(port, fail_email=fail_email)
    try:
        conns = Path(tempfile.mkdtemp()) / "connections.yaml"
        conns.write_text((HERE / "connections.yaml").read_text().replace("127.0.0.1:8790", api.url.split("//")[1]))
        result = engine.run_file(HERE / "flow.yaml", input=json.loads((HERE / "event.json").read_text()),
                                 state=state or Path(tempfile.mkdtemp()) / "state.db", connections=conns)
    finally:
        api.stop()
    if not quiet:
        print(f"run {result.run_id}: {result.status}")
        for path, step in result.steps.items():
            print(f"  {step.status:<9} {path}" + (f"  ({step.error['message']})" if step.error else ""))
        print("requests the SDKs sent:")
        for req in api.requests:
            print(f"  {req.method:<5} {req.path}")
    return result, api.requests


if __name__ == "__main__":
    outcome, _ = main()
    sys.exit(0 if outcome.status == "Succeeded" else 1)
