"""Container driver benchmarks (issue 16), side by side in one run.

    .venv/bin/python bench/containers.py [--starts 20] [--resumes 50] [--machines 100] [--big-mb 50]

Needs root, runc, tini, skopeo, umoci, docker-registry and busybox-static (./scripts/setup installs them).
Everything runs on loopback and in network namespaces this bench makes (no route out). Measures:

1. start -> first HTTP 200 of a busybox httpd image: `runc run` of a prepared bundle by hand (the floor: a
   network namespace made beforehand, httpd as PID 1), the container driver (overlay root, network namespace,
   runtime spec, tini, runc), and the process driver (a copy of the same root, on a host port).
   Goal: the container driver adds <= 30 ms over bare runc.
2. suspend -> first answer after resume, container and process drivers. Goal: <= 10 ms.
3. a 50 MB image: the first start pulls and unpacks it, the second pulls nothing.
4. 100 container machines on one host of a real fleet (server, agent, registry): created through the API,
   each answering on its own address, stopped and destroyed with nothing left; agent memory per machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, BenchFleet, free_port, summary_ms, table

sys.path.insert(0, str(ROOT))
from tests.images import build_oci_image, busybox_rootfs, push

from roost.agent.cgroups import Cgroups
from roost.agent.drivers.base import StartSpec
from roost.agent.drivers.container import ContainerDriver, runc_available
from roost.agent.drivers.process import ProcessDriver
from roost.agent.netns import HostNetwork
from roost.agent.oci_images import OciImages
from roost.core import oci_spec
from roost.dev.fleet import start_registry

HTTPD = ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]


def first_200(url: str, timeout: float = 20.0) -> float:
    """Seconds until `url` answers 200, polled every millisecond over a raw socket (an HTTP client library's
    own set-up would cost more than what is measured)."""
    host, _, rest = url.removeprefix("http://").partition(":")
    port = int(rest.split("/", 1)[0])
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            with socket.create_connection((host, port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
                if s.recv(64)[8:13] == b" 200 ":
                    return time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.001)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def bare_runc(tmp: Path, rootfs: Path, image_config: dict, n: int) -> list[float]:
    """`runc run -d` of a bundle prepared beforehand (network namespace included): the floor."""
    net = HostNetwork("bench-bare", "10.213.240.0/24")
    net.up()
    times = []
    try:
        for i in range(n):
            mid = f"bare{i}"
            bundle = tmp / mid
            bundle.mkdir(parents=True)
            netns = net.attach(mid, "10.213.240.2")
            run = oci_spec.MachineRun(machine_id=mid, rootfs=str(rootfs), env={}, memory_mb=256, netns=netns,
                                      exec_=tuple(HTTPD), cgroups_path=f"/roost-bench-bare/{mid}")
            (bundle / "config.json").write_text(json.dumps(oci_spec.runtime_spec(image_config, run)))
            t0 = time.perf_counter()
            subprocess.run(["runc", "--root", str(tmp / ".runc"), "run", "-d", "--bundle", str(bundle), mid],
                           check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            first_200("http://10.213.240.2:8080/")
            times.append(time.perf_counter() - t0)
            subprocess.run(["runc", "--root", str(tmp / ".runc"), "delete", "--force", mid], check=True)
            net.detach(mid)
    finally:
        for i in range(n):
            subprocess.run(["runc", "--root", str(tmp / ".runc"), "delete", "--force", f"bare{i}"], check=False,
                           capture_output=True)
            net.detach(f"bare{i}")
        net.down()
        for path in Path("/sys/fs/cgroup").glob("*/roost-bench-bare"):
            for child in path.glob("*"):
                if child.is_dir():
                    child.rmdir()
            path.rmdir()
    return times


async def container_driver(tmp: Path, rootfs: Path, image_config: dict, n: int, resumes: int
                           ) -> tuple[list[float], list[float], list[float]]:
    net = HostNetwork("bench-c", "10.213.241.0/24")
    driver = ContainerDriver(tmp / "machines", "bench-c", net)
    starts, to_200, resumed = [], [], []
    try:
        for i in range(n):
            mid = f"c{i}"
            spec = StartSpec(machine_id=mid, argv=list(image_config["Cmd"]), env={}, image_dir=rootfs,
                             memory_mb=256, image_config=image_config, address="10.213.241.2")
            t0 = time.perf_counter()
            await driver.start(spec)
            starts.append(time.perf_counter() - t0)
            await asyncio.to_thread(first_200, "http://10.213.241.2:8080/")
            to_200.append(time.perf_counter() - t0)
            if i < n - 1:
                await driver.destroy(mid)
        mid = f"c{n - 1}"
        for _ in range(resumes):
            await driver.suspend(mid)
            t0 = time.perf_counter()
            await driver.resume(mid)
            await asyncio.to_thread(first_200, "http://10.213.241.2:8080/")
            resumed.append(time.perf_counter() - t0)
        await driver.destroy(mid)
    finally:
        driver.close(teardown=True)
    return starts, to_200, resumed


async def process_driver(tmp: Path, rootfs: Path, n: int, resumes: int) -> tuple[list[float], list[float]]:
    driver = ProcessDriver(tmp / "pmachines", Cgroups("bench-p"))
    to_200, resumed = [], []
    port = free_port()
    try:
        for i in range(n):
            mid = f"p{i}"
            spec = StartSpec(machine_id=mid, argv=["./bin/httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "www"],
                             env={"PATH": "/usr/bin:/bin"}, image_dir=rootfs, memory_mb=256)
            t0 = time.perf_counter()
            await driver.start(spec)
            await asyncio.to_thread(first_200, f"http://127.0.0.1:{port}/")
            to_200.append(time.perf_counter() - t0)
            if i < n - 1:
                await driver.destroy(mid)
        mid = f"p{n - 1}"
        for _ in range(resumes):
            await driver.suspend(mid)
            t0 = time.perf_counter()
            await driver.resume(mid)
            await asyncio.to_thread(first_200, f"http://127.0.0.1:{port}/")
            resumed.append(time.perf_counter() - t0)
        await driver.destroy(mid)
    finally:
        for base in driver.cgroups.bases(driver.cgroups.host_id):
            base.rmdir()
    return to_200, resumed


def layout_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / "layout" / "blobs").rglob("*") if p.is_file()) \
        if (root / "layout" / "blobs").exists() else 0


async def big_image(tmp: Path, registry: str, mb: int) -> list[list[object]]:
    rootfs = busybox_rootfs(tmp / "bigroot")
    with open(rootfs / "blob.bin", "wb") as fh:
        fh.write(os.urandom(mb * 1024 * 1024))  # incompressible: the layer is as large as the file
    build_oci_image(tmp / "biglayout", "big", rootfs, HTTPD)
    digest = push(tmp / "biglayout", "big", f"{registry}/bench/big:1")
    cache = OciImages(tmp / "bigcache")
    rows = []
    for attempt in ("first start", "second start"):
        before, pulls = layout_bytes(tmp / "bigcache"), cache.pulls
        t0 = time.perf_counter()
        image = await cache.ensure(f"{registry}/bench/big:1", digest)
        took = time.perf_counter() - t0
        rows.append([attempt, f"{took * 1000:.0f} ms", cache.pulls - pulls,
                     f"{(layout_bytes(tmp / 'bigcache') - before) / 1e6:.1f} MB", image.rootfs.exists()])
    return rows


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def many_machines(n: int, tmp: Path) -> list[list[object]]:
    with BenchFleet(["ams"], 1, driver="container", registry_port=free_port(), host_cpus=256,
                    host_memory_mb=n * 256 + 1024, server_args=("--allow-registry", "127.0.0.1:*")) as fleet:
        registry = fleet.info["registry"]["address"]
        build_oci_image(tmp / "flayout", "httpd", busybox_rootfs(tmp / "froot"), HTTPD, ports=["8080/tcp"])
        push(tmp / "flayout", "httpd", f"{registry}/bench/httpd:1")
        host = fleet.info["hosts"][0]
        agent_before = rss_kb(host["pid"])
        assert fleet.api.post("/v1/apps", json={"app_name": "many", "primary_region": "ams"}).status_code == 201
        config = {"image": f"{registry}/bench/httpd:1", "guest": {"cpus": 1, "memory_mb": 256, "cpu_kind": "shared"}}
        t0 = time.perf_counter()
        machines = []
        for _ in range(n):
            r = fleet.api.post("/v1/apps/many/machines", json={"config": config})
            r.raise_for_status()
            machines.append(r.json())
        for m in machines:
            fleet.api.get(f"/v1/apps/many/machines/{m['id']}/wait", params={"state": "started", "timeout": 120})
        started = time.perf_counter() - t0
        ok = sum(1 for m in machines if first_200(f"http://{m['private_ip']}:8080/") >= 0)
        agent_after = rss_kb(host["pid"])
        records = Path(host["data_dir"]) / "records"
        monitors = [json.loads(p.read_text())["run"]["pid"] for p in records.glob("*.json")]
        runc_kb = sum(rss_kb(p) for p in monitors)
        t1 = time.perf_counter()
        for m in machines:
            fleet.api.post(f"/v1/apps/many/machines/{m['id']}/stop")
        for m in machines:
            fleet.api.get(f"/v1/apps/many/machines/{m['id']}/wait", params={"state": "stopped", "timeout": 120})
        for m in machines:
            fleet.api.delete(f"/v1/apps/many/machines/{m['id']}")
        stopped = time.perf_counter() - t1
        time.sleep(1)
        netns = [p for p in Path("/var/run/netns").glob("roost-m-*")] if Path("/var/run/netns").exists() else []
        mounts = [line for line in Path("/proc/mounts").read_text().splitlines()
                  if host["data_dir"] in line]
        return [[n, f"{started:.1f} s", f"{ok}/{n}", f"{stopped:.1f} s",
                 f"{(agent_after - agent_before) / n:.0f} KB", f"{runc_kb / max(1, len(monitors)):.0f} KB",
                 len(netns) + len(mounts)]]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--resumes", type=int, default=50)
    parser.add_argument("--machines", type=int, default=100)
    parser.add_argument("--big-mb", type=int, default=50)
    args = parser.parse_args()
    if not runc_available() or shutil.which("docker-registry") is None:
        sys.exit("needs root, runc, tini and docker-registry (./scripts/setup installs them as root)")
    with tempfile.TemporaryDirectory(prefix="roost-bench-c-") as name:
        tmp = Path(name)
        reg_port = free_port()
        registry = start_registry(tmp / "reg", reg_port)
        try:
            rootfs = busybox_rootfs(tmp / "root")
            build_oci_image(tmp / "layout", "httpd", rootfs, HTTPD, ports=["8080/tcp"])
            digest = push(tmp / "layout", "httpd", f"{registry['address']}/bench/httpd:1")
            image = await OciImages(tmp / "cache").ensure(f"{registry['address']}/bench/httpd:1", digest)
            bare = bare_runc(tmp / "bare", image.rootfs, image.config, args.starts)
            starts, c200, c_resume = await container_driver(tmp, image.rootfs, image.config, args.starts,
                                                            args.resumes)
            p200, p_resume = await process_driver(tmp, image.rootfs, args.starts, args.resumes)
            rows = [["runc run by hand (floor)", *summary_ms(bare).values()],
                    ["container driver: start() returns", *summary_ms(starts).values()],
                    ["container driver: start -> 200", *summary_ms(c200).values()],
                    ["process driver: start -> 200", *summary_ms(p200).values()]]
            print(table("start -> first HTTP 200, busybox httpd (ms)", ["", "n", "p50", "p99", "max", "mean"], rows))
            extra = sorted(c200)[len(c200) // 2] - sorted(bare)[len(bare) // 2]
            print(f"\ncontainer driver over bare runc, p50: {extra * 1000:.1f} ms (goal <= 30 ms)\n")
            print(table("suspend -> first answer after resume (ms)", ["", "n", "p50", "p99", "max", "mean"],
                        [["container driver", *summary_ms(c_resume).values()],
                         ["process driver", *summary_ms(p_resume).values()]]))
            print()
            print(table(f"a {args.big_mb} MB image on one host", ["", "time", "pulls", "bytes pulled", "unpacked"],
                        await big_image(tmp, registry["address"], args.big_mb)))
        finally:
            subprocess.run(["kill", str(registry["pid"])], check=False)
    if args.machines:
        with tempfile.TemporaryDirectory(prefix="roost-bench-m-") as name:
            print()
            print(table(f"{args.machines} container machines on one host (real fleet)",
                        ["machines", "create -> all started", "answering", "stop + destroy all",
                         "agent RSS per machine", "runc monitor RSS each", "left behind"],
                        many_machines(args.machines, Path(name))))


if __name__ == "__main__":
    asyncio.run(main())
