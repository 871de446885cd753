"""Each machine's network of its own (container driver): a network namespace with one address on this host's
machine subnet, so the app listens on `0.0.0.0:internal_port` itself and two machines can both use 8080.

The machines of a host hang off a bridge that lives in a namespace of its own (`roost-net-<host>`): it has no
default route and forwards nothing, so a machine reaches its neighbours on the bridge and the host's uplink
address, and nothing beyond. The host reaches the subnet through one veth (`rb…` in the host's namespace,
holding the subnet's first address), which is how the edge and the checks reach `private_ip:internal_port`.
Machines have no default route; egress (NAT) is an operator's choice, off by default. With a private network
(`private_net`, the fleet's whole machine range), machines also route that range through the host, which
forwards it to the other hosts (docs/private-network.md).

Isolation: one nftables table on the bridge (privnet/isolation.py) lets machines talk only within their org,
from their own address only; it is written again whenever a machine is wired or the orgs' members change.

Everything is named after what it belongs to (host id, machine id), so it is found and removed by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import logging
import os
import subprocess
import threading
from pathlib import Path

from roost.commands import run_tool
from roost.privnet import isolation
from roost.privnet.names import Directory

log = logging.getLogger("roost.agent.netns")
NETNS_DIR = Path("/var/run/netns")
IP_TIMEOUT = 10.0


UPLINK_PORT = "up0"  # the host's port on its machines' bridge


class NetworkError(Exception):
    pass


def _nft(script: str) -> None:
    """Apply an nft script in this process's network namespace (one transaction)."""
    run_tool(["nft", "-f", "-"], NetworkError, stdin=script, timeout=IP_TIMEOUT)


def _in_bridge_ns(ns: str, argv: list[str], stdin: str) -> None:
    """Run a command (nft) in a bridge namespace: `ip netns exec` only for its duration."""
    run_tool(["ip", "netns", "exec", ns, *argv], NetworkError, stdin=stdin, timeout=IP_TIMEOUT)


