"""The network of a fleet of separate hosts on one computer (`roost dev up --netns`, issue 19).

Every host, edge and control-plane replica runs in a network namespace of its own (`rf-<key>-<name>`), with one
address on the fleet network, 10.X.0.0/16. That network is a bridge in a namespace of its own (`rf-<key>`)
with no default route and no address: nothing on it can reach anything but its peers. This computer joins it
through one veth (`rf<key>`, address 10.X.0.1), so the CLI, tests, the fleet's registry and its PostgreSQL are
reached there; this computer forwards nothing (its `ip_forward` is left alone).

Hosts route packets between their machines: each host's namespace forwards, and every namespace (this
computer's too) routes each host's machine subnet through that host's fleet address, so a machine on one host
reaches a machine on another through the fleet network (the private network; production does the same over
WireGuard or the operator's own routes, docs/private-network.md).

Latency: with `regions`, each region's nodes share a bridge of their own and a relay (dev/linkdelay.py) carries
frames between the bridges after half the round-trip time between the regions; without, one bridge holds all.

Faults are link faults: a partition drops every frame of a host's port on the fleet bridge (nftables, bridge
family, in the fleet's namespace), a power cut does the same until the host comes back.

Everything is named after the fleet's key (a hash of its directory): `down` removes it all by name.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roost.commands import run_tool

NETNS_DIR = Path("/var/run/netns")
TIMEOUT = 10.0
FIRST_OCTET, LAST_OCTET = 96, 127  # fleet networks are 10.X.0.0/16 for X in this range
PRIVATE_NET = "10.192.0.0/10"  # every host's machine subnet (10.2xx.y.0/24) lies in it
FAULT_TABLE = "roost_faults"


class FleetNetError(Exception):
    pass


def run(argv: list[str], stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_tool(argv, FleetNetError, stdin=stdin, check=check, timeout=TIMEOUT)


def unavailable() -> str | None:
    """Why this computer cannot run a netns fleet (None when it can)."""
    import os
    import shutil

    if os.geteuid() != 0:
        return "a fleet of network namespaces needs root"
    for tool, package in (("ip", "iproute2"), ("nsenter", "util-linux"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"a fleet of network namespaces needs {tool} (apt-get install {package})"
    return None


@dataclass
class FleetNetwork:
    key: str
    octet: int
    nodes: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> {ns, port, address}
    regions: list[str] = field(default_factory=list)  # with link latency: a bridge per region, in this order

    # ---- naming ----

    @staticmethod
    def key_for(data_dir: Path) -> str:
        return hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:6]

    @property
    def bridge_ns(self) -> str:
        return f"rf-{self.key}"

    @property
    def operator_link(self) -> str:
        return f"rf{self.key}"

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"10.{self.octet}.0.0/16")

    @property
    def operator_address(self) -> str:
        return f"10.{self.octet}.0.1"

    def server_address(self, index: int) -> str:
        return f"10.{self.octet}.0.{10 + index}"

    def host_address(self, region_index: int, host_index: int) -> str:
        return f"10.{self.octet}.{region_index + 1}.{host_index + 1}"

    def edge_address(self, region_index: int) -> str:
        return f"10.{self.octet}.{region_index + 1}.200"

    def namespace(self, name: str) -> str:
        return self.nodes[name]["ns"]

    def enter(self, name: str) -> list[str]:
        """The command prefix that runs a program in a node's namespace (network only: the same files,
        processes and mounts; nsenter execs it, so its PID is the program's)."""
        return ["nsenter", f"--net={NETNS_DIR / self.namespace(name)}", "--"]

    def describe(self) -> dict[str, Any]:
        return {"key": self.key, "octet": self.octet, "network": str(self.network), "bridge_ns": self.bridge_ns,
                "operator": self.operator_address, "private_net": PRIVATE_NET, "nodes": self.nodes,
                "regions": self.regions}

    @classmethod
    def from_fleet(cls, described: dict[str, Any]) -> FleetNetwork:
        return cls(str(described["key"]), int(described["octet"]), dict(described.get("nodes") or {}),
                   list(described.get("regions") or []))

    def bridge(self, region: str | None = None) -> str:
        """The bridge a node of `region` hangs off (the first region's for this computer and the servers)."""
        if not self.regions:
            return "fleet0"
        return f"b{self.regions.index(region) if region in self.regions else 0}"

    def taps(self) -> dict[str, str]:
        """Each region's TAP device on its bridge, for the relay (none without latency)."""
        return {region: f"t{i}" for i, region in enumerate(self.regions)}

    def relay_enter(self) -> list[str]:
        """The command prefix that runs the relay in the fleet network's own namespace."""
        return ["nsenter", f"--net={NETNS_DIR / self.bridge_ns}", "--"]

    # ---- making it ----

    @classmethod
    def create(cls, data_dir: Path, regions: list[str] | None = None) -> FleetNetwork:
        """The fleet network's bridge (a bridge per region, with `regions`: link latency between them) and this
        computer's link to it, on a 10.X.0.0/16 nobody here uses."""
        key = cls.key_for(data_dir)
        cls(key, FIRST_OCTET).remove()  # whatever a crashed run of this fleet left
        used = run(["ip", "-4", "-o", "addr", "show"]).stdout
        routes = run(["ip", "-4", "route", "show"]).stdout
        start = int(key, 16) % (LAST_OCTET - FIRST_OCTET + 1)
        for step in range(LAST_OCTET - FIRST_OCTET + 1):
            octet = FIRST_OCTET + (start + step) % (LAST_OCTET - FIRST_OCTET + 1)
            if f" 10.{octet}." not in used and f"10.{octet}." not in routes:
                break
        else:
            raise FleetNetError(f"every fleet network 10.{FIRST_OCTET}-{LAST_OCTET}.0.0/16 is in use here")
        net = cls(key, octet, regions=list(regions or []))
        ns = net.bridge_ns
        run(["ip", "netns", "add", ns])
        bridges = [net.bridge(r) for r in net.regions] or ["fleet0"]
        batch = "link set lo up\n" + "".join(f"link add {b} type bridge\nlink set {b} up\n" for b in bridges)
        for region, tap in net.taps().items():
            batch += f"tuntap add dev {tap} mode tap\nlink set {tap} master {net.bridge(region)} up\n"
        run(["ip", "-n", ns, "-batch", "-"], batch)
        run(["ip", "link", "add", net.operator_link, "type", "veth", "peer", "name", "op", "netns", ns])
        run(["ip", "-n", ns, "link", "set", "op", "master", net.bridge(), "up"])
        run(["ip", "addr", "add", f"{net.operator_address}/16", "dev", net.operator_link])
        run(["ip", "link", "set", net.operator_link, "up"])
        return net

    def add_node(self, name: str, address: str, forwarding: bool = False, region: str | None = None) -> str:
        """A namespace for one component with `address` on the fleet network; returns the namespace's name."""
        ns = f"rf-{self.key}-{name}"
        port = f"n{len(self.nodes)}"
        self.nodes[name] = {"ns": ns, "port": port, "address": address}
        run(["ip", "netns", "add", ns])
        run(["ip", "link", "add", port, "netns", self.bridge_ns, "type", "veth", "peer", "name", "eth0",
             "netns", ns])
        run(["ip", "-n", self.bridge_ns, "link", "set", port, "master", self.bridge(region), "up"])
        run(["ip", "-n", ns, "-batch", "-"],
            f"addr add {address}/16 dev eth0\nlink set eth0 up\nlink set lo up\n")
        if forwarding:  # a host routes its machines' packets (this namespace's setting, not the computer's)
            run(["nsenter", f"--net={NETNS_DIR / ns}", "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])
        return ns

    def route(self, subnet: str, via: str, skip: set[str] | None = None) -> None:
        """Route `subnet` through `via` everywhere: this computer and every node but those in `skip` (its owner,
        or every host when the hosts route it themselves)."""
        run(["ip", "route", "replace", subnet, "via", via, "dev", self.operator_link])
        for name, node in self.nodes.items():
            if name not in (skip or set()):
                run(["ip", "-n", node["ns"], "route", "replace", subnet, "via", via])

    # ---- faults: a host's link on the fleet bridge ----

    def cut(self, name: str, only_with: list[str] | None = None) -> None:
        """Drop every frame to and from a node (or only those to and from the addresses in `only_with`)."""
        port = self.nodes[name]["port"]
        peers = f" ip daddr {{ {', '.join(only_with)} }}" if only_with else ""
        back = f" ip saddr {{ {', '.join(only_with)} }}" if only_with else ""
        script = (f"table bridge {FAULT_TABLE} {{\n  chain forward {{\n"
                  f"    type filter hook forward priority -10; policy accept;\n  }}\n}}\n"
                  f'add rule bridge {FAULT_TABLE} forward iifname "{port}"{peers} drop comment "{name}"\n'
                  f'add rule bridge {FAULT_TABLE} forward oifname "{port}"{back} drop comment "{name}"\n')
        run(["ip", "netns", "exec", self.bridge_ns, "nft", "-f", "-"], script)

    def heal(self, name: str | None = None) -> int:
        """Remove the cuts of one node (or all); returns how many rules went."""
        listed = run(["ip", "netns", "exec", self.bridge_ns, "nft", "-a", "list", "chain", "bridge", FAULT_TABLE,
                      "forward"], check=False)
        if listed.returncode != 0:
            return 0
        handles = []
        for line in listed.stdout.splitlines():
            if "# handle" in line and "drop" in line and (name is None or f'comment "{name}"' in line):
                handles.append(line.rsplit("# handle", 1)[1].strip())
        for handle in handles:
            run(["ip", "netns", "exec", self.bridge_ns, "nft", "delete", "rule", "bridge", FAULT_TABLE, "forward",
                 "handle", handle], check=False)
        return len(handles)

    # ---- removing it ----

    def remove(self) -> None:
        """Every namespace and link of this fleet's network, by name (routes through the link go with it)."""
        run(["ip", "link", "del", self.operator_link], check=False)
        prefix = f"rf-{self.key}"
        if NETNS_DIR.is_dir():
            for path in NETNS_DIR.glob(f"{prefix}*"):
                if path.name == prefix or path.name.startswith(prefix + "-"):
                    with contextlib.suppress(FleetNetError):
                        run(["ip", "netns", "del", path.name], check=False)
