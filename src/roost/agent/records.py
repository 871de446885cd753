"""The agent's local record of its machines: one JSON file per machine, written atomically and fsync'd,
so an agent that is SIGKILLed and restarted finds its running machines again."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from roost.agent.drivers.base import RunInfo
from roost.core.agent_spec import AgentSpec
from roost.core.lifecycle import State


@dataclass
class MachineRecord:
    id: str
    spec: AgentSpec  # what the server sent
    state: State = State.CREATED  # started | stopped | suspended | failed | created (the agent never sees the rest)
    run: dict[str, Any] | None = None  # RunInfo as a dict, while a process exists
    restart_times: list[float] = field(default_factory=list)
    restart_count: int = 0
    last_exit: dict[str, Any] | None = None
    updated_at: float = 0.0
    # Down because of its host, waiting for the control plane's verdict (a standby may hold its work):
    # "host-lost" (found dead after a power cut) or "fenced" (killed when the host was cut off).
    awaiting: str = ""
    keep_rootfs: bool = False  # a suspended machine whose memory was lost: its next start boots from its files

    @property
    def instance_id(self) -> str:
        return self.spec.instance_id

    def run_info(self) -> RunInfo | None:
        return RunInfo(**self.run) if self.run else None


class RecordStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, machine_id: str) -> Path:
        return self.root / f"{machine_id}.json"

    def save(self, record: MachineRecord) -> None:
        path = self._path(record.id)
        tmp = path.with_suffix(".json.tmp")
        # Field by field, not asdict: that would deep-copy the spec only to replace it with its JSON form.
        fields_ = {f.name: getattr(record, f.name) for f in fields(record)}
        data = json.dumps({**fields_, "spec": record.spec.to_json()}, separators=(",", ":")).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def load_all(self) -> list[MachineRecord]:
        records = []
        for path in sorted(self.root.glob("*.json")):
            try:
                record = MachineRecord(**json.loads(path.read_text()))
                record.spec = AgentSpec.from_json(record.spec)
                record.state = State(record.state)
                records.append(record)
            except (ValueError, TypeError, OSError):
                continue
        return records

    def delete(self, machine_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(machine_id).unlink()
