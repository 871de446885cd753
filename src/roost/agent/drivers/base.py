"""The driver interface: start, stop(signal, timeout), suspend/resume, signal, inspect, recover, destroy.

A driver knows how to run one machine's workload on this host and nothing else: no lifecycle rules,
no reporting, no restart policy (the agent's supervisor owns those). Every driver passes the same
conformance suite (tests/conformance).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


class DriverError(Exception):
    """The driver could not do what was asked; the message says why in user terms."""


@dataclass(frozen=True)
class StartSpec:
    machine_id: str
    argv: list[str]  # what to run; argv[0] resolved against the image and PATH
    env: dict[str, str]
    image_dir: Path  # the unpacked image; copied afresh unless `fresh_rootfs` is False
    memory_mb: int
    fresh_rootfs: bool = True
    volume: tuple[Path, str] | None = None  # (host directory, guest path)
    # What only an isolating driver uses (the process driver runs on the host's own network and files):
    image_config: dict[str, Any] = field(default_factory=dict)  # the OCI image's config (WorkingDir, User, Env)
    cpus: float = 1.0
    cpu_kind: str = "shared"
    address: str = ""  # the machine's own address on this host's machine subnet
    mounts: tuple[tuple[Path, str, bool], ...] = ()  # (host file, guest path, read-only)
    pids_limit: int = 4096  # processes and threads the machine may have at once


@dataclass
class RunInfo:
    """What the agent records to find the workload again after its own restart."""

    pid: int
    proc_start: int  # /proc/PID/stat start time: tells our process from a reused pid
    started_at: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExitInfo:
    exit_code: int | None  # None when unknown (the process exited while the agent was not watching)
    signal: int | None = None
    oom_killed: bool = False
    exited_at: float = 0.0


class Driver(Protocol):
    name: str
    isolated: bool  # machines get their own root, processes and network (and `StartSpec.address` is used)

    async def start(self, spec: StartSpec) -> RunInfo:
        """Run the workload; returns once it is running. Raises DriverError if it cannot start."""

    def exited(self, machine_id: str) -> asyncio.Future[ExitInfo]:
        """A future resolved when the running workload ends (for any reason)."""

    async def stop(self, machine_id: str, signal: int, timeout: float) -> ExitInfo:
        """Send `signal`, wait up to `timeout` seconds, then kill. Returns how it ended."""

    async def suspend(self, machine_id: str) -> bool:
        """Freeze the workload, memory and files intact; False if this host cannot."""

    async def resume(self, machine_id: str) -> None: ...

    def signal(self, machine_id: str, signal: int) -> None: ...

    def inspect(self, machine_id: str) -> bool:
        """True if the workload is running (or frozen)."""

    async def recover(self, machine_id: str, info: RunInfo, suspended: bool) -> bool:
        """Re-adopt a workload started before the agent restarted; False if it is gone."""

    async def destroy(self, machine_id: str) -> None:
        """Kill anything left and remove the machine's files."""


# Optional capabilities: a driver has them or not, and the supervisor asks with isinstance, not getattr.


@dataclass(frozen=True)
class Usage:
    """What a running machine has used: CPU seconds since it started, memory now (None where unknown)."""
    cpu_seconds: float | None = None
    memory_bytes: int | None = None


@runtime_checkable
class MeasuresUsage(Protocol):
    def usage(self, machine_id: str) -> Usage:
        """The machine's usage from its cgroup (or its processes); Usage() if it is not running."""


@runtime_checkable
class LimitsMemory(Protocol):
    """A running machine's memory limit, read and changed live (its cgroup's), for Fly's `/memory`."""

    def memory_limit(self, machine_id: str) -> int | None:
        """The limit in bytes now; None when the machine is not running or has no memory cgroup."""

    def set_memory_limit(self, machine_id: str, limit_bytes: int) -> None:
        """Change the limit; DriverError when the host cannot (no cgroup) or the kernel refuses."""


@runtime_checkable
class KeepsLogs(Protocol):
    def log_path(self, machine_id: str) -> Path:
        """Where the machine's output is written (one file, appended)."""


@runtime_checkable
class FenceTargets(Protocol):
    def fence_targets(self, machine_id: str) -> dict[str, list[Any]]:
        """What the host's fence keeper kills to fence the machine without this driver's help: `procs`, the
        cgroup files listing its processes, and `thaw`, (file, value) pairs that thaw it first."""


@runtime_checkable
class KillsLeftovers(Protocol):
    def kill_leftovers(self, machine_id: str) -> None:
        """Kill every process still in the machine's cgroup (children that left its process group)."""


@dataclass
class ExecResult:
    stdout: bytes
    stderr: bytes
    exit_code: int
    exit_signal: int | None = None


@runtime_checkable
class Executes(Protocol):
    async def exec(self, machine_id: str, argv: list[str], env: dict[str, str], stdin: bytes,
                   timeout: float) -> ExecResult:
        """Run a command in the running machine (as Fly's exec: its output and exit code)."""

    def processes(self, machine_id: str) -> list[int]:
        """The host pids of the machine's processes."""

    def console_command(self, machine_id: str, argv: list[str],
                        env: dict[str, str]) -> tuple[list[str], Path | None, dict[str, str]]:
        """How to run argv in the machine on a terminal: (host command, its directory, its environment)."""
