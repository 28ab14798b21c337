"""geo.Geocode, geo.ReverseGeocode and geo.GeocodeMany: providers tried in order, results
normalised, kept in the state database's cache."""
from __future__ import annotations

import json
import math
from typing import Any

import anyio

from engine.plugin import ActionError, Node, RetryableError

from .client import GEO

COMPONENTS = ("country", "countryCode", "region", "city", "postcode", "street", "houseNumber")
EXAMPLE = {"lat": 52.5219, "lon": 13.4132, "address": "Alexanderplatz 1, 10178 Berlin, Germany",
           "components": {"country": "Germany", "countryCode": "DE", "region": "Berlin", "city": "Berlin",
                          "postcode": "10178", "street": "Alexanderplatz", "houseNumber": "1"},
           "provider": "mapbox", "connection": "mapbox", "cached": False}  # what flowrun plan stands in
RESULT = {"type": "object", "properties": {
    "lat": {"type": "number"}, "lon": {"type": "number"},
    "address": {"type": "string", "description": "The formatted address."},
    "components": {"type": "object", "description": "country, countryCode, region, city, postcode, street, "
                                                    "houseNumber (null when the provider gave none)."},
    "provider": {"type": "string", "description": "mapbox or google: the one that answered."},
    "connection": {"type": "string"}, "cached": {"type": "boolean"}}}
EXAMPLE_RESULT = {"lat": 52.5219, "lon": 13.4132, "address": "Alexanderplatz 1, 10178 Berlin, Germany",
                  "components": {"country": "Germany", "countryCode": "DE", "region": "Berlin", "city": "Berlin",
                                 "postcode": "10178", "street": "Alexanderplatz", "houseNumber": "1"},
                  "provider": "mapbox", "connection": "mapbox", "cached": False}
ADDRESS = {"type": "string", "minLength": 1, "maxLength": 2048, "description": "The address to look up."}
FALLBACK = {"anyOf": [{"type": "string", "minLength": 1}, {"type": "array", "items": {"type": "string", "minLength": 1}}],
            "description": "More connections (mapbox or google_maps) tried in this order when the "
                           "action's `connection` fails or finds nothing; names as written text."}
OPTIONS = {
    "country": {"anyOf": [{"type": "string", "pattern": "^[A-Za-z]{2}$"},
                          {"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z]{2}$"}, "minItems": 1}],
                "description": "ISO 3166-1 alpha-2 country (or countries, Mapbox) to bias results to."},
    "language": {"type": "string", "pattern": "^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?$",
                 "description": "Language of the results (ISO 639-1, e.g. de, pt-BR)."},
    "bbox": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4,
             "description": "Mapbox: [minLon, minLat, maxLon, maxLat] to bias results to."},
    "proximity": {"type": "object", "additionalProperties": False, "required": ["lat", "lon"],
                  "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90},
                                 "lon": {"type": "number", "minimum": -180, "maximum": 180}},
                  "description": "Mapbox: a point to favour results near."},
    "fallback": FALLBACK,
}


# -- normalising -------------------------------------------------------------------------------

def _mapbox(raw: dict) -> dict:
    context = raw.get("context") if isinstance(raw.get("context"), list) else []
    parts = {str(c.get("id", "")).split(".")[0]: c for c in context if isinstance(c, dict)}
    own = (raw.get("place_type") or [""])[0]
    parts.setdefault(own, raw)
    country = parts.get("country", {})
    region = parts.get("region", {})
    code = country.get("short_code") or (raw.get("properties") or {}).get("short_code")
    return {"country": country.get("text"), "countryCode": code.upper() if isinstance(code, str) else None,
            "region": region.get("text"), "city": (parts.get("place") or parts.get("locality") or {}).get("text"),
            "postcode": parts.get("postcode", {}).get("text"),
            "street": raw.get("text") if own == "address" else None,
            "houseNumber": raw.get("address") if own == "address" else None}


