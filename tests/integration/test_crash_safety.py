"""The store's promise: the server killed with SIGKILL during a burst of writes loses no acknowledged write, on
SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request) -> list[str]:
    """The server's --store option (none: SQLite in its data directory)."""
    return [] if request.param == "sqlite" else ["--store", request.getfixturevalue("postgres_url")]


def start_server(data_dir, port, store=()):
    with open(data_dir / "server.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "roost", "server", "--data-dir", str(data_dir),
                                 "--listen", f"127.0.0.1:{port}", *store], stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5, trust_env=False).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("server did not start")


def test_sigkill_during_a_write_burst_loses_no_acknowledged_write(tmp_path, store):
    port = free_port()
    server = start_server(tmp_path, port, store)
    token = (tmp_path / "admin-token").read_text().strip()
    headers = {"Authorization": f"Bearer {token}"}
    url = f"http://127.0.0.1:{port}"
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(n: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=5, trust_env=False) as client:
            for i in range(2000):  # bounded; the kill ends it much sooner
                if stop.is_set():
                    return
                name = f"burst-{n}-{i}"
                try:
                    r = client.post("/v1/apps", json={"app_name": name, "org_slug": "personal"})
                except httpx.HTTPError:
                    return
                if r.status_code == 201:
                    with lock:
                        acknowledged.append(name)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(acknowledged) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(server.pid, signal.SIGKILL)
    server.wait(10)
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acknowledged) >= 200

    server = start_server(tmp_path, port, store)
    try:
        apps = httpx.get(f"{url}/v1/apps", headers=headers, trust_env=False).json()["apps"]
        stored = {a["name"] for a in apps}
        missing = [name for name in acknowledged if name not in stored]
        assert missing == [], f"{len(missing)} acknowledged writes lost"
        # the change log survived too: a watcher resuming from revision 1 sees every app
        feed = httpx.get(f"{url}/v1/watch", params={"since": 1, "limit": 10000, "timeout": 0}, headers=headers,
                         trust_env=False).json()
        in_feed = {e["key"] for e in feed["events"] if e["kind"] == "app"}
        assert len(set(acknowledged) - in_feed) <= 1  # revision 1 itself is not "since 1"
        # and the object table, the change log and the revision counter agree (each commit is atomic)
        assert feed["revision"] == len(stored) and len(feed["events"]) == len(stored) - 1
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait(10)
