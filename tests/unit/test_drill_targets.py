"""How a drill picks its target, and what it refuses: only the fleet's own hosts, regions and machines."""

from __future__ import annotations

import pytest

from roost.drill.faults import DrillError, choose_target

FLEET = {"regions": ["ams", "ewr"], "hosts": [{"id": "ams-1", "region": "ams"}, {"id": "ams-2", "region": "ams"},
                                              {"id": "ewr-1", "region": "ewr"}]}


def machine(mid: str, host: str, state: str = "started", standbys: list[str] | None = None,
            primary: str | None = None) -> dict:
    config: dict = {"standbys": standbys or []}
    if primary:
        config["env"] = {"PRIMARY_REGION": primary}
    return {"id": mid, "host_id": host, "region": host.split("-")[0], "state": state, "config": config}


def test_defaults_prefer_a_watched_machine_then_the_home_region():
    machines = [machine("a", "ewr-1"), machine("b", "ams-1"), machine("c", "ams-2")]
    assert choose_target("kill-machine", None, FLEET, machines).name == "b"  # ams: where most run
    watched = [*machines, machine("s", "ams-1", "stopped", standbys=["c"])]
    host = choose_target("kill-host", None, FLEET, watched)
    assert host.name == "ams-2" and host.machines == {"c"}
    primary = [machine("a", "ewr-1", primary="ewr"), machine("b", "ams-1", primary="ewr"),
               machine("c", "ams-2", primary="ewr")]
    region = choose_target("kill-region", None, FLEET, primary)
    assert region.name == "ewr" and region.hosts == ["ewr-1"] and region.machines == {"a"}
    server = choose_target("kill-server", None, FLEET, [])
    assert server.kind == "server" and server.machines == set()


def test_a_host_target_takes_every_machine_of_the_app_on_it():
    machines = [machine("a", "ams-1"), machine("b", "ams-1", "stopped"), machine("c", "ewr-1")]
    target = choose_target("partition-host", "ams-1", FLEET, machines)
    assert target.machines == {"a", "b"} and target.region == "ams"


@pytest.mark.parametrize(("fault", "requested", "machines", "message"), [
    ("kill-host", "db-9", [machine("a", "ams-1")], "no host 'db-9' in this fleet"),
    ("kill-region", "fra", [machine("a", "ams-1")], "no region 'fra' in this fleet"),
    ("stop-machine", "zz", [machine("a", "ams-1")], "no machine 'zz'"),
    ("kill-machine", "x", [machine("a", "ams-1"), machine("x", "elsewhere-1")], "not a host of this fleet"),
    ("kill-machine", "a", [machine("a", "ams-1", "stopped")], "not started"),
    ("kill-server", "ams-1", [], "takes no --target"),
    ("kill-host", None, [], "no machines on this fleet's hosts"),
    ("kill-machine", None, [machine("a", "ams-1", "stopped")], "no running machine"),
    ("melt", None, [machine("a", "ams-1")], "unknown fault"),
])
def test_refusals(fault, requested, machines, message):
    with pytest.raises(DrillError, match=message):
        choose_target(fault, requested, FLEET, machines)


def test_kill_region_needs_two_regions():
    one = {"regions": ["ams"], "hosts": [{"id": "ams-1", "region": "ams"}]}
    with pytest.raises(DrillError, match="two regions"):
        choose_target("kill-region", None, one, [machine("a", "ams-1")])


def test_freeze_agent_targets_a_host_of_the_fleet_and_nothing_else():
    machines = [machine("w", "ams-1"), machine("s", "ams-2", "stopped", standbys=["w"])]
    target = choose_target("freeze-agent", None, FLEET, machines)
    assert target.kind == "host" and target.name == "ams-1" and target.machines == {"w"}
    with pytest.raises(DrillError, match="no host 'db-9' in this fleet"):
        choose_target("freeze-agent", "db-9", FLEET, machines)


def test_kill_server_on_replicas_targets_the_leader_or_the_replica_named():
    fleet = {**FLEET, "servers": [{"url": "https://a"}, {"url": "https://b", "leads": True}, {"url": "https://c"}]}
    assert choose_target("kill-server", None, fleet, []).name == "server-2"  # the leader
    assert choose_target("kill-server", "leader", fleet, []).name == "server-2"
    assert choose_target("kill-server", "server-3", fleet, []).name == "server-3"
    with pytest.raises(DrillError, match="no replica 'server-4'"):
        choose_target("kill-server", "server-4", fleet, [])
    nobody = {**FLEET, "servers": [{"url": "https://a"}, {"url": "https://b"}]}
    with pytest.raises(DrillError, match="no replica leads"):
        choose_target("kill-server", None, nobody, [])
