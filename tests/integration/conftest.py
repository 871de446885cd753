"""Integration fixtures: a real fleet (server + agents as processes) on loopback, cleaned up by PID."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx
import pytest

from roost.agent.volumes import mounts_under
from roost.client.images import bundle_directory
from roost.dev.fleet import FleetSpec, down, pid_alive, up, verify
from roost.failover import FailoverTransport, parse_servers, server_list
from tests.ports import free_port, free_port_block

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def stop_process(proc: subprocess.Popen[bytes], log: IO[str]) -> None:
    """Stop a component a test started itself (SIGTERM, then SIGKILL), close its log, and check it is gone."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    log.close()
    assert not pid_alive(proc.pid)


# The driver the suite runs on: `process` by default; .ci/run runs the suite again with ROOST_TEST_DRIVER=container.
TEST_DRIVER = os.environ.get("ROOST_TEST_DRIVER", "process")
# The control plane the fleets run: one server on SQLite by default; "postgresql" (one server) or
# "postgresql-3" (three replicas on one PostgreSQL, issue 18).
TEST_STORE = os.environ.get("ROOST_TEST_STORE", "sqlite")
# ROOST_TEST_NETNS=1: every fleet a fleet of network namespaces (issue 19), each host, edge and server its own.
TEST_NETNS = os.environ.get("ROOST_TEST_NETNS") == "1"


def needs_host_reach(example: str, why: str, private_network_will_do: bool = False) -> None:
    """Skip on the container driver a test whose example reaches past its machine into the host: the
    fenced worker's shared log is a file every host can write (a stand-in for an external store), and the
    primary-write-region example replicates through the edge on the host's loopback, or over the private
    network (`.internal` names), which reaches machines on other hosts only in a netns fleet (issue 19)."""
    if TEST_DRIVER == "container" and not (private_network_will_do and TEST_NETNS):
        pytest.skip(f"examples/{example} {why}: isolated machines cannot here")


