"""Geocode a webhook of orders and upsert their coordinates in Salesforce, offline.

    python examples/geo_enrich/demo.py [--work DIR]   # exits 0 when every order was handled

Starts on 127.0.0.1 the loopback Mapbox and Google geocoders of the test suite
(tests/support/geo.py) and the vendor sandbox of examples/order_confirmation for Salesforce, so
install the test extra first: pip install -e '.[all,test]'. It serves this folder with the real
listener app (in process) and posts orders.json to the Request trigger as a webhook would:
Mapbox answers two addresses, Google the one Mapbox does not know, and one address is found
nowhere (marked failed in the reply). Then it posts the same orders again: Mapbox's answers come
from the cache in the state database (no request), Google is asked again (its connection keeps
no cache). It prints each reply and what each fake received.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "examples/order_confirmation")]

import sandbox  # noqa: E402  (examples/order_confirmation: Salesforce)
from tests.support.geo import GeoFake  # noqa: E402

DEMO_SECRETS = {"MAPBOX_TOKEN": "pk.demo-mapbox-token", "GOOGLE_MAPS_KEY": "AIza-demo-google-key",
                "SF_PASSWORD": "demo-sf-password", "SF_SECURITY_TOKEN": "demo-sf-token"}
ORDERS = json.loads((HERE / "orders.json").read_text())


def start_fakes() -> tuple[GeoFake, Any]:
    geo = GeoFake(mapbox_token=os.environ["MAPBOX_TOKEN"], google_key=os.environ["GOOGLE_MAPS_KEY"])
    geo.google_only.add("rua augusta 100, lisboa")  # Mapbox finds nothing: Google answers
    geo.__enter__()
    api = sandbox.start()
    api.route("PATCH", rf"{sandbox.SF}/sobjects/Order/Order_Number__c/[^/]+", status=201,
              json={"id": "8015e00000AbCdEAAV", "success": True, "errors": [], "created": True})
    return geo, api


def enrich(work: Path, posts: int = 2) -> tuple[list[tuple[int, Any]], GeoFake, Any]:
    """Serve the flow, post the orders ``posts`` times: ([(status, reply)], the fakes)."""
    from engine.api import Engine
    from engine.listener.app import Listener, Options, build_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    for key, value in DEMO_SECRETS.items():
        os.environ.setdefault(key, value)
    geo, api = start_fakes()
    try:
        conns = yaml.safe_load((HERE / "connections.yaml").read_text())["connections"]
        conns["mapbox"]["endpoint"] = conns["google"]["endpoint"] = geo.url
        conns["salesforce"]["endpoint"] = api.url
        path = work / "connections.yaml"
        path.write_text(yaml.safe_dump({"connections": conns}, sort_keys=False))
        engine = Engine(work / "state.db", connections=path)
        try:
            listener = Listener(engine, Options(flows=str(HERE), sync_timeout=60))
            listener.load()
            replies = []
            with TestClient(build_app(listener)) as client:
                for _ in range(posts):
                    answer = client.post("/flows/geo_enrich/triggers/orders", json=ORDERS)
                    replies.append((answer.status_code, answer.json()))
        finally:
            engine.close()
    finally:
        api.stop()
        geo.__exit__(None, None, None)
    return replies, geo, api


def report(replies: list, geo: GeoFake, api: Any) -> None:
    for i, (status, body) in enumerate(replies, 1):
        print(f"webhook {i}: {status} {json.dumps(body)}")
    print("what the fakes received:")
    for req in geo.recorder.requests:
        where = "mapbox " if req.path.startswith("/geocoding/") else "google "
        query = req.query.get("address", [unquote(req.path.rsplit("/", 2)[-2])[:-5] if where == "mapbox " else ""])[0]
        print(f"  {where}  GET {query}")
    for req in api.requests:
        if req.method == "PATCH":
            print(f"  salesforce PATCH {req.path.rsplit('/', 1)[1]} {req.json()}")


def main(argv: list[str]) -> int:
    logging.getLogger("flowrun.listener").setLevel(logging.WARNING)
    work = Path(argv[argv.index("--work") + 1]) if "--work" in argv else Path(tempfile.mkdtemp(prefix="geo-enrich-"))
    work.mkdir(parents=True, exist_ok=True)
    replies, geo, api = enrich(work)
    report(replies, geo, api)
    print(f"(state database: {work / 'state.db'})")
    expected = {"geocoded": 3, "failed": [3]}
    return 0 if all(status == 200 and body == expected for status, body in replies) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
