"""What machines cost: a ledger of each machine's seconds in each billing state, and a price table.

The ledger lives in the machine's own record (so it is written with every change of the machine, survives
restarts and replicates with it): the state it is billed in now, since when, and its seconds per state in
hourly buckets (split exactly at hour boundaries; kept for RETAIN_HOURS). A machine `started` is billed for its
CPUs and memory by the second; `suspended`, `stopped` and `standby` only for its root filesystem, as Fly bills
them. A report over a window counts from the start of the hour the window begins in.

Pure: every function takes `now`; the server calls `account` on each save of a machine."""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

STARTED, SUSPENDED, STOPPED, STANDBY = "started", "suspended", "stopped", "standby"
CATEGORIES = (STARTED, SUSPENDED, STOPPED, STANDBY)
HOUR = 3600
RETAIN_HOURS = 24 * 45
UNKNOWN_ROOTFS_GB = 1.0  # a registry image's size is not known to the control plane: billed as 1 GB
MONTH = 30 * 86400  # a price "per month" is per 30 days of seconds
RUNNING_STATES = frozenset({"started", "starting", "stopping", "replacing", "suspending", "restarting"})
GONE_STATES = frozenset({"destroyed", "destroying"})


class PriceError(ValueError):
    """A price table that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Prices:
    """Dollars per 30-day month. Defaults: Fly's public prices (a shared vCPU $0.69, a performance vCPU $21.00,
    each GB of memory $5.00, root filesystems of stopped and suspended machines and volumes $0.15 per GB), so
    shared-cpu-1x with 256 MB is $1.94 and performance-1x with 2 GB is $31.00."""

    shared_cpu: float = 0.69
    performance_cpu: float = 21.0
    memory_gb: float = 5.0
    rootfs_gb: float = 0.15
    volume_gb: float = 0.15
    currency: str = "USD"

    def compute_per_second(self, cpu_kind: str, cpus: float, memory_mb: int) -> float:
        cpu = self.performance_cpu if cpu_kind == "performance" else self.shared_cpu
        return (cpu * cpus + self.memory_gb * memory_mb / 1024) / MONTH

    def storage_per_second(self, gb: float, per_gb_month: float) -> float:
        return gb * per_gb_month / MONTH


KEYS = {"compute": ("shared_cpu", "performance_cpu", "memory_gb"), "storage": ("rootfs_gb", "volume_gb")}


def load_prices(text: str, source: str = "prices") -> Prices:
    """A price table from TOML (`[compute] shared_cpu, performance_cpu, memory_gb`, `[storage] rootfs_gb,
    volume_gb`, top-level `currency`): whatever it leaves out keeps its default. PriceError names the line."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PriceError(f"{source}: not valid TOML: {exc}") from None
    values: JSON = {}
    for key, value in doc.items():
        if key == "currency":
            if not isinstance(value, str) or not re.fullmatch(r"[A-Z]{3}", value):
                raise PriceError(f"{source}:{_line(text, key)}: currency must be a code like \"USD\"")
            values["currency"] = value
        elif key in KEYS and isinstance(value, dict):
            for name, price in value.items():
                if name not in KEYS[key]:
                    raise PriceError(f"{source}:{_line(text, name)}: unknown price {key}.{name} "
                                     f"(known: {', '.join(KEYS[key])})")
                if isinstance(price, bool) or not isinstance(price, int | float) or not math.isfinite(price) \
                        or price < 0:
                    raise PriceError(f"{source}:{_line(text, name)}: {key}.{name} must be a price of 0 or more "
                                     f"(dollars per 30-day month), not {price!r}")
                values[name] = float(price)
        else:
            raise PriceError(f"{source}:{_line(text, key)}: unknown section or key {key!r} "
                             "(known: [compute], [storage], currency)")
    return Prices(**values)


