"""kill-region returns only once the region's edge has exited: until then its listening socket still takes
connections and resets them, and a drill excuses failures as "died with the edge" only until kill-region
returns (a 10-minute chaos run counted one such reset, 34 ms after the kill began, as a failed request)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from roost.dev import faults
from roost.pids import pid_alive

# An edge slow to die, as a real one is: a big heap takes the kernel a while to free after SIGKILL.
HEAVY = "import sys, time; x = bytearray(1500 * 1024 * 1024); sys.stdout.write('ready\\n'); sys.stdout.flush(); " \
        "time.sleep(60)"


def test_kill_region_returns_once_the_edge_is_gone(tmp_path: Path) -> None:
    edge = subprocess.Popen([sys.executable, "-c", HEAVY], stdout=subprocess.PIPE)
    agent = subprocess.Popen(["sleep", "60"])
    try:
        assert edge.stdout is not None and edge.stdout.readline() == b"ready\n"
        host_dir = tmp_path / "ams-1"
        host_dir.mkdir()
        (tmp_path / "fleet.json").write_text(json.dumps({
            "hosts": [{"id": "ams-1", "region": "ams", "pid": agent.pid, "data_dir": str(host_dir)}],
            "proxies": [{"region": "ams", "pid": edge.pid}]}))
        faults.kill_region(tmp_path, "ams")
        assert not pid_alive(edge.pid), "the edge still runs (and takes connections) after kill-region returned"
    finally:
        for proc in (edge, agent):
            proc.kill()
            proc.wait(5)
