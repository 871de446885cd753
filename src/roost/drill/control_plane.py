"""What a kill-server drill measures of the control plane itself when it has several replicas (issue 18):
API writes sent through every replica (the client fails over as the CLI does), whether each was acknowledged
and is still there afterwards, and when a surviving replica began to lead.

The writes are throwaway apps named after the drill (`drill-ID-N`), deleted when the drill is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from roost.tls import Trust

WRITES_PER_SECOND = 20.0
WRITE_TIMEOUT = 5.0


@dataclass
class Write:
    n: int
    sent: float  # seconds since the drill started
    done: float
    status: int  # 0: no answer at all

    @property
    def acknowledged(self) -> bool:
        return self.status == 201


@dataclass
class ControlPlaneProbe:
    servers: tuple[str, ...]
    token: str
    ca: str
    drill_id: str
    rate: float = WRITES_PER_SECOND  # API writes a second
    writes: list[Write] = field(default_factory=list)
    leaders: list[tuple[float, str, int]] = field(default_factory=list)  # (seconds since start, leader, term)

    def _client(self, base: str, timeout: float, failover: bool = True) -> httpx.AsyncClient:
        """A client of `base`; with `failover`, of whichever replica answers (as the CLI's)."""
        trust = Trust(Path(self.ca) if self.ca else None, self.servers if failover else ())
        return httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {self.token}"},
                                 timeout=timeout, trust_env=False, transport=trust.async_transport())

    def name(self, n: int) -> str:
        return f"drill-{self.drill_id}-{n}"

    async def run(self, start: float, duration: float) -> None:
        """Writes at `rate` a second and a look at who leads every 0.1 s, for `duration` seconds."""
        await asyncio.gather(self._write(start, duration), self._watch(start, duration))

    async def _write(self, start: float, duration: float) -> None:
        async with self._client(self.servers[0], WRITE_TIMEOUT) as client:
            pending: set[asyncio.Task[None]] = set()
            n = 0
            while (due := n / self.rate) < duration:
                await asyncio.sleep(max(0.0, start + due - time.monotonic()))

                async def one(n: int, due: float) -> None:
                    status = 0
                    with contextlib.suppress(httpx.HTTPError):
                        answer = await client.post("/v1/apps", json={"app_name": self.name(n),
                                                                     "org_slug": "personal"})
                        status = answer.status_code
                    self.writes.append(Write(n, due, time.monotonic() - start, status))

                task = asyncio.ensure_future(one(n, due))
                pending.add(task)
                task.add_done_callback(pending.discard)
                n += 1
            if pending:
                await asyncio.wait(pending, timeout=WRITE_TIMEOUT + 1)

    async def _watch(self, start: float, duration: float) -> None:
        clients = [self._client(url, 0.5, failover=False) for url in self.servers]  # each asks its own replica
        try:
            while (now := time.monotonic() - start) < duration:
                for client in clients:
                    with contextlib.suppress(httpx.HTTPError, ValueError):
                        view = (await client.get("/v1/control-plane")).json()
                        if view.get("leads") and (not self.leaders or self.leaders[-1][1:] !=
                                                  (view["replica"], view["term"])):
                            self.leaders.append((round(now, 3), view["replica"], int(view["term"])))
                await asyncio.sleep(0.1)
        finally:
            for client in clients:
                await client.aclose()

    def lost(self, api: Any) -> int:
        """Acknowledged writes that are not there now."""
        apps = {a["name"] for a in (api.get("/v1/apps") or {}).get("apps", [])}
        return sum(1 for w in self.writes if w.acknowledged and self.name(w.n) not in apps)

    def clean_up(self, api: Any) -> None:
        for w in self.writes:
            with contextlib.suppress(Exception):
                api.delete(f"/v1/apps/{self.name(w.n)}")


def figures(probe: ControlPlaneProbe, fault_at: float, killed: str, lost: int, twice: int) -> dict[str, Any]:
    """The report's control-plane section; `twice`: takeovers decided more than once since the kill."""
    writes = sorted(probe.writes, key=lambda w: w.sent)
    failed = [w for w in writes if not w.acknowledged]
    after = [w for w in writes if w.sent >= fault_at]
    first_failed = min((w.sent for w in after if not w.acknowledged), default=None)
    resumed = None
    if first_failed is not None:
        back = [w.done for w in after if w.acknowledged and w.sent >= first_failed]
        resumed = round(min(back) - fault_at, 3) if back else None
    elif after:
        resumed = 0.0
    before = [entry for entry in probe.leaders if entry[0] < fault_at]
    old = before[-1] if before else None
    new = next((entry for entry in probe.leaders if entry[0] >= fault_at and (old is None or entry[1:] != old[1:])),
               None)
    return {
        "replicas": len(probe.servers), "killed": killed,
        "writes": len(writes), "acknowledged": len(writes) - len(failed), "failed": len(failed),
        "failed_statuses": sorted({w.status for w in failed}),
        "writes_back_after_s": resumed,
        "leader_before": old[1] if old else None, "term_before": old[2] if old else None,
        "new_leader": new[1] if new else None, "term_after": new[2] if new else None,
        "new_leader_after_s": round(new[0] - fault_at, 3) if new else None,
        "writes_lost": lost, "takeovers_decided_twice": twice,
    }
