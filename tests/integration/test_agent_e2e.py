"""Issue 3's end-to-end check, through the real CLI: push, run, reach, stop, suspend, agent crash, errors."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from roost.dev.fleet import pid_alive, restart_agent

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
APP = "e2e"


@pytest.fixture(scope="module")
def ready(fleet):
    fleet.roost("image", "push", str(ROOT / "examples" / "hello"), "--name", "hello:v1")
    fleet.roost("apps", "create", APP, "--primary-region", "ams")
    return fleet


def run_machine(fleet, *extra: str) -> dict:
    out = fleet.roost("machine", "run", "hello:v1", "-a", APP, "--json", *extra).stdout
    return json.loads(out)


def hit(m: dict, path: str = "/", timeout: float = 2) -> dict:
    port = m["roost"]["ports"]["8080"]
    return httpx.get(f"http://{m['private_ip']}:{port}{path}", timeout=timeout, trust_env=False).json()


def machine(fleet, mid: str) -> dict:
    return fleet.api.get(f"/v1/apps/{APP}/machines/{mid}").json()


def log_text(fleet, mid: str) -> str:
    return fleet.roost("logs", "-a", APP, "--machine", mid, "-n", "200").stdout


def test_push_run_and_reach(ready):
    images = json.loads(ready.roost("image", "list", "--json").stdout)
    assert [i["cmd"] for i in images if i["ref"] == "hello:v1"] == [["python3", "app.py"]], "Procfile web entry"
    m = run_machine(ready, "-p", "80:8080/tcp:http")
    assert m["state"] == "started"
    body = ready.wait_for(lambda: _try(lambda: hit(m)), what="the app to answer")
    assert body["machine"] == m["id"] and body["region"] == "ams"
    # two machines of one app on one host both work (each its own PORT, or on containers its own address)
    m2 = run_machine(ready, "-p", "80:8080/tcp:http")
    assert (m2["private_ip"], m2["roost"]["ports"]["8080"]) != (m["private_ip"], m["roost"]["ports"]["8080"])
    assert ready.wait_for(lambda: _try(lambda: hit(m2)))["machine"] == m2["id"]
    listing = ready.roost("machine", "list", "-a", APP).stdout
    assert m["id"] in listing and m2["id"] in listing
    assert "listening on" in log_text(ready, m["id"])
    ready.roost("machine", "destroy", m2["id"], "-a", APP, "--force")


def test_environment_given_to_machines(ready):
    m = run_machine(ready, "-e", "GREETING=hi", "--", "sh", "-c", "env | sort; exec sleep 60")
    text = ready.wait_for(lambda: "FLY_MACHINE_ID" in log_text(ready, m["id"]) and log_text(ready, m["id"]))
    for key in ("FLY_APP_NAME=e2e", f"FLY_MACHINE_ID={m['id']}", f"FLY_ALLOC_ID={m['id']}", "FLY_REGION=ams",
                "FLY_PROCESS_GROUP=app", f"FLY_MACHINE_VERSION={m['instance_id']}",
                "PRIMARY_REGION=ams", f"FLY_PRIVATE_IP={m['private_ip']}", "GREETING=hi"):
        assert key in text, key
    # The image as pinned: a bundle's name, or a registry image's full reference (as Fly's registry.fly.io/...).
    assert re.search(r"FLY_IMAGE_REF=(\S+/)?hello:v1@sha256:[0-9a-f]{64}\n", text), text
    ready.roost("machine", "destroy", m["id"], "-a", APP, "--force")


def test_stop_honours_kill_signal_and_kill_timeout(ready):
    # A workload that notes SIGTERM and refuses to exit: stop must wait kill_timeout, then SIGKILL it.
    stubborn = run_machine(ready, "--kill-signal", "SIGTERM", "--kill-timeout", "1500ms", "--restart", "no", "--",
                           "sh", "-c", "trap 'echo got TERM' TERM; echo ready; while true; do sleep 0.05; done")
    ready.wait_for(lambda: "ready" in log_text(ready, stubborn["id"]))
    began = time.monotonic()
    ready.roost("machine", "stop", stubborn["id"], "-a", APP)
    took = time.monotonic() - began
    assert 1.4 <= took < 5, took
    assert "got TERM" in log_text(ready, stubborn["id"])
    stop_event = next(e for e in machine(ready, stubborn["id"])["events"] if e["type"] == "stop"
                      and e["source"] == "flyd")
    assert stop_event["request"]["exit_code"] == 128 + signal.SIGKILL
    # A graceful app with the default kill_signal (SIGINT) stops at once.
    graceful = run_machine(ready, "-p", "80:8080/tcp:http", "--restart", "no")
    ready.wait_for(lambda: _try(lambda: hit(graceful)))
    began = time.monotonic()
    ready.roost("machine", "stop", graceful["id"], "-a", APP)
    assert time.monotonic() - began < 1.5
    assert "got signal 2" in log_text(ready, graceful["id"])
    # a stopped machine's rootfs is a fresh copy on its next start
    ready.roost("machine", "destroy", stubborn["id"], graceful["id"], "-a", APP)


def test_suspend_resume_keeps_memory_and_a_stopped_start_resets_it(ready):
    m = run_machine(ready, "-p", "80:8080/tcp:http")
    ready.wait_for(lambda: _try(lambda: hit(m)))
    first = hit(m)["hits"]
    ready.roost("machine", "suspend", m["id"], "-a", APP)
    assert machine(ready, m["id"])["state"] == "suspended"
    with pytest.raises(httpx.TimeoutException):
        hit(m, timeout=0.5)  # frozen: the connection waits
    ready.roost("machine", "start", m["id"], "-a", APP)
    assert hit(m)["hits"] > first, "memory kept across suspend/resume"
    ready.roost("machine", "stop", m["id"], "-a", APP)
    ready.roost("machine", "start", m["id"], "-a", APP)
    assert ready.wait_for(lambda: _try(lambda: hit(m)))["hits"] == 1, "a stopped machine boots fresh"
    ready.roost("machine", "destroy", m["id"], "-a", APP, "--force")


def test_agent_sigkill_and_restart_readopts_running_machines(ready):
    m = run_machine(ready, "-p", "80:8080/tcp:http")
    ready.wait_for(lambda: _try(lambda: hit(m)))
    before = hit(m)["hits"]
    host = ready.host(m["host_id"])
    os.kill(host["pid"], signal.SIGKILL)
    ready.wait_for(lambda: not pid_alive(host["pid"]))
    assert hit(m)["hits"] == before + 1, "the machine keeps running without its agent"
    host.update(restart_agent(ready.spec.data_dir, host["id"]))
    records = json.loads(Path(host["data_dir"], "records", f"{m['id']}.json").read_text())
    agent = httpx.Client(headers=ready.agent_headers, trust_env=False, verify=ready.verify, timeout=5)
    ready.wait_for(lambda: _try(lambda: agent.get(f"{host['agent_url']}/healthz").status_code == 200))
    agent_view = agent.get(f"{host['agent_url']}/v1/machines").json()
    assert [x["pid"] for x in agent_view if x["id"] == m["id"]] == [records["run"]["pid"]]
    assert hit(m)["hits"] == before + 2, "same process, memory intact"
    # still managed: stop and start work through the control plane
    ready.roost("machine", "stop", m["id"], "-a", APP)
    with pytest.raises(httpx.HTTPError):
        hit(m, timeout=1)
    ready.roost("machine", "start", m["id"], "-a", APP)
    assert ready.wait_for(lambda: _try(lambda: hit(m)))["hits"] == 1
    ready.roost("machine", "destroy", m["id"], "-a", APP, "--force")


def test_a_machine_that_exits_while_its_agent_is_down_is_reported(ready):
    m = run_machine(ready, "--restart", "no", "--", "sh", "-c", "exec sleep 60")
    host = ready.host(m["host_id"])
    os.kill(host["pid"], signal.SIGKILL)
    ready.wait_for(lambda: not pid_alive(host["pid"]))
    pid = json.loads(Path(host["data_dir"], "records", f"{m['id']}.json").read_text())["run"]["pid"]
    os.killpg(pid, signal.SIGKILL)
    host.update(restart_agent(ready.spec.data_dir, host["id"]))
    ready.wait_for(lambda: machine(ready, m["id"])["state"] == "stopped", timeout=20, what="exit reported")
    exit_events = [e for e in machine(ready, m["id"])["events"] if e["type"] == "exit"]
    assert exit_events and exit_events[0]["source"] == "flyd"
    ready.roost("machine", "destroy", m["id"], "-a", APP)


@pytest.mark.parametrize(("args", "words"), [
    (["machine", "run", "ghost:v1", "-a", APP], "image 'ghost:v1' not found"),
    (["machine", "run", "hello:v1", "-a", APP, "-p", "80:8080/sctp"], "invalid port mapping"),
    (["machine", "run", "hello:v1", "-a", APP, "-r", "mars"], "unknown region 'mars'"),
    (["machine", "run", "hello:v1", "-a", APP, "--memory", "200000"], "insufficient resources"),
    (["machine", "run", "hello:v1", "-a", "no-such-app"], "app 'no-such-app' not found"),
    (["machine", "stop", "ffffffffffffff", "-a", APP], "not found"),
    (["machine", "run", "hello:v1", "-a", APP, "--restart", "sometimes"], "invalid --restart"),
])
def test_user_errors_are_one_clear_line(ready, args, words):
    before = ready.api.get(f"/v1/apps/{APP}/machines").json() if args[-1] == APP or APP in args else None
    result = ready.roost(*args, check=False)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error:") and words in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    if before is not None:
        assert ready.api.get(f"/v1/apps/{APP}/machines").json() == before


def test_memory_limit_is_enforced_and_reported(ready):
    if not Path("/sys/fs/cgroup/memory").is_dir() or os.geteuid() != 0:
        pytest.skip("memory cgroups need root and cgroup v1 memory here")
    m = run_machine(ready, "--memory", "256", "--restart", "no", "--detach", "--",
                    "python3", "-c", "x = bytearray(600 * 1024 * 1024); import time; time.sleep(30)")
    ready.wait_for(lambda: machine(ready, m["id"])["state"] == "stopped", timeout=30, what="OOM kill")
    exit_event = next(e for e in machine(ready, m["id"])["events"] if e["type"] == "exit")
    assert exit_event["request"]["exit_event"]["oom_killed"] is True
    ready.roost("machine", "destroy", m["id"], "-a", APP)


def _try(fn):
    try:
        return fn()
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def test_checks_are_run_and_reported(ready):
    m = run_machine(ready, "-p", "80:8080/tcp:http", "--check", "web=http:8080/", "--check", "dead=tcp:9999")
    def checks():
        return {c["name"]: c["status"] for c in machine(ready, m["id"])["checks"]}
    ready.wait_for(lambda: checks() == {"web": "passing", "dead": "critical"}, timeout=20, what="check results")
    status = ready.roost("machine", "status", m["id"], "-a", APP).stdout
    assert "passing" in status and "critical" in status
    ready.roost("machine", "destroy", m["id"], "-a", APP, "--force")


def test_clone_and_update(ready):
    worker = run_machine(ready, "--", "sh", "-c", "exec sleep 60")
    # This fleet has one host: a standby there would die with its machine, so it is refused, clearly.
    refused = ready.roost("machine", "clone", worker["id"], "-a", APP, "--standby-for", "source", check=False)
    assert refused.returncode == 1 and "a standby on the same host would die with it" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    out = json.loads(ready.roost("machine", "clone", worker["id"], "-a", APP, "--json").stdout)
    assert out["state"] == "started" and out["config"]["init"] == worker["config"]["init"]
    ready.roost("machine", "update", worker["id"], "-a", APP, "-e", "COLOR=blue")
    updated = machine(ready, worker["id"])
    assert updated["config"]["env"]["COLOR"] == "blue" and updated["state"] == "started"
    assert updated["instance_id"] != worker["instance_id"]
    ready.roost("machine", "destroy", worker["id"], out["id"], "-a", APP, "--force")


def test_dev_up_status_down_through_the_cli(tmp_path):
    from tests.integration.conftest import free_port

    env = {**os.environ, "ROOST_DEV_DIR": str(tmp_path / "dev")}
    env.pop("ROOST_API_URL", None)
    env.pop("ROOST_API_TOKEN", None)

    def roost(*args):
        import subprocess
        import sys

        return subprocess.run([sys.executable, "-m", "roost", *args], env=env, capture_output=True, text=True,
                              timeout=120)

    registry_port = free_port()
    up = roost("dev", "up", "--regions", "ams,syd", "--hosts-per-region", "1", "--port", str(free_port()),
               "--agent-port", str(free_port()), "--address-offset", "190", "--registry-port", str(registry_port),
               "--json")
    assert up.returncode == 0, up.stderr
    fleet = json.loads(up.stdout)
    assert [h["address"] for h in fleet["hosts"]] == ["127.0.191.1", "127.0.192.1"]
    status = json.loads(roost("dev", "status", "--json").stdout)
    assert status["server"]["alive"] and all(h["alive"] and h["status"] == "ok" for h in status["hosts"])
    # the CLI finds the fleet by itself, and a machine it runs is stopped by `dev down` too
    assert roost("image", "push", str(ROOT / "examples" / "hello"), "--name", "hello:v1").returncode == 0
    assert roost("apps", "create", "dev-test").returncode == 0
    run = roost("machine", "run", "hello:v1", "-a", "dev-test", "-r", "syd", "--json")
    assert run.returncode == 0, run.stderr
    # the fleet's registry answers the distribution API on loopback, and goes with the fleet
    assert fleet["registry"]["address"] == f"127.0.0.1:{registry_port}"
    assert httpx.get(f"http://127.0.0.1:{registry_port}/v2/", trust_env=False, timeout=5).status_code == 200
    pids = [fleet["server"]["pid"], fleet["registry"]["pid"]] + [h["pid"] for h in fleet["hosts"]]
    from roost.dev.fleet import machine_pids

    machine_procs = [p for h in fleet["hosts"] for p in machine_pids(Path(h["data_dir"]))]
    assert machine_procs
    down = roost("dev", "down")
    assert down.returncode == 0, down.stderr
    assert [p for p in pids + machine_procs if pid_alive(p)] == []
    assert roost("dev", "status").returncode != 0
