"""A tiny HTTP app for Roost: answers with its machine id and region, keeps a counter in memory.

It listens on $PORT at $FLY_PRIVATE_IP (Roost gives every machine both), and stops cleanly on SIGINT or
SIGTERM so that a stop with the default kill_signal is graceful.
"""

import base64
import hashlib
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
        if self.headers.get("Upgrade", "").lower() == "websocket":
            return self.websocket_echo()
        if self.path == "/headers":
            return self.reply({k.lower(): v for k, v in self.headers.items()})
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"one ", b"two ", b"three"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return None
        if self.path == "/metrics":  # Prometheus text, for fly.toml's [metrics] (the host's agent scrapes it)
            with LOCK:
                hits = COUNTER["hits"]
            return self.text("# HELP hello_hits_total Requests answered\n# TYPE hello_hits_total counter\n"
                             f"hello_hits_total {hits}\n")
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

    def do_HEAD(self):
        body = json.dumps({"machine": os.environ.get("FLY_MACHINE_ID")}).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()

    def reply(self, data):
        self.send(json.dumps(data).encode() + b"\n", "application/json")

    def text(self, text):
        self.send(text.encode(), "text/plain; version=0.0.4")

    def send(self, body, content_type):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        body = json.dumps({"machine": os.environ.get("FLY_MACHINE_ID"), "received": len(data),
                           "sha256": hashlib.sha256(data).hexdigest()}).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def websocket_echo(self):
        """A minimal RFC 6455 echo: enough to show upgrades pass through the proxy."""
        accept = base64.b64encode(hashlib.sha1(
            self.headers["Sec-WebSocket-Key"].encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                length = int.from_bytes(self.rfile.read(2), "big")
            elif length == 127:
                length = int.from_bytes(self.rfile.read(8), "big")
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
            if opcode == 8:  # close
                self.wfile.write(b"\x88\x00")
                return
            reply = f"{os.environ.get('FLY_MACHINE_ID')}: ".encode() + payload
            size = len(reply)
            frame = bytes([0x81, size]) if size < 126 else bytes([0x81, 126]) + size.to_bytes(2, "big")
            self.wfile.write(frame + reply)
            self.wfile.flush()

    def log_message(self, fmt, *args):
        sys.stdout.write(f"{self.address_string()} {fmt % args}\n")
        sys.stdout.flush()


class Server(ThreadingHTTPServer):
    # A real server's listen backlog: socketserver's default of 5 refuses connections while the app pauses
    # (a GC pause, a slow-machine drill), which an edge reads as a dead machine.
    request_queue_size = 128


def main():
    host = os.environ.get("FLY_PRIVATE_IP", "127.0.0.1")
    port = int(os.environ.get("PORT", "8080"))
    server = Server((host, port), Handler)
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
