"""Identifiers in Fly's shapes, made at the API edge (the caller passes randomness and time)."""

from __future__ import annotations

import re
import secrets
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

MACHINE_ID_RE = re.compile(r"^[0-9a-f]{14}$")
APP_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
VOLUME_NAME_RE = re.compile(r"^[a-z0-9_]{1,30}$")
HOST_ID_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")

_ADJECTIVES = (
    "aged", "ancient", "autumn", "billowing", "bitter", "black", "blue", "bold", "broad", "broken", "calm",
    "cold", "cool", "crimson", "curly", "damp", "dark", "dawn", "delicate", "divine", "dry", "empty",
    "falling", "fancy", "flat", "floral", "fragrant", "frosty", "gentle", "green", "hidden", "holy", "icy",
    "jolly", "late", "lingering", "little", "lively", "long", "lucky", "misty", "morning", "muddy", "nameless",
    "noisy", "odd", "old", "orange", "patient", "plain", "polished", "proud", "purple", "quiet", "rapid",
    "raspy", "red", "restless", "rough", "round", "royal", "shiny", "shrill", "shy", "silent", "small",
    "snowy", "soft", "solitary", "sparkling", "spring", "square", "steep", "still", "summer", "super", "sweet",
    "throbbing", "tight", "tiny", "twilight", "wandering", "weathered", "white", "wild", "winter", "wispy",
    "withered", "yellow", "young",
)
_NOUNS = (
    "art", "band", "bar", "base", "bird", "block", "boat", "bonus", "bread", "breeze", "brook", "bush",
    "butterfly", "cake", "cell", "cherry", "cloud", "credit", "darkness", "dawn", "dew", "disk", "dream",
    "dust", "feather", "field", "fire", "firefly", "flower", "fog", "forest", "frog", "frost", "glade",
    "glitter", "grass", "hall", "hat", "haze", "heart", "hill", "king", "lab", "lake", "leaf", "limit",
    "math", "meadow", "mode", "moon", "morning", "mountain", "mouse", "mud", "night", "paper", "pine",
    "poetry", "pond", "queen", "rain", "recipe", "resonance", "rice", "river", "salad", "scene", "sea",
    "shadow", "shape", "silence", "sky", "smoke", "snow", "snowflake", "sound", "star", "sun", "sunset",
    "surf", "term", "thunder", "tooth", "tree", "truth", "union", "unit", "violet", "voice", "water",
    "waterfall", "wave", "wildflower", "wind", "wood",
)


def new_machine_id() -> str:
    """14 lowercase hex characters, as Fly's machine ids."""
    return secrets.token_hex(7)


def new_volume_id() -> str:
    return "vol_" + secrets.token_hex(8)


def new_snapshot_id() -> str:
    return "vs_" + secrets.token_hex(8)


def new_nonce() -> str:
    return secrets.token_hex(6)


def new_token() -> str:
    return "roost_" + secrets.token_urlsafe(32)


def new_ulid(now_ms: int | None = None) -> str:
    """A 26-character ULID (48-bit ms time + 80 random bits), Fly's instance/version id shape."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_machine_name() -> str:
    """A readable generated name like Fly's: 'aged-wind-2649'."""
    rng = secrets.SystemRandom()
    return f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}-{rng.randint(1000, 9999)}"


def is_machine_id(value: str) -> bool:
    return bool(MACHINE_ID_RE.match(value))
