"""`roost drill`: send steady load through the edges, inject one fault on schedule, heal it, and report what
the users saw (from every request's answer) and what the platform did (from the agents' run records).

The schedule, from the start of the load: the fault at `at`, its heal `heal_after` later, the end at
`duration`. A fault that was injected is always healed before the drill returns, even on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from roost.core.regions import is_known
from roost.dev import faults as fleet_faults
from roost.dev.fleet import fleet_alive, pid_alive, read_fleet
from roost.dev.fleet import status as fleet_status
from roost.drill import analysis, control_plane
from roost.drill.beacon import Beacon
from roost.drill.control_plane import ControlPlaneProbe
from roost.drill.faults import DrillError, Fault, Target, choose_target, make_fault
from roost.drill.load import LoadGenerator, LoadSpec, fetch
from roost.tasks import spawn

MAX_RPS = 2000.0
MAX_REQUESTS = 200_000
DEFAULT_WRITE_BODY = '{"text": "{token}"}'


@dataclass
class DrillOptions:
    fault: str
    app: str
    target: str | None = None
    rps: float = 100.0
    duration: float = 30.0
    at: float = 10.0
    heal_after: float | None = 10.0  # None: leave the fault in place until the end (then heal)
    path: str = "/"
    method: str = "GET"
    body: str | None = None
    check_writes: str | None = None  # read this path back after the drill: every acknowledged write there?
    client_region: str | None = None  # where the clients are (default: the target's region)
    timeout: float = 5.0
    settle: float = 2.0  # after the load: time for the agents' records to show what happened
    expect_no_errors: bool = False
    expect_shift_under: float | None = None

    def validate(self) -> None:
        if not self.duration > 0:
            raise DrillError("--duration must be more than 0s")
        if not 0 <= self.at < self.duration:
            raise DrillError(f"--at must fall inside the drill (0s to {self.duration:g}s): the fault needs traffic "
                             "before and after it")
        if self.heal_after is not None and self.heal_after < 0:
            raise DrillError("--heal-after must be 0s or more")
        if not 0 <= self.rps <= MAX_RPS:
            raise DrillError(f"--rps must be between 0 and {MAX_RPS:g}")
        if self.rps * self.duration > MAX_REQUESTS:
            raise DrillError(f"{self.rps:g} rps for {self.duration:g}s is more than {MAX_REQUESTS} requests: "
                             "lower --rps or --duration")
        if not 0 < self.timeout <= 60:
            raise DrillError("--timeout must be between 0s and 60s")
        if self.client_region is not None and not is_known(self.client_region):
            raise DrillError(f"--client-region {self.client_region!r} is not a region code "
                             "('roost platform regions' lists them)")
        if not self.path.startswith("/"):
            raise DrillError(f"--path must start with '/', got {self.path!r}")
        self.method = self.method.upper()
        if self.method not in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
            raise DrillError(f"--method {self.method!r} is not an HTTP method the drill sends")
        if self.check_writes is not None:
            if self.method not in ("POST", "PUT", "PATCH"):
                raise DrillError("--check-writes needs writes: use --method POST (or PUT/PATCH)")
            if not self.check_writes.startswith("/"):
                raise DrillError(f"--check-writes must be a path starting with '/', got {self.check_writes!r}")
            body = self.body or DEFAULT_WRITE_BODY
            if "{token}" not in body:
                raise DrillError("with --check-writes, --body must contain {token} (each write's unique text)")


def _has_services(machines: list[dict[str, Any]]) -> bool:
    return any((m.get("config") or {}).get("services") for m in machines)


def _primary_region(machines: list[dict[str, Any]]) -> str | None:
    for m in machines:
        env = (m.get("config") or {}).get("env") or {}
        if env.get("PRIMARY_REGION"):
            return str(env["PRIMARY_REGION"])
    return None


def _entry(fleet: dict[str, Any], fault: str, client_region: str) -> tuple[tuple[str, int], str]:
    """Where the clients connect: the anycast entry (it picks the nearest live edge), else their region's edge."""
    anycast = fleet.get("anycast")
    if anycast and pid_alive(anycast.get("pid", 0)):
        return ("127.0.0.1", int(anycast["port"])), f"anycast 127.0.0.1:{anycast['port']} (clients in {client_region})"
    if fault == "kill-region":
        raise DrillError("kill-region needs the fleet's anycast entry (clients must reach another region's edge): "
                         "start the fleet with 'roost dev up' (anycast is on unless --anycast-port 0)")
    proxies = fleet.get("proxies") or []
    proxy = next((p for p in proxies if p["region"] == client_region), proxies[0] if proxies else None)
    if proxy is None:
        raise DrillError("this fleet has no edges to send traffic through: start it without --no-proxies")
    host, port = proxy["address"].rsplit(":", 1)
    return (host, int(port)), f"the {proxy['region']} edge {proxy['address']}"


