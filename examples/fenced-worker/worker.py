"""A singleton worker that respects fencing tokens (Roost's standby example).

Every 50 ms it appends a record `token machine seq time` to a shared log (the path in $SHARED_LOG; the
hosts of the dev fleet share one disk). Before each write it checks, under a file lock, the highest token
any writer has used; if that is newer than its own ($ROOST_FENCING_TOKEN, also in the file named by
$ROOST_FENCING_FILE), another holder has taken over and this one refuses to write from then on. So even
if an old holder were still running, no write with a stale token would be accepted.

Isolated machines (the container driver) share no disk: with $LEDGER_URL set, the records go to a store that
checks the token itself (ledger.py here, or a database that does so in the transaction); `{gateway}` in it is
the machine's host ($ROOST_GATEWAY; 127.0.0.1 on the process driver, whose machines share the host's network).
"""

import fcntl
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

LOG = Path(os.environ.get("SHARED_LOG", "shared.log"))
HIGHEST = LOG.with_name(LOG.name + ".token")
MACHINE = os.environ.get("FLY_MACHINE_ID", "?")


def my_token() -> int:
    path = os.environ.get("ROOST_FENCING_FILE")
    if path and Path(path).exists():
        return int(Path(path).read_text().strip() or 1)
    return int(os.environ.get("ROOST_FENCING_TOKEN", "1"))


running = True


def stop(_signum, _frame):
    global running
    running = False


def ledger_loop(url: str, token: int) -> None:
    """Append through the store: it refuses a stale token (409), and this worker stops writing then."""
    url = url.replace("{gateway}", os.environ.get("ROOST_GATEWAY", "127.0.0.1")).rstrip("/") + "/append"
    seq = 0
    refused = False
    while running:
        if not refused:
            record = f"{token} {MACHINE} {seq + 1} {time.time():.6f}".encode()
            try:
                with urllib.request.urlopen(urllib.request.Request(url, data=record, method="POST"), timeout=2):
                    seq += 1
            except urllib.error.HTTPError as exc:
                if exc.code == 409:
                    print(f"refusing to write: the store says {exc.read().decode().strip()}", flush=True)
                    refused = True
            except OSError as exc:  # the store unreachable for now: try again next tick
                print(f"store unreachable: {exc}", flush=True)
        time.sleep(0.05)


def main() -> None:
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    token = my_token()
    if os.environ.get("LEDGER_URL"):
        print(f"worker {MACHINE} with fencing token {token}, writing to {os.environ['LEDGER_URL']}", flush=True)
        ledger_loop(os.environ["LEDGER_URL"], token)
        print("worker stopped", flush=True)
        sys.exit(0)
    LOG.parent.mkdir(parents=True, exist_ok=True)
    print(f"worker {MACHINE} with fencing token {token}", flush=True)
    seq = 0
    refused = False
    with open(LOG.with_name(LOG.name + ".lock"), "a+") as lock:
        while running:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                highest = int(HIGHEST.read_text() or 0) if HIGHEST.exists() else 0
                if highest > token:
                    if not refused:
                        print(f"refusing to write: token {highest} is newer than mine ({token})", flush=True)
                    refused = True
                else:
                    seq += 1
                    with open(LOG, "a") as out:
                        out.write(f"{token} {MACHINE} {seq} {time.time():.6f}\n")
                    if token > highest:
                        HIGHEST.write_text(str(token))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
            time.sleep(0.05)
    print("worker stopped", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
