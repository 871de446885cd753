import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.core.errors import RoostError
from roost.plan.deploy import chunks, groups_needing_machines, new_machines, pool_size, skip_launch
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
    assert skip_launch("stopped", False) and skip_launch("suspended", False) and skip_launch("started", True)
    assert not skip_launch("started", False) and not skip_launch("failed", False)


def test_rolling_pool_size():
    assert pool_size(None, 3) == 1 and pool_size(None, 10) == 4 and pool_size(2, 10) == 2 and pool_size(0.5, 3) == 2
    assert chunks(["a", "b", "c"], 2) == [["a", "b"], ["c"]]