def _google(raw: dict) -> dict:
    found: dict[str, dict] = {}
    for comp in raw.get("address_components") or []:
        for kind in comp.get("types") or []:
            found.setdefault(kind, comp)
    name = lambda kind, short=False: (found.get(kind) or {}).get("short_name" if short else "long_name")  # noqa: E731
    return {"country": name("country"), "countryCode": name("country", True),
            "region": name("administrative_area_level_1"),
            "city": name("locality") or name("postal_town") or name("administrative_area_level_2"),
            "postcode": name("postal_code"), "street": name("route"), "houseNumber": name("street_number")}


def normalise(provider: Any, location: Any) -> dict:
    """The provider-independent result; ValueError when the answer holds no usable point."""
    raw = location.raw if isinstance(location.raw, dict) else {}
    components = _mapbox(raw) if provider.name == "mapbox" else _google(raw)
    lat, lon = float(location.latitude), float(location.longitude)
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError("the point is out of range")
    text = lambda value: value if isinstance(value, str) else None  # noqa: E731
    return {"lat": lat, "lon": lon, "address": text(location.address),
            "components": {k: text(components.get(k)) for k in COMPONENTS}, "provider": provider.name,
            "connection": provider.connection}


def normalised_query(text: str) -> str:
    return " ".join(text.casefold().split())


# -- one lookup across the providers -----------------------------------------------------------

def _call_options(provider: Any, inputs: dict) -> dict:
    country, language = inputs.get("country"), inputs.get("language")
    if provider.name == "mapbox":
        bbox = inputs.get("bbox")
        prox = inputs.get("proximity")
        return {"country": [c.lower() for c in ([country] if isinstance(country, str) else country)] if country else None,
                "language": language,
                "bbox": [(bbox[1], bbox[0]), (bbox[3], bbox[2])] if bbox else None,
                "proximity": (prox["lat"], prox["lon"]) if prox else None}
    first = country if isinstance(country, str) else (country or [None])[0]
    return {"region": first.lower() if first else None, "language": language}


async def providers(context: Any, inputs: dict) -> list[Any]:
    """The action's connection, then its fallback connections, as built clients (in order)."""
    names = inputs.get("fallback") or []
    names = [names] if isinstance(names, str) else names
    out = [await GEO.client(context)]
    for name in names:
        out.append(await context.connection_named(name).get_client())
    return out


async def lookup(context: Any, clients: list[Any], inputs: dict, *, reverse: tuple[float, float] | None = None,
                 address: str | None = None) -> dict:
    """The first provider's answer that finds something; cached per provider and normalised query.

    Every provider failing or finding nothing: ``AddressNotFound`` when none failed, else the
    failures (retryable when any was)."""
    attempts: list[dict] = []
    retryable = False
    for provider in clients:
        options = _call_options(provider, inputs) if reverse is None else (
            {"language": inputs.get("language")} if provider.name == "google" else {})
        # the options (language, country, bbox ...) are part of the key, of a reverse lookup too (its
        # language changes the address); the namespace names the endpoint, so a sandbox's answers are
        # never served to a connection of the same provider that asks another host
        query = {"reverse": [round(reverse[0], 7), round(reverse[1], 7)]} if reverse is not None else {
            "q": normalised_query(address or "")}
        key = json.dumps({**query, **options}, sort_keys=True, default=str)
        namespace = f"geo.{provider.name}@{provider.host}"
        if provider.cache:
            hit = context.cache_get(namespace, key)
            if hit is not None:
                return {**hit, "connection": provider.connection, "cached": True}
        await provider.limit.wait()
        try:
            if reverse is not None:
                found = await GEO.call(context, provider.geocoder.reverse, reverse, exactly_one=True, **options)
            else:
                found = await GEO.call(context, provider.geocoder.geocode, address, exactly_one=True, **options)
            result = normalise(provider, found) if found is not None else None
        except ActionError as exc:
            retryable = retryable or exc.retryable
            attempts.append({"provider": provider.name, "connection": provider.connection, "code": exc.code,
                             "message": exc.message})
            continue
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:  # an unreadable answer
            attempts.append({"provider": provider.name, "connection": provider.connection, "code": "GeocoderBadAnswer",
                             "message": f"the answer could not be read ({type(exc).__name__})"})
            retryable = True
            continue
        if result is None:
            attempts.append({"provider": provider.name, "connection": provider.connection, "code": "NotFound",
                             "message": "nothing found"})
            continue
        if provider.cache:
            context.cache_put(namespace, key, result, provider.cache_ttl)
        return {**result, "cached": False}
    what = f"{reverse[0]}, {reverse[1]}" if reverse is not None else repr(address)
    if all(a["code"] == "NotFound" for a in attempts):
        raise ActionError(f"no provider found {what} ({', '.join(a['provider'] for a in attempts)})",
                          code="AddressNotFound", details={"attempts": attempts})
    message = f"geocoding {what} failed: " + "; ".join(f"{a['provider']}: {a['message']}" for a in attempts)
    cls = RetryableError if retryable else ActionError
    raise cls(message, code="GeocodingFailed", details={"attempts": attempts})


