"""Durations, signals and sizes in the forms Fly's API and fly.toml accept."""

from __future__ import annotations

import re
import signal as _signal

from roost.core.errors import bad_request

# Go's time.ParseDuration units, in seconds.
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")

SIGNALS: dict[str, int] = {
    "SIGABRT": int(_signal.SIGABRT), "SIGALRM": int(_signal.SIGALRM), "SIGFPE": int(_signal.SIGFPE),
    "SIGHUP": int(_signal.SIGHUP), "SIGILL": int(_signal.SIGILL), "SIGINT": int(_signal.SIGINT),
    "SIGKILL": int(_signal.SIGKILL), "SIGPIPE": int(_signal.SIGPIPE), "SIGQUIT": int(_signal.SIGQUIT),
    "SIGSEGV": int(_signal.SIGSEGV), "SIGTERM": int(_signal.SIGTERM), "SIGTRAP": int(_signal.SIGTRAP),
    "SIGUSR1": int(_signal.SIGUSR1), "SIGUSR2": int(_signal.SIGUSR2), "SIGSTOP": int(_signal.SIGSTOP),
    "SIGCONT": int(_signal.SIGCONT), "SIGWINCH": int(_signal.SIGWINCH),
}
SIGNAL_NAMES = {number: name for name, number in SIGNALS.items()}


def parse_go_duration(text: str) -> float:
    """'1m30s' -> 90.0 seconds. Raises ValueError on anything Go would reject."""
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    sign = 1.0
    if s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    pos = 0
    total = 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m:
            raise ValueError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def duration_seconds(value: object, *, field: str, int_unit: float = 1e-9) -> float:
    """A duration given as a Go duration string or a number (in `int_unit` seconds; the API uses ns)."""
    if isinstance(value, bool):
        raise bad_request(f"{field}: expected a duration like \"10s\", got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise bad_request(f"{field}: duration must not be negative")
        return float(value) * int_unit
    if isinstance(value, str):
        try:
            seconds = parse_go_duration(value)
        except ValueError:
            raise bad_request(
                f"{field}: invalid duration {value!r} (use forms like \"500ms\", \"10s\", \"1m\")"
            ) from None
        if seconds < 0:
            raise bad_request(f"{field}: duration must not be negative")
        return seconds
    raise bad_request(f"{field}: expected a duration like \"10s\", got {type(value).__name__}")


def format_go_duration(seconds: float) -> str:
    """Go's time.Duration.String(): 90 -> '1m30s', 3600 -> '1h0m0s', 0.5 -> '500ms', 0 -> '0s'."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)

    def frac(value: int, scale: int) -> str:
        whole, rest = divmod(value, scale)
        if not rest:
            return str(whole)
        digits = len(str(scale)) - 1
        return f"{whole}.{rest:0{digits}d}".rstrip("0")

    if ns < 1000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{frac(ns, 1000)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{frac(ns, 1_000_000)}ms"
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    out = sign
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return out + f"{frac(rest, 10**9)}s"


_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
               "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}


def size_bytes(value: object, *, field: str) -> int:
    """A size in bytes: a whole number, or a string like "512k", "10MB", "1GiB" (powers of 1024)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        digits = text.rstrip("abcdefghijklmnopqrstuvwxyz ")
        unit = text[len(digits):].strip()
        if digits.isdigit() and unit in _SIZE_UNITS:
            return int(digits) * _SIZE_UNITS[unit]
    raise bad_request(f"{field}: expected a size in bytes, like 1048576 or \"10MB\", got {value!r}")


def parse_signal(value: object, *, field: str = "signal") -> int:
    """'SIGTERM', 'TERM', '15' or 15 -> 15."""
    if isinstance(value, bool):
        raise bad_request(f"{field}: expected a signal name like \"SIGTERM\" or a number")
    if isinstance(value, int):
        if value in SIGNAL_NAMES or 1 <= value <= 64:
            return value
        raise bad_request(f"{field}: unknown signal number {value}")
    if isinstance(value, str):
        text = value.strip().upper()
        if text.isdigit():
            return parse_signal(int(text), field=field)
        if not text.startswith("SIG"):
            text = "SIG" + text
        if text in SIGNALS:
            return SIGNALS[text]
        raise bad_request(f"{field}: unknown signal {value!r} (use a name like \"SIGTERM\" or a number)")
    raise bad_request(f"{field}: expected a signal name like \"SIGTERM\" or a number")


def signal_name(number: int) -> str:
    return SIGNAL_NAMES.get(number, str(number))


MAX_LEASE_SECONDS = 3600


def lease_seconds(value: object, field: str) -> int:
    """A lease's time to live: whole seconds, 1 to an hour (a lease outliving its holder blocks the machine)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LEASE_SECONDS:
        raise bad_request(f"{field}: expected a number of seconds between 1 and {MAX_LEASE_SECONDS}")
    return value
