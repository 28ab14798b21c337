"""Loopback geocoders: the Mapbox geocoding v5 endpoint (``/geocoding/v5/mapbox.places/{q}.json``,
what geopy's MapBox calls; v6's ``/search/geocode/v6/forward`` answers too) and the Google
Geocoding endpoint (``/maps/api/geocode/json``), answering from a small gazetteer in each
vendor's documented JSON. Driven by geopy with ``scheme="http"`` and
``domain="127.0.0.1:PORT"``; every request is recorded, so tests count them.

    with GeoFake() as geo:
        geo.mapbox_fails["berlin"] = (500, "Internal")   # Mapbox fails for this query
        ...
        assert geo.count("mapbox") == 1
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from tests.support.recorder import Recorded, Recorder

# normalised query -> place
PLACES: dict[str, dict] = {
    "1600 pennsylvania ave nw, washington dc": {
        "lat": 38.8977, "lon": -77.0365, "number": "1600", "street": "Pennsylvania Avenue Northwest",
        "city": "Washington", "region": "District of Columbia", "region_code": "US-DC", "postcode": "20500",
        "country": "United States", "cc": "us"},
    "alexanderplatz 1, berlin": {
        "lat": 52.5219, "lon": 13.4132, "number": "1", "street": "Alexanderplatz", "city": "Berlin",
        "region": "Berlin", "region_code": "DE-BE", "postcode": "10178", "country": "Germany", "cc": "de"},
    "rua augusta 100, lisboa": {
        "lat": 38.7107, "lon": -9.1379, "number": "100", "street": "Rua Augusta", "city": "Lisboa",
        "region": "Lisboa", "region_code": "PT-11", "postcode": "1100-053", "country": "Portugal", "cc": "pt"},
}


def normalise(text: str) -> str:
    return " ".join(text.casefold().split())


def _near(place: dict, lat: float, lon: float) -> bool:
    return math.isclose(place["lat"], lat, abs_tol=0.01) and math.isclose(place["lon"], lon, abs_tol=0.01)


def mapbox_feature(place: dict) -> dict:
    name = f"{place['number']} {place['street']}, {place['city']}, {place['postcode']} {place['region']}, {place['country']}"
    return {"id": "address.7001", "type": "Feature", "place_type": ["address"], "relevance": 1,
            "properties": {"accuracy": "rooftop"}, "text": place["street"], "address": place["number"],
            "place_name": name, "center": [place["lon"], place["lat"]],
            "geometry": {"type": "Point", "coordinates": [place["lon"], place["lat"]]},
            "context": [{"id": "postcode.11", "text": place["postcode"]},
                        {"id": "place.12", "text": place["city"], "wikidata": "Q1"},
                        {"id": "region.13", "text": place["region"], "short_code": place["region_code"]},
                        {"id": "country.14", "text": place["country"], "short_code": place["cc"]}]}


def google_result(place: dict) -> dict:
    comps = [(place["number"], place["number"], ["street_number"]), (place["street"], place["street"], ["route"]),
             (place["city"], place["city"], ["locality", "political"]),
             (place["region"], place["region_code"].split("-")[1], ["administrative_area_level_1", "political"]),
             (place["country"], place["cc"].upper(), ["country", "political"]),
             (place["postcode"], place["postcode"], ["postal_code"])]
    return {"address_components": [{"long_name": a, "short_name": b, "types": t} for a, b, t in comps],
            "formatted_address": f"{place['street']} {place['number']}, {place['postcode']} {place['city']}, "
                                 f"{place['country']}",
            "geometry": {"location": {"lat": place["lat"], "lng": place["lon"]}, "location_type": "ROOFTOP"},
            "place_id": f"ChIJ{place['cc']}{place['number']}", "types": ["street_address"]}


@dataclass
class GeoFake:
    mapbox_token: str = "pk.test-token"
    google_key: str = "AIza-test-key"
    places: dict = field(default_factory=lambda: dict(PLACES))
    mapbox_only: set = field(default_factory=set)  # queries Google does not know
    google_only: set = field(default_factory=set)  # queries Mapbox does not know
    mapbox_fails: dict = field(default_factory=dict)  # query -> (status, body)
    google_status: dict = field(default_factory=dict)  # query -> Google status (OVER_QUERY_LIMIT, ...)

    def __post_init__(self) -> None:
        self.recorder = Recorder()

    def __enter__(self) -> "GeoFake":
        self.recorder.__enter__()
        self.url = self.recorder.url
        self.domain = self.url.split("://", 1)[1]
        self.recorder.route("GET", r"/geocoding/v5/mapbox\.places/[^/]+\.json/?", handler=self._mapbox_v5)
        self.recorder.route("GET", r"/search/geocode/v6/forward", handler=self._mapbox_v6)
        self.recorder.route("GET", r"/maps/api/geocode/json", handler=self._google)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.recorder.__exit__(*exc)

    def requests(self, provider: str) -> list[Recorded]:
        prefix = {"mapbox": ("/geocoding/", "/search/"), "google": ("/maps/",)}[provider]
        return [r for r in self.recorder.requests if r.path.startswith(prefix)]

    def count(self, provider: str) -> int:
        return len(self.requests(provider))

    # -- Mapbox ---------------------------------------------------------------------------
    def _mapbox_find(self, query: str, req: Recorded) -> tuple[int, dict, bytes] | list[dict]:
        if (req.query.get("access_token") or [""])[0] != self.mapbox_token:
            return 401, {"Content-Type": "application/json"}, b'{"message": "Not Authorized - Invalid Token"}'
        q = normalise(query)
        if q in self.mapbox_fails:
            status, body = self.mapbox_fails[q]
            return status, {"Content-Type": "application/json", "Retry-After": "1"}, json.dumps({"message": body}).encode()
        coords = q.replace(" ", "").split(",")
        try:
            lon, lat = float(coords[0]), float(coords[1])  # reverse: "{lon},{lat}"
            return [mapbox_feature(p) for p in self.places.values() if _near(p, lat, lon)]
        except (ValueError, IndexError):
            pass
        place = self.places.get(q) if q not in self.google_only else None
        country = (req.query.get("country") or [""])[0]
        if place is not None and country and place["cc"] not in country.split(","):
            place = None
        return [mapbox_feature(place)] if place else []

    def _mapbox_v5(self, req: Recorded) -> tuple[int, dict, bytes]:
        query = unquote(req.path.split("/mapbox.places/", 1)[1].rsplit(".json", 1)[0])
        found = self._mapbox_find(query, req)
        if isinstance(found, tuple):
            return found
        return 200, {"Content-Type": "application/json"}, json.dumps(
            {"type": "FeatureCollection", "query": normalise(query).split(), "features": found,
             "attribution": "loopback"}).encode()

    def _mapbox_v6(self, req: Recorded) -> tuple[int, dict, bytes]:
        found = self._mapbox_find((req.query.get("q") or [""])[0], req)
        if isinstance(found, tuple):
            return found
        features = [{"type": "Feature", "geometry": f["geometry"],
                     "properties": {"full_address": f["place_name"], "name": f"{f['address']} {f['text']}",
                                    "coordinates": {"longitude": f["center"][0], "latitude": f["center"][1]}}}
                    for f in found]
        return 200, {"Content-Type": "application/json"}, json.dumps(
            {"type": "FeatureCollection", "features": features}).encode()

    # -- Google ---------------------------------------------------------------------------
    def _google(self, req: Recorded) -> tuple[int, dict, bytes]:
        answer = lambda body: (200, {"Content-Type": "application/json"}, json.dumps(body).encode())  # noqa: E731
        if (req.query.get("key") or [""])[0] != self.google_key:
            return answer({"status": "REQUEST_DENIED", "results": [],
                           "error_message": "The provided API key is invalid."})
        if "latlng" in req.query:
            lat, lon = (float(v) for v in req.query["latlng"][0].split(","))
            return answer({"status": "OK", "results": [google_result(p) for p in self.places.values()
                                                       if _near(p, lat, lon)]} if any(
                _near(p, lat, lon) for p in self.places.values()) else {"status": "ZERO_RESULTS", "results": []})
        q = normalise((req.query.get("address") or [""])[0])
        if q in self.google_status:
            return answer({"status": self.google_status[q], "results": [], "error_message": "loopback says no"})
        place = self.places.get(q) if q not in self.mapbox_only else None
        if place is None:
            return answer({"status": "ZERO_RESULTS", "results": []})
        return answer({"status": "OK", "results": [google_result(place)]})
