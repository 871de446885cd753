"""Each machine's network of its own (container driver): a network namespace with one address on this host's
machine subnet, so the app listens on `0.0.0.0:internal_port` itself and two machines can both use 8080.

The machines of a host hang off a bridge that lives in a namespace of its own (`roost-net-<host>`): it has no
default route and forwards nothing, so a machine reaches its neighbours on the bridge and the host's uplink
address, and nothing beyond. The host reaches the subnet through one veth (`rb…` in the host's namespace,
holding the subnet's first address), which is how the edge and the checks reach `private_ip:internal_port`.
Machines have no default route; egress (NAT) is an operator's choice, off by default.

Everything is named after what it belongs to (host id, machine id), so it is found and removed by name.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import subprocess
from pathlib import Path

log = logging.getLogger("roost.agent.netns")
NETNS_DIR = Path("/var/run/netns")
IP_TIMEOUT = 10.0


class NetworkError(Exception):
    pass


def _short(text: str, length: int = 10) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _ip(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT, input=stdin,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetworkError(f"ip {' '.join(args)}: {exc}") from exc
    if check and done.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done


def mac_for(ip: ipaddress.IPv4Address) -> str:
    """The machine's MAC address, from its IP address (as Docker does): a machine that starts again, with a new
    namespace, answers at the MAC its neighbours have cached, so nothing waits seconds for ARP to notice."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


class HostNetwork:
    """The machine subnet of one host (e.g. 10.213.3.0/24): `up()` once, then `attach`/`detach` per machine."""

    def __init__(self, host_id: str, subnet: str = "") -> None:
        """Without a subnet, it can only remove what an earlier run made (names come from the host id alone)."""
        self.host_id = host_id
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
        if _ip("-n", ns, "link", "show", "br0", check=False).returncode != 0:
            _ip("-n", ns, "-batch", "-", stdin="link add br0 type bridge\nlink set br0 up\nlink set lo up\n")
        if _ip("link", "show", self.uplink, check=False).returncode != 0:
            _ip("link", "add", self.uplink, "type", "veth", "peer", "name", "up0", "netns", ns)
            _ip("-n", ns, "link", "set", "up0", "master", "br0", "up")
            _ip("addr", "add", f"{self.gateway}/{self._subnet().prefixlen}", "dev", self.uplink)
            _ip("link", "set", self.uplink, "up")
        return fresh

    def down(self) -> None:
        """Remove the uplink and the bridge namespace (machines' namespaces go with `detach`)."""
        _ip("link", "del", self.uplink, check=False)
        _ip("netns", "del", self.bridge_ns, check=False)

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
        veth = self._veth(machine_id)
        try:
            _ip("link", "add", veth, "netns", self.bridge_ns, "type", "veth", "peer", "name", "eth0",
                "address", mac_for(ip), "netns", ns)
            _ip("-n", self.bridge_ns, "link", "set", veth, "master", "br0", "up")
            _ip("-n", ns, "-batch", "-", stdin=f"addr add {ip}/{subnet.prefixlen} dev eth0\n"
                                              "link set eth0 up\nlink set lo up\n")
        except NetworkError:
            self.detach(machine_id)
            raise

    def exists(self, machine_id: str) -> bool:
        return (NETNS_DIR / self.machine_ns(machine_id)).exists()

    @staticmethod
    def _veth(machine_id: str) -> str:
        return f"v{machine_id}"[:15]

    def detach(self, machine_id: str) -> None:
        """Remove the machine's namespace (its veth pair goes with it)."""
        if (NETNS_DIR / self.machine_ns(machine_id)).exists():
            # The bridge's end first: deleting it removes the pair at once, where a deleted namespace takes its
            # veth with it only later (and a start right after would find the name still taken).
            _ip("-n", self.bridge_ns, "link", "del", self._veth(machine_id), check=False)
            _ip("netns", "del", self.machine_ns(machine_id), check=False)

    def attached(self) -> list[str]:
        """Machine ids that have a namespace on this box (any host's)."""
        prefix = "roost-m-"
        return [p.name[len(prefix):] for p in NETNS_DIR.glob(prefix + "*")] if NETNS_DIR.exists() else []
