"""geo.*: geopy's real MapBox and GoogleV3 geocoders (``scheme="http"``,
``domain="127.0.0.1:PORT"``) against loopback Mapbox and Google endpoints
(tests/support/geo.py); the tests count the requests geopy sent."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
import yaml

import engine
from tests.support.clock import FakeClock
from tests.support.geo import GeoFake

ROOT = Path(__file__).resolve().parents[2]
MAPBOX_TOKEN = 'pk.ey"J1\'Ijo\\/+%é-token'  # quotes, a backslash, / + % and non-ASCII
GOOGLE_KEY = 'AIza"Sy\'B\\/+%ü-key'
DC = "1600 Pennsylvania Ave NW, Washington DC"


@pytest.fixture
def geo():
    with GeoFake(mapbox_token=MAPBOX_TOKEN, google_key=GOOGLE_KEY) as fake:
        yield fake


@pytest.fixture
def connections(tmp_path, geo, monkeypatch):
    monkeypatch.setenv("MAPBOX_TOKEN", MAPBOX_TOKEN)
    monkeypatch.setenv("GOOGLE_KEY", GOOGLE_KEY)
    return write_connections(tmp_path, geo)


def write_connections(tmp_path, geo, mapbox=None, google=None):
    path = tmp_path / "connections.yaml"
    path.write_text(yaml.safe_dump({"connections": {
        "mapbox": {"kind": "mapbox", "endpoint": geo.url, "settings": {"rate": 1000, **(mapbox or {})},
                   "secrets": {"api_key": "MAPBOX_TOKEN"}},
        "google": {"kind": "google_maps", "endpoint": geo.url, "settings": {"rate": 1000, **(google or {})},
                   "secrets": {"api_key": "GOOGLE_KEY"}}}}))
    return path


def flow_file(tmp_path, actions):
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump({"triggers": {"manual": {"type": "Manual"}}, "actions": actions}, sort_keys=False))
    return path


def run(tmp_path, connections, actions, clock=None, **kw):
    return engine.run_file(flow_file(tmp_path, actions), state=tmp_path / "state.db", connections=connections,
                           clock=clock or FakeClock(), **kw)


def geocode(address, connection="mapbox", **inputs):
    return {"type": "geo.Geocode", "connection": connection, "inputs": {"address": address, **inputs}}


def validate(tmp_path, connections, actions):
    path = flow_file(tmp_path, actions)
    return subprocess.run([sys.executable, "-m", "engine.cli", "--connections", str(connections), "validate",
                           str(path)], capture_output=True, text=True, cwd=ROOT)


def test_importing_the_module_does_not_import_geopy():
    code = "import nodes.geo, sys; assert 'geopy' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_mapbox_answers_normalised_and_geopy_sent_the_token_and_the_bias(tmp_path, connections, geo):
    result = run(tmp_path, connections, {"g": geocode("Alexanderplatz 1, Berlin", country="DE", language="de",
                                                      bbox=[13.0, 52.3, 13.8, 52.7],
                                                      proximity={"lat": 52.52, "lon": 13.40})})
    assert result.status == "Succeeded", result.error
    assert result.steps["g"].outputs == {
        "lat": 52.5219, "lon": 13.4132, "provider": "mapbox", "connection": "mapbox", "cached": False,
        "address": "1 Alexanderplatz, Berlin, 10178 Berlin, Germany",
        "components": {"country": "Germany", "countryCode": "DE", "region": "Berlin", "city": "Berlin",
                       "postcode": "10178", "street": "Alexanderplatz", "houseNumber": "1"}}
    sent, = geo.requests("mapbox")
    assert sent.path == "/geocoding/v5/mapbox.places/Alexanderplatz%201%2C%20Berlin.json/"
    assert sent.query == {"access_token": [MAPBOX_TOKEN], "country": ["de"], "language": ["de"],
                          "bbox": ["13.0,52.3,13.8,52.7"], "proximity": ["13.4,52.52"]}
    assert geo.count("google") == 0


def test_google_answers_normalised_with_region_and_language(tmp_path, connections, geo):
    result = run(tmp_path, connections, {"g": geocode("Rua Augusta 100, Lisboa", "google", country="PT",
                                                      language="pt-PT")})
    out = result.steps["g"].outputs
    assert out["provider"] == "google" and (out["lat"], out["lon"]) == (38.7107, -9.1379)
    assert out["components"] == {"country": "Portugal", "countryCode": "PT", "region": "Lisboa", "city": "Lisboa",
                                 "postcode": "1100-053", "street": "Rua Augusta", "houseNumber": "100"}
    sent, = geo.requests("google")
    assert sent.query == {"address": ["Rua Augusta 100, Lisboa"], "key": [GOOGLE_KEY], "region": ["pt"],
                          "language": ["pt-PT"], "sensor": ["false"]}


def test_when_mapbox_finds_nothing_google_is_tried_next(tmp_path, connections, geo):
    geo.google_only.add("alexanderplatz 1, berlin")
    result = run(tmp_path, connections, {"g": geocode("Alexanderplatz 1, Berlin", fallback=["google"])})
    assert result.steps["g"].outputs["provider"] == "google"
    assert (geo.count("mapbox"), geo.count("google")) == (1, 1)


@pytest.mark.parametrize("status", [500, 429, 401])
def test_when_mapbox_fails_google_is_tried_next(tmp_path, connections, geo, status):
    geo.mapbox_fails["alexanderplatz 1, berlin"] = (status, "nope")
    result = run(tmp_path, connections, {"g": geocode("Alexanderplatz 1, Berlin", fallback="google")})
    assert result.status == "Succeeded", result.error
    assert result.steps["g"].outputs["provider"] == "google"


def test_nothing_found_anywhere_fails_with_address_not_found_and_each_attempt(tmp_path, connections, geo):
    result = run(tmp_path, connections, {"g": geocode("Nowhere Street 0, Atlantis", fallback=["google"])})
    err = result.steps["g"].error
    assert err["code"] == "AddressNotFound"
    assert [a["provider"] for a in err["details"]["attempts"]] == ["mapbox", "google"]


def test_every_provider_failing_is_retryable_when_one_failure_was(tmp_path, connections, geo):
    geo.mapbox_fails["alexanderplatz 1, berlin"] = (503, "down")
    geo.google_status["alexanderplatz 1, berlin"] = "REQUEST_DENIED"
    result = run(tmp_path, connections, {"g": geocode("Alexanderplatz 1, Berlin", fallback=["google"],
                                                      ) | {"retryPolicy": {"type": "fixed", "count": 1,
                                                                            "interval": "PT1S"}}})
    err = result.steps["g"].error
    assert err["code"] == "GeocodingFailed" and "loopback says no" in err["message"]
    assert result.steps["g"].attempts == 2 and geo.count("mapbox") == 2


def test_a_cache_hit_makes_no_request_and_the_query_is_normalised(tmp_path, connections, geo):
    first = run(tmp_path, connections, {"g": geocode(DC)})
    again = run(tmp_path, connections, {"g": geocode("  1600 PENNSYLVANIA ave nw,   washington dc ")})
    assert first.steps["g"].outputs["cached"] is False and again.steps["g"].outputs["cached"] is True
    assert again.steps["g"].outputs["lat"] == 38.8977 and geo.count("mapbox") == 1
    other_options = run(tmp_path, connections, {"g": geocode(DC, language="en")})
    assert other_options.steps["g"].outputs["cached"] is False and geo.count("mapbox") == 2


def test_the_cache_expires_after_the_connections_ttl(tmp_path, geo, monkeypatch):
    monkeypatch.setenv("MAPBOX_TOKEN", MAPBOX_TOKEN)
    monkeypatch.setenv("GOOGLE_KEY", GOOGLE_KEY)
    conns = write_connections(tmp_path, geo, mapbox={"cache_ttl": 3600})
    clock = FakeClock(start=1_000_000.0)
    run(tmp_path, conns, {"g": geocode(DC)}, clock=clock)
    clock.t += 3599
    assert run(tmp_path, conns, {"g": geocode(DC)}, clock=clock).steps["g"].outputs["cached"] is True
    clock.t += 1
    assert run(tmp_path, conns, {"g": geocode(DC)}, clock=clock).steps["g"].outputs["cached"] is False
    assert geo.count("mapbox") == 2


def test_a_connection_with_cache_off_asks_every_time_and_keeps_nothing(tmp_path, geo, monkeypatch):
    monkeypatch.setenv("MAPBOX_TOKEN", MAPBOX_TOKEN)
    monkeypatch.setenv("GOOGLE_KEY", GOOGLE_KEY)
    conns = write_connections(tmp_path, geo, google={"cache": False})
    for _ in range(2):
        assert run(tmp_path, conns, {"g": geocode(DC, "google")}).steps["g"].outputs["cached"] is False
    assert geo.count("google") == 2
    db = sqlite3.connect(tmp_path / "state.db")
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'node_cache'").fetchall() == []


def test_reverse_geocoding_with_google_after_mapbox(tmp_path, connections, geo):
    result = run(tmp_path, connections, {
        "m": {"type": "geo.ReverseGeocode", "connection": "mapbox", "inputs": {"lat": 52.5219, "lon": 13.4132}},
        "g": {"type": "geo.ReverseGeocode", "connection": "google",
              "inputs": {"lat": 38.8977, "lon": -77.0365, "language": "en"}}})
    assert result.status == "Succeeded", result.error
    assert result.steps["m"].outputs["components"]["city"] == "Berlin"
    assert result.steps["g"].outputs["components"]["postcode"] == "20500"
    assert geo.requests("mapbox")[0].path == "/geocoding/v5/mapbox.places/13.4132%2C52.5219.json/"
    assert geo.requests("google")[0].query["latlng"] == ["38.8977,-77.0365"]


def test_geocode_many_keeps_the_order_marks_failures_and_shares_the_cache(tmp_path, connections, geo):
    geo.google_only.add("rua augusta 100, lisboa")
    addresses = [DC, "Alexanderplatz 1, Berlin", "", "Nowhere 0, Atlantis", "Rua Augusta 100, Lisboa",
                 "1600 pennsylvania ave nw, washington dc"]
    result = run(tmp_path, connections, {"many": {"type": "geo.GeocodeMany", "connection": "mapbox",
                                                  "inputs": {"addresses": "{{ triggerBody() }}", "concurrency": 1,
                                                             "fallback": ["google"]}}},
                 input=addresses)
    out = result.steps["many"].outputs
    assert result.status == "Succeeded", result.error
    assert [r["index"] for r in out["results"]] == list(range(6))
    assert [r["ok"] for r in out["results"]] == [True, True, False, False, True, True]
    assert out["results"][2]["error"]["code"] == "InvalidInputs"
    assert out["results"][3]["error"]["code"] == "AddressNotFound"
    assert out["results"][4]["result"]["provider"] == "google"
    assert out["results"][5]["result"]["cached"] is True  # the same normalised query as the first
    assert (out["succeeded"], out["failed"]) == (4, 2)
    assert geo.count("mapbox") == 4  # DC, Berlin, Atlantis, Lisboa; the repeat came from the cache


def test_geocode_many_fails_on_error_when_asked(tmp_path, connections, geo):
    result = run(tmp_path, connections, {"many": {"type": "geo.GeocodeMany", "connection": "mapbox",
                                                  "inputs": {"addresses": [DC, "Nowhere 0"], "failOnError": True}}})
    assert result.steps["many"].error["code"] == "GeocodingFailed"
    assert result.steps["many"].error["details"]["failed"] == 1


def test_the_rate_limit_spaces_requests_across_every_task_that_shares_it():
    from nodes.geo.client import RateLimit

    now = [0.0]
    waits: list[float] = []

    async def sleep(seconds):
        waits.append(round(seconds, 6))

    limit = RateLimit(4, now=lambda: now[0], sleep=sleep)

    async def main():
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(limit.wait)

    anyio.run(main)
    assert sorted(waits) == [0.25, 0.5, 0.75]  # the first goes at once, the others a slot each
    now[0] = 10.0
    waits.clear()
    anyio.run(limit.wait)
    assert waits == []  # after a quiet spell no wait


@pytest.mark.parametrize("actions, message", [
    ({"g": geocode("   ")}, "inputs.address: the address is empty"),
    ({"g": geocode("")}, "inputs.address"),
    ({"r": {"type": "geo.ReverseGeocode", "connection": "mapbox", "inputs": {"lat": 91, "lon": 0}}}, "91 is greater"),
    ({"r": {"type": "geo.ReverseGeocode", "connection": "mapbox", "inputs": {"lat": 0, "lon": -180.5}}}, "-180.5"),
    ({"m": {"type": "geo.GeocodeMany", "connection": "mapbox", "inputs": {"addresses": ["ok", " "]}}},
     "inputs.addresses.1: the address is empty"),
    ({"g": geocode("x", fallback=["stripe"])}, "unknown connection 'stripe'"),
    ({"g": geocode("x", fallback=["mapbox"])}, "listed twice"),
    ({"g": geocode("x", fallback=["{{ triggerBody() }}"])}, "as written text"),
    ({"g": geocode("x", country="Germany")}, "country"),
])
def test_literal_bad_input_fails_at_validate_with_one_line_and_no_traceback(tmp_path, connections, actions, message):
    done = validate(tmp_path, connections, actions)
    assert done.returncode == 1 and message in done.stdout + done.stderr, done.stdout + done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("inputs, code, message", [
    ({"address": "{{ triggerBody().a }}"}, "InvalidInputs", "the address is empty"),
])
def test_templated_bad_input_fails_the_action_clearly(tmp_path, connections, geo, inputs, code, message):
    result = run(tmp_path, connections, {"g": {"type": "geo.Geocode", "connection": "mapbox", "inputs": inputs}},
                 input={"a": "   "})
    err = result.steps["g"].error
    assert err["code"] == code and message in err["message"] and geo.count("mapbox") == 0


def test_templated_coordinates_out_of_range_fail_the_action_clearly(tmp_path, connections, geo):
    result = run(tmp_path, connections, {"r": {"type": "geo.ReverseGeocode", "connection": "google",
                                               "inputs": {"lat": "{{ triggerBody().lat }}", "lon": 0}}},
                 input={"lat": 123.4})
    err = result.steps["r"].error
    assert result.status == "Failed" and "lat: 123.4 is greater than the maximum of 90" in err["message"]
    assert geo.count("google") == 0


def test_api_keys_reach_no_state_no_output_and_no_log(tmp_path, connections, geo, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    geo.mapbox_fails["alexanderplatz 1, berlin"] = (401, f"token {MAPBOX_TOKEN} is invalid")
    result = run(tmp_path, connections, {"g": geocode("Alexanderplatz 1, Berlin", fallback=["google"]),
                                         "h": geocode(DC)})
    assert result.status == "Succeeded", result.error
    db = sqlite3.connect(tmp_path / "state.db")
    dump = "\n".join(str(r) for t in ("runs", "steps", "node_cache") for r in db.execute(f"SELECT * FROM {t}"))
    logs = caplog.text
    for key in (MAPBOX_TOKEN, GOOGLE_KEY):
        assert key not in dump and key not in logs
        assert json.dumps(key)[1:-1] not in dump
    assert "access_token=" in logs  # geopy logged its URL: with the token masked


def test_the_error_table_maps_every_geopy_exception_class():
    from geopy import exc as e

    from nodes.geo import GEO
    from tests.support.sdk import exception_classes, unmapped

    assert unmapped(GEO, exception_classes(e.GeopyError)) == []


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"features": "x"}', b'{"features": [{}]}',
                                  b'{"features": [{"place_name": "x", "geometry": {"coordinates": ["a", "b"]}}]}',
                                  b'{"features": [{"place_name": null, "geometry": {"coordinates": [1e999, 0]}}]}',
                                  b"[]", b'{"features": [{"place_name": 5, "geometry": {"coordinates": [0, 0]}, '
                                         b'"context": "x", "place_type": 3}]}'])
def test_a_provider_answer_geopy_cannot_read_fails_over_to_the_next_without_a_traceback(tmp_path, connections, geo,
                                                                                     body):
    geo.recorder.route("GET", r"/geocoding/v5/.*", body=body, headers={"Content-Type": "application/json"})
    geo.recorder._routes.insert(0, geo.recorder._routes.pop())  # ahead of the fake's own route
    result = run(tmp_path, connections, {"g": geocode(DC, fallback=["google"])})
    assert result.status == "Succeeded", result.error
    step = result.steps["g"].outputs
    assert step["provider"] in ("mapbox", "google") and isinstance(step["components"], dict)
    json.dumps(step, allow_nan=False)  # whatever was read is plain JSON


def test_hostile_addresses_in_a_batch_each_end_ok_or_marked_failed(tmp_path_factory, geo, monkeypatch):
    from hypothesis import HealthCheck, given, settings, strategies as st

    monkeypatch.setenv("MAPBOX_TOKEN", MAPBOX_TOKEN)
    monkeypatch.setenv("GOOGLE_KEY", GOOGLE_KEY)

    @settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.one_of(st.text(max_size=300), st.sampled_from(
        ["../../etc/passwd", "a/b/c.json?x=1#y", "%00%2F", "{{ 7*7 }}", "\x00\x1f", "🏠" * 100, " " * 10,
         "x" * 2048, "Alexanderplatz 1, Berlin"])), min_size=1, max_size=15))
    def batch(addresses):
        tmp = tmp_path_factory.mktemp("batch")
        conns = write_connections(tmp, geo)
        result = run(tmp, conns, {"m": {"type": "geo.GeocodeMany", "connection": "mapbox",
                                        "inputs": {"addresses": "{{ triggerBody() }}", "fallback": ["google"]}}},
                     input=addresses)
        assert result.status == "Succeeded", result.error
        out = result.steps["m"].outputs["results"]
        assert [r["address"] for r in out] == addresses
        assert all(r["ok"] or r["error"]["code"] in ("InvalidInputs", "AddressNotFound", "GeocodingFailed")
                   for r in out), out

    batch()


def test_cache_keys_never_collide_across_languages_of_a_reverse_lookup_or_endpoints(tmp_path, connections, geo,
                                                                                    monkeypatch):
    """The cache is keyed by everything that changes the answer: a reverse lookup in another
    language asks again, and a connection of the same provider on another host (a sandbox
    beside production) never gets the other's cached answers."""
    def reverse(language):
        return {"g": {"type": "geo.ReverseGeocode", "connection": "google",
                      "inputs": {"lat": 38.8977, "lon": -77.0365, "language": language}}}

    assert run(tmp_path, connections, reverse("en")).steps["g"].outputs["cached"] is False
    assert run(tmp_path, connections, reverse("de")).steps["g"].outputs["cached"] is False
    assert run(tmp_path, connections, reverse("de")).steps["g"].outputs["cached"] is True
    assert geo.count("google") == 2
    assert [r.query["language"] for r in geo.requests("google")] == [["en"], ["de"]]

    run(tmp_path, connections, {"g": geocode(DC)})
    with GeoFake(mapbox_token=MAPBOX_TOKEN, google_key=GOOGLE_KEY) as other:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        conns = write_connections(elsewhere, other)
        result = engine.run_file(flow_file(elsewhere, {"g": geocode(DC)}), state=tmp_path / "state.db",
                                 connections=conns, clock=FakeClock())
        assert result.steps["g"].outputs["cached"] is False and other.count("mapbox") == 1