def _clamped_runs(data_dir: Path, killed_hosts: list[str], fault_wall: float) -> list[fleet_faults.Run]:
    """Runs from the agents' records. A power-cut host cannot record its machines' ends; we killed them (and
    waited for them to die) at the fault, so a run there that began before it ended no later than it."""
    out = []
    for r in fleet_faults.runs(data_dir):
        if r.host in killed_hosts and r.start < fault_wall and (r.end is None or r.end > fault_wall):
            r = fleet_faults.Run(r.machine, r.host, r.pid, r.start, fault_wall, "host killed")
        out.append(r)
    return out


def _standbys(machines: list[dict[str, Any]], runs: list[fleet_faults.Run], fault_wall: float,
              target: Target, since: float) -> list[dict[str, Any]]:
    """One row per standby: its takeover in this drill, and whether it ever ran beside the machine it
    watches within this drill's own window (from `since`, the start of the load): what earlier drills did
    is theirs to report."""
    by_id = {m["id"]: m for m in machines}
    now = time.time()
    rows = []
    for m in machines:
        for watched_id in (m.get("config") or {}).get("standbys") or []:
            watched = [r for r in runs if r.machine == watched_id]
            standby = [r for r in runs if r.machine == m["id"]]
            took_over = analysis.takeover_time(m.get("events") or [], fault_wall)
            started = sorted(r.start for r in standby if took_over is not None and r.start >= took_over - 0.5)
            stopped = sorted((r for r in watched if r.start < fault_wall and r.end is not None and r.end >= fault_wall),
                             key=lambda r: r.end or 0.0)
            fencing = ((m.get("roost") or {}).get("fencing") or {})
            rows.append({
                "watched": watched_id, "standby": m["id"],
                "watched_host": (by_id.get(watched_id) or {}).get("host_id", ""), "standby_host": m.get("host_id", ""),
                "hit": watched_id in target.machines,
                "watched_ended_after_s": round((stopped[0].end or fault_wall) - fault_wall, 3) if stopped else None,
                "watched_end_reason": stopped[0].end_reason if stopped else "",
                "standby_started_after_s": round(started[0] - fault_wall, 3) if started else None,
                "fencing_token": fencing.get("token") if fencing.get("holder") == m["id"] else None,
                "double_runs": analysis.ran_together([(r.start, r.end) for r in watched],
                                                     [(r.start, r.end) for r in standby], now, since),
                "standby_state": m.get("state"), "watched_state": (by_id.get(watched_id) or {}).get("state"),
            })
    return rows


async def load_while(generator: LoadGenerator, rps: float, duration: float,
                     schedule: Callable[[float, float], Coroutine[Any, Any, None]],
                     name: str) -> tuple[list[analysis.Sample], LoadGenerator, float]:
    """Run the load (or just wait, with no load) while `schedule(start, start_wall)` injects and heals faults;
    the schedule is cancelled if the load ends by an error. Returns the samples and the wall-clock start."""
    start_wall = time.time()
    start = time.monotonic()
    scheduler = spawn(schedule(start, start_wall), f"{name}-schedule")
    try:
        if rps > 0:
            samples = await generator.run(start)
        else:
            samples = []
            await asyncio.sleep(max(0.0, start + duration - time.monotonic()))
        await scheduler
    finally:
        if not scheduler.done():
            scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await scheduler
    return samples, generator, start_wall


