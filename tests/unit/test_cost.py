"""Issue 20, cost: the ledger of each machine's seconds in each billing state is exact to the second (a virtual
clock: every call takes `now`), split at hour boundaries, bounded, kept in the machine's record (so it survives a
restart of the control plane); prices follow Fly's public table unless the operator replaces it, and a malformed
table is refused with the line at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from roost.core import cost
from roost.core.cost import HOUR, MONTH, PriceError, Prices, account, bill, category, load_prices, seconds_in
from roost.core.lifecycle import State
from roost.core.model import Machine
from roost.server.state import ClusterState
from roost.server.watch import WatchHub
from roost.store import open_store

T0 = 1_800_000_000.0 - 1_800_000_000.0 % HOUR  # the start of an hour
SMALL = {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256, "rootfs_gb": 2.0, "volume_gb": 0}


def test_seconds_in_each_state_are_exact_and_split_at_the_hour() -> None:
    ledger = account(None, "started", T0 + 3500, SMALL)
    ledger = account(ledger, "stopped", T0 + 3600 + 100)  # 200 s started, across the hour
    ledger = account(ledger, "suspended", T0 + 3600 + 130)
    ledger = account(ledger, "standby", T0 + 3600 + 131)
    ledger = account(ledger, None, T0 + 3600 + 171)  # destroyed: nothing accrues after
    assert ledger["hours"] == {str(int(T0)): {"started": 100.0},
                               str(int(T0 + HOUR)): {"started": 100.0, "stopped": 30.0, "suspended": 1.0,
                                                     "standby": 40.0}}
    later = T0 + 10 * HOUR
    assert seconds_in(ledger, later) == {"started": 200.0, "stopped": 30.0, "suspended": 1.0, "standby": 40.0}
    assert seconds_in(ledger, later, since=T0 + HOUR + 5) == {"started": 100.0, "stopped": 30.0,
                                                              "suspended": 1.0, "standby": 40.0}


def test_the_open_interval_counts_until_now_and_old_hours_are_dropped() -> None:
    ledger = account(None, "stopped", T0, SMALL)
    assert seconds_in(ledger, T0 + 90)["stopped"] == 90.0, "not yet accounted, still counted"
    assert ledger["hours"] == {}, "reading does not change the ledger"
    far = account(ledger, "stopped", T0 + (cost.RETAIN_HOURS + 3) * HOUR)
    assert len(far["hours"]) == cost.RETAIN_HOURS and str(int(T0)) not in far["hours"]


def test_fly_prices_and_what_autostop_saved() -> None:
    p = Prices()
    assert p.compute_per_second("shared", 1, 256) * MONTH == pytest.approx(1.94)
    assert p.compute_per_second("performance", 1, 2048) * MONTH == pytest.approx(31.0)
    assert p.compute_per_second("performance", 2, 4096) * MONTH == pytest.approx(62.0)
    # A shared-cpu-1x, 2 GB rootfs: a day started, then 29 days stopped.
    ledger = account(None, "started", T0, SMALL)
    ledger = account(ledger, "stopped", T0 + 86400)
    b = bill(ledger, p, T0 + MONTH)
    assert b.seconds["started"] == 86400 and b.seconds["stopped"] == MONTH - 86400
    assert b.compute == pytest.approx(1.94 / 30)
    assert b.rootfs == pytest.approx(2 * 0.15 * 29 / 30), "stopped time is billed as its root filesystem only"
    assert b.always_on == pytest.approx(1.94) and b.saved == pytest.approx(1.94 - b.compute - b.rootfs)
    volume = account(None, "stopped", T0, {**SMALL, "volume_gb": 10})
    assert bill(volume, p, T0 + MONTH).volumes == pytest.approx(1.5), "a volume costs while it exists"


@pytest.mark.parametrize(("state", "standby", "billed"), [
    ("started", False, "started"), ("stopping", False, "started"), ("suspended", False, "suspended"),
    ("stopped", False, "stopped"), ("created", False, "stopped"), ("failed", False, "stopped"),
    ("stopped", True, "standby"), ("destroyed", False, None),
])
def test_billing_states(state: str, standby: bool, billed: str | None) -> None:
    assert category(state, standby) == billed


def test_a_price_table_replaces_what_it_names_and_a_bad_one_names_its_line() -> None:
    table = load_prices('currency = "EUR"\n[compute]\nshared_cpu = 1.0\n\n[storage]\nvolume_gb = 0.2\n')
    assert (table.currency, table.shared_cpu, table.volume_gb, table.memory_gb) == ("EUR", 1.0, 0.2, 5.0)
    for text, line, words in (
        ("[compute]\nshared_cpu = 1\ngpu = 3\n", 3, "unknown price compute.gpu"),
        ("[compute]\n\n\nmemory_gb = -1\n", 4, "0 or more"),
        ("[storage]\nrootfs_gb = \"cheap\"\n", 2, "rootfs_gb"),
        ("[compute\nshared_cpu = 1\n", 1, "not valid TOML"),
        ("\n[network]\negress = 1\n", 2, "unknown section"),
        ('currency = "dollars"\n', 1, "currency"),
    ):
        with pytest.raises(PriceError) as refused:
            load_prices(text, "prices.toml")
        message = str(refused.value)
        assert words in message and (f"prices.toml:{line}:" in message or "line 1" in message or line == 1), message


async def test_the_ledger_is_written_with_the_machine_and_survives_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'roost.db'}"
    state = ClusterState(open_store(url), WatchHub(), inline=True)
    state.load()
    m = Machine("m1", "app", "m1", "ams", "h1", State.STARTED, "v1", {"image": "w:v1"}, {}, "127.0.9.1", 1.0, 1.0)
    await state.save(m)
    first = state.machines["m1"].ledger
    assert first["category"] == "started" and first["size"]["memory_mb"] == 256
    stopped = state.machines["m1"].copy()
    stopped.state = State.STOPPED
    await state.save(stopped)
    again = ClusterState(open_store(url), WatchHub(), inline=True)
    again.load()
    kept = again.machines["m1"].ledger
    assert kept["category"] == "stopped" and kept["since"] >= first["since"]
    assert seconds_in(kept, kept["since"])["started"] == pytest.approx(kept["since"] - first["since"], abs=1e-6)
    assert "ledger" not in again.machines["m1"].to_api("ok"), "not part of Fly's machine object"