def _blank(value: Any) -> bool:
    return isinstance(value, str) and "{{" not in value and "{%" not in value and not value.strip()


class Geocode(Node):
    type = "geo.Geocode"
    title = "Geocode an address (Mapbox, Google)"
    description = (
        "Looks an address up with the action's connection (`mapbox` or `google_maps`), then with "
        "each `fallback` connection in order when one fails or finds nothing. The result is "
        "normalised whatever the provider: lat, lon, the formatted address, components "
        "(country, region, city, postcode, street) and the provider that answered. `country` "
        "and `language` bias the search; `bbox` and `proximity` bias Mapbox. Results are kept in "
        "the state database per provider and normalised query (`cache_ttl` of the connection; "
        "`cache: false` keeps nothing): a cached answer makes no request. Nothing found "
        "anywhere: `AddressNotFound`.")
    connection = ("mapbox", "google_maps")
    reads_only = True
    more_connections = "fallback"
    input_schema = {"type": "object", "additionalProperties": False, "required": ["address"],
                    "properties": {"address": ADDRESS, **OPTIONS}}
    outputs = RESULT
    example = {"type": "geo.Geocode", "connection": "mapbox",
               "inputs": {"address": "{{ triggerBody().shipping.address }}", "country": "DE", "language": "de",
                          "fallback": ["google_maps"]}}
    example_outputs = EXAMPLE_RESULT

    @classmethod
    def check(cls, action: dict) -> list[tuple[str, str]]:
        inputs = action.get("inputs")
        if isinstance(inputs, dict) and _blank(inputs.get("address")):
            return [("inputs.address", "the address is empty")]
        return []

    async def run(self, inputs: dict, context: Any) -> Any:
        if not inputs["address"].strip():
            raise ActionError("the address is empty", code="InvalidInputs")
        return await lookup(context, await providers(context, inputs), inputs, address=inputs["address"])


class ReverseGeocode(Node):
    type = "geo.ReverseGeocode"
    title = "Find the address at a point (Mapbox, Google)"
    description = (
        "The address at `lat`/`lon`, from the action's connection, then each `fallback` "
        "connection in order; normalised and cached as geo.Geocode. Coordinates out of range "
        "fail at validate when written in the flow, and the action otherwise.")
    connection = ("mapbox", "google_maps")
    reads_only = True
    more_connections = "fallback"
    input_schema = {"type": "object", "additionalProperties": False, "required": ["lat", "lon"],
                    "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90},
                                   "lon": {"type": "number", "minimum": -180, "maximum": 180},
                                   "language": OPTIONS["language"], "fallback": FALLBACK}}
    outputs = RESULT
    example = {"type": "geo.ReverseGeocode", "connection": "google_maps",
               "inputs": {"lat": "{{ triggerBody().lat }}", "lon": "{{ triggerBody().lon }}", "language": "en"}}
    example_outputs = {**EXAMPLE_RESULT, "provider": "google", "connection": "google_maps"}

    async def run(self, inputs: dict, context: Any) -> Any:
        return await lookup(context, await providers(context, inputs), inputs,
                            reverse=(float(inputs["lat"]), float(inputs["lon"])))


