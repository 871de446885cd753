"""What the dev fleet signals and kills (slow-machine, kill-host, `down`): a machine record's pid only while it
is still that machine's process. A pid the machine no longer holds may be anyone's now, e.g. the next fleet's
server (a SIGSTOP sent there froze it, and the next test's console hung)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from roost.agent.drivers.pidwatch import proc_start_time
from roost.dev.fleet import machine_pids, machine_processes


def test_a_recorded_pid_counts_only_while_it_is_the_same_process(tmp_path: Path) -> None:
    host = tmp_path / "agent-x"
    (host / "records").mkdir(parents=True)
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        start = proc_start_time(bystander.pid)
        assert start is not None
        record = host / "records" / "m1.json"
        record.write_text(json.dumps({"run": {"pid": bystander.pid, "proc_start": start, "started_at": 0}}))
        assert bystander.pid in machine_processes(host, "m1") and bystander.pid in machine_pids(host)
        # The same number, another process: what a record left by an exited machine says once the pid is reused.
        record.write_text(json.dumps({"run": {"pid": bystander.pid, "proc_start": start - 1, "started_at": 0}}))
        assert bystander.pid not in machine_processes(host, "m1")
        assert bystander.pid not in machine_pids(host)
        record.write_text(json.dumps({"run": {"pid": bystander.pid}}))  # no start time: not trusted either
        assert bystander.pid not in machine_pids(host)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