class Drill:
    def __init__(self, data_dir: Path, api: Any, options: DrillOptions,
                 say: Callable[[str], None] = lambda _m: None) -> None:
        self.data_dir, self.api, self.o, self.say = data_dir, api, options, say
        self.id = secrets.token_hex(3)

    def prepare(self) -> None:
        o = self.o
        o.validate()
        fleet = read_fleet(self.data_dir)
        if fleet is None or not fleet_alive(fleet):
            raise DrillError(f"no running fleet in {self.data_dir}: a drill runs on the local fleet "
                             "('roost dev up' starts one)")
        replicas = fleet.get("servers") or []
        if len(replicas) > 1:
            fleet = fleet_status(self.data_dir) or fleet  # which replica leads now
        self.fleet = fleet
        self.api.get(f"/v1/apps/{o.app}")  # a clear error when there is no such app
        self.machines: list[dict[str, Any]] = self.api.get(f"/v1/apps/{o.app}/machines")
        self.target = choose_target(o.fault, o.target, fleet, self.machines)
        self.fault: Fault = make_fault(o.fault, self.data_dir, self.target, self.api, o.app)
        self.fault.check()
        self.notes: list[str] = []
        self.rps = o.rps
        if not _has_services(self.machines):
            self.rps = 0.0
            self.notes.append("the app has no services: no load was sent; the drill watched its machines")
        self.client_region = o.client_region or self.target.region
        self.address, self.entry = (("", 0), "none")
        if self.rps > 0:
            self.address, self.entry = _entry(fleet, o.fault, self.client_region)
        self.primary = _primary_region(self.machines)
        self.body = o.body if o.body is not None else (DEFAULT_WRITE_BODY if o.check_writes else "")
        # With several replicas, a kill-server drill also writes through the API and watches who leads.
        self.probe: ControlPlaneProbe | None = None
        if o.fault == "kill-server" and len(replicas) > 1:
            self.probe = ControlPlaneProbe(tuple(r["url"] for r in replicas), fleet["token"], fleet.get("ca", ""),
                                           self.id)

    def load_spec(self) -> LoadSpec:
        o = self.o
        body = self.body.replace("{token}", f"roost-drill-{self.id}-{{n}}")
        return LoadSpec(address=self.address, host=f"{o.app}.localhost", path=o.path, method=o.method,
                        rps=self.rps, duration=o.duration, timeout=o.timeout,
                        headers=[("Fly-Client-Region", self.client_region)], body=body,
                        max_in_flight=max(64, int(self.rps * (o.timeout + 1))))

    async def _schedule(self, start: float, done: dict[str, float]) -> None:
        o = self.o
        await asyncio.sleep(max(0.0, start + o.at - time.monotonic()))
        self.say(f"{o.at:g}s: {o.fault} {self.target.name}")
        done["fault_wall"] = await asyncio.to_thread(self.fault.inject)
        self.beacon.tell("fault", done["fault_wall"])
        done["fault_done_wall"] = time.time()  # a kill-region is done (its edge gone) by now
        if o.heal_after is not None and self.fault.heal_action is not None:
            heal_at = min(o.at + o.heal_after, o.duration)
            await asyncio.sleep(max(0.0, start + heal_at - time.monotonic()))
            self.say(f"{heal_at:g}s: heal ({self.fault.heal_action})")
            done["heal_wall"] = await asyncio.to_thread(self.fault.heal)
            self.beacon.tell("heal", done["heal_wall"])

    async def _run(self, done: dict[str, float]) -> tuple[list[analysis.Sample], LoadGenerator, float]:
        async def with_probe(start: float) -> None:
            assert self.probe is not None
            await asyncio.gather(self._schedule(start, done), self.probe.run(start, self.o.duration))

        def schedule(start: float, start_wall: float) -> Coroutine[Any, Any, None]:
            self.start_wall = start_wall
            self.beacon.tell("started", start_wall, fault=self.o.fault, target=self.target.as_dict(),
                             duration_s=self.o.duration, rps=self.rps, entry=self.entry)
            return with_probe(start) if self.probe is not None else self._schedule(start, done)

        return await load_while(LoadGenerator(self.load_spec()), self.rps, self.o.duration, schedule, "drill")

    def run(self) -> dict[str, Any]:
        self.beacon = Beacon(self.api, self.o.app, self.id)  # the dashboard follows the drill
        try:
            report = self._run_and_report()
        finally:
            self.beacon.close()
        return report

    def _run_and_report(self) -> dict[str, Any]:
        o = self.o
        if self.rps > 0:
            self.say(f"{self.rps:g} requests/s for {o.duration:g}s through {self.entry}")
        done: dict[str, float] = {}
        try:
            samples, generator, start_wall = asyncio.run(self._run(done))
        finally:
            # Whatever happened (the end of the load, an error, Ctrl-C): never leave the fleet broken.
            if "fault_wall" in done and "heal_wall" not in done and self.fault.heal_action is not None:
                self.say(f"heal ({self.fault.heal_action})")
                done["heal_wall"] = self.fault.heal()
                self.beacon.tell("heal", done["heal_wall"])
        if "fault_wall" not in done:
            raise DrillError("the fault was never injected (the drill ended before --at)")
        if o.settle > 0:
            time.sleep(o.settle)
        fault_wall = done["fault_wall"]
        self.fault_done = done.get("fault_done_wall", fault_wall)
        self.heal_wall: float | None = done.get("heal_wall")
        window = analysis.Window(round(fault_wall - start_wall, 4),
                                 round(done["heal_wall"] - start_wall, 4) if "heal_wall" in done else None,
                                 o.duration)
        report = self._report(samples, generator, window, fault_wall)
        self.beacon.tell("finished", report=report)
        return report

    def _report(self, samples: list[analysis.Sample], generator: LoadGenerator, window: analysis.Window,
                fault_wall: float) -> dict[str, Any]:
        o = self.o
        regions = {self.target.name} if self.target.kind == "region" else set()
        seen = analysis.traffic(samples, window, self.target.machines, regions, 1.0 if o.duration >= 20 else 0.5)
        try:
            after = self.api.get(f"/v1/apps/{o.app}/machines")
        except Exception as exc:  # the control plane may be the thing that is down
            after = self.machines
            self.notes.append(f"machines after the drill could not be read ({exc}); standby states are from before")
        killed = self.target.hosts if o.fault in ("kill-host", "kill-region") else []
        runs = _clamped_runs(self.data_dir, killed, fault_wall)
        standbys = _standbys(after, runs, fault_wall, self.target, self.start_wall)
        double_runs = sum(row["double_runs"] for row in standbys) if standbys else None
        writes = self.writes_check(samples, generator) if o.check_writes else None
        excused = analysis.died_with_edge(samples, [(window.fault_at, self.fault_done - self.start_wall)]) \
            if o.fault == "kill-region" else 0
        control = None
        if self.probe is not None:
            control = control_plane.figures(self.probe, window.fault_at, self.target.name, self.probe.lost(self.api),
                                            analysis.takeovers_twice(after, fault_wall))
            self.probe.clean_up(self.api)
        results = analysis.checks(failed=seen.total.failed, shift=seen.shift, expect_no_errors=o.expect_no_errors,
                                  expect_shift_under=o.expect_shift_under, double_runs=double_runs,
                                  writes_lost=writes["lost"] if writes else None, excused=excused)
        if control is not None:
            results.append(analysis.Check("acknowledged API writes lost", "0", str(control["writes_lost"]),
                                          control["writes_lost"] == 0))
            results.append(analysis.Check("takeovers decided twice", "0", str(control["takeovers_decided_twice"]),
                                          control["takeovers_decided_twice"] == 0))
        return {
            "drill": self.id, "fault": o.fault, "app": o.app, "target": self.target.as_dict(),
            "heal": self.fault.heal_action if window.heal_at is not None else None,
            "entry": self.entry, "rps": self.rps, "duration_s": o.duration, "path": o.path, "method": o.method,
            "fault_at_s": window.fault_at, "heal_at_s": window.heal_at,
            "fault_time": round(fault_wall, 4),  # wall clock, to line the report up with logs and records
            "heal_time": round(self.heal_wall, 4) if self.heal_wall is not None else None,
            **seen.figures,
            "standbys": standbys, "double_runs": double_runs, "writes": writes,
            "control_plane": control,
            "checks": [asdict(c) for c in results], "passed": all(c.passed for c in results),
            "notes": self.notes,
        }

    def writes_check(self, samples: list[analysis.Sample], generator: LoadGenerator) -> dict[str, Any]:
        """Read the app's data back (in the primary region) and look for every acknowledged write's token."""
        o = self.o
        assert o.check_writes is not None
        acked = {s.seq for s in samples if s.ok and 200 <= s.status < 300}
        headers = [("Fly-Client-Region", self.client_region)]
        if self.primary:
            headers.append(("Fly-Force-Region", self.primary))
        deadline = time.monotonic() + 30
        text, last = None, ""
        while time.monotonic() < deadline:
            try:
                answer = asyncio.run(fetch(self.address, f"{o.app}.localhost", o.check_writes, headers, 5.0))
                if answer.status == 200:
                    text = answer.body.decode("utf-8", "replace")
                    break
                last = f"HTTP {answer.status}"
            except (OSError, TimeoutError, Exception) as exc:  # the primary may still be coming back
                last = str(exc) or type(exc).__name__
            time.sleep(0.5)
        if text is None:
            return {"acknowledged": len(acked), "lost": len(acked), "stored_unacknowledged": 0,
                    "error": f"could not read {o.check_writes} back within 30s ({last})"}
        token = f"roost-drill-{self.id}-"
        lost = [n for n in acked if f'"{token}{n}"' not in text]
        extra = [n for n in generator.bodies if n not in acked and f'"{token}{n}"' in text]
        return {"acknowledged": len(acked), "lost": len(lost), "lost_examples": sorted(lost)[:10],
                "stored_unacknowledged": len(extra), "read_from": self.primary or "nearest region"}
