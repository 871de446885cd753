"""A primary-write-region app for Roost: SQLite on a volume, writes in the primary region, reads anywhere.

- Machines in PRIMARY_REGION take writes (POST /items) and keep a change log.
- Machines elsewhere answer reads (GET /items) from their own copy, and answer writes with
  `fly-replay: region=<primary>`, so the edge replays the write in the primary region.
- Replicas catch up by pulling the primary's change log (GET /changes?since=N) every half second: straight
  from the primary over the private network, by its name `<primary region>.<app>.internal` (as on Fly), where
  the machine has a `.internal` resolver (the container driver says so in $ROOST_NAMESERVER); else through the
  edge, forced to the primary region ($EDGE_URL with `Fly-Force-Region`).
The database lives on the machine's volume (mounted at /data; ./data in the process driver's root).
"""

import json
import os
import socket
import sqlite3
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REGION = os.environ.get("FLY_REGION", "")
PRIMARY = os.environ.get("PRIMARY_REGION", REGION)
APP = os.environ.get("FLY_APP_NAME", "app")
MACHINE = os.environ.get("FLY_MACHINE_ID", "?")
EDGE = os.environ.get("EDGE_URL", "http://127.0.0.1:4400")
PORT = int(os.environ.get("PORT", "8080"))


def volume() -> Path:
    """The machine's volume: ./data where the machine's root is the working directory (the process driver),
    /data in a container (whose working directory is the image's, /app)."""
    here = Path("data")
    return here if here.exists() or not os.path.ismount("/data") else Path("/data")


DB_PATH = volume() / "app.db"
LOCK = threading.Lock()


def db() -> sqlite3.Connection:
    DB_PATH.parent.mkdir(exist_ok=True)
    conn = sqlite3.connect(DB_PATH, timeout=10, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # an acknowledged write is on disk
    conn.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, text TEXT NOT NULL, region TEXT)")
    conn.execute("CREATE TABLE IF NOT EXISTS changes "
                 "(seq INTEGER PRIMARY KEY, item_id INTEGER, text TEXT, region TEXT)")
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
    return conn


CONN = db()


def applied() -> int:
    row = CONN.execute("SELECT value FROM meta WHERE key = 'applied'").fetchone()
    return int(row[0]) if row else 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def reply(self, status, data, headers=()):
        body = json.dumps(data).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/changes"):
            since = int(self.path.partition("since=")[2] or 0)
            with LOCK:
                rows = CONN.execute("SELECT seq, item_id, text, region FROM changes WHERE seq > ? "
                                    "ORDER BY seq LIMIT 500", (since,)).fetchall()
            return self.reply(200, {"changes": rows})
        with LOCK:
            items = CONN.execute("SELECT id, text, region FROM items ORDER BY id").fetchall()
            newest = CONN.execute("SELECT MAX(seq) FROM changes").fetchone()[0] or 0
            version = applied() if REGION != PRIMARY else newest
        return self.reply(200, {"region": REGION, "primary": PRIMARY, "machine": MACHINE, "version": version,
                                "items": [{"id": i, "text": t, "region": r} for i, t, r in items],
                                "replayed_from": self.headers.get("fly-replay-src")})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        payload = json.loads(self.rfile.read(length) or b"{}")
        if REGION != PRIMARY:
            # Not the primary: ask the edge to replay this write in the primary region.
            return self.reply(409, {"error": "read-only replica"}, [("fly-replay", f"region={PRIMARY}")])
        with LOCK:
            cur = CONN.execute("INSERT INTO items (text, region) VALUES (?, ?)", (payload.get("text", ""), REGION))
            CONN.execute("INSERT INTO changes (item_id, text, region) VALUES (?, ?, ?)",
                         (cur.lastrowid, payload.get("text", ""), REGION))
            CONN.commit()
            seq = CONN.execute("SELECT MAX(seq) FROM changes").fetchone()[0]
        return self.reply(201, {"id": cur.lastrowid, "seq": seq, "region": REGION, "machine": MACHINE})

    def log_message(self, *_args):
        pass


def primary_url():
    """The primary's URL over the private network (<region>.<app>.internal, asked of the host's resolver), or
    None where there is no such resolver or the name has no started machine now."""
    if not os.environ.get("ROOST_NAMESERVER"):
        return None  # no private network: never ask the host's own resolver for .internal names
    try:
        infos = socket.getaddrinfo(f"{PRIMARY}.{APP}.internal", PORT, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return None
    return f"http://{infos[0][4][0]}:{PORT}" if infos else None


def catch_up() -> None:
    """Replicas: pull the primary's change log from the primary (by name), or through the edge."""
    while True:
        try:
            since = applied()
            direct = primary_url()
            request = urllib.request.Request(f"{direct}/changes?since={since}") if direct else \
                urllib.request.Request(f"{EDGE}/changes?since={since}",
                                       headers={"Host": f"{APP}.localhost", "Fly-Force-Region": PRIMARY})
            with urllib.request.urlopen(request, timeout=5) as response:
                changes = json.loads(response.read())["changes"]
            with LOCK:
                for seq, item_id, text, region in changes:
                    CONN.execute("INSERT OR REPLACE INTO items (id, text, region) VALUES (?, ?, ?)",
                                 (item_id, text, region))
                    CONN.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('applied', ?)", (str(seq),))
                CONN.commit()
        except Exception as exc:  # the primary may be away: keep serving reads, try again
            print(f"catch-up: {exc}", flush=True)
        time.sleep(0.5)


def main():
    if REGION != PRIMARY:
        threading.Thread(target=catch_up, daemon=True).start()
    server = ThreadingHTTPServer((os.environ.get("FLY_PRIVATE_IP", "127.0.0.1"), PORT), Handler)
    server.daemon_threads = True
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"{'primary' if REGION == PRIMARY else 'replica'} in {REGION} (primary {PRIMARY})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