def _line(text: str, key: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(rf"\s*(\[\s*)?{re.escape(key)}\s*[=\]]", line):
            return number
    return 1


def category(state: str, standby: bool) -> str | None:
    """The billing state of a machine in `state` (None once it is gone)."""
    if state in GONE_STATES:
        return None
    if state in RUNNING_STATES:
        return STARTED
    if state == "suspended":
        return SUSPENDED
    return STANDBY if standby else STOPPED


def account(ledger: JSON | None, now_category: str | None, now: float, size: JSON | None = None) -> JSON:
    """The ledger after time ran until `now` in the category it was in, and from now on in `now_category`
    (None: the machine is gone; nothing more accrues). `size` ({cpu_kind, cpus, memory_mb, rootfs_gb,
    volume_gb}) is what the machine is billed for from now on. A new ledger dict; the old one is not changed."""
    old = ledger or {}
    # A shallow copy: the buckets `_spread` adds to are copied there, so the old ledger stays as it was without
    # copying all of its (up to 45 days of) hourly buckets on every save.
    hours: JSON = dict(old.get("hours") or {})
    was, since = old.get("category"), old.get("since")
    if was in CATEGORIES and isinstance(since, int | float) and now > since:
        _spread(hours, was, float(since), now)
    oldest = (int(now) // HOUR - RETAIN_HOURS) * HOUR
    # Buckets are added oldest first, so the first tells whether any is too old (the count, if one was not).
    if hours and (len(hours) > RETAIN_HOURS + 1 or int(next(iter(hours))) < oldest):
        for key in [k for k in hours if int(k) < oldest]:
            del hours[key]
    out: JSON = {"category": now_category, "since": now, "hours": hours, "size": size or old.get("size") or {}}
    return out


def _spread(hours: JSON, cat: str, start: float, end: float) -> None:
    """Add the seconds from `start` to `end` to the hourly buckets they fall in (each bucket copied first)."""
    while start < end:
        bucket = int(start) // HOUR * HOUR
        stop = min(end, bucket + HOUR)
        seconds = dict(hours.get(str(bucket)) or {})
        seconds[cat] = round(seconds.get(cat, 0.0) + (stop - start), 6)
        hours[str(bucket)] = seconds
        start = stop


def seconds_in(ledger: JSON | None, now: float, since: float | None = None) -> dict[str, float]:
    """Seconds per category from the hour `since` falls in (None: all the ledger keeps) until `now`, the open
    interval included."""
    current = account(ledger, (ledger or {}).get("category"), now)
    first = None if since is None else int(since) // HOUR * HOUR
    out = {cat: 0.0 for cat in CATEGORIES}
    for key, seconds in current["hours"].items():
        if first is None or int(key) >= first:
            for cat, value in seconds.items():
                if cat in out:
                    out[cat] += value
    return out


@dataclass
class Bill:
    """What one machine (or a sum of them) cost over a window, and what it would have cost always on."""

    seconds: dict[str, float] = field(default_factory=lambda: {cat: 0.0 for cat in CATEGORIES})
    compute: float = 0.0
    rootfs: float = 0.0
    volumes: float = 0.0
    always_on: float = 0.0  # compute for every second the machine existed, plus its volumes

    @property
    def total(self) -> float:
        return self.compute + self.rootfs + self.volumes

    @property
    def saved(self) -> float:
        """What stopping and suspending saved against running all the time."""
        return max(0.0, self.always_on - self.total)

    def add(self, other: Bill) -> None:
        for cat, value in other.seconds.items():
            self.seconds[cat] = self.seconds.get(cat, 0.0) + value
        self.compute += other.compute
        self.rootfs += other.rootfs
        self.volumes += other.volumes
        self.always_on += other.always_on

    def to_json(self, digits: int = 12) -> JSON:
        return {"seconds": {k: round(v, 3) for k, v in self.seconds.items()}, "compute": round(self.compute, digits),
                "rootfs": round(self.rootfs, digits), "volumes": round(self.volumes, digits),
                "total": round(self.total, digits), "always_on": round(self.always_on, digits),
                "saved": round(self.saved, digits)}


def bill(ledger: JSON | None, prices: Prices, now: float, since: float | None = None) -> Bill:
    """One machine's bill from its ledger: started seconds at its compute price; the other categories at its
    root filesystem's storage price; its volume for every second it existed."""
    seconds = seconds_in(ledger, now, since)
    size = (ledger or {}).get("size") or {}
    compute = prices.compute_per_second(str(size.get("cpu_kind") or "shared"), float(size.get("cpus") or 1),
                                        int(size.get("memory_mb") or 256))
    rootfs = prices.storage_per_second(float(size.get("rootfs_gb") or 0), prices.rootfs_gb)
    volume = prices.storage_per_second(float(size.get("volume_gb") or 0), prices.volume_gb)
    existed = sum(seconds.values())
    idle = existed - seconds[STARTED]
    return Bill(seconds=seconds, compute=seconds[STARTED] * compute, rootfs=idle * rootfs,
                volumes=existed * volume, always_on=existed * (compute + volume))
