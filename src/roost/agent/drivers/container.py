"""The container driver: a machine is an OCI container run by `runc`, with its own PID, mount, UTS (hostname =
machine id), IPC, cgroup and network namespaces, the image read-only under a writable layer that starts empty
on every start (an overlay), guest cpus and memory as cgroup limits, and a pids limit.

`runc run --keep` stays in the foreground for each machine: it is the child we watch (its exit status is the
machine's), it forwards the signals we send it to the machine's init, and it keeps running across an agent
restart, like the process driver's workloads. SIGKILL, suspend and resume go straight to the machine's cgroup
(a frozen machine resumes in a millisecond, without a runtime call). When the machine ends, its container,
overlay mount and network namespace are removed by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal as signals
import subprocess
import time
from pathlib import Path
from typing import Any

from roost.agent import mounts, usage, wireguard
from roost.agent.cgroups import limit_refused, read_limit, write_and_wait, write_limit
from roost.agent.drivers.base import DriverError, ExecResult, ExitInfo, RunInfo, StartSpec, Usage
from roost.agent.drivers.commands import run_command
from roost.agent.drivers.pidwatch import PidWatcher, Watched, proc_start_time
from roost.agent.drivers.process import trim_log
from roost.agent.logrelay import machine_ends
from roost.agent.netns import HostNetwork, NetworkError
from roost.core import oci_spec
from roost.core.oci_spec import MachineRun, SpecError
from roost.pids import stat_fields

log = logging.getLogger("roost.agent.container")
CGROUP_ROOT = Path("/sys/fs/cgroup")
KILL_GRACE = 5.0
START_TIMEOUT = 30.0
RUNC_TIMEOUT = 15.0
MAX_USER_DB = 1 << 20  # /etc/passwd and /etc/group read from an image: bounded


GUEST_INIT = "/.roost/init"  # where the machine's init (tini) appears inside it
MAX_LINKS = 40  # symlinks followed when finding a command inside an image


def runc_available() -> bool:
    """True where the container driver can run: root, runc, a static init to put in each machine, and nft to keep
    orgs apart on the machines' network."""
    return os.geteuid() == 0 and all(shutil.which(tool) is not None for tool in ("runc", "tini-static", "nft"))


