"""A host's end of the WireGuard mesh (`roost agent --wireguard-port`): its key pair, its interface, and the
peers and routes the control plane's mesh names (privnet/mesh.py decides them).

The interface is the kernel's (`ip link add ... type wireguard`) where the kernel has the module, else
userspace WireGuard (`wireguard-go`, Debian's package), detached from the agent so that the private network
outlives an agent restart, as the machines do; deleting the link ends it. Configured only with `wg` (Debian's
`wireguard-tools`): `wg syncconf` makes the peers exactly the mesh's, the private key going through a pipe,
never a command line."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from roost.agent.netns import NetworkError
from roost.commands import run_tool
from roost.pids import pid_alive
from roost.private_files import write_private
from roost.privnet import mesh

log = logging.getLogger("roost.agent.wireguard")

TIMEOUT = 10.0
USERSPACE_START = 5.0  # seconds wireguard-go has to make its interface


def available() -> str | None:
    """Why this host cannot join a WireGuard mesh (None when it can)."""
    if shutil.which("wg") is None:
        return "the WireGuard mesh needs wg (apt-get install wireguard-tools)"
    if _kernel_has_wireguard() or shutil.which("wireguard-go") is not None:
        return None
    return "this kernel has no wireguard module and wireguard-go is not installed (apt-get install wireguard-go)"


def _kernel_has_wireguard() -> bool:
    return Path("/sys/module/wireguard").exists()


def _run(argv: list[str], stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_tool(argv, NetworkError, stdin=stdin, check=check, timeout=TIMEOUT)


class WireGuard:
    def __init__(self, host_id: str, data_dir: Path, port: int, machine_net: str) -> None:
        self.name = mesh.interface_name(host_id)
        self.host_id = host_id
        self.key_file = data_dir / "wireguard.key"
        self.port = port
        self.subnet = str(ipaddress.IPv4Network(machine_net))
        self.gateway = str(next(ipaddress.IPv4Network(machine_net).hosts()))
        self.applied = ""  # the digest of the mesh applied last (reported with every heartbeat)
        self.routes: set[str] = set()
        self._lock = threading.Lock()

    def _ensure_key(self) -> None:
        """This host's private key: made once (0600) and kept across restarts, so peers keep knowing it."""
        if not self.key_file.exists():
            write_private(self.key_file, _run(["wg", "genkey"]).stdout.strip() + "\n")

    def public_key(self) -> str:
        self._ensure_key()
        return _run(["wg", "pubkey"], stdin=self.key_file.read_text()).stdout.strip()

    def up(self) -> None:
        """The interface, listening on the port, with no peers yet (idempotent: an agent restart keeps it)."""
        self._ensure_key()
        exists = _run(["ip", "link", "show", self.name], check=False).returncode == 0
        if not exists and _run(["ip", "link", "add", self.name, "type", "wireguard"], check=False).returncode != 0:
            self._start_userspace()
        _run(["wg", "set", self.name, "listen-port", str(self.port), "private-key", str(self.key_file)])
        _run(["ip", "link", "set", self.name, "up"])

    def _start_userspace(self) -> None:
        if shutil.which("wireguard-go") is None:
            raise NetworkError(available() or "wireguard-go is not installed")
        _stop_userspace(self.name)  # one left by an earlier run of this host, elsewhere: its socket is this name
        log_file = self.key_file.with_name("wireguard-go.log")
        with open(log_file, "ab") as out:
            # Its own session: the agent's stop (or crash) leaves the private network up; `down` removes it.
            subprocess.Popen(["wireguard-go", "-f", self.name], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                             start_new_session=True, env={**os.environ, "WG_HIDE_KEYS": "always"})
        deadline = time.monotonic() + USERSPACE_START
        while _run(["ip", "link", "show", self.name], check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise NetworkError(f"wireguard-go did not make {self.name} within {USERSPACE_START:.0f} s "
                                   f"(see {log_file})")
            time.sleep(0.05)

    def apply(self, reply: object) -> list[mesh.Peer] | None:
        """Make the peers and routes those of the control plane's `mesh` reply; the peers, if applied."""
        if not isinstance(reply, dict) or not isinstance(reply.get("digest"), str):
            return None
        peers = mesh.from_api(reply.get("peers"), self.host_id, self.subnet)
        with self._lock:
            text = mesh.config(self.key_file.read_text().strip(), self.port, peers)
            _run(["wg", "syncconf", self.name, "/dev/stdin"], stdin=text)
            wanted = {p.subnet for p in peers}
            for subnet in sorted(wanted):
                # What the host itself sends leaves from its gateway: the peer accepts only this host's subnet.
                _run(["ip", "route", "replace", subnet, "dev", self.name, "src", self.gateway])
            for subnet in sorted(self.routes - wanted):
                _run(["ip", "route", "del", subnet, "dev", self.name], check=False)
            self.routes = wanted
            self.applied = str(reply["digest"])
        log.info("WireGuard mesh: %d peers (%s)", len(peers), ", ".join(p.host_id for p in peers) or "none")
        return peers

    def down(self) -> None:
        remove(self.host_id)


def remove(host_id: str) -> None:
    """Remove a host's WireGuard interface (its routes go with it), by name: the kernel's link, or the userspace
    process serving it (which may be in a namespace already gone, where no link can be deleted)."""
    name = mesh.interface_name(host_id)
    _run(["ip", "link", "del", name], check=False)
    _stop_userspace(name)


def _stop_userspace(name: str) -> None:
    """End the wireguard-go serving interface `name` (found by its command line: the name is ours)."""
    wanted = ["wireguard-go", "-f", name]
    stopping: list[int] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
        except OSError:
            continue
        if argv and [Path(argv[0]).name, *argv[1:]] == wanted:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGTERM)
                stopping.append(int(proc.name))
    deadline = time.monotonic() + 3.0  # gone before a new one binds the same socket (it removes it on exit)
    while stopping and time.monotonic() < deadline:
        stopping = [pid for pid in stopping if pid_alive(pid)]
        time.sleep(0.02)
    for pid in stopping:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):  # what a killed one left behind
        Path(f"/var/run/wireguard/{name}.sock").unlink()



class MeshFollower:
    """Applies the mesh a heartbeat reply brings (only when it changed: the control plane compares digests), in
    a thread of its own and one at a time, so that `wg` and `ip` never hold up the beats; `report` (sent with
    every beat) says which mesh is applied, so a failed apply is sent again."""

    def __init__(self, link: WireGuard, on_peers: Callable[[list[mesh.Peer]], None]) -> None:
        self.link = link
        self.on_peers = on_peers
        self.report: dict[str, Any] = {}
        self._busy = threading.Lock()

    def follow(self, reply: dict[str, Any]) -> None:
        if "mesh" in reply and self._busy.acquire(blocking=False):
            threading.Thread(target=self._apply, args=(reply["mesh"],), name="roost-mesh", daemon=True).start()

    def _apply(self, changed: object) -> None:
        try:
            peers = self.link.apply(changed)
            if peers is not None:
                self.on_peers(peers)
                self.report["mesh"] = self.link.applied
        except NetworkError as exc:
            log.warning("could not apply the WireGuard mesh (the control plane will send it again): %s", exc)
        finally:
            self._busy.release()
