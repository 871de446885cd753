"""Fly's region codes. Round-trip times between regions arrive with issue 7; the names are enough to
tell a typo ('amz') from a real region that merely has no hosts yet."""

from __future__ import annotations

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


def is_known(region: str) -> bool:
    return region in REGIONS
