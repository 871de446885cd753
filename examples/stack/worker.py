"""A background worker for Roost's stack example: no services, so a deploy gives it a stopped standby.

It appends a heartbeat line to its log every few seconds and exits cleanly on SIGINT/SIGTERM.
"""

import os
import signal
import sys
import time

running = True


def stop(signum, _frame):
    global running
    running = False


signal.signal(signal.SIGINT, stop)
signal.signal(signal.SIGTERM, stop)
standby_for = os.environ.get("FLY_STANDBY_FOR")
print(f"worker {os.environ.get('FLY_MACHINE_ID')} up" + (f" (standby for {standby_for})" if standby_for else ""),
      flush=True)
beat = 0
while running:
    beat += 1
    print(f"beat {beat}", flush=True)
    for _ in range(50):
        if not running:
            break
        time.sleep(0.1)
print("worker done", flush=True)
sys.exit(0)
