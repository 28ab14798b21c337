"""Run the order-confirmation flow end to end against a local sandbox of the four vendors.

    python examples/order_confirmation/demo.py            # through `flowrun serve` (default)
    python examples/order_confirmation/demo.py --direct   # run the flow in-process instead

Starts the vendor sandbox on a free port of 127.0.0.1, sets demo secrets in the environment,
writes a connections file pointing at the sandbox, then either starts a real `flowrun serve`
and posts event.json to it as Stripe would (signed with the Stripe SDK's own helper), or runs
the flow in-process with the event as its trigger body. It prints the run and every request
the four vendors' SDKs sent.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import sandbox  # noqa: E402

DEMO_SECRETS = {"FLOWRUN_ADMIN_TOKEN": "demo-admin-token", "STRIPE_API_KEY": "sk_test_demo_4eC39HqLyjWDarjtT1zdp7dc", "STRIPE_WEBHOOK_SECRET": "whsec_demo",
                "SF_PASSWORD": "demo-password", "SF_SECURITY_TOKEN": "demo-token",
                "SENDGRID_API_KEY": "SG.demo-key", "TWILIO_AUTH_TOKEN": "demo-twilio-token"}


def _setup(work: Path, api) -> Path:
    for key, value in DEMO_SECRETS.items():
        os.environ.setdefault(key, value)
    conns = work / "connections.yaml"
    conns.write_text((HERE / "connections.yaml").read_text().replace("http://127.0.0.1:8790", api.url))
    return conns


def run_direct(work: Path, *, fail_email: bool = False):
    """Run flow.yaml in-process with event.json as the trigger body: (Run, requests)."""
    import engine

    api = sandbox.start(fail_email=fail_email)
    try:
        conns = _setup(work, api)
        result = engine.run_file(HERE / "flow.yaml", input=json.loads((HERE / "event.json").read_text()),
                                 state=work / "state.db", connections=conns)
    finally:
        api.stop()
    return result, api.requests


def run_served(work: Path) -> tuple[int, dict, dict, list]:
    """POST the Stripe-signed event to a real `flowrun serve`: (status, reply, run, requests)."""
    import httpx
    from stripe import WebhookSignature

    api = sandbox.start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = None
    try:
        conns = _setup(work, api)
        flows = work / "flows"
        flows.mkdir()
        (flows / "order_confirmation.yaml").write_text((HERE / "flow.yaml").read_text())
        server = subprocess.Popen([sys.executable, "-m", "engine.cli", "--state", str(work / "state.db"),
                                   "--connections", str(conns), "serve", "--flows", str(flows), "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=open(work / "serve.log", "wb"))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("flowrun serve did not start:\n" + (work / "serve.log").read_text())
            time.sleep(0.1)
        payload = (HERE / "event.json").read_text()
        signature = WebhookSignature.generate_signature_header(payload, os.environ["STRIPE_WEBHOOK_SECRET"])
        reply = httpx.post(f"{base}/flows/order_confirmation/triggers/stripe_event", content=payload, timeout=60,
                           headers={"Content-Type": "application/json", "Stripe-Signature": signature})
        run_id = reply.headers.get("X-Flowrun-Run-Id")
        run = {}
        while run_id:
            polled = httpx.get(f"{base}/runs/{run_id}", timeout=10,
                               headers={"Authorization": f"Bearer {os.environ['FLOWRUN_ADMIN_TOKEN']}"})
            run = polled.json()
            if polled.status_code == 200 or time.monotonic() > deadline + 30:
                break
            time.sleep(0.1)
        return reply.status_code, reply.json(), run, api.requests
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        api.stop()


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="order-confirmation-"))
    if "--direct" in sys.argv:
        result, requests = run_direct(work)
        print(f"run {result.run_id}: {result.status}")
        for path, step in result.steps.items():
            print(f"  {step.status:<9} {path}" + (f"  ({step.error['message']})" if step.error else ""))
        ok = result.status == "Succeeded"
    else:
        status, reply, run, requests = run_served(work)
        print(f"Stripe webhook -> flowrun serve: HTTP {status} {json.dumps(reply)}")
        print(f"run {run.get('runId')}: {run.get('status')}")
        ok = status == 200 and run.get("status") == "Succeeded"
    print("requests the vendors' SDKs sent to the sandbox:")
    for req in requests:
        print(f"  {req.method:<5} {req.path}")
    print(f"(state database: {work / 'state.db'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