def _short(text: str, length: int = 10) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _ip(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_tool(["ip", *args], NetworkError, stdin=stdin, check=check, timeout=IP_TIMEOUT)


def mac_for(ip: ipaddress.IPv4Address) -> str:
    """The machine's MAC address, from its IP address (as Docker does): a machine that starts again, with a new
    namespace, answers at the MAC its neighbours have cached, so nothing waits seconds for ARP to notice."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


class HostNetwork:
    """The machine subnet of one host (e.g. 10.213.3.0/24): `up()` once, then `attach`/`detach` per machine."""

    def __init__(self, host_id: str, subnet: str = "", private_net: str = "") -> None:
        """Without a subnet, it can only remove what an earlier run made (names come from the host id alone)."""
        self.host_id = host_id
        self.bound: dict[str, str] = {}  # bridge port -> the address of the machine behind it
        self.members: dict[str, list[str]] = {}  # org -> its machines' addresses, fleet-wide (the names feed)
        self._rules = ""  # the isolation ruleset last written
        self._rules_lock = threading.Lock()
        self.members_file: Path | None = None  # where the last members are kept (an agent restart starts from them)
        self.peer_gateways: list[str] = []  # other hosts' gateways, whose own traffic arrives over WireGuard
        self.bridge_ns = f"roost-net-{_short(host_id)}"
        self.uplink = f"rb{_short(host_id, 12)}"  # interface names hold 15 characters
        self.subnet: ipaddress.IPv4Network | None = None
        if subnet:
            try:
                self.subnet = ipaddress.IPv4Network(subnet)
            except ValueError as exc:
                raise NetworkError(f"machine subnet {subnet!r}: {exc}") from None
            if self.subnet.prefixlen > 29:
                raise NetworkError(f"machine subnet {subnet!r} is too small (at most /29)")
        self.private_net: ipaddress.IPv4Network | None = None
        if private_net:
            try:
                self.private_net = ipaddress.IPv4Network(private_net)
            except ValueError as exc:
                raise NetworkError(f"private network {private_net!r}: {exc}") from None
            if self.subnet is None or not self.subnet.subnet_of(self.private_net):
                raise NetworkError(f"the private network {private_net} must hold this host's machine subnet "
                                   f"({subnet or 'none given'})")

    def _subnet(self) -> ipaddress.IPv4Network:
        if self.subnet is None:
            raise NetworkError("this host has no machine subnet (--machine-net)")
        return self.subnet

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return next(self._subnet().hosts())

    # ---- the host's side ----

    def up(self) -> bool:
        """Make the bridge namespace and the uplink, if they are not there already (idempotent). True if the
        bridge was made now: machines' namespaces from before are no longer wired to it."""
        fresh = False
        if not (NETNS_DIR / self.bridge_ns).exists():
            _ip("netns", "add", self.bridge_ns)
            fresh = True
        ns = self.bridge_ns
        if fresh:
            self._rules = ""
        if _ip("-n", ns, "link", "show", "br0", check=False).returncode != 0:
            _ip("-n", ns, "-batch", "-", stdin="link add br0 type bridge\nlink set br0 up\nlink set lo up\n")
        if _ip("link", "show", self.uplink, check=False).returncode != 0:
            _ip("link", "add", self.uplink, "type", "veth", "peer", "name", UPLINK_PORT, "netns", ns)
            _ip("-n", ns, "link", "set", UPLINK_PORT, "master", "br0", "up")
            _ip("addr", "add", f"{self.gateway}/{self._subnet().prefixlen}", "dev", self.uplink)
            _ip("link", "set", self.uplink, "up")
        if self.private_net is not None:
            _nft(self._nat_rules())
        return fresh

    @property
    def nat_table(self) -> str:
        return f"roost_{_short(self.host_id)}"

    def _nat_rules(self) -> str:
        """With a private network, machines route only the private range: a connection to a machine from
        anywhere else (an edge on another host, a check) arrives from this host's gateway address, so that
        its answer goes back the way it came (source NAT, as a container host publishing a port does)."""
        table = f"ip {self.nat_table}"
        # Another host's own traffic (its edge's connections) comes over WireGuard from its gateway, an address
        # of the private range that is no machine's: it enters as this host's, like the rest from outside.
        peers = (f'    oifname "{self.uplink}" ip saddr {{ {", ".join(self.peer_gateways)} }} masquerade\n'
                 if self.peer_gateways else "")
        return (f"table {table}\ndelete table {table}\ntable {table} {{\n  chain postrouting {{\n"
                f"    type nat hook postrouting priority srcnat; policy accept;\n"
                f'    oifname "{self.uplink}" ip saddr != {self.private_net} masquerade\n{peers}  }}\n}}\n')

    def set_peer_gateways(self, gateways: list[str]) -> None:
        """The WireGuard mesh's other hosts changed: their gateways' traffic is taken in as this host's."""
        wanted = sorted(set(gateways), key=ipaddress.IPv4Address)
        if wanted != self.peer_gateways and self.private_net is not None:
            self.peer_gateways = wanted
            _nft(self._nat_rules())

    def restore(self, members_file: Path, wired: dict[str, str]) -> None:
        """After an agent restart: the machines still wired (machine id -> address) and the orgs' members as
        last known, so that the rules written next keep every running machine's traffic as it was."""
        self.members_file = members_file
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(members_file.read_text())
            if isinstance(loaded, dict):
                self.members = {str(k): [str(a) for a in v] for k, v in loaded.items() if isinstance(v, list)}
        self.bound = {isolation.port_name(mid): address for mid, address in wired.items()}

    def isolate(self, members: dict[str, list[str]] | None = None) -> bool:
        """Write the bridge's isolation rules for the machines wired now and the orgs' `members` (kept from the
        last call if None), if they changed. True if written."""
        with self._rules_lock:
            if members is not None and members != self.members:
                self.members = members
                if self.members_file is not None:
                    tmp = self.members_file.with_suffix(".tmp")
                    tmp.write_text(json.dumps(members))
                    os.replace(tmp, self.members_file)
            script = isolation.ruleset(str(self.private_net or self._subnet()), str(self.gateway), self.members,
                                       dict(self.bound), UPLINK_PORT)
            if script == self._rules:
                return False
            _in_bridge_ns(self.bridge_ns, ["nft", "-f", "-"], script)
            self._rules = script
            return True

    def down(self) -> None:
        """Remove the uplink and the bridge namespace (machines' namespaces go with `detach`)."""
        _ip("link", "del", self.uplink, check=False)
        _ip("netns", "del", self.bridge_ns, check=False)
        with contextlib.suppress(NetworkError):  # the source NAT for a private network, if this host had one
            _nft(f"table ip {self.nat_table}\ndelete table ip {self.nat_table}\n")

    # ---- a machine's side ----

    @staticmethod
    def machine_ns(machine_id: str) -> str:
        return f"roost-m-{machine_id}"

    def netns_path(self, machine_id: str) -> str:
        return str(NETNS_DIR / self.machine_ns(machine_id))

    def attach(self, machine_id: str, address: str) -> str:
        """A fresh network namespace for the machine with `address` on eth0; returns its path."""
        self.create(machine_id)
        self.configure(machine_id, address)
        return self.netns_path(machine_id)

    def create(self, machine_id: str) -> str:
        """An empty network namespace for the machine (its runtime may join it before `configure` is done)."""
        self.detach(machine_id)  # whatever an earlier run left
        _ip("netns", "add", self.machine_ns(machine_id))
        return self.netns_path(machine_id)

    def configure(self, machine_id: str, address: str) -> None:
        """Give the machine's namespace its eth0 on the bridge, with `address` and a MAC made from it."""
        subnet = self._subnet()
        try:
            ip = ipaddress.IPv4Address(address)
        except ValueError:
            raise NetworkError(f"invalid machine address {address!r}") from None
        if ip not in subnet or ip in (self.gateway, subnet.network_address, subnet.broadcast_address):
            raise NetworkError(f"address {address} is not a machine address of this host's subnet {subnet}")
        ns = self.machine_ns(machine_id)
        veth = isolation.port_name(machine_id)
        try:
            _ip("link", "add", veth, "netns", self.bridge_ns, "type", "veth", "peer", "name", "eth0",
                "address", mac_for(ip), "netns", ns)
            _ip("-n", self.bridge_ns, "link", "set", veth, "master", "br0", "up")
            routes = f"route add {self.private_net} via {self.gateway}\n" if self.private_net else ""
            _ip("-n", ns, "-batch", "-", stdin=f"addr add {ip}/{subnet.prefixlen} dev eth0\n"
                                              f"link set eth0 up\nlink set lo up\n{routes}")
            self.bound[isolation.port_name(machine_id)] = str(ip)
            self.isolate()  # before the machine's first packet: its port passes nothing until it is bound
        except NetworkError:
            self.detach(machine_id)
            raise

    def exists(self, machine_id: str) -> bool:
        return (NETNS_DIR / self.machine_ns(machine_id)).exists()

    def detach(self, machine_id: str) -> None:
        """Remove the machine's namespace (its veth pair goes with it)."""
        if (NETNS_DIR / self.machine_ns(machine_id)).exists():
            # The bridge's end first: deleting it removes the pair at once, where a deleted namespace takes its
            # veth with it only later (and a start right after would find the name still taken).
            _ip("-n", self.bridge_ns, "link", "del", isolation.port_name(machine_id), check=False)
            _ip("netns", "del", self.machine_ns(machine_id), check=False)
        if self.bound.pop(isolation.port_name(machine_id), None) is not None:
            with contextlib.suppress(NetworkError):
                self.isolate()

    def attached(self) -> list[str]:
        """Machine ids that have a namespace on this box (any host's)."""
        prefix = "roost-m-"
        return [p.name[len(prefix):] for p in NETNS_DIR.glob(prefix + "*")] if NETNS_DIR.exists() else []


ISOLATION_INTERVAL = 0.2  # seconds between looks at the names feed: a new machine's peers learn it this fast


async def keep_isolated(directory: Directory, network: HostNetwork, stop: asyncio.Event,
                        interval: float = ISOLATION_INTERVAL) -> None:
    """Keep the bridge's rules in step with the orgs' members as the names feed describes them. Until the feed
    has said anything, the members known before (restored from disk) stay in force."""
    seen = 0
    while not stop.is_set():
        revision = directory.revision
        if revision and revision != seen:
            members = isolation.org_members(directory)
            try:
                await asyncio.to_thread(network.isolate, members)
                seen = revision
            except NetworkError as exc:
                log.warning("could not update the machine network's isolation rules: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