class ContainerDriver(PidWatcher):
    name = "container"
    isolated = True

    def __init__(self, root: Path, host_id: str, network: HostNetwork | None, runtime: str = "runc",
                 init: str = "tini-static", nameserver: str = "") -> None:
        super().__init__()
        self.nameserver = nameserver  # the host's `.internal` resolver, set as every machine's (empty: none)
        # The machine's PID 1 is a small init (as on Fly): it forwards signals to the app's process group and reaps
        # orphans; an app that is PID 1 itself would ignore SIGTERM and SIGINT it has no handler for.
        self.init = shutil.which(init) or ""
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_root = root / ".runc"  # runc's own state, one per agent so hosts on one box do not mix
        self.runtime = shutil.which(runtime) or runtime
        self.network = network
        self.cgroup_parent = f"roost-{host_id}"
        self.unified = (CGROUP_ROOT / "cgroup.controllers").exists()
        if network is not None and network.subnet is not None:
            if network.up():
                for marker in root.glob("*/network"):  # their namespaces lost their link with the old bridge
                    marker.unlink(missing_ok=True)
            wired = {m.parent.name: _read(m) for m in root.glob("*/network")}
            network.restore(root / ".isolation.json", {mid: a for mid, a in wired.items() if a})

    # ---- paths ----

    def machine_dir(self, machine_id: str) -> Path:
        return self.root / machine_id

    def rootfs(self, machine_id: str) -> Path:
        """The machine's writable layer: what it wrote since its last fresh start."""
        return self.machine_dir(machine_id) / "upper"

    def log_path(self, machine_id: str) -> Path:
        return self.machine_dir(machine_id) / "machine.log"

    def _cgroup(self, controller: str, machine_id: str) -> Path:
        if self.unified:
            return CGROUP_ROOT / self.cgroup_parent / machine_id
        return CGROUP_ROOT / controller / self.cgroup_parent / machine_id

    def _cgroup_dirs(self, machine_id: str) -> list[Path]:
        """The machine's cgroup in every hierarchy runc made one in (on cgroup v1: each controller, systemd's)."""
        if self.unified:
            return [self._cgroup("", machine_id)]
        pattern = f"*/{self.cgroup_parent}/{machine_id}" if machine_id else f"*/{self.cgroup_parent}"
        return [p for p in CGROUP_ROOT.glob(pattern) if p.is_dir()]

    # ---- interface ----

    async def start(self, spec: StartSpec) -> RunInfo:
        mid = spec.machine_id
        if self.inspect(mid):
            raise DriverError(f"machine {mid} is already running")
        if not spec.argv or not spec.argv[0]:
            raise DriverError("nothing to run: set config.init.cmd, or give the image a Cmd")
        if not self.init:
            raise DriverError("the container driver needs tini-static (Debian package tini) as its machines' init")
        mdir = self.machine_dir(mid)
        await asyncio.to_thread(self._clean_leftovers, mid)
        merged = mdir / "root"
        await asyncio.to_thread(_overlay, spec.image_dir, mdir, spec.fresh_rootfs)
        network: asyncio.Future[None] | None = None
        try:
            netns = ""
            if self.network is not None:
                if not spec.address or self.network.subnet is None:
                    raise DriverError(f"machine {mid} has no address on this host's machine subnet")
                netns = self.network.netns_path(mid)
                marker = mdir / "network"
                if not (self.network.exists(mid) and _read(marker) == spec.address):
                    # A machine keeps its namespace from its first start to its destruction (its address is its
                    # own). The first start makes it, and wires it while runc boots: runc only needs it to exist.
                    marker.unlink(missing_ok=True)
                    await asyncio.to_thread(self.network.create, mid)
                    network = asyncio.ensure_future(asyncio.to_thread(self.network.configure, mid, spec.address))
            argv = [find_command(merged, spec.argv[0], spec.env.get("PATH") or _image_path(spec.image_config)),
                    *spec.argv[1:]]
            mounts_ = [(self.init, GUEST_INIT, True)] + [(str(host), guest, ro) for host, guest, ro in spec.mounts]
            if self.nameserver:
                resolv = mdir / "resolv.conf"
                resolv.write_text(f"nameserver {self.nameserver}\n")
                mounts_.append((str(resolv), "/etc/resolv.conf", True))
            if spec.volume:
                spec.volume[0].mkdir(parents=True, exist_ok=True)
                mounts_.append((str(spec.volume[0]), spec.volume[1], False))
            run = MachineRun(
                machine_id=mid, rootfs=str(merged), memory_mb=spec.memory_mb, cpus=spec.cpus,
                # The app may ask its host's resolver for `.internal` names: it says so (the process driver has none);
                # and where its host is on its network (a service the operator runs on the host for its machines).
                env={**spec.env, **({"ROOST_NAMESERVER": self.nameserver} if self.nameserver else {}),
                     **({"ROOST_GATEWAY": str(self.network.gateway)} if netns and self.network is not None else {})},
                cpu_kind=spec.cpu_kind, exec_=(GUEST_INIT, "-g", "--", *argv), netns=netns, mounts=tuple(mounts_),
                cgroups_path=f"/{self.cgroup_parent}/{mid}", pids_limit=spec.pids_limit)
            config = oci_spec.runtime_spec(spec.image_config, run, *_user_db(spec.image_dir))
            (mdir / "config.json").write_text(json.dumps(config))
            pid, runc_pid = await self._run(mid, mdir)
            if network is not None:
                await network
                (mdir / "network").write_text(spec.address)
        except (DriverError, NetworkError, SpecError, OSError) as exc:
            if network is not None:
                with contextlib.suppress(Exception):
                    await network
            await asyncio.to_thread(self._clean_leftovers, mid, True)
            raise DriverError(str(exc)) from exc
        started = proc_start_time(runc_pid) or 0
        proc = self._watch(mid, runc_pid, child=True, oom_before=0)
        proc.extra["init_pid"] = pid
        return RunInfo(pid=runc_pid, proc_start=started, started_at=time.time(), extra={"init_pid": pid})

    async def _run(self, mid: str, mdir: Path) -> tuple[int, int]:
        """Spawn `runc run` in the foreground; returns (the machine's init pid, runc's pid) once it runs."""
        log_path = self.log_path(mid)
        trim_log(log_path)
        pid_file = mdir / "init.pid"
        pid_file.unlink(missing_ok=True)
        runc_log = mdir / "runc.log"
        runc_log.unlink(missing_ok=True)
        ends = machine_ends(mdir)  # the machine's stdout and stderr (runc passes its own through)
        try:
            runc_pid = os.posix_spawn(self.runtime, [
                "runc", "--root", str(self.state_root), "--log", str(runc_log), "--log-format", "json",
                "run", "--keep", "--bundle", str(mdir), "--pid-file", str(pid_file), mid,
            ], {"PATH": os.environ.get("PATH", oci_spec.DEFAULT_PATH)}, file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, ends["stdout"], 1),
                (os.POSIX_SPAWN_DUP2, ends["stderr"], 2),
            ], setsid=True)
        finally:
            for fd in ends.values():
                os.close(fd)
        self._relay(mid)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with contextlib.suppress(OSError, ValueError):
                pid = int(pid_file.read_text().strip())
                if _init_ready(pid):
                    return pid, runc_pid
            done, status = os.waitpid(runc_pid, os.WNOHANG)
            if done:
                raise DriverError(f"machine {mid} did not start: {_runc_error(runc_log, status)}")
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(runc_pid, signals.SIGKILL)
                os.waitpid(runc_pid, 0)
                raise DriverError(f"machine {mid} did not start within {START_TIMEOUT:.0f} s")
            await asyncio.sleep(0.001)  # runc writes it ~60 ms after its start: a coarser poll is felt

    def signal(self, machine_id: str, signal: int) -> None:
        proc = self._running(machine_id)
        self._signal(machine_id, proc, signal)

    def _signal(self, machine_id: str, proc: Watched, signal: int) -> None:
        if signal == signals.SIGKILL:
            self.kill_leftovers(machine_id)  # SIGKILL cannot be forwarded: it goes to every process of the machine
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, signal)  # runc forwards it to the machine's init

    async def stop(self, machine_id: str, signal: int, timeout: float) -> ExitInfo:
        proc = self._procs.get(machine_id)
        if proc is None or proc.exited.done():
            return proc.exited.result() if proc else ExitInfo(exit_code=None, exited_at=time.time())
        if proc.suspended:
            await self.resume(machine_id)
        self._signal(machine_id, proc, signal)
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(asyncio.shield(proc.exited), timeout)
        proc.killed_by_us = True
        self.kill_leftovers(machine_id)
        try:
            return await asyncio.wait_for(asyncio.shield(proc.exited), KILL_GRACE)
        except TimeoutError:
            raise DriverError(f"machine {machine_id} did not exit after SIGKILL") from None

    async def suspend(self, machine_id: str) -> bool:
        proc = self._running(machine_id)
        if not self._freeze(machine_id, True):
            return False
        proc.suspended = True
        return True

    async def resume(self, machine_id: str) -> None:
        proc = self._running(machine_id)
        self._freeze(machine_id, False)
        proc.suspended = False

    async def recover(self, machine_id: str, info: RunInfo, suspended: bool) -> bool:
        if info.proc_start == 0 or proc_start_time(info.pid) != info.proc_start:
            # runc is gone: whatever is left of the machine goes too, so nothing runs unwatched.
            self.kill_leftovers(machine_id)
            return False
        proc = self._watch(machine_id, info.pid, child=False, oom_before=0)
        proc.suspended = suspended
        self._relay(machine_id)
        return True

    async def destroy(self, machine_id: str) -> None:
        proc = self._procs.get(machine_id)
        if proc is not None and not proc.exited.done():
            proc.killed_by_us = True
            self.kill_leftovers(machine_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(proc.exited), KILL_GRACE)
        self._procs.pop(machine_id, None)
        self.kill_leftovers(machine_id)
        await asyncio.to_thread(self._clean_leftovers, machine_id, True)
        await asyncio.to_thread(shutil.rmtree, self.machine_dir(machine_id), True)

    async def exec(self, machine_id: str, argv: list[str], env: dict[str, str], stdin: bytes,
                   timeout: float) -> ExecResult:
        """`runc exec` in the machine: its namespaces, root, user and environment (env is the machine's already)."""
        proc = self._running(machine_id)
        if proc.suspended:
            raise DriverError(f"machine {machine_id} is suspended: start it before running commands in it")
        pid_file = self.machine_dir(machine_id) / f"exec-{secrets.token_hex(6)}.pid"
        try:
            return await run_command(
                [self.runtime, "--root", str(self.state_root), "exec", "--pid-file", str(pid_file), machine_id,
                 *argv], stdin=stdin, timeout=timeout, pid_file=pid_file,
                env={"PATH": os.environ.get("PATH", oci_spec.DEFAULT_PATH)})
        finally:
            pid_file.unlink(missing_ok=True)

    def processes(self, machine_id: str) -> list[int]:
        return self.pids(machine_id)

    def usage(self, machine_id: str) -> Usage:
        proc = self._procs.get(machine_id)
        if proc is None or proc.exited.done():
            return Usage()
        if self.unified:
            cpu, memory = usage.cgroup_v2(self._cgroup("", machine_id))
        else:
            cpu, memory = usage.cgroup_v1(self._cgroup("cpuacct", machine_id), self._cgroup("memory", machine_id))
        return Usage(cpu, memory)

    def _memory_files(self, machine_id: str) -> tuple[Path, Path | None]:
        if self.unified:
            return self._cgroup("", machine_id) / "memory.max", None
        mem = self._cgroup("memory", machine_id)
        return mem / "memory.limit_in_bytes", mem / "memory.memsw.limit_in_bytes"

    def memory_limit(self, machine_id: str) -> int | None:
        proc = self._procs.get(machine_id)
        if proc is None or proc.exited.done():
            return None
        return read_limit(self._memory_files(machine_id)[0])

    def set_memory_limit(self, machine_id: str, limit_bytes: int) -> None:
        self._running(machine_id)
        limit_file, swap_file = self._memory_files(machine_id)
        try:
            write_limit(limit_file, limit_bytes, swap_file)
        except OSError as exc:
            raise DriverError(limit_refused(exc)) from exc

    def console_command(self, machine_id: str, argv: list[str],
                        env: dict[str, str]) -> tuple[list[str], Path | None, dict[str, str]]:
        proc = self._running(machine_id)
        if proc.suspended:
            raise DriverError(f"machine {machine_id} is suspended: start it before opening a console in it")
        return ([self.runtime, "--root", str(self.state_root), "exec", "--tty", "--env", "TERM=xterm", machine_id,
                 *argv], None, {"PATH": os.environ.get("PATH", oci_spec.DEFAULT_PATH)})

    def kill_leftovers(self, machine_id: str) -> None:
        """SIGKILL every process in the machine's cgroup (then thaw it, so a frozen machine dies too)."""
        for pid in self.pids(machine_id):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signals.SIGKILL)
        self._freeze(machine_id, False)

    def fence_targets(self, machine_id: str) -> dict[str, list[Any]]:
        if self.unified:
            return {"procs": [str(self._cgroup("", machine_id) / "cgroup.procs")],
                    "thaw": [[str(self._cgroup("", machine_id) / "cgroup.freeze"), "0"]]}
        return {"procs": [str(self._cgroup("pids", machine_id) / "cgroup.procs")],
                "thaw": [[str(self._cgroup("freezer", machine_id) / "freezer.state"), "THAWED"]]}

    def pids(self, machine_id: str) -> list[int]:
        try:
            text = (self._cgroup("pids", machine_id) / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def close(self, teardown: bool = False) -> None:
        """Stop watching (agent exit: machines and the host's network stay). With `teardown` (nothing of this host
        runs any more: a fleet's `down`, a test), also remove every machine namespace and the host's network."""
        self.shutdown()
        if not teardown:
            return
        if self.network is not None:
            for mid in [p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]:
                with contextlib.suppress(NetworkError):
                    self.network.detach(mid)
            with contextlib.suppress(NetworkError):
                self.network.down()
            with contextlib.suppress(NetworkError):
                wireguard.remove(self.network.host_id)  # the host's end of the WireGuard mesh, if it joined one
        for path in self._cgroup_dirs(""):
            with contextlib.suppress(OSError):
                path.rmdir()

    # ---- internals ----

    def _finish(self, machine_id: str, proc: Watched, code: int | None, sig: int | None) -> None:
        if sig is None and code is not None and code > 128:
            sig = code - 128  # runc reports a machine killed by a signal as 128 + the signal
        oom = sig == signals.SIGKILL and not proc.killed_by_us and self._oom_kills(machine_id) > 0
        info = ExitInfo(exit_code=code, signal=sig, oom_killed=oom, exited_at=time.time())
        self._unrelay(machine_id)

        async def cleanup() -> None:
            self.kill_leftovers(machine_id)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._clean_leftovers, machine_id)
            if not proc.exited.done():
                proc.exited.set_result(info)

        asyncio.get_running_loop().create_task(cleanup(), name=f"container-exit-{machine_id}")

    def _oom_kills(self, machine_id: str) -> int:
        path = self._cgroup("memory", machine_id) / ("memory.events" if self.unified else "memory.oom_control")
        with contextlib.suppress(OSError, ValueError):
            for line in path.read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
        return 0

    def _freeze(self, machine_id: str, frozen: bool, timeout: float = 2.0) -> bool:
        if self.unified:
            state, want = self._cgroup("", machine_id) / "cgroup.freeze", "1" if frozen else "0"
        else:
            state, want = self._cgroup("freezer", machine_id) / "freezer.state", "FROZEN" if frozen else "THAWED"
        return write_and_wait(state, want, timeout, 0.0005)

    def _clean_leftovers(self, machine_id: str, network: bool = False) -> None:
        """Remove what a run of the machine leaves: its container record, overlay mount and cgroups (and, when it
        is destroyed, its network namespace)."""
        if (self.state_root / machine_id).exists():
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run([self.runtime, "--root", str(self.state_root), "delete", "--force", machine_id],
                               capture_output=True, timeout=RUNC_TIMEOUT, check=False)
        merged = self.machine_dir(machine_id) / "root"
        if os.path.ismount(merged):
            with contextlib.suppress(OSError):
                mounts.unmount(merged)
        if network and self.network is not None:
            with contextlib.suppress(NetworkError):
                self.network.detach(machine_id)
        for path in self._cgroup_dirs(machine_id):
            with contextlib.suppress(OSError):
                path.rmdir()


