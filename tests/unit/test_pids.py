"""pid_alive: a live process, a zombie, a finished process, and numbers that are not a process."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from roost.pids import pid_alive


def test_a_running_process_is_alive_and_a_zombie_is_not():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert pid_alive(child.pid)
        child.kill()
        deadline = time.monotonic() + 5
        while pid_alive(child.pid) and time.monotonic() < deadline:  # dead but not reaped: a zombie
            time.sleep(0.01)
        assert os.path.exists(f"/proc/{child.pid}")  # still there as a zombie, yet not alive
        assert not pid_alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not pid_alive(child.pid)


def test_no_pid_is_never_alive():
    # kill(0, 0) would ask about our own process group and kill(-1, 0) about every process we may signal
    assert not pid_alive(0)
    assert not pid_alive(-1)
    assert pid_alive(os.getpid())
