"""Many faults on one fleet: `roost drill all` (every fault in turn, one summary) and `roost drill chaos`
(random faults at random times under steady load, with the fleet's invariants checked at every step and at
the end; see drill/invariants.py).

Between faults the fleet must settle: every host `ok` and everything that should run running again, within
`recover_within` seconds of the heal (how long it took is part of the report).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roost.dev import faults as fleet_faults
from roost.dev.fleet import FleetError, read_fleet
from roost.drill import analysis, invariants
from roost.drill.faults import FAULTS, DrillError, choose_target, make_fault
from roost.drill.load import LoadGenerator
from roost.drill.runner import Drill, DrillOptions, load_while

Say = Callable[[str], None]


@dataclass
class CampaignOptions:
    app: str
    rps: float = 50.0
    fault_time: float = 5.0  # how long each fault lasts (chaos: at most this, at random from 1 s)
    before: float = 3.0  # `all`: load before each fault
    after: float = 6.0  # `all`: load after each heal
    path: str = "/"
    method: str = "GET"
    body: str | None = None
    check_writes: str | None = None
    client_region: str | None = None
    timeout: float = 5.0
    expect_no_errors: bool = False
    faults: tuple[str, ...] = FAULTS
    seed: int = 0
    duration: float = 600.0  # chaos: how long the whole campaign runs
    recover_within: float = 30.0

    def validate(self) -> None:
        unknown = [f for f in self.faults if f not in FAULTS]
        if unknown:
            raise DrillError(f"unknown fault {unknown[0]!r}: choose from {', '.join(FAULTS)}")
        if not self.faults:
            raise DrillError("no faults to inject: --faults names none")
        if not 1.0 <= self.fault_time <= 120.0:
            raise DrillError("--fault-time must be between 1s and 2m")
        if not 5.0 <= self.recover_within <= 600.0:
            raise DrillError("--recover-within must be between 5s and 10m")
        if not 10.0 <= self.duration <= 24 * 3600:
            raise DrillError("a chaos run lasts between 10s and 24h (--duration)")


def _machines(api: Any, app: str) -> list[dict[str, Any]] | None:
    try:
        return list(api.get(f"/v1/apps/{app}/machines"))
    except Exception:  # the control plane may be the thing that is down
        return None


def _hosts_ok(api: Any, fleet: dict[str, Any]) -> bool:
    try:
        hosts = {h["id"]: h.get("status") for h in api.get("/v1/hosts")}
    except Exception:
        return False
    return all(hosts.get(h["id"]) == "ok" for h in fleet["hosts"])


def settle(api: Any, fleet: dict[str, Any], app: str, at_start: list[dict[str, Any]],
           within: float) -> tuple[float | None, list[str]]:
    """Wait until every host is ok and what should run runs; returns (seconds it took or None, what is
    still missing when `within` ran out)."""
    began = time.monotonic()
    missing: list[str] = ["the control plane"]
    while time.monotonic() - began < within:
        now = _machines(api, app)
        if now is not None:
            missing = invariants.should_run(at_start, now)
            if not _hosts_ok(api, fleet):
                missing = [*missing, "hosts not all ok"]
            if not missing:
                return round(time.monotonic() - began, 3), []
        time.sleep(0.25)
    return None, missing


def _drill_options(opts: CampaignOptions, fault: str, **kw: Any) -> DrillOptions:
    return DrillOptions(fault=fault, app=opts.app, rps=opts.rps, path=opts.path, method=opts.method, body=opts.body,
                        check_writes=opts.check_writes, client_region=opts.client_region, timeout=opts.timeout,
                        expect_no_errors=opts.expect_no_errors, **kw)


def run_all(data_dir: Path, api: Any, opts: CampaignOptions, say: Say) -> dict[str, Any]:
    """Every fault in turn on this fleet (those it cannot inject here are skipped, with why)."""
    opts.validate()
    fleet = read_fleet(data_dir)
    if fleet is None:
        raise DrillError(f"no fleet in {data_dir}")
    at_start = _machines(api, opts.app)
    if at_start is None:
        raise DrillError("the control plane does not answer")
    reports: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for fault in opts.faults:
        drill = Drill(data_dir, api, _drill_options(opts, fault, duration=opts.before + opts.fault_time + opts.after,
                                                    at=opts.before, heal_after=opts.fault_time), say)
        try:
            drill.prepare()
        except DrillError as exc:
            say(f"{fault}: skipped ({exc})")
            skipped.append({"fault": fault, "why": str(exc)})
            continue
        report = drill.run()
        took, missing = settle(api, fleet, opts.app, at_start, opts.recover_within)
        report["recovered_after_s"] = took
        report["not_recovered"] = missing
        if took is None:
            report["passed"] = False
            report["checks"].append({"name": "recovered", "target": f"within {opts.recover_within:g}s",
                                     "measured": "not yet: " + ", ".join(missing), "passed": False})
        settled = f"in {took:.1f}s" if took is not None else f"NOT within {opts.recover_within:g}s"
        say(f"{fault}: {'passed' if report['passed'] else 'FAILED'}; fleet settled {settled}")
        reports.append(report)
    return {"kind": "all", "app": opts.app, "drills": reports, "skipped": skipped,
            "passed": bool(reports) and all(r["passed"] for r in reports)}


def _targets(fault: str, fleet: dict[str, Any], machines: list[dict[str, Any]]) -> list[str | None]:
    """Every target this fault could take now."""
    hosts = {h["id"]: h for h in fleet["hosts"]}
    ours = [m for m in machines if m.get("host_id") in hosts]
    if fault == "kill-server":
        return [None]
    if fault == "stop-machine":
        return [m["id"] for m in ours if m.get("state") in ("started", "stopped", "suspended")
                and not (m.get("config") or {}).get("standbys")]
    if fault in ("kill-machine", "slow-machine"):
        return [m["id"] for m in ours if m.get("state") == "started"]
    if fault in ("kill-host", "partition-host", "freeze-agent"):
        return sorted({m["host_id"] for m in ours})
    if fault == "kill-region":
        regions = sorted({h["region"] for h in hosts.values()})
        return list(regions) if len(regions) > 1 else []
    return []


class Chaos:
    """Random faults from `opts.faults` at random times, one at a time, under load for `opts.duration`."""

    def __init__(self, data_dir: Path, api: Any, opts: CampaignOptions, say: Say) -> None:
        self.data_dir, self.api, self.o, self.say = data_dir, api, opts, say
        self.rng = random.Random(opts.seed)
        self.steps: list[dict[str, Any]] = []
        self.edge_deaths: list[tuple[float, float]] = []  # kills of an edge, from..until (seconds since start)

    def prepare(self) -> None:
        o = self.o
        o.validate()
        # The load and the write check are a drill's; its fault is ours to schedule.
        self.loader = Drill(self.data_dir, self.api, _drill_options(o, "kill-server", duration=o.duration, at=0.0,
                                                                   heal_after=None), self.say)
        self.loader.prepare()
        self.fleet = self.loader.fleet
        self.at_start = self.loader.machines
        self.usable = [f for f in o.faults if _targets(f, self.fleet, self.at_start)]
        if "partition-host" in self.usable and fleet_faults.partition_unavailable() is not None:
            self.usable.remove("partition-host")
        if not self.usable:
            raise DrillError("none of the faults can be injected on this fleet and app")

    async def _schedule(self, start: float, start_wall: float) -> None:
        o = self.o
        await asyncio.sleep(min(3.0, o.duration / 10))
        end = start + o.duration
        while time.monotonic() + o.fault_time + 2.0 < end:
            fault = self.rng.choice(self.usable)
            machines = await asyncio.to_thread(_machines, self.api, o.app) or self.at_start
            choices = _targets(fault, self.fleet, machines)
            if not choices:
                continue
            requested = self.rng.choice(choices)
            try:
                target = choose_target(fault, requested, self.fleet, machines)
                injected = make_fault(fault, self.data_dir, target, self.api, o.app)
                injected.check()
            except DrillError as exc:
                self.say(f"chaos: {fault} {requested or ''} skipped ({exc})")
                await asyncio.sleep(0.5)
                continue
            lasts = self.rng.uniform(1.0, o.fault_time)
            self.say(f"{time.monotonic() - start:.1f}s: {fault} {target.name} for {lasts:.1f}s")
            try:
                at = await asyncio.to_thread(injected.inject)
            except (DrillError, FleetError) as exc:  # the target changed under us (it just stopped, say)
                self.say(f"chaos: {fault} {target.name} not injected ({exc})")
                await asyncio.sleep(0.5)
                continue
            if fault == "kill-region":
                self.edge_deaths.append((at - start_wall, time.time() - start_wall))
            try:
                await asyncio.sleep(lasts)
            finally:
                try:
                    healed = await asyncio.to_thread(injected.heal)
                except (DrillError, FleetError) as exc:  # said, and the invariants will show what it costs
                    self.say(f"chaos: healing {fault} {target.name} failed ({exc})")
                    healed = time.time()
            took, missing = await asyncio.to_thread(settle, self.api, self.fleet, o.app, self.at_start,
                                                    o.recover_within)
            runs = await asyncio.to_thread(self._runs)
            doubles = invariants.double_runs(invariants.standby_pairs(self.at_start), runs, time.time(), start_wall)
            self.steps.append({"fault": fault, "target": target.name, "at_s": round(at - start_wall, 3),
                               "healed_at_s": round(healed - start_wall, 3), "recovered_after_s": took,
                               "not_recovered": missing, "double_runs_so_far": doubles})
            if took is None:
                self.say(f"chaos: not recovered {o.recover_within:g}s after the heal: {', '.join(missing)}")
            await asyncio.sleep(self.rng.uniform(0.5, 3.0))

    def _step_at(self, t: float) -> str:
        """The fault that was in the air (or last healed) at `t` seconds since the start."""
        last = ""
        for s in self.steps:
            if s["at_s"] <= t:
                last = f"{s['fault']} {s['target']}" + ("" if t <= s["healed_at_s"] else " (healed)")
        return last

    def _runs(self) -> dict[str, list[invariants.Span]]:
        out: dict[str, list[invariants.Span]] = {}
        for r in fleet_faults.runs(self.data_dir):
            out.setdefault(r.machine, []).append((r.start, r.end))
        return out

    async def _run(self) -> tuple[list[Any], LoadGenerator, float]:
        return await load_while(LoadGenerator(self.loader.load_spec()), self.loader.rps, self.o.duration,
                                self._schedule, "chaos")

    def run(self) -> dict[str, Any]:
        o = self.o
        self.say(f"chaos for {o.duration:g}s (seed {o.seed}), faults: {', '.join(self.usable)}")
        try:
            samples, generator, start_wall = asyncio.run(self._run())
        finally:
            fleet_faults.heal(self.data_dir)  # never leave a fault behind
        took, missing = settle(self.api, self.fleet, o.app, self.at_start, o.recover_within)
        runs = self._runs()
        doubles = invariants.double_runs(invariants.standby_pairs(self.at_start), runs, time.time(), start_wall)
        failed = invariants.failures(samples, o.method, self.edge_deaths)
        writes = self.loader.writes_check(samples, generator) if o.check_writes else None
        late = sum(1 for s in self.steps if s["recovered_after_s"] is None) + (took is None)
        failed_samples = [{"sent_s": round(s.sent, 3), "done_s": round(s.done, 3), "cause": s.cause,
                           "machine": s.machine, "during": self._step_at(s.sent), "status": s.status,
                           "rerouted": s.rerouted, "new_conn": s.new_conn,
                           "excused": analysis.excused_by_edge_death(s, self.edge_deaths)}
                          for s in samples if not s.ok][:50]
        counts = {"double_runs": doubles, "writes_lost": writes["lost"] if writes else None,
                  "not_recovered": late, "failed_requests": failed.failed}
        return {"kind": "chaos", "app": o.app, "seed": o.seed, "duration_s": o.duration, "rps": self.loader.rps,
                "faults": self.usable, "steps": self.steps, "sent": len(samples),
                "ok": sum(1 for s in samples if s.ok), "excused_failures": failed.excused,
                "failed_non_idempotent": failed.other, "failures": failed_samples,
                "edge_deaths": [[round(a, 3), round(b, 3)] for a, b in self.edge_deaths],
                "final_recovery_s": took, "not_recovered_at_end": missing,
                "invariants": counts, "writes": writes,
                "passed": all(not v for v in counts.values() if v is not None)}
