"""`roost scale vm|memory`: a machine's new guest from a named size and/or memory, by Fly's rules (pure).

Fly's sizes are `shared-cpu-Nx` and `performance-Nx`; memory comes in steps of 256 MB, from 256 MB to 2 GB
per shared CPU and from 2 GB to 8 GB per performance CPU.
"""

from __future__ import annotations

from typing import Any

from roost.core.errors import bad_request
from roost.core.machine_config import GUEST_PRESETS

MEMORY_STEP_MB = 256
PER_CPU_MB = {"shared": (256, 2048), "performance": (2048, 8192)}


def size_name(guest: dict[str, Any]) -> str:
    """The named size of a guest (its cpu kind and count), e.g. `shared-cpu-2x`."""
    kind, cpus = guest.get("cpu_kind", "shared"), int(guest.get("cpus", 1))
    return f"shared-cpu-{cpus}x" if kind == "shared" else f"performance-{cpus}x"


def memory_range(cpu_kind: str, cpus: int) -> tuple[int, int]:
    low, high = PER_CPU_MB.get(cpu_kind, PER_CPU_MB["shared"])
    return low * cpus, high * cpus


def new_guest(current: dict[str, Any], size: str | None = None, memory_mb: int | None = None) -> dict[str, Any]:
    """The guest after `scale vm SIZE [--vm-memory MB]` or `scale memory MB`: a size sets cpu kind, cpus and
    that size's memory unless memory is given too; memory alone keeps the cpus."""
    guest = dict(current)
    if size is not None:
        if size not in GUEST_PRESETS:
            raise bad_request(f"unknown size {size!r}: one of {', '.join(GUEST_PRESETS)} "
                              "('roost platform vm-sizes' lists them)")
        kind, cpus, memory = GUEST_PRESETS[size]
        guest.update(cpu_kind=kind, cpus=cpus, memory_mb=memory)
    if memory_mb is not None:
        low, high = memory_range(str(guest.get("cpu_kind", "shared")), int(guest.get("cpus", 1)))
        if memory_mb % MEMORY_STEP_MB:
            raise bad_request(f"memory {memory_mb} MB: must be a multiple of {MEMORY_STEP_MB} MB")
        if not low <= memory_mb <= high:
            raise bad_request(f"memory {memory_mb} MB: a {size_name(guest)} machine takes {low} to {high} MB; "
                              "pick a bigger size with 'roost scale vm' for more")
        guest["memory_mb"] = memory_mb
    return guest
