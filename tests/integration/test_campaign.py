"""Issue 17's campaigns on a real fleet: `roost drill all` runs every fault in turn on the stack example
(web in two regions, the worker's standby in the other region) and fails no request; `roost drill chaos`
injects random faults for a while and every invariant holds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from roost.dev import faults
from tests.integration.conftest import Fleet

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CAN_PARTITION = faults.partition_unavailable() is None


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    f = Fleet(tmp_path_factory.mktemp("campaign"), ["ams", "ewr"], 2, proxies=True, idle_interval=3600.0)
    directory = tmp_path_factory.mktemp("campaign-apps") / "every"
    shutil.copytree(ROOT / "examples" / "stack", directory)
    toml = directory / "fly.toml"
    toml.write_text(toml.read_text().replace('app = "stack"', 'app = "every"'))
    f.roost("apps", "create", "every", "--primary-region", "ams")
    f.roost("deploy", "-c", str(toml), "--standby-region", "ewr", timeout=300)
    f.roost("scale", "count", "3", "--region", "ams,ewr", "-g", "web", "-a", "every", "--yes", timeout=120)
    yield f
    faults.heal(f.spec.data_dir)
    f.close()


def test_every_fault_in_turn_on_the_stack_fails_no_request(fleet):
    web = [m for m in fleet.api.get("/v1/apps/every/machines").json()
           if m["config"]["metadata"]["fly_process_group"] == "web"]
    assert {m["region"] for m in web} == {"ams", "ewr"}
    out = fleet.roost("drill", "all", "-a", "every", "--rps", "20", "--fault-time", "3s", "--expect-no-errors",
                      "--json", check=False, timeout=900)
    result = json.loads(out.stdout)
    summary = [(d["fault"], d["target"]["name"], d["totals"]["failed"], d["passed"],
                [c for c in d["checks"] if not c["passed"]]) for d in result["drills"]]
    if out.returncode != 0 or not result["passed"]:  # in full, in the captured output (an assertion is cut)
        print(json.dumps(summary, indent=1), out.stderr[-4000:], sep="\n")
    assert out.returncode == 0 and result["passed"], summary
    ran = {d["fault"] for d in result["drills"]}
    expected = {"stop-machine", "kill-machine", "kill-host", "kill-region", "kill-server", "slow-machine",
                "freeze-agent"} | ({"partition-host"} if CAN_PARTITION else set())
    assert ran == expected, result["skipped"]
    assert all(d["double_runs"] in (0, None) for d in result["drills"])
    assert all(d["recovered_after_s"] is not None for d in result["drills"])


def test_chaos_keeps_the_safety_invariants_and_reports_every_failure(fleet):
    """A short chaos run: never a double run, everything back after every heal, and any failed request
    listed with its cause (exit 1 then). The zero-failure goal over 10-minute runs is measured by
    bench/drills.py --only chaos (a 45 s run here has seen one failed GET in about 900)."""
    out = fleet.roost("drill", "chaos", "-a", "every", "--duration", "45s", "--seed", "3", "--rps", "20",
                      "--fault-time", "3s", "--json", check=False, timeout=600)
    result = json.loads(out.stdout)
    inv = result["invariants"]
    assert len(result["steps"]) >= 3
    assert inv["double_runs"] == 0 and inv["not_recovered"] == 0, (inv, result["steps"])
    assert inv["failed_requests"] <= 0.01 * result["sent"], (inv, result["failures"])
    assert len(result["failures"]) == min(50, inv["failed_requests"] + result["excused_failures"])
    assert all(f["cause"] for f in result["failures"])
    assert (out.returncode == 0) == result["passed"] == (inv["failed_requests"] == 0)


def test_campaigns_refuse_what_they_cannot_do_in_one_line(fleet):
    bad = fleet.roost("drill", "chaos", "-a", "every", "--faults", "kill-host,melt-cpu", check=False)
    assert bad.returncode == 1 and "unknown fault 'melt-cpu'" in bad.stderr and "Traceback" not in bad.stderr
    bad = fleet.roost("drill", "all", "-a", "every", "--target", "ams-1", check=False)
    assert bad.returncode == 1 and "chooses its own targets" in bad.stderr
    bad = fleet.roost("drill", "chaos", "-a", "every", "--duration", "5s", check=False)
    assert bad.returncode == 1 and "between 10s and 24h" in bad.stderr
    assert faults.runs(fleet.spec.data_dir) is not None