class GeocodeMany(Node):
    type = "geo.GeocodeMany"
    title = "Geocode a list of addresses"
    description = (
        "geo.Geocode for each address of `addresses`, `concurrency` at a time, within each "
        "connection's rate limit (shared with every other action and loop iteration of the "
        "process). Outputs one entry per input, in order: `ok`, and the result or the `error` "
        "(an empty address, nothing found, a provider failure); the action fails only when "
        "`failOnError` is set and an entry failed.")
    connection = ("mapbox", "google_maps")
    reads_only = True
    more_connections = "fallback"
    input_schema = {"type": "object", "additionalProperties": False, "required": ["addresses"],
                    "properties": {"addresses": {"type": "array", "maxItems": 10000,
                                                 "items": {"type": "string", "maxLength": 2048}},
                                   "concurrency": {"type": "integer", "minimum": 1, "maximum": 32, "default": 4},
                                   "failOnError": {"type": "boolean", "default": False}, **OPTIONS}}
    outputs = {"type": "object", "properties": {
        "results": {"type": "array", "description": "Per address, in order: index, address, ok, result | error."},
        "succeeded": {"type": "integer"}, "failed": {"type": "integer"}}}
    example = {"type": "geo.GeocodeMany", "connection": "mapbox",
               "inputs": {"addresses": "{{ triggerBody().orders | map(attribute='address') | list }}",
                          "fallback": ["google_maps"], "concurrency": 4}}
    example_outputs = {"results": [{"index": 0, "address": "Alexanderplatz 1, Berlin", "ok": True, "result": EXAMPLE_RESULT},
                                   {"index": 1, "address": "Nowhere 0, Atlantis", "ok": False,
                                    "error": {"code": "AddressNotFound", "message": "no provider found 'Nowhere 0, "
                                                                                   "Atlantis' (mapbox, google)"}}],
                       "succeeded": 1, "failed": 1}

    @classmethod
    def check(cls, action: dict) -> list[tuple[str, str]]:
        inputs = action.get("inputs")
        addresses = inputs.get("addresses") if isinstance(inputs, dict) else None
        return [(f"inputs.addresses.{i}", "the address is empty")
                for i, a in enumerate(addresses if isinstance(addresses, list) else []) if _blank(a)]

    async def run(self, inputs: dict, context: Any) -> Any:
        clients = await providers(context, inputs)
        addresses = inputs["addresses"]
        results: list[dict | None] = [None] * len(addresses)
        limiter = anyio.CapacityLimiter(int(inputs.get("concurrency", 4)))

        async def one(i: int, address: str) -> None:
            async with limiter:
                entry: dict = {"index": i, "address": address}
                if not address.strip():
                    results[i] = {**entry, "ok": False, "error": {"code": "InvalidInputs", "message": "the address is empty"}}
                    return
                try:
                    results[i] = {**entry, "ok": True, "result": await lookup(context, clients, inputs, address=address)}
                except ActionError as exc:
                    results[i] = {**entry, "ok": False, "error": {"code": exc.code, "message": exc.message,
                                                                 "retryable": exc.retryable}}

        async with anyio.create_task_group() as tg:
            for i, address in enumerate(addresses):
                tg.start_soon(one, i, address)
        failed = sum(1 for r in results if r is not None and not r["ok"])
        out = {"results": results, "succeeded": len(results) - failed, "failed": failed}
        if failed and inputs.get("failOnError"):
            raise ActionError(f"{failed} of {len(results)} addresses could not be geocoded", code="GeocodingFailed",
                              details=out)
        return out