class Fleet:
    def __init__(self, data_dir: Path, regions: list[str], hosts_per_region: int, proxies: bool = False,
                 **kw) -> None:
        self.helpers: list[subprocess.Popen[bytes]] = []
        kw.setdefault("driver", TEST_DRIVER)
        kw.setdefault("netns", TEST_NETNS)
        if TEST_STORE != "sqlite" and "store" not in kw:
            kw.update(store="postgresql", servers=3 if TEST_STORE == "postgresql-3" else 1)
        if kw.get("store") == "postgresql":
            kw.setdefault("postgres_port", free_port())
        if kw["driver"] == "container":
            kw.setdefault("registry_port", free_port())  # container machines run OCI images from a registry
        # Test traffic stays on loopback (or the fleet network this computer joins, in a netns fleet): machines
        # may use images only from registries there.
        kw["server_args"] = (*kw.pop("server_args", ()), "--allow-registry", "127.0.0.1:*",
                             *(("--allow-registry", "10.*.0.1:*") if kw["netns"] else ()))
        # A random slice of 127.0.0.0/8 per fleet, so test fleets never collide with each other or a dev fleet.
        self.spec = FleetSpec(data_dir=data_dir, regions=regions, hosts_per_region=hosts_per_region,
                              server_port=kw.pop("server_port", 0) or free_port_block(kw.get("servers", 1)),
                              agent_port=free_port(),
                              address_offset=random.randint(20, 200), proxies=proxies,
                              proxy_port=kw.pop("proxy_port", 0) or free_port_block(len(regions)),
                              admin_port=free_port_block(len(regions)),
                              tcp_octet=random.randint(101, 240), anycast_port=free_port() if proxies else 0,
                              edge_tls_port=free_port_block(len(regions)) if proxies else 0, **kw)
        self.info = up(self.spec)
        self.url = self.info["server"]["url"]
        self.token = self.info["token"]
        # The fleet speaks TLS under its own CA (issue 15): tests trust that CA alone, as its components do.
        self.verify = verify(self.info)
        # With several control-plane replicas (issue 18), the tests' client fails over between them as the CLI does.
        self.servers = parse_servers(server_list(self.info))
        transport = FailoverTransport(httpx.HTTPTransport(verify=self.verify), self.servers) \
            if len(self.servers) > 1 else None
        self.api = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"},
                                timeout=70, trust_env=False, verify=self.verify, transport=transport)
        # What the server presents to agents: only it may place specs or read them (issue 15).
        control = (Path(self.info["server"]["data_dir"]) / "control-token").read_text().strip()
        self.agent_headers = {"Authorization": f"Bearer {control}"}
        self.env = {**os.environ, "ROOST_API_URL": ",".join(self.servers), "ROOST_API_TOKEN": self.token,
                    "ROOST_CA_FILE": self.info.get("ca", ""),
                    "ROOST_DEV_DIR": str(data_dir)}

    def stored_bytes(self) -> bytes:
        """Everything the control plane's store holds, as it lies at rest: the SQLite files, or (PostgreSQL)
        every stored document and change-log entry as the database returns them."""
        if not self.info.get("postgres"):
            return b"".join(p.read_bytes() for p in Path(self.info["server"]["data_dir"]).glob("roost.db*"))
        import psycopg

        from roost.dev.postgres import LocalPostgres

        cluster = LocalPostgres(Path(self.info["postgres"]["dir"]), int(self.info["postgres"]["port"]))
        with psycopg.connect(host=self.info["postgres"].get("host", "127.0.0.1"), port=cluster.port, user="roost",
                             dbname="roost", password=cluster.password()) as conn:
            rows = conn.execute("SELECT kind || key || doc FROM objects UNION ALL "
                                "SELECT kind || key || coalesce(doc, '') FROM changes").fetchall()
        return "\n".join(r[0] for r in rows).encode()

    def roost(self, *args: str, check: bool = True, timeout: float = 120, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run the real CLI against this fleet (in `cwd`, with `env` added to the fleet's)."""
        result = subprocess.run([sys.executable, "-m", "roost", *args], env={**self.env, **(env or {})},
                                capture_output=True, text=True, timeout=timeout, cwd=cwd)
        if check and result.returncode != 0:
            raise AssertionError(f"roost {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def push_example(self, name: str, example: str = "hello", cmd: str | None = None) -> dict:
        if self.info.get("registry"):  # an OCI image in the fleet's registry, made by `roost image push`
            import json

            command = cmd or ("python3 app.py" if example == "hello" else None)
            pushed = self.roost("image", "push", str(EXAMPLES / example), "--name", name, "--json",
                                *(["--cmd", command] if command else []), timeout=600)
            return dict(json.loads(pushed.stdout))
        params = {"name": name}
        if cmd:
            import json

            params["cmd"] = json.dumps(cmd.split())
        elif example == "hello":
            params["cmd"] = '["python3", "app.py"]'
        r = self.api.post("/v1/images", params=params, content=bundle_directory(EXAMPLES / example))
        assert r.status_code == 201, r.text
        return r.json()

    def host(self, host_id: str) -> dict:
        return next(h for h in self.info["hosts"] if h["id"] == host_id)

    def wait_for(self, predicate, timeout: float = 15, interval: float = 0.05, what: str = "condition"):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out waiting for {what} (last: {last!r})")

    def edge(self, region: str) -> dict:
        return next(p for p in self.info["proxies"] if p["region"] == region)

    def all_pids(self) -> list[int]:
        pids = [self.info["server"]["pid"]] + [h["pid"] for h in self.info["hosts"]]
        pids += [p["pid"] for p in self.info["proxies"]]
        from roost.dev.fleet import machine_pids

        for h in self.info["hosts"]:
            pids += list(machine_pids(Path(h["data_dir"])))
        return pids

    def close(self) -> None:
        pids = self.all_pids()
        self.api.close()
        down(self.spec.data_dir)
        for helper in self.helpers:  # what a test started beside the fleet for its machines (a store)
            helper.kill()
            helper.wait(5)
        leftovers = [p for p in pids if pid_alive(p)]
        assert leftovers == [], f"processes left behind: {leftovers}"
        mounts = mounts_under(self.spec.data_dir, Path("/proc/self/mountinfo").read_text())
        assert mounts == [], f"mounts left behind: {mounts}"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    f = Fleet(tmp_path_factory.mktemp("fleet"), ["ams"], 1)
    yield f
    f.close()


@pytest.fixture(scope="module")
def fleet2(tmp_path_factory):
    """Two regions, two hosts each."""
    f = Fleet(tmp_path_factory.mktemp("fleet2"), ["ams", "ewr"], 2)
    yield f
    f.close()
