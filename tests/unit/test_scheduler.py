from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roost.core.errors import RoostError
from roost.placement.scheduler import HostView, PlacementRequest, allocate_ports, millicpus, place, place_volume


def host(i, region="ams", cpus=2, mem=2048, status="ok", cordoned=False):
    return HostView(f"h{i}", region, status, cordoned, cpus * 1000, mem)


def commit(hosts, chosen, req):
    """Apply a placement to the snapshot, as the server does before the next placement."""
    out = []
    for h in hosts:
        if h.id == chosen.id:
            groups = Counter(h.group_counts)
            groups[(req.app, req.group)] += 1
            apps = Counter(h.app_counts)
            apps[req.app] += 1
            h = HostView(h.id, h.region, h.status, h.cordoned, h.millicpus, h.memory_mb,
                         h.used_millicpus + millicpus(req.cpu_kind, req.cpus), h.used_memory_mb + req.memory_mb,
                         dict(groups), dict(apps))
        out.append(h)
    return out


requests = st.builds(
    PlacementRequest, app=st.sampled_from(["a", "b"]), group=st.sampled_from(["web", "worker"]),
    region=st.just("ams"), cpu_kind=st.sampled_from(["shared", "performance"]), cpus=st.integers(1, 2),
    memory_mb=st.sampled_from([256, 512, 1024]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(requests, max_size=40), st.integers(1, 5))
def test_never_over_capacity(reqs, n_hosts):
    hosts = [host(i) for i in range(n_hosts)]
    for req in reqs:
        try:
            chosen = place(req, hosts)
        except RoostError as err:
            assert err.status == 412 and err.fly_status == "insufficient_capacity"
            # it really did not fit anywhere
            assert all(h.free_memory_mb < req.memory_mb or h.free_millicpus < millicpus(req.cpu_kind, req.cpus)
                       for h in hosts)
            continue
        hosts = commit(hosts, chosen, req)
        for h in hosts:
            assert h.used_memory_mb <= h.memory_mb
            assert h.used_millicpus <= h.millicpus


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 6), st.integers(1, 12))
def test_spread_holds_for_a_group(n_hosts, n_machines):
    hosts = [host(i, mem=100_000, cpus=64) for i in range(n_hosts)]
    req = PlacementRequest("app", "web", "ams")
    for _ in range(n_machines):
        hosts = commit(hosts, place(req, hosts), req)
    counts = [h.group_counts.get(("app", "web"), 0) for h in hosts]
    assert max(counts) - min(counts) <= 1


def test_only_live_uncordoned_hosts_in_the_region():
    hosts = [host(1, status="unreachable"), host(2, cordoned=True), host(3, region="ewr"), host(4)]
    assert place(PlacementRequest("a", "", "ams"), hosts).id == "h4"


def test_volume_pins_the_host():
    hosts = [host(1), host(2)]
    assert place(PlacementRequest("a", "", "ams", pinned_host="h2"), hosts).id == "h2"
    with pytest.raises(RoostError) as err:
        place(PlacementRequest("a", "", "ams", pinned_host="h2"), [host(1), host(2, status="unreachable")])
    assert err.value.fly_status == "insufficient_capacity"


def test_unknown_region_is_400_and_known_empty_region_is_412_naming_it():
    with pytest.raises(RoostError) as err:
        place(PlacementRequest("a", "", "xyz"), [host(1)])
    assert err.value.status == 400 and "xyz" in err.value.message
    with pytest.raises(RoostError) as err:
        place(PlacementRequest("a", "", "syd"), [host(1)])
    assert err.value.status == 412 and "'syd'" in err.value.message


def test_capacity_error_names_region_and_reason():
    with pytest.raises(RoostError) as err:
        place(PlacementRequest("a", "", "ams", memory_mb=4096), [host(1, mem=2048)])
    assert "'ams'" in err.value.message and "memory" in err.value.message


def test_same_named_volumes_prefer_distinct_hosts():
    hosts = [host(1), host(2)]
    first = place_volume("a", "data", "ams", hosts, {})
    second = place_volume("a", "data", "ams", hosts, {first.id: 1})
    assert first.id != second.id
    with pytest.raises(RoostError):
        place_volume("a", "data", "ams", hosts, {"h1": 1, "h2": 1})
    assert place_volume("a", "data", "ams", hosts, {"h1": 1, "h2": 1}, require_unique_zone=False)


def test_ports_are_unique_per_host_and_stable_on_update():
    ports = allocate_ports([8080, 9090], used={20000, 20001})
    assert ports == {"8080": 20002, "9090": 20003}
    again = allocate_ports([8080, 7070], used={20000, 20001}, existing=ports)
    assert again["8080"] == 20002 and again["7070"] not in {20000, 20001, 20002}


def test_a_standby_never_lands_on_a_host_of_a_machine_it_watches():
    # Issue 12 case 2: whatever the ranking prefers (here h0: more free memory, no machines), the watched
    # machine's host is excluded.
    hosts = [host(0, mem=8192), host(1), host(2)]
    for _ in range(5):
        chosen = place(PlacementRequest("a", "worker", "ams", exclude_hosts=frozenset({"h0"})), hosts)
        assert chosen.id != "h0"
    with pytest.raises(RoostError) as err:
        place(PlacementRequest("a", "worker", "ams", exclude_hosts=frozenset({"h0"})), [host(0)])
    assert err.value.status == 412 and "stands by for" in err.value.message


def test_capacity_counts_what_place_would_accept() -> None:
    from roost.placement.scheduler import capacity

    hosts = [host(1, mem=1024), host(2, mem=600), host(3, status="unreachable"), host(4, cordoned=True),
             host(5, region="ewr")]
    # 256 MB shared machines: memory bounds them (4 + 2); dead and cordoned hosts take none; other regions count
    # for themselves only
    assert capacity("ams", hosts, "shared", 1, 256) == (6, 2)
    # performance cpus bound them: 2 cores per host
    assert capacity("ams", hosts, "performance", 1, 256) == (4, 2)
    assert capacity("ams", hosts, "performance", 4, 256) == (0, 0)
    assert capacity("syd", hosts, "shared", 1, 256) == (0, 0)
    # and place agrees: what capacity counts, place fills, one by one, then refuses
    placed = 0
    views = {h.id: h for h in hosts}
    while True:
        try:
            chosen = place(PlacementRequest("a", "app", "ams", "shared", 1, 256), views.values())
        except RoostError:
            break
        views[chosen.id] = HostView(chosen.id, chosen.region, chosen.status, chosen.cordoned, chosen.millicpus,
                                    chosen.memory_mb, chosen.used_millicpus + 62, chosen.used_memory_mb + 256)
        placed += 1
    assert placed == 6
