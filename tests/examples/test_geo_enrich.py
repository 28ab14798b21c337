"""examples/geo_enrich: one command serves the flow, posts a webhook of orders twice, geocodes
them with Mapbox falling back to Google and upserts the coordinates in Salesforce."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {"MAPBOX_TOKEN": "pk.m'a\"p\\b/+%é-ox", "GOOGLE_MAPS_KEY": "AIza'g\"o\\o/+%-gle",
           "SF_PASSWORD": "s'f\"p\\w/+%ü", "SF_SECURITY_TOKEN": "t'o\"k\\/+%"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    work = tmp_path_factory.mktemp("geo")
    done = subprocess.run([sys.executable, "examples/geo_enrich/demo.py", "--work", str(work)], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, **SECRETS}, timeout=300)
    return done, work


def test_the_command_exits_0_with_three_orders_geocoded_and_one_marked_failed(demo):
    done, _ = demo
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ['webhook 1: 200 {"geocoded": 3, "failed": [3]}',
                         'webhook 2: 200 {"geocoded": 3, "failed": [3]}']
    assert "Traceback" not in done.stderr


def test_mapbox_came_first_google_answered_what_it_did_not_find_and_the_cache_saved_requests(demo):
    done, _ = demo
    asked = [line.split(None, 2)[0::2] for line in done.stdout.splitlines() if line.startswith("  mapbox")
             or line.startswith("  google")]
    mapbox = [q for who, q in asked if who == "mapbox"]
    google = [q for who, q in asked if who == "google"]
    # the first webhook asks Mapbox for all four; the second only for the two it found nothing for
    assert sorted(mapbox) == sorted(["1600 Pennsylvania Ave NW, Washington DC", "Alexanderplatz 1, Berlin",
                                     "Rua Augusta 100, Lisboa", "Nowhere Street 0, Atlantis",
                                     "Rua Augusta 100, Lisboa", "Nowhere Street 0, Atlantis"])
    assert sorted(google) == sorted(["Rua Augusta 100, Lisboa", "Nowhere Street 0, Atlantis"] * 2)
    upserts = [line for line in done.stdout.splitlines() if "salesforce PATCH" in line]
    assert len(upserts) == 6 and sum("'Geocoded_By__c': 'google'" in u and "SO-1003" in u for u in upserts) == 2
    assert not any("SO-1004" in u for u in upserts)


def test_no_secret_reaches_the_state_database_or_the_output(demo):
    done, work = demo
    db = sqlite3.connect(work / "state.db")
    dump = "\n".join(str(r) for t in ("runs", "steps", "node_cache") for r in db.execute(f"SELECT * FROM {t}"))
    assert "Alexanderplatz" in dump  # the cache holds Mapbox's answers
    for secret in SECRETS.values():
        assert secret not in dump and json.dumps(secret)[1:-1] not in dump and secret not in done.stdout
