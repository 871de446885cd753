"""A tiny external store that respects fencing tokens, for the fenced worker on isolated machines.

    python3 ledger.py --listen 0.0.0.0:7070 --log /var/tmp/fenced/shared.log

`POST /append` with a record `token machine seq time` appends it to the log, unless a newer token has been
seen: then it answers 409 and writes nothing (what a database checking the token in the same transaction
does). `GET /` returns the log. A worker on the container driver reaches a ledger on its host at
`$ROOST_GATEWAY` (its LEDGER_URL is `http://{gateway}:7070`); on the process driver at 127.0.0.1.
"""

from __future__ import annotations

import argparse
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_RECORD = 200  # bytes: `token machine seq time`


class Ledger:
    def __init__(self, log: Path) -> None:
        self.log = log
        self.lock = threading.Lock()
        self.highest = 0
        if log.exists():
            for line in log.read_text().splitlines():
                self.highest = max(self.highest, int(line.split()[0]))

    def append(self, record: str) -> bool:
        token = int(record.split()[0])
        with self.lock:
            if token < self.highest:
                return False
            self.highest = token
            with open(self.log, "a") as out:
                out.write(record.strip() + "\n")
            return True


def handler(ledger: Ledger) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if self.path != "/append" or not 0 < length <= MAX_RECORD:
                return self._answer(400, "POST /append with one record: token machine seq time\n")
            record = self.rfile.read(length).decode(errors="replace")
            fields = record.split()
            if len(fields) != 4 or not fields[0].isdigit():
                return self._answer(400, "a record is: token machine seq time\n")
            if ledger.append(record):
                return self._answer(200, "ok\n")
            return self._answer(409, f"stale token {fields[0]}: {ledger.highest} is newer\n")

        def do_GET(self) -> None:
            with ledger.lock:
                text = ledger.log.read_text() if ledger.log.exists() else ""
            self._answer(200, text)

        def _answer(self, status: int, text: str) -> None:
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


class Server(ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", default="127.0.0.1:7070", help="HOST:PORT")
    parser.add_argument("--log", default="shared.log", type=Path)
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    args.log.parent.mkdir(parents=True, exist_ok=True)
    server = Server((host, int(port)), handler(Ledger(args.log)))
    print(f"ledger on {args.listen}, log {args.log}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
