"""A tiny "database" for Roost's stack example: keeps a counter in a file on its volume (mounted at /data,
which the process driver places at ./data inside the machine's root), and serves it over HTTP on $PORT."""

import json
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DATA = Path("data")
COUNTER = DATA / "counter"
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self):
        with LOCK:
            value = int(COUNTER.read_text()) + 1 if COUNTER.exists() else 1
            COUNTER.write_text(str(value))
        body = json.dumps({"machine": os.environ.get("FLY_MACHINE_ID"), "counter": value}).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args):
        pass


def main():
    DATA.mkdir(exist_ok=True)
    server = ThreadingHTTPServer((os.environ.get("FLY_PRIVATE_IP", "127.0.0.1"), int(os.environ.get("PORT", "5432"))),
                                 Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    signal.signal(signal.SIGINT, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print("db listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
