"""Issue 20, logs people can follow: every line has a timestamp and a stream; `roost logs -f` streams (the agent
sends a line as the machine writes it, the server merges the machines' streams), picks up a machine that joins
the app, and filters by machine, region and age; bad input gets one line."""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest

from tests.integration.conftest import Fleet

pytestmark = pytest.mark.integration

SERVICE = {"protocol": "tcp", "internal_port": 8080, "ports": [{"port": 80, "handlers": ["http"]}]}


@pytest.fixture(scope="module")
def lfleet(tmp_path_factory):
    f = Fleet(tmp_path_factory.mktemp("logs"), ["ams", "ewr"], 1)
    f.push_example("hello:v1")
    f.api.post("/v1/apps", json={"app_name": "chatty", "primary_region": "ams"})
    yield f
    f.close()


def machine(f: Fleet, region: str, config: dict | None = None) -> dict:
    m = f.api.post("/v1/apps/chatty/machines", json={"region": region, "config": config or {
        "image": "hello:v1", "services": [SERVICE]}}).json()
    f.api.get(f"/v1/apps/chatty/machines/{m['id']}/wait", params={"state": "started", "timeout": 30})
    if "8080" in m["roost"]["ports"]:
        f.wait_for(lambda: _get(m, "/"), what="the machine serving")
    return m


def _get(m: dict, path: str) -> bool:
    try:
        url = f"http://{m['private_ip']}:{m['roost']['ports']['8080']}{path}"
        return httpx.get(url, timeout=2, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


class Follower:
    """`roost logs -f --json` in the background, its lines in a queue."""

    def __init__(self, f: Fleet, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "roost", "logs", "-a", "chatty", "-f", "--json", *args],
                                     env=f.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[dict] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.lines.put(json.loads(line))

    def wait_for(self, text: str, timeout: float = 10) -> tuple[dict, float]:
        """The first line containing `text`, and when it arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                item = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if text in item["message"]:
                return item, time.monotonic()
        raise AssertionError(f"no line with {text!r} within {timeout}s")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def test_follow_streams_every_machines_lines_as_they_are_written(lfleet):
    f = lfleet
    ams, ewr = machine(f, "ams"), machine(f, "ewr")
    follower = Follower(f)
    try:
        time.sleep(1.5)  # the follow is open (its tail printed) before the lines below are written
        delays = []
        for m in (ams, ewr, ams):
            marker = f"/mark-{uuid.uuid4().hex[:10]}"
            sent = time.monotonic()
            assert _get(m, marker)
            item, at = follower.wait_for(marker)
            delays.append(at - sent)
            assert item["machine_id"] == m["id"] and item["region"] == m["region"] and item["stream"] == "stdout"
            assert item["timestamp"].endswith("Z") and "T" in item["timestamp"]
        assert max(delays) < 1.0, f"streamed, not polled: {delays}"
        late = machine(f, "ewr")  # joins the app while the follow runs
        marker = f"/late-{uuid.uuid4().hex[:10]}"
        assert _get(late, marker)
        item, _ = follower.wait_for(marker, timeout=15)
        assert item["machine_id"] == late["id"]
    finally:
        follower.close()


def test_tail_merges_in_time_order_and_filters(lfleet):
    f = lfleet
    talker = machine(f, "ams", {"image": "hello:v1", "init": {"cmd": [
        "sh", "-c", "echo to-out; echo to-err >&2; exec sleep 600"]}})
    f.wait_for(lambda: "to-err" in f.roost("logs", "-a", "chatty", "--machine", talker["id"]).stdout,
               what="the talker's lines")
    items = [json.loads(line) for line in f.roost("logs", "-a", "chatty", "--json", "-n", "500").stdout.splitlines()]
    stamps = [i["timestamp"] for i in items]
    assert stamps == sorted(stamps) and len({i["machine_id"] for i in items}) >= 3, "every machine, in time order"
    mine = {i["message"]: i["stream"] for i in items if i["machine_id"] == talker["id"]}
    assert mine == {"to-out": "stdout", "to-err": "stderr"}
    ewr = [json.loads(line)
           for line in f.roost("logs", "-a", "chatty", "--json", "--region", "ewr").stdout.splitlines()]
    assert ewr and {i["region"] for i in ewr} == {"ewr"}
    time.sleep(1.1)
    assert f.roost("logs", "-a", "chatty", "--since", "1s").stdout.strip() == "", "nothing written in the last second"
    assert "to-err" in f.roost("logs", "-a", "chatty", "--since", "10m").stdout
    shown = f.roost("logs", "-a", "chatty", "--machine", talker["id"]).stdout
    assert "stderr to-err" in shown and talker["id"] in shown
    for args, message in ((["--since", "banana"], "since"), (["--machine", "nope"], "machine 'nope' not found"),
                          (["-n", "-3"], "--lines")):
        bad = f.roost("logs", "-a", "chatty", *args, check=False)
        assert bad.returncode != 0 and message in bad.stderr and "Traceback" not in bad.stderr, (args, bad.stderr)
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_components_log_json_lines_when_asked(tmp_path):
    from tests.ports import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "roost", "server", "--log-format", "json", "--data-dir",
                             str(tmp_path / "server"), "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1, trust_env=False).status_code == 200:
                    break
            time.sleep(0.1)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    logged = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert logged and all({"time", "level", "logger", "message"} <= set(x) for x in logged), err
    assert not [line for line in err.splitlines() if " INFO " in line], "no text lines beside the JSON ones"
    bad = subprocess.run([sys.executable, "-m", "roost", "server", "--log-format", "yaml"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode != 0 and "--log-format" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
