"""Fly's region codes, where they are, and the round-trip time between any two of them.

RTTs are estimates derived from the great-circle distance between the region cities: light in fibre covers
about 200 km per ms one way, and real routes are about 1.5x longer than the great circle, so
RTT ≈ 2 × 1.5 × distance / 200 km/ms + 2 ms of switching. That matches published inter-city ping
statistics within ~20% (WonderNetwork's global ping table, https://wondernetwork.com/pings: Amsterdam–
New York ~80 ms, New York–Sydney ~205 ms, Amsterdam–Sydney ~270 ms, Frankfurt–Amsterdam ~8 ms). Operators
override them with measured figures (`rtt_table` / a JSON file of {"a-b": ms}).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

REGIONS: dict[str, str] = {
    "ams": "Amsterdam, Netherlands", "arn": "Stockholm, Sweden", "atl": "Atlanta, Georgia (US)",
    "bog": "Bogotá, Colombia", "bom": "Mumbai, India", "bos": "Boston, Massachusetts (US)",
    "cdg": "Paris, France", "den": "Denver, Colorado (US)", "dfw": "Dallas, Texas (US)",
    "ewr": "Secaucus, NJ (US)", "eze": "Ezeiza, Argentina", "fra": "Frankfurt, Germany",
    "gdl": "Guadalajara, Mexico", "gig": "Rio de Janeiro, Brazil", "gru": "Sao Paulo, Brazil",
    "hkg": "Hong Kong, Hong Kong", "iad": "Ashburn, Virginia (US)", "jnb": "Johannesburg, South Africa",
    "lax": "Los Angeles, California (US)", "lhr": "London, United Kingdom", "mad": "Madrid, Spain",
    "mia": "Miami, Florida (US)", "nrt": "Tokyo, Japan", "ord": "Chicago, Illinois (US)",
    "otp": "Bucharest, Romania", "phx": "Phoenix, Arizona (US)", "qro": "Querétaro, Mexico",
    "scl": "Santiago, Chile", "sea": "Seattle, Washington (US)", "sin": "Singapore, Singapore",
    "sjc": "San Jose, California (US)", "syd": "Sydney, Australia", "waw": "Warsaw, Poland",
    "yul": "Montreal, Canada", "yyz": "Toronto, Canada",
}

COORDINATES: dict[str, tuple[float, float]] = {
    "ams": (52.31, 4.76), "arn": (59.65, 17.92), "atl": (33.64, -84.43), "bog": (4.70, -74.15),
    "bom": (19.09, 72.87), "bos": (42.36, -71.01), "cdg": (49.01, 2.55), "den": (39.86, -104.67),
    "dfw": (32.90, -97.04), "ewr": (40.79, -74.06), "eze": (-34.82, -58.54), "fra": (50.04, 8.56),
    "gdl": (20.52, -103.31), "gig": (-22.81, -43.25), "gru": (-23.43, -46.47), "hkg": (22.31, 113.92),
    "iad": (39.04, -77.49), "jnb": (-26.14, 28.25), "lax": (33.94, -118.41), "lhr": (51.47, -0.45),
    "mad": (40.47, -3.56), "mia": (25.80, -80.29), "nrt": (35.77, 140.39), "ord": (41.98, -87.90),
    "otp": (44.57, 26.09), "phx": (33.43, -112.01), "qro": (20.62, -100.19), "scl": (-33.39, -70.79),
    "sea": (47.45, -122.31), "sin": (1.36, 103.99), "sjc": (37.36, -121.93), "syd": (-33.95, 151.18),
    "waw": (52.17, 20.97), "yul": (45.47, -73.74), "yyz": (43.68, -79.63),
}

FIBRE_KM_PER_MS = 200.0
ROUTE_INFLATION = 1.5
SWITCHING_MS = 2.0


def is_known(region: str) -> bool:
    return region in REGIONS


def great_circle_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def estimated_rtt_ms(a: str, b: str) -> float:
    if a == b:
        return 0.0
    km = great_circle_km(COORDINATES[a], COORDINATES[b])
    return round(2 * ROUTE_INFLATION * km / FIBRE_KM_PER_MS + SWITCHING_MS, 1)


class RttTable:
    """Round-trip times between regions: estimates, with measured overrides taking precedence."""

    def __init__(self, overrides: Mapping[str, float] | None = None) -> None:
        self.overrides: dict[tuple[str, str], float] = {}
        for key, ms in (overrides or {}).items():
            a, _, b = key.partition("-")
            self.overrides[(a, b)] = self.overrides[(b, a)] = float(ms)

    def rtt(self, a: str, b: str) -> float:
        if a == b:
            return 0.0
        if (a, b) in self.overrides:
            return self.overrides[(a, b)]
        if a in COORDINATES and b in COORDINATES:
            return estimated_rtt_ms(a, b)
        return 250.0  # unknown region: far away

    def nearest(self, origin: str, candidates: list[str]) -> list[str]:
        """Candidates sorted by RTT from `origin` (ties by code)."""
        return sorted(candidates, key=lambda r: (self.rtt(origin, r), r))

    @classmethod
    def from_file(cls, path: Path) -> RttTable:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not all(isinstance(v, int | float) for v in data.values()):
            raise ValueError(f"{path}: expected a JSON object of \"ams-ewr\": milliseconds")
        return cls({str(k): float(v) for k, v in data.items()})
