"""The scheduler pipeline: feasibility filters, then ranking, over a snapshot of the hosts.

Filters drop hosts that cannot take the machine and remember why, so that "nothing fits" names the
region and the reason. Ranking spreads an app's process group over hosts, then the app, then prefers
the host with the most free memory. Deterministic: equal hosts are ordered by id.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from roost.core.errors import RoostError, bad_request, insufficient_capacity
from roost.core.regions import is_known

# Capacity is counted in milli-CPUs. A performance CPU is a whole core; a shared CPU is Fly's baseline
# share of one sixteenth of a core, so shared machines pack the way they do on Fly.
PERFORMANCE_MILLICPU = 1000
SHARED_MILLICPU = 1000 // 16


def millicpus(cpu_kind: str, cpus: int) -> int:
    return cpus * (PERFORMANCE_MILLICPU if cpu_kind == "performance" else SHARED_MILLICPU)


@dataclass(frozen=True)
class HostView:
    id: str
    region: str
    status: str  # ok | unknown | unreachable
    cordoned: bool
    millicpus: int
    memory_mb: int
    used_millicpus: int = 0
    used_memory_mb: int = 0
    group_counts: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (app, group) -> machines
    app_counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def free_millicpus(self) -> int:
        return self.millicpus - self.used_millicpus

    @property
    def free_memory_mb(self) -> int:
        return self.memory_mb - self.used_memory_mb


@dataclass(frozen=True)
class PlacementRequest:
    app: str
    group: str
    region: str
    cpu_kind: str = "shared"
    cpus: int = 1
    memory_mb: int = 256
    pinned_host: str | None = None  # a volume's host: the machine must go there
    avoid_hosts: frozenset[str] = frozenset()  # soft: used when another host fits
    # Hard anti-affinity: a standby never shares a host with a machine it stands by for (it must survive it).
    exclude_hosts: frozenset[str] = frozenset()
    exclude_reason: str = "hosts of the machines it stands by for"


def place(request: PlacementRequest, hosts: Iterable[HostView]) -> HostView:
    """Choose a host for `request` or raise RoostError (400 unknown region, 412 insufficient_capacity)."""
    all_hosts = list(hosts)
    region = request.region
    in_region = [h for h in all_hosts if h.region == region]
    if not in_region and not is_known(region):
        known = sorted({h.region for h in all_hosts})
        hint = f"; this fleet has hosts in: {', '.join(known)}" if known else ""
        raise bad_request(f"unknown region {region!r}{hint}")
    if not in_region:
        raise insufficient_capacity(
            f"insufficient resources to create new machine in region {region!r}: no hosts in that region")

    need_cpu = millicpus(request.cpu_kind, request.cpus)
    reasons: dict[str, int] = {}
    feasible: list[HostView] = []
    for host in in_region:
        reason = _infeasible(host, request, need_cpu)
        if reason:
            reasons[reason] = reasons.get(reason, 0) + 1
        else:
            feasible.append(host)
    if not feasible:
        if request.exclude_hosts and all(h.id in request.exclude_hosts for h in in_region):
            raise insufficient_capacity(
                f"no host in region {region!r} for this standby: its only host(s) run the machine it stands by "
                "for, and a standby on the same host would die with it; add a host to the region, or put the "
                "standby in another region")
        why = "; ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
        raise insufficient_capacity(
            f"insufficient resources to create new machine in region {region!r} "
            f"({request.cpus} {request.cpu_kind} cpu, {request.memory_mb} MB): {why}"
        )
    return min(feasible, key=lambda h: _rank(h, request))


def capacity(region: str, hosts: Iterable[HostView], cpu_kind: str, cpus: int, memory_mb: int) -> tuple[int, int]:
    """How many more machines of this size the region's hosts take now (the same feasibility `place` uses:
    live, not cordoned, enough memory and cpu), and how many hosts they would be spread over."""
    need_cpu = millicpus(cpu_kind, cpus)
    request = PlacementRequest("", "", region, cpu_kind, cpus, memory_mb)
    fits = [min(h.free_memory_mb // max(memory_mb, 1), h.free_millicpus // max(need_cpu, 1))
            for h in hosts if h.region == region and not _infeasible(h, request, need_cpu)]
    return sum(fits), sum(1 for n in fits if n > 0)


def _infeasible(host: HostView, request: PlacementRequest, need_cpu: int) -> str:
    if request.pinned_host is not None and host.id != request.pinned_host:
        return "hosts without the machine's volume"
    if host.id in request.exclude_hosts:
        return request.exclude_reason
    if host.status != "ok":
        return f"hosts {host.status}"
    if host.cordoned:
        return "hosts cordoned"
    if host.free_memory_mb < request.memory_mb:
        return "hosts short of memory"
    if host.free_millicpus < need_cpu:
        return "hosts short of cpu"
    return ""


def _rank(host: HostView, request: PlacementRequest) -> tuple[int, int, int, int, str]:
    return (
        1 if host.id in request.avoid_hosts else 0,
        host.group_counts.get((request.app, request.group), 0),
        host.app_counts.get(request.app, 0),
        -host.free_memory_mb,
        host.id,
    )


def place_volume(app: str, name: str, region: str, hosts: Iterable[HostView],
                 volume_hosts: Mapping[str, int], require_unique_zone: bool = True) -> HostView:
    """A volume goes to a live host in the region; same-named volumes prefer distinct hosts (Fly's
    require_unique_zone), which fails only when every host already has one."""
    candidates = [h for h in hosts if h.region == region]
    if not candidates and not is_known(region):
        raise bad_request(f"unknown region {region!r}")
    live = [h for h in candidates if h.status == "ok" and not h.cordoned]
    if not live:
        raise insufficient_capacity(f"insufficient resources to create volume in region {region!r}: no live hosts")
    if require_unique_zone:
        fresh = [h for h in live if volume_hosts.get(h.id, 0) == 0]
        if not fresh:
            raise insufficient_capacity(
                f"no host in region {region!r} without a volume named {name!r} (require_unique_zone); "
                "add hosts or pass require_unique_zone=false"
            )
        live = fresh
    return min(live, key=lambda h: (volume_hosts.get(h.id, 0), h.app_counts.get(app, 0), -h.free_memory_mb, h.id))


def allocate_ports(guest_ports: Iterable[int], used: Iterable[int], existing: Mapping[str, int] | None = None,
                   base: int = 20000, limit: int = 40000) -> dict[str, int]:
    """Host ports for a machine's guest ports on its host: keep ones it already has, else the lowest free."""
    taken = set(used)
    result: dict[str, int] = {}
    candidate = base
    for guest in guest_ports:
        key = str(guest)
        if existing and key in existing:
            result[key] = existing[key]
            taken.add(existing[key])
            continue
        while candidate in taken:
            candidate += 1
        if candidate >= base + limit:
            raise RoostError(412, "host has no free ports left", "insufficient_capacity")
        result[key] = candidate
        taken.add(candidate)
    return result


def machine_address(subnet: str, used: Iterable[str]) -> str:
    """The lowest free machine address of a host's subnet (its first address is the host's own uplink)."""
    taken = set(used)
    hosts = ipaddress.IPv4Network(subnet).hosts()
    next(hosts, None)
    for candidate in hosts:
        if str(candidate) not in taken:
            return str(candidate)
    raise insufficient_capacity(f"no free machine address left in {subnet}: the host is full")