def _overlay(image_dir: Path, mdir: Path, fresh: bool) -> None:
    """Mount the image (read-only, shared by every machine of it) under the machine's own writable layer."""
    upper, work, merged = mdir / "upper", mdir / "work", mdir / "root"
    if fresh:
        for d in (upper, work):
            shutil.rmtree(d, ignore_errors=True)
    for d in (upper, work, merged):
        d.mkdir(parents=True, exist_ok=True)
    try:
        mounts.overlay(merged, lower=image_dir, upper=upper, work=work)
    except OSError as exc:
        raise DriverError(f"mounting the machine's root: {exc}") from exc


def _init_ready(pid: int) -> bool:
    """Will a signal sent now reach the app? Only once the machine's init has started it (the init sets up its
    signals first: until then the kernel drops a signal to a PID namespace's init with no handler for it), and
    once the app leads its own process group (the init forwards to the group: a signal sent between the fork
    and the child's setpgid finds no group and is lost, a stop that then waits for its timeout)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return True  # gone already: its exit will be noticed
    if not children:
        return False
    fields = stat_fields(int(children[0]))
    if fields is None:
        return True  # the app ended already: the init's exit will be noticed
    return len(fields) > 2 and fields[2] == children[0]  # its process group is its own


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _image_path(image_config: dict[str, Any]) -> str:
    for item in image_config.get("Env") or []:
        if isinstance(item, str) and item.startswith("PATH="):
            return item[5:]
    return oci_spec.DEFAULT_PATH


def find_command(root: Path, cmd: str, path: str) -> str:
    """The command's path inside the machine (as its init will find it), or a DriverError that says it is not
    there. Symlinks are followed as the machine sees them: inside `root`, never out of it."""
    candidates = [cmd] if "/" in cmd else [f"{d.rstrip('/')}/{cmd}" for d in path.split(":") if d.startswith("/")]
    for guest in candidates:
        target = _resolve_inside(root, guest if guest.startswith("/") else "/" + guest)
        if target is not None and target.is_file():
            if not os.access(target, os.X_OK):
                raise DriverError(f"command {cmd!r} is not executable in the image (chmod +x it)")
            return guest
    where = "" if "/" in cmd else f" (looked in PATH={path})"
    raise DriverError(f"command {cmd!r} not found in the image{where}")


def _resolve_inside(root: Path, guest: str) -> Path | None:
    parts = [p for p in guest.split("/") if p and p != "."]
    current = root
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = current.parent if current != root else root
            continue
        nxt = current / part
        if nxt.is_symlink():
            links += 1
            if links > MAX_LINKS:
                return None
            target = os.readlink(nxt)
            parts = [p for p in target.split("/") if p and p != "."] + parts
            current = root if target.startswith("/") else current
            continue
        if not nxt.exists():
            return None
        current = nxt
    return current


def _user_db(image_dir: Path) -> tuple[str, str]:
    """The image's /etc/passwd and /etc/group, if they are plain files inside it (never followed out of it)."""
    out = []
    for name in ("passwd", "group"):
        text = ""
        with contextlib.suppress(OSError, UnicodeDecodeError):
            etc = image_dir / "etc"
            if not etc.is_symlink() and etc.is_dir():
                fd = os.open(etc / name, os.O_RDONLY | os.O_NOFOLLOW)
                with os.fdopen(fd, "rb") as fh:
                    text = fh.read(MAX_USER_DB).decode()
        out.append(text)
    return out[0], out[1]


