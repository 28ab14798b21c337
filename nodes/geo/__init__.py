"""Geocoding: forward, reverse and batch lookups through geopy's MapBox and GoogleV3, with a
provider fallback order, normalised results and a cache in the state database.

geopy is not imported by this module: the client factory, the error table and the nodes'
``run`` import it.
"""
from __future__ import annotations

from .client import GEO, GOOGLE_MAPS, MAPBOX
from .geocode import Geocode, GeocodeMany, ReverseGeocode

CONNECTIONS = [MAPBOX, GOOGLE_MAPS]
NODES = [Geocode, ReverseGeocode, GeocodeMany]
FILTERS: dict = {}

__all__ = ["CONNECTIONS", "NODES", "FILTERS", "GEO"]