# -- tracing: geopy's requests carry the attempt span's traceparent ----------------------------
def test_a_traced_geocode_sends_the_attempt_spans_traceparent_to_each_provider(tmp_path, connections, geo):
    from tests.support.tracing import traceparent, traced

    geo.google_only.add("rua augusta 100, lisboa")  # Mapbox finds nothing: Google is asked too
    with traced() as spans:
        result = run(tmp_path, connections, {
            "one": geocode("Rua Augusta 100, Lisboa", fallback=["google"]),
            "many": {"type": "geo.GeocodeMany", "connection": "mapbox", "runAfter": {"one": ["Succeeded"]},
                     "inputs": {"addresses": [DC, "Alexanderplatz 1, Berlin"], "concurrency": 2}}})
    assert result.status == "Succeeded", result.error
    [one] = spans.named("one")
    [many] = spans.named("many")
    sent = geo.requests("mapbox") + geo.requests("google")
    assert len(sent) == 4
    lisboa = [r for r in sent if "augusta" in r.path.lower() or "augusta" in str(r.query).lower()]
    assert len(lisboa) == 2 and {r.header("traceparent") for r in lisboa} == {traceparent(one)}
    assert {r.header("traceparent") for r in sent if r not in lisboa} == {traceparent(many)}


def test_an_untraced_geocode_sends_no_traceparent(tmp_path, connections, geo):
    assert run(tmp_path, connections, {"one": geocode(DC)}).status == "Succeeded"
    assert [r.header("traceparent") for r in geo.requests("mapbox")] == [None]
