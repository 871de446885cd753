"""When the container driver may send a machine its first signal (a CI run lost a SIGTERM sent in the gap
between the init's fork of the app and the app's setpgid: the stop waited out its 5 s timeout). Real processes:
an "init" that forks a child which makes its own process group only after a moment."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from roost.agent.drivers.container import _init_ready

INIT = """
import os, sys, time
child = os.fork()
if child == 0:
    time.sleep(0.4)  # forked, not yet its own group: the init's group signal would find no group
    os.setpgid(0, 0)
    time.sleep(30)
    os._exit(0)
print("forked", flush=True)
os.waitpid(child, 0)
"""


def test_the_app_must_lead_its_process_group_before_a_signal_is_sent():
    init = subprocess.Popen([sys.executable, "-c", INIT], stdout=subprocess.PIPE, text=True)
    try:
        assert init.stdout is not None and init.stdout.readline().strip() == "forked"
        assert not _init_ready(init.pid), "the child exists but has no group of its own yet"
        deadline = time.monotonic() + 5
        while not _init_ready(init.pid):
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.02)
    finally:
        children = Path(f"/proc/{init.pid}/task/{init.pid}/children").read_text().split()
        for child in children:  # by pid: nothing else is touched
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(child), signal.SIGKILL)
        init.kill()
        init.wait()
