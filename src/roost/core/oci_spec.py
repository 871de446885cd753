"""The OCI runtime spec (runc's config.json) of one machine start: the image's config (Entrypoint, Cmd, Env,
WorkingDir, User) overridden by the machine's (init.exec/entrypoint/cmd, env, guest size), in namespaces of
its own (pid, mount, uts, ipc, cgroup, and the network namespace the agent made for it), with Docker's
default capabilities, masked paths and device list. Pure: the agent's container driver writes what this
returns (issue 16)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CPU_PERIOD_US = 100_000
DEFAULT_PIDS_LIMIT = 4096
# Docker's default capability set: root in a machine is root over its own files, not over the host.
CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
# (type, major, minor): null, zero, full, random, urandom, tty, console, ptmx and the pts devices.
_DEVICES = [("c", 1, 3), ("c", 1, 5), ("c", 1, 7), ("c", 1, 8), ("c", 1, 9), ("c", 5, 0), ("c", 5, 1),
            ("c", 5, 2), ("c", 136, -1)]


class SpecError(ValueError):
    """The machine cannot be run as configured; the message says what to change."""


@dataclass(frozen=True)
class MachineRun:
    """What the container driver knows of one start, beside the image."""

    machine_id: str
    rootfs: str  # the machine's root: the image under a writable layer
    env: dict[str, str]
    memory_mb: int
    cpus: float = 1.0
    cpu_kind: str = "shared"
    exec_: tuple[str, ...] = ()  # init.exec: replaces entrypoint and cmd
    entrypoint: tuple[str, ...] = ()  # init.entrypoint
    cmd: tuple[str, ...] = ()  # init.cmd
    user: str = ""  # overrides the image's User
    netns: str = ""  # path of the network namespace to join ("" = a new, empty one)
    cgroups_path: str = ""
    mounts: tuple[tuple[str, str, bool], ...] = ()  # (host path, guest path, read-only)
    pids_limit: int = DEFAULT_PIDS_LIMIT


def command(image: dict[str, Any], exec_: list[str] | tuple[str, ...] = (),
            entrypoint: list[str] | tuple[str, ...] = (), cmd: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Fly's rule: init.exec wins; else init.entrypoint (or the image's Entrypoint) + init.cmd (or its Cmd)."""
    if exec_:
        return [str(a) for a in exec_]
    entry = [str(a) for a in entrypoint] or _strings(image.get("Entrypoint"), "Entrypoint")
    return entry + ([str(a) for a in cmd] or _strings(image.get("Cmd"), "Cmd"))


def argv(image: dict[str, Any], run: MachineRun) -> list[str]:
    out = command(image, run.exec_, run.entrypoint, run.cmd)
    if not out:
        raise SpecError("nothing to run: the image has no Entrypoint or Cmd; set config.init.cmd")
    return out


def environment(image: dict[str, Any], run: MachineRun) -> list[str]:
    env: dict[str, str] = {}
    for item in _strings(image.get("Env"), "Env"):
        key, sep, value = item.partition("=")
        if sep and key:
            env[key] = value
    env.update(run.env)
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("HOSTNAME", run.machine_id)
    return [f"{k}={v}" for k, v in env.items()]


def user_ids(user: str, passwd: str = "", group: str = "") -> tuple[int, int]:
    """`uid`, `uid:gid`, `name` or `name:group`, names looked up in the image's /etc/passwd and /etc/group."""
    if not user:
        return 0, 0
    name, _, grp = user.partition(":")
    uid: int | None = int(name) if name.isdigit() else None
    gid: int | None = None
    if uid is None or not grp:
        for line in passwd.splitlines():
            fields = line.split(":")
            if len(fields) >= 4 and (fields[0] == name or (uid is not None and fields[2] == name)):
                if uid is None:
                    uid = _int(fields[2])
                gid = _int(fields[3])
                break
    if uid is None:
        raise SpecError(f"user {name!r} is not in the image's /etc/passwd; use a numeric uid")
    if grp:
        gid = int(grp) if grp.isdigit() else None
        if gid is None:
            for line in group.splitlines():
                fields = line.split(":")
                if len(fields) >= 3 and fields[0] == grp:
                    gid = _int(fields[2])
                    break
        if gid is None:
            raise SpecError(f"group {grp!r} is not in the image's /etc/group; use a numeric gid")
    return uid, gid if gid is not None else 0  # Docker's rule: a uid not in /etc/passwd runs with gid 0


def runtime_spec(image: dict[str, Any], run: MachineRun, passwd: str = "", group: str = "") -> dict[str, Any]:
    """The config.json runc runs. `image` is the `config` object of the OCI image config ({} if none)."""
    uid, gid = user_ids(run.user or str(image.get("User") or ""), passwd, group)
    cwd = str(image.get("WorkingDir") or "/")
    if not cwd.startswith("/"):
        raise SpecError(f"the image's WorkingDir {cwd!r} is not an absolute path")
    namespaces: list[dict[str, str]] = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup")]
    namespaces.append({"type": "network", "path": run.netns} if run.netns else {"type": "network"})
    memory = run.memory_mb * 1024 * 1024
    quota = max(1000, int(run.cpus * CPU_PERIOD_US))
    shares = max(2, int(run.cpus * (1024 if run.cpu_kind == "performance" else 64)))
    spec: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid},
            "args": argv(image, run),
            "env": environment(image, run),
            "cwd": cwd,
            "capabilities": {k: list(CAPABILITIES) for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": False,
        },
        "root": {"path": run.rootfs, "readonly": False},
        "hostname": run.machine_id,
        "mounts": _mounts(run),
        "linux": {
            "namespaces": namespaces,
            "resources": {
                "devices": [{"allow": False, "access": "rwm"}] + [
                    {"allow": True, "type": t, "major": ma, **({"minor": mi} if mi >= 0 else {}), "access": "rwm"}
                    for t, ma, mi in _DEVICES],
                "memory": {"limit": memory, "swap": memory},
                "cpu": {"quota": quota, "period": CPU_PERIOD_US, "shares": shares},
                "pids": {"limit": run.pids_limit},
            },
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }
    if run.cgroups_path:
        spec["linux"]["cgroupsPath"] = run.cgroups_path
    return spec


def _mounts(run: MachineRun) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]
    for source, destination, read_only in run.mounts:
        if not destination.startswith("/") or "/../" in destination + "/":
            raise SpecError(f"mount destination {destination!r} must be an absolute path without '..'")
        mounts.append({"destination": destination, "type": "bind", "source": source,
                       "options": ["rbind", "nosuid", "nodev", "ro" if read_only else "rw"]})
    return mounts


def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(f"the image's {where} is not a list of strings")
    return list(value)


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None
