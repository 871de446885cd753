"""The faults a drill injects into the local fleet, each with its heal, and how a target is chosen.

Every fault acts only on what the fleet's own record (fleet.json) names — its hosts, regions, edges and
control plane — and on machines of the drilled app that run on those hosts; anything else is refused.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roost.dev import faults as fleet_faults
from roost.dev.fleet import FleetError, restart_agent, restart_proxy, restart_server

FAULTS = ("stop-machine", "kill-machine", "kill-host", "kill-region", "partition-host", "kill-server", "slow-machine",
          "freeze-agent")
HEALS = {  # what "heal" means per fault; None: nothing to undo (the platform recovers by itself or not at all)
    "stop-machine": "start the machine again",
    "kill-machine": None,
    "kill-host": "restart the host's agent",
    "kill-region": "restart the region's agents and edge",
    "partition-host": "remove the firewall rules",
    "kill-server": "restart the control plane",
    "slow-machine": "let the machine run at full speed again",
    "freeze-agent": "let the agent run again (SIGCONT)",
}


class DrillError(Exception):
    """The drill cannot run as asked (bad target, nothing to drill, missing privileges)."""


@dataclass
class Target:
    kind: str  # machine | host | region | server
    name: str
    host: str = ""  # the host of a machine target
    machines: set[str] = field(default_factory=set)  # the app's machines the fault takes away
    hosts: list[str] = field(default_factory=list)
    region: str = ""  # where the drill's clients are (the target's region: they must shift away from it)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "machines": sorted(self.machines), "hosts": self.hosts,
                "region": self.region}


def _started(machines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in machines if m.get("state") == "started"]


def _fleet_hosts(fleet: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {h["id"]: h for h in fleet["hosts"]}


def watched_ids(machines: list[dict[str, Any]]) -> set[str]:
    """Machines some standby watches."""
    return {w for m in machines for w in (m.get("config") or {}).get("standbys") or []}


def choose_target(fault: str, requested: str | None, fleet: dict[str, Any], machines: list[dict[str, Any]]) -> Target:
    """The target of `fault`: the requested one, checked against the fleet and the app, or a sensible default."""
    hosts = _fleet_hosts(fleet)
    ours = [m for m in machines if m.get("host_id") in hosts]
    if fault == "kill-server":
        replicas = fleet.get("servers") or [fleet.get("server") or {}]
        if len(replicas) == 1:
            if requested:
                raise DrillError("kill-server takes no --target on a fleet with one server: it kills the control "
                                 "plane (with replicas, --target leader or server-N)")
            return Target("server", "control plane", region=fleet["regions"][0])
        names = [f"server-{i + 1}" for i in range(len(replicas))]
        if requested in (None, "", "leader"):
            leading = [i for i, r in enumerate(replicas) if r.get("leads")]
            if not leading:
                raise DrillError("no replica leads the control plane right now ('roost dev status'); "
                                 "name one with --target server-N")
            index = leading[0]
        elif requested in names:
            index = names.index(requested)
        else:
            raise DrillError(f"no replica {requested!r}: --target leader or one of {', '.join(names)}")
        return Target("server", names[index], region=fleet["regions"][0])
    if not ours:
        raise DrillError("the app has no machines on this fleet's hosts: deploy it first ('roost deploy')")
    running = _started(ours)
    watched = watched_ids(ours)
    # Default: a running machine that others can stand in for (a watched one, else one of several).
    # The app's home: its primary region (as deploys set PRIMARY_REGION), else where most of it runs.
    primary = next(((m.get("config") or {}).get("env", {}).get("PRIMARY_REGION") for m in running
                    if (m.get("config") or {}).get("env", {}).get("PRIMARY_REGION")), None)
    busiest = Counter(m["region"] for m in running).most_common(1)
    home = primary or (busiest[0][0] if busiest else ours[0]["region"])
    preferred = sorted(running, key=lambda m: (m["id"] not in watched, m["region"] != home, m["id"]))
    if fault in ("stop-machine", "kill-machine", "slow-machine"):
        if requested:
            machine = next((m for m in machines if m["id"] == requested), None)
            if machine is None:
                raise DrillError(f"no machine {requested!r} in this app ('roost machine list' shows them)")
            if machine.get("host_id") not in hosts:
                raise DrillError(f"machine {requested} runs on {machine.get('host_id')!r}, which is not a host of "
                                 "this fleet: a drill only touches the fleet it manages")
        elif preferred:
            machine = preferred[0]
        else:
            raise DrillError("the app has no running machine to target: start one ('roost machine start ID')")
        if fault != "stop-machine" and machine.get("state") != "started":
            raise DrillError(f"machine {machine['id']} is {machine.get('state')}, not started: nothing to "
                             f"{'kill' if fault == 'kill-machine' else 'slow down'}")
        return Target("machine", machine["id"], host=machine["host_id"], machines={machine["id"]},
                      hosts=[machine["host_id"]], region=machine["region"])
    if fault in ("kill-host", "partition-host", "freeze-agent"):
        if requested:
            if requested not in hosts:
                raise DrillError(f"no host {requested!r} in this fleet (its hosts: {', '.join(sorted(hosts))})")
            host_id = requested
        elif preferred:
            host_id = preferred[0]["host_id"]
        else:
            host_id = ours[0]["host_id"]
        on = {m["id"] for m in ours if m["host_id"] == host_id}
        return Target("host", host_id, machines=on, hosts=[host_id], region=hosts[host_id]["region"])
    if fault == "kill-region":
        regions = {h["region"] for h in hosts.values()}
        if requested:
            if requested not in regions:
                raise DrillError(f"no region {requested!r} in this fleet (its regions: {', '.join(sorted(regions))})")
            region = requested
        else:
            region = home
        if len(regions) < 2:
            raise DrillError("kill-region needs a fleet with two regions or more: "
                             "'roost dev up --regions ams,ewr,syd'")
        in_region = [h for h, info in hosts.items() if info["region"] == region]
        on = {m["id"] for m in ours if m["host_id"] in in_region}
        return Target("region", region, machines=on, hosts=in_region, region=region)
    raise DrillError(f"unknown fault {fault!r}: choose one of {', '.join(FAULTS)}")


class Fault:
    """One fault on the fleet in `data_dir`; `inject` and `heal` return when they happened (wall clock)."""

    name = ""

    def __init__(self, data_dir: Path, target: Target, api: Any, app: str) -> None:
        self.data_dir, self.target, self.api, self.app = data_dir, target, api, app

    @property
    def heal_action(self) -> str | None:
        return HEALS[self.name]

    def check(self) -> None:
        """Raise DrillError when this fault cannot be injected here (before any load is sent)."""

    def inject(self) -> float:
        raise NotImplementedError

    def heal(self) -> float:
        return time.time()


class StopMachine(Fault):
    name = "stop-machine"

    def inject(self) -> float:
        at = time.time()
        self.api.post(f"/v1/apps/{self.app}/machines/{self.target.name}/stop")
        return at

    def heal(self) -> float:
        at = time.time()
        machine = self.api.get(f"/v1/apps/{self.app}/machines/{self.target.name}")
        if machine.get("state") == "stopping":  # a short fault: the stop is still under way; start it after
            self.api.get(f"/v1/apps/{self.app}/machines/{self.target.name}/wait",
                         params={"state": "stopped", "timeout": 20}, ok_codes=(408,))
            machine = self.api.get(f"/v1/apps/{self.app}/machines/{self.target.name}")
        if machine.get("state") in ("stopped", "suspended"):  # the edge may have started it already
            self.api.post(f"/v1/apps/{self.app}/machines/{self.target.name}/start", ok_codes=(409, 412))
        return at


class KillMachine(Fault):
    name = "kill-machine"

    def inject(self) -> float:
        return fleet_faults.kill_machine(self.data_dir, self.target.host, self.target.name)


class KillHost(Fault):
    name = "kill-host"

    def inject(self) -> float:
        return fleet_faults.kill_host(self.data_dir, self.target.name)

    def heal(self) -> float:
        at = time.time()
        restart_agent(self.data_dir, self.target.name)
        return at


class KillRegion(Fault):
    name = "kill-region"

    def inject(self) -> float:
        return fleet_faults.kill_region(self.data_dir, self.target.name)

    def heal(self) -> float:
        at = time.time()
        for host in self.target.hosts:
            restart_agent(self.data_dir, host)
        restart_proxy(self.data_dir, self.target.name)
        return at


class PartitionHost(Fault):
    name = "partition-host"

    def check(self) -> None:
        why = fleet_faults.partition_unavailable()
        if why is not None:
            raise DrillError(f"partition-host: {why}")

    def inject(self) -> float:
        return fleet_faults.partition_host(self.data_dir, self.target.name)

    def heal(self) -> float:
        at = time.time()
        fleet_faults.heal(self.data_dir)
        return at


class FreezeAgent(Fault):
    """The host's agent stops (SIGSTOP) but its machines run on: no heartbeats, no answers, and no fencing of
    its own. The host's fence keeper must stop its watched machines before their standbys start."""

    name = "freeze-agent"

    def inject(self) -> float:
        return fleet_faults.freeze_agent(self.data_dir, self.target.name)

    def heal(self) -> float:
        return fleet_faults.thaw_agent(self.data_dir, self.target.name)


