"""Revocation (issue 15): how long from `DELETE /v1/tokens/{id}` (roost tokens revoke) to the token's refusal,
on every component that takes a token.

    .venv/bin/python bench/revocation.py [--trials 10]

One fleet (server, one agent, the ams edge; TLS under the fleet CA). Per trial, a fresh token is made,
seen working, then revoked, and the clock runs from just before the revocation is sent until:
- server: the API answers a deploy token's request with 401;
- agent: the agent answers an edge token's start call with 401 (it learns revocations from heartbeat answers);
- watch feed: an open SSE watch stream of an edge token ends;
- edge: a real `roost proxy` running on an edge token loses its feed (its /healthz says feed_connected: false).
Target: every component within 5 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import httpx
from common import BenchFleet, free_port, summary_ms, table

from roost.dev.fleet import admin_get

TARGET = 5.0


def until(check: Callable[[], bool], limit: float = 20.0) -> float:
    """Seconds until `check()` holds (polled every 5 ms), from now."""
    began = time.perf_counter()
    while not check():
        if time.perf_counter() - began > limit:
            raise RuntimeError("not refused within the limit")
        time.sleep(0.005)
    return time.perf_counter() - began


def make(f: BenchFleet, kind: str, **extra: str) -> dict[str, str]:
    return dict(f.api.post("/v1/tokens", json={"kind": kind, "name": "bench", **extra}).json())


def revoke_then(f: BenchFleet, token: dict[str, str], refused: Callable[[], bool]) -> float:
    began = time.perf_counter()
    f.api.delete(f"/v1/tokens/{token['id']}").raise_for_status()
    return time.perf_counter() - began + until(refused)


def server_trial(f: BenchFleet) -> float:
    token = make(f, "deploy", app="bench")
    with httpx.Client(base_url=f.url, headers={"Authorization": f"Bearer {token['token']}"}, verify=f.verify,
                      trust_env=False, timeout=5) as c:
        assert c.get("/v1/apps/bench").status_code == 200
        return revoke_then(f, token, lambda: c.get("/v1/apps/bench").status_code == 401)


def agent_trial(f: BenchFleet) -> float:
    token = make(f, "edge")
    url = f"{f.info['hosts'][0]['agent_url']}/v1/machines/a0000000000001/start"
    with httpx.Client(headers={"Authorization": f"Bearer {token['token']}"}, verify=f.verify, trust_env=False,
                      timeout=5) as c:
        until(lambda: c.post(url, json={}).status_code not in (401, 403))  # the agent has heard of it
        return revoke_then(f, token, lambda: c.post(url, json={}).status_code == 401)


def watch_trial(f: BenchFleet) -> float:
    token = make(f, "edge")
    ended = threading.Event()
    opened = threading.Event()

    def follow() -> None:
        with httpx.Client(verify=f.verify, trust_env=False, timeout=30) as c, c.stream(
                "GET", f"{f.url}/v1/watch", headers={"Authorization": f"Bearer {token['token']}",
                                                    "Accept": "text/event-stream"}) as response:
            for _ in response.iter_bytes():
                opened.set()
        ended.set()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    opened.wait(10)
    took = revoke_then(f, token, ended.is_set)
    thread.join(5)
    return took


def edge_trial(f: BenchFleet) -> float:
    token = make(f, "edge")
    port, admin = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "roost", "proxy", "--server", f.url, "--region", "ams",
                             "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
                             "--tcp-prefix", "127.248", "--id", "revocation-bench"],
                            env={**os.environ, "ROOST_API_TOKEN": token["token"]},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    edge = {"admin_url": f"http://127.0.0.1:{admin}", "admin_token": token["token"]}

    def connected() -> bool:
        try:
            return bool(admin_get(edge, "/healthz", timeout=1).json()["feed_connected"])
        except (httpx.HTTPError, ValueError):
            return False

    try:
        until(connected, 30)
        return revoke_then(f, token, lambda: not connected())
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    trials: dict[str, list[float]] = {"server": [], "agent": [], "watch": [], "edge": []}
    with BenchFleet(["ams"], 1, proxies=False) as f:
        f.api.post("/v1/apps", json={"app_name": "bench"}).raise_for_status()
        for _ in range(args.trials):
            trials["server"].append(server_trial(f))
            trials["agent"].append(agent_trial(f))
            trials["watch"].append(watch_trial(f))
            trials["edge"].append(edge_trial(f))
    what = {"server": "API request with a revoked deploy token -> 401",
            "agent": "agent call with a revoked edge token -> 401 (learnt from heartbeat answers)",
            "watch": "open SSE watch stream of a revoked edge token -> ended",
            "edge": "a running edge on a revoked edge token -> loses its feed"}
    rows = []
    for name, values in trials.items():
        s = summary_ms(values)
        rows.append([name, what[name], s["n"], s["p50"], s["max"], "<= 5 s",
                     "yes" if max(values) <= TARGET else "NO"])
    print(table("Time from roost tokens revoke to refusal, per component (fleet on TLS, loopback)",
                ["component", "refused", "trials", "p50 ms", "max ms", "target", "met"], rows))


if __name__ == "__main__":
    main()
