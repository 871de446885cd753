"""Faults for the local fleet: power-cut a host, cut it off the network, kill the control plane — and read
back what actually ran when (the agents' run logs), for drills and tests.

Network cuts are iptables rules on the host's own loopback address (agents send from it too), so they
need root and iptables; the error says so otherwise. In a fleet of network namespaces (`--netns`) they are link
faults instead: the host's port on the fleet bridge drops every frame (dev/fleetnet.py), and a power cut takes
the host's link down with it until the host comes back.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roost.dev.fleet import (
    FleetError,
    cut_link,
    heal_links,
    kill_keeper,
    kill_machines,
    machine_pids,
    machine_processes,
    pid_alive,
    read_fleet,
    write_fleet,
)
from roost.failover import replicas

COMMENT = "roost-fault"


def _host(fleet: dict[str, Any], host_id: str) -> dict[str, Any]:
    for host in fleet["hosts"]:
        if host["id"] == host_id:
            return dict(host)
    raise FleetError(f"no host {host_id!r} in this fleet")


def kill_host(data_dir: Path, host_id: str) -> float:
    """A power cut: SIGKILL the host's agent and every machine process on it. Returns when (wall clock)."""
    fleet = read_fleet(data_dir)
    if fleet is None:
        raise FleetError(f"no fleet in {data_dir}")
    host = _host(fleet, host_id)
    pids = machine_pids(Path(host["data_dir"]))
    at = time.time()
    with contextlib.suppress(ProcessLookupError):
        os.kill(host["pid"], signal.SIGKILL)
    kill_keeper(Path(host["data_dir"]))
    kill_machines(Path(host["data_dir"]))
    cut_link(fleet, host)  # a netns fleet: its address goes with it, until restart_agent
    # The host "reboots": its agent will find that everything died with it, not by its own exit.
    (Path(host["data_dir"]) / "simulated-boot").write_text(uuid.uuid4().hex + "\n")
    # Back only once the agent and every machine process are gone: a drill then knows they ended by now.
    _wait_gone([host["pid"], *pids])
    return at


def _wait_gone(pids: list[int], seconds: float = 5.0) -> None:
    """Wait (bounded) until every one of these SIGKILLed processes has exited."""
    deadline = time.monotonic() + seconds
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.01)


def kill_region(data_dir: Path, region: str) -> float:
    """Every host of a region (agents and machines) and the region's edge, at once."""
    fleet = read_fleet(data_dir)
    if fleet is None:
        raise FleetError(f"no fleet in {data_dir}")
    hosts = [h for h in fleet["hosts"] if h["region"] == region]
    if not hosts:
        raise FleetError(f"no hosts in region {region!r}")
    at = time.time()
    edges = [p["pid"] for p in fleet.get("proxies", []) if p["region"] == region]
    for pid in edges:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for host in hosts:
        kill_host(data_dir, host["id"])
    # Back only once the edge is gone too: until it has exited, its listening socket still takes connections
    # (and resets them), so a drill's "died with the edge" window runs until then.
    _wait_gone(edges)
    return at


def kill_machine(data_dir: Path, host_id: str, machine_id: str) -> float:
    """SIGKILL one machine's processes (its agent lives on and applies the machine's restart policy)."""
    fleet = read_fleet(data_dir)
    if fleet is None:
        raise FleetError(f"no fleet in {data_dir}")
    host = _host(fleet, host_id)
    pids = machine_processes(Path(host["data_dir"]), machine_id)
    if not pids:
        raise FleetError(f"machine {machine_id} has no running process on {host_id}")
    at = time.time()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return at


def signal_machine(data_dir: Path, host_id: str, machine_id: str, sig: int) -> int:
    """Send `sig` to every process of one machine (SIGSTOP/SIGCONT for a slow machine); returns how many."""
    fleet = read_fleet(data_dir)
    if fleet is None:
        raise FleetError(f"no fleet in {data_dir}")
    pids = machine_processes(Path(_host(fleet, host_id)["data_dir"]), machine_id)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    return len(pids)


def kill_server(data_dir: Path, index: int = 0) -> float:
    """SIGKILL a control-plane replica (the first, or the only one, unless `index` says)."""
    fleet = read_fleet(data_dir)
    if fleet is None:
        raise FleetError(f"no fleet in {data_dir}")
    pid = replicas(fleet)[index]["pid"]
    at = time.time()
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _wait_gone([pid])
    return at


