"""A tiny HTTP app for Roost: answers with its machine id and region, keeps a counter in memory.

It listens on $PORT at $FLY_PRIVATE_IP (Roost gives every machine both), and stops cleanly on SIGINT or
SIGTERM so that a stop with the default kill_signal is graceful.
"""

import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COUNTER = {"hits": 0}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart (delayed ACK)

    def do_GET(self):
        with LOCK:
            COUNTER["hits"] += 1
            hits = COUNTER["hits"]
        if self.path.startswith("/slow"):
            import time
            time.sleep(float(self.path.split("=")[-1]) if "=" in self.path else 1.0)
        body = json.dumps({
            "app": os.environ.get("FLY_APP_NAME"),
            "machine": os.environ.get("FLY_MACHINE_ID"),
            "region": os.environ.get("FLY_REGION"),
            "hits": hits,
            "path": self.path,
        }).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stdout.write(f"{self.address_string()} {fmt % args}\n")
        sys.stdout.flush()


def main():
    host = os.environ.get("FLY_PRIVATE_IP", "127.0.0.1")
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True

    def shutdown(signum, _frame):
        print(f"got signal {signum}, shutting down", flush=True)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    print(f"listening on {host}:{port}", flush=True)
    server.serve_forever()
    print("bye", flush=True)


if __name__ == "__main__":
    main()
