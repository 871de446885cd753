"""Shared helpers for the benchmarks: a throwaway fleet, percentiles, a table printer."""

from __future__ import annotations

import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from roost.client.images import bundle_directory  # noqa: E402
from roost.dev.fleet import FleetSpec, down, up, verify  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_nginx(tmp: Path, name: str, http: str, error_log: str = "crit", quiet: bool = False
                ) -> subprocess.Popen[bytes]:
    """nginx with one worker, its files under `tmp` (config `NAME.conf`), serving the `http` block's body."""
    (tmp / "ngx").mkdir(exist_ok=True)
    conf = tmp / f"{name}.conf"
    conf.write_text(f"""
worker_processes 1;
pid {tmp}/{name}.pid;
error_log stderr {error_log};
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/ngx; proxy_temp_path {tmp}/ngx;
{http}
}}""")
    out = subprocess.DEVNULL if quiet else None
    return subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp), "-g", "daemon off;"], stdout=out, stderr=out)


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the processes have used so far (those that are gone count nothing)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


class BenchFleet:
    def __init__(self, regions: list[str], hosts_per_region: int = 1, **kw: object) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="roost-bench-")
        kw.setdefault("proxies", False)
        kw.setdefault("anycast_port", free_port() if kw["proxies"] else 0)
        kw.setdefault("server_port", free_port())
        self.spec = FleetSpec(data_dir=Path(self.tmp.name), regions=regions, hosts_per_region=hosts_per_region,
                              agent_port=free_port(), proxy_port=free_port(),
                              admin_port=free_port(), tcp_octet=random.randint(101, 240),
                              address_offset=random.randint(20, 200), **kw)  # type: ignore[arg-type]
        self.info = up(self.spec)
        self.url = self.info["server"]["url"]
        self.token = self.info["token"]
        self.headers = {"Authorization": f"Bearer {self.token}"}
        self.verify = verify(self.info)  # the fleet's components speak TLS under its own CA
        if self.info.get("ca"):
            os.environ["ROOST_CA_FILE"] = self.info["ca"]  # for the edges and CLIs a bench starts itself
        self.api = httpx.Client(base_url=self.url, headers=self.headers, timeout=120, trust_env=False,
                                verify=self.verify)

    def push(self, name: str, example: str, cmd: list[str]) -> None:
        import json

        r = self.api.post("/v1/images", params={"name": name, "cmd": json.dumps(cmd)},
                          content=bundle_directory(ROOT / "examples" / example))
        r.raise_for_status()

    def close(self) -> None:
        self.api.close()
        down(self.spec.data_dir)
        self.tmp.cleanup()

    def __enter__(self) -> BenchFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary_ms(values: Sequence[float]) -> dict[str, str]:
    ms = [v * 1000 for v in values]
    return {"n": str(len(ms)), "p50": f"{pct(ms, 50):.2f}", "p99": f"{pct(ms, 99):.2f}",
            "max": f"{max(ms):.2f}", "mean": f"{statistics.fmean(ms):.2f}"}


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    lines = [f"### {title}", "", "| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    return "\n".join(lines)