def _runc_error(runc_log: Path, status: int) -> str:
    """runc's last error message (from its JSON log), else its exit status."""
    message = ""
    with contextlib.suppress(OSError):
        for line in runc_log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                entry: dict[str, Any] = json.loads(line)
                if entry.get("level") in ("error", "fatal"):
                    message = str(entry.get("msg", ""))
    if message:
        return message
    return f"runc exited with status {os.waitstatus_to_exitcode(status)}"


def sweep(machines_root: Path, host_id: str) -> int:
    """Remove everything a host's container machines left, by name, without its agent (a fleet's `down`):
    their processes (SIGKILL through their cgroups), container records, overlay mounts, network namespaces,
    cgroups, and the host's machine network. Returns how many machines still had processes."""
    driver = ContainerDriver(machines_root, host_id, HostNetwork(host_id))
    names = {p.name for p in machines_root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    pattern = f"{driver.cgroup_parent}/*" if driver.unified else f"*/{driver.cgroup_parent}/*"
    names |= {p.name for p in CGROUP_ROOT.glob(pattern) if p.is_dir()}
    killed = 0
    for mid in sorted(names):
        killed += bool(driver.pids(mid))
        driver.kill_leftovers(mid)
        driver._clean_leftovers(mid, network=True)
    driver.close(teardown=True)
    return killed


def host_pids(host_id: str, machine_id: str = "*") -> set[int]:
    """Every process in a host's container machines (or one machine's), from their cgroups."""
    unified = (CGROUP_ROOT / "cgroup.controllers").exists()
    base = CGROUP_ROOT / f"roost-{host_id}" if unified else CGROUP_ROOT / "pids" / f"roost-{host_id}"
    pids: set[int] = set()
    for procs in base.glob(f"{machine_id}/cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(p) for p in procs.read_text().split())
    return pids