class KillServer(Fault):
    name = "kill-server"

    @property
    def index(self) -> int:
        """Which replica: "server-N" is the Nth; the control plane of a one-server fleet is its only one."""
        name = self.target.name
        return int(name.split("-", 1)[1]) - 1 if name.startswith("server-") else 0

    def inject(self) -> float:
        return fleet_faults.kill_server(self.data_dir, self.index)

    def heal(self) -> float:
        at = time.time()
        restart_server(self.data_dir, self.index)
        return at


class SlowMachine(Fault):
    """The machine answers slowly: frozen (SIGSTOP) most of the time, let run (SIGCONT) in short slices, so
    every answer waits up to `frozen` seconds — a machine in a GC pause or swapping, not a dead one."""

    name = "slow-machine"
    frozen = 0.3
    running = 0.03

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def inject(self) -> float:
        at = time.time()
        if fleet_faults.signal_machine(self.data_dir, self.target.host, self.target.name, signal.SIGSTOP) == 0:
            raise DrillError(f"machine {self.target.name} has no running process to slow down")
        self._thread = threading.Thread(target=self._cycle, name="slow-machine", daemon=True)
        self._thread.start()
        return at

    def _cycle(self) -> None:
        while not self._stop.wait(self.frozen):
            fleet_faults.signal_machine(self.data_dir, self.target.host, self.target.name, signal.SIGCONT)
            if self._stop.wait(self.running):
                break
            fleet_faults.signal_machine(self.data_dir, self.target.host, self.target.name, signal.SIGSTOP)

    def heal(self) -> float:
        at = time.time()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        fleet_faults.signal_machine(self.data_dir, self.target.host, self.target.name, signal.SIGCONT)
        return at


_KINDS: dict[str, type[Fault]] = {cls.name: cls for cls in (StopMachine, KillMachine, KillHost, KillRegion,
                                                            PartitionHost, KillServer, SlowMachine, FreezeAgent)}


def make_fault(name: str, data_dir: Path, target: Target, api: Any, app: str) -> Fault:
    if name not in _KINDS:
        raise DrillError(f"unknown fault {name!r}: choose one of {', '.join(FAULTS)}")
    return _KINDS[name](data_dir, target, api, app)


__all__ = ["FAULTS", "DrillError", "Fault", "FleetError", "Target", "choose_target", "make_fault", "watched_ids"]
