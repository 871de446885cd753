import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.core.errors import RoostError
from roost.plan.deploy import (
    chunks,
    groups_needing_machines,
    new_machines,
    pool_size,
    skip_launch,
    state_after_update,
)
from roost.plan.scale import converge, parse_count


def deltas(changes):
    return {c.region: c.delta for c in changes}


# flyctl's own vectors (internal/command/scale/count_machines_test.go, see fly-semantics.md §4)
def test_flyctl_vectors():
    assert deltas(converge(3, ["scl", "iad"], {})) == {"scl": 2, "iad": 1}
    assert deltas(converge(6, ["ams", "ewr", "syd"], {})) == {"ams": 2, "ewr": 2, "syd": 2}
    assert deltas(converge(20, ["ams", "ewr", "gig"], {})) == {"ams": 7, "ewr": 7, "gig": 6}
    assert deltas(converge(1, ["scl", "iad"], {"scl": 1, "iad": 1})) == {"scl": 0, "iad": -1}
    assert deltas(converge(1, ["iad", "scl"], {"scl": 1, "iad": 1})) == {"iad": 0, "scl": -1}


def test_removal_does_not_rebalance():
    changes = converge(2, ["scl", "iad"], {"scl": 3, "iad": 5})
    assert {c.region: c.target for c in changes} == {"scl": 0, "iad": 2}


def test_max_per_region_trims_then_fills_the_emptiest():
    # Fly's docs example: 8 yyz, 2 yul, 1 ewr -> 11 with at most 5 per region -> ewr 3, yul 3, yyz 5. flyctl
    # only gets there when ewr is listed first (fly-semantics.md §4); filling the emptiest region first
    # gets there whatever the order.
    for order in (["ewr", "yul", "yyz"], ["yyz", "yul", "ewr"]):
        got = converge(11, order, {"yyz": 8, "yul": 2, "ewr": 1}, max_per_region=5)
        assert {c.region: c.target for c in got} == {"ewr": 3, "yul": 3, "yyz": 5}


def test_additions_fill_the_regions_with_fewest_first():
    got = converge(6, ["ams", "ewr", "syd"], {"ams": 2})
    assert {c.region: c.target for c in got} == {"ams": 2, "ewr": 2, "syd": 2}
    with pytest.raises(RoostError):
        converge(11, ["a", "b"], {}, max_per_region=5)


def test_unlisted_regions_are_not_touched():
    got = converge(2, ["ams"], {"ams": 1, "syd": 4})
    assert [(c.region, c.delta) for c in got] == [("ams", 1)]


@given(st.integers(0, 40), st.lists(st.sampled_from(["ams", "ewr", "syd", "fra", "iad"]), min_size=1, max_size=5,
                                    unique=True), st.dictionaries(st.sampled_from(["ams", "ewr", "syd"]),
                                                                  st.integers(0, 9)))
def test_total_always_converges(total, regions, current):
    changes = converge(total, regions, current)
    assert sum(c.target for c in changes) == total
    assert all(c.target >= 0 for c in changes)


def test_relative_counts():
    assert parse_count("+2", 3) == 5 and parse_count("-1", 3) == 2 and parse_count("4", 9) == 4
    with pytest.raises(RoostError):
        parse_count("-5", 3)
    with pytest.raises(RoostError):
        parse_count("many", 3)


def test_first_deploy_defaults():
    assert new_machines("web", has_services=True, has_mounts=False, ha=True).roles == ("first", "second")
    assert new_machines("worker", has_services=False, has_mounts=False, ha=True).roles == ("first", "standby")
    assert new_machines("db", has_services=True, has_mounts=True, ha=True).roles == ("first",)
    assert new_machines("web", has_services=True, has_mounts=False, ha=False).roles == ("first",)
    assert new_machines("worker", False, False, True).describe() == '1 "worker" machine and 1 standby machine for it'


def test_groups_needing_machines_and_update_rules():
    assert groups_needing_machines(["web", "worker"], {"web": 2}) == ["worker"]
    assert skip_launch("stopped", False) and skip_launch("suspended", False) and skip_launch("stopped", True)
    assert not skip_launch("started", False) and not skip_launch("failed", False)
    assert skip_launch("failed", True)  # a standby comes back up only if it runs


def test_a_running_standby_is_relaunched_by_a_deploy():
    # Issue 12 case 4: after a failover the standby does the group's work; flyctl looks at the state first.
    assert not skip_launch("started", True)


def test_a_suspended_machine_ends_stopped_after_an_update():
    # Issue 12 case 6: a new version cannot resume the old one's memory.
    assert state_after_update("suspended", launched=False) == "stopped"
    assert state_after_update("stopped", launched=False) == "stopped"
    assert state_after_update("started", launched=True) == "started"


def test_scale_without_regions_adds_to_the_first_listed_region_first():
    # Issue 12 case 8: without --region flyctl adds round-robin from the first region (the primary one),
    # where filling the emptiest region would put a volume machine far away in syd.
    assert deltas(converge(2, ["ams", "syd"], {"ams": 1}, fill_emptiest=False)) == {"ams": 1, "syd": 0}
    assert deltas(converge(2, ["ams", "syd"], {"ams": 1})) == {"ams": 0, "syd": 1}
    assert deltas(converge(4, ["ams", "ewr", "syd"], {"ams": 1}, fill_emptiest=False)) == {"ams": 1, "ewr": 1,
                                                                                          "syd": 1}
    assert deltas(converge(3, ["scl", "iad"], {}, fill_emptiest=False)) == {"scl": 2, "iad": 1}


def test_rolling_pool_size():
    assert pool_size(None, 3) == 1 and pool_size(None, 10) == 4 and pool_size(2, 10) == 2 and pool_size(0.5, 3) == 2
    assert chunks(["a", "b", "c"], 2) == [["a", "b"], ["c"]]


class _FakeApi:
    """The two reads plan_scale makes, answered from memory."""

    def __init__(self, machines: list[tuple[str, str]], primary: str) -> None:
        self.machines = [{"id": str(i), "region": region, "config": {"image": "x", "metadata": {
            "fly_process_group": group}}} for i, (region, group) in enumerate(machines)]
        self.primary = primary

    def get(self, path: str):
        return self.machines if path.endswith("/machines") else {"primary_region": self.primary}


def test_scale_without_regions_puts_a_volume_group_in_the_primary_region():
    # Issue 12 case 8, through the shell that reads the app: web also runs in syd, db only in ams.
    from roost.deploy.scale import plan_scale

    api = _FakeApi([("syd", "web"), ("ams", "web"), ("ams", "db")], primary="ams")
    plan = plan_scale(api, "stack", {"db": "2"}, None, -1, None)  # type: ignore[arg-type]
    assert deltas(plan[0].changes) == {"ams": 1, "syd": 0}
    listed = plan_scale(api, "stack", {"db": "2"}, ["ams", "syd"], -1, None)  # type: ignore[arg-type]
    assert deltas(listed[0].changes) == {"ams": 0, "syd": 1}, "listing regions spreads over them"