def partition_unavailable() -> str | None:
    """Why this machine cannot cut a host off the network (None when it can): needs root and a working
    iptables (a container without NET_ADMIN has the binary but cannot list the rules)."""
    if os.geteuid() != 0:
        return "cutting a host off the network needs root (iptables rules on its loopback address)"
    if shutil.which("iptables") is None:
        return "cutting a host off the network needs iptables (apt-get install iptables)"
    try:
        probe = subprocess.run(["iptables", "-L", "OUTPUT", "-n"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"iptables does not work here: {exc}"
    if probe.returncode != 0:
        return f"iptables does not work here: {probe.stderr.strip() or probe.returncode}"
    return None


def _iptables(*args: str) -> None:
    if os.geteuid() != 0:
        raise FleetError("cutting a host off the network needs root (iptables rules on its loopback address)")
    if shutil.which("iptables") is None:
        raise FleetError("cutting a host off the network needs iptables (apt-get install iptables)")
    result = subprocess.run(["iptables", *args], capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        raise FleetError(f"iptables {' '.join(args)}: {result.stderr.strip()}")


def _rules_partition(address: str, machine_net: str = "") -> list[list[str]]:
    rules = [["INPUT", "-d", address, "-m", "comment", "--comment", COMMENT, "-j", "DROP"],
             ["OUTPUT", "-s", address, "-m", "comment", "--comment", COMMENT, "-j", "DROP"]]
    if machine_net:  # a container host's machines have addresses of their own: they are cut off too
        rules += [["OUTPUT", "-d", machine_net, "-m", "comment", "--comment", COMMENT, "-j", "DROP"],
                  ["INPUT", "-s", machine_net, "-m", "comment", "--comment", COMMENT, "-j", "DROP"]]
    return rules


def host_machine_net(host: dict[str, Any]) -> str:
    """A container host's machine subnet, from the arguments the fleet started its agent with ("" if none)."""
    argv = host.get("argv") or []
    return str(argv[argv.index("--machine-net") + 1]) if "--machine-net" in argv[:-1] else ""


def _rules_server_only(address: str, server_port: int) -> list[list[str]]:
    return [["INPUT", "-s", address, "-d", "127.0.0.1", "-p", "tcp", "--dport", str(server_port),
             "-m", "comment", "--comment", COMMENT, "-j", "DROP"],
            ["INPUT", "-s", "127.0.0.1", "-d", address, "-p", "tcp", "--sport", str(server_port),
             "-m", "comment", "--comment", COMMENT, "-j", "DROP"]]


def partition_host(data_dir: Path, host_id: str, server_only: bool = False) -> float:
    """Cut the host off from the control plane and every other host (or only from the control plane).
    Its machines keep running. Returns when (wall clock)."""
    fleet = read_fleet(data_dir)
    if fleet is None:
        raise FleetError(f"no fleet in {data_dir}")
    host = _host(fleet, host_id)
    if fleet.get("netns"):
        at = time.time()
        only = [s["url"].rsplit(":", 1)[0].split("//", 1)[1] for s in replicas(fleet)] if server_only else None
        cut_link(fleet, host, only)
        fleet.setdefault("faults", []).append({"host": host_id, "link": host.get("node"), "at": at})
        write_fleet(data_dir, fleet)
        return at
    ports = [int(s["url"].rsplit(":", 1)[1]) for s in replicas(fleet)]
    # from the control plane only: from every one of its replicas (else the host fails over to another)
    rules = [rule for port in ports for rule in _rules_server_only(host["address"], port)] if server_only else \
        _rules_partition(host["address"], host_machine_net(host))
    at = time.time()
    for rule in rules:
        _iptables("-I", *rule)
    fleet.setdefault("faults", []).append({"host": host_id, "rules": rules, "at": at})
    write_fleet(data_dir, fleet)
    return at


def freeze_agent(data_dir: Path, host_id: str) -> float:
    """SIGSTOP a host's agent (a stuck disk, a debugger, a paused process): it neither beats nor answers nor
    fences; its machines and its fence keeper keep running. Returns when (wall clock)."""
    fleet = read_fleet(data_dir)
    if fleet is None:
        raise FleetError(f"no fleet in {data_dir}")
    host = _host(fleet, host_id)
    if not pid_alive(host["pid"]):
        raise FleetError(f"the agent of host {host_id} is not running")
    at = time.time()
    os.kill(host["pid"], signal.SIGSTOP)
    return at


def thaw_agent(data_dir: Path, host_id: str) -> float:
    """SIGCONT a frozen agent. Returns when (wall clock)."""
    fleet = read_fleet(data_dir)
    if fleet is None:
        raise FleetError(f"no fleet in {data_dir}")
    at = time.time()
    with contextlib.suppress(ProcessLookupError):
        os.kill(_host(fleet, host_id)["pid"], signal.SIGCONT)
    return at


def heal(data_dir: Path) -> int:
    """Remove every network fault this fleet set. Returns how many rules were removed."""
    fleet = read_fleet(data_dir)
    if fleet is None:
        return 0
    removed = 0
    if fleet.get("netns"):
        removed += heal_links(fleet)
    for fault in fleet.get("faults", []):
        for rule in fault.get("rules", []):
            with contextlib.suppress(FleetError):
                _iptables("-D", *rule)
                removed += 1
    fleet["faults"] = []
    write_fleet(data_dir, fleet)
    for host in fleet.get("hosts", []):  # and no agent stays frozen
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(host["pid"], signal.SIGCONT)
    return removed


@dataclass(frozen=True)
class Run:
    machine: str
    host: str
    pid: int | None
    start: float
    end: float | None  # None: still running (or its end was never recorded)
    end_reason: str = ""


def runs(data_dir: Path) -> list[Run]:
    """Every process run of every machine, from the agents' run logs (start and end, wall clock)."""
    fleet = read_fleet(data_dir)
    if fleet is None:
        return []
    out: list[Run] = []
    for host in fleet["hosts"]:
        log = Path(host["data_dir"]) / "runs.log"
        if not log.exists():
            continue
        open_runs: dict[tuple[str, Any], float] = {}
        for line in log.read_text().splitlines():
            with contextlib.suppress(ValueError, KeyError):
                item = json.loads(line)
                key = (item["machine"], item["pid"])
                if item["event"] == "start":
                    open_runs[key] = item["time"]
                elif item["event"] == "end" and key in open_runs:
                    out.append(Run(item["machine"], host["id"], item["pid"], open_runs.pop(key), item["time"],
                                   item.get("reason", "")))
        for (machine, pid), start in open_runs.items():
            # A run with no recorded end ended no later than its host's agent died, if it did.
            out.append(Run(machine, host["id"], pid, start, None))
    return out


def overlaps(a: list[Run], b: list[Run], now: float | None = None, since: float = 0.0) -> list[tuple[Run, Run]]:
    """Pairs of runs (one of each list) that were alive at the same moment, at or after `since`."""
    def end_of(r: Run) -> float:
        return r.end if r.end is not None else (now or time.time())

    return [(x, y) for x in a for y in b
            if max(x.start, y.start, since) < min(end_of(x), end_of(y))]
