from roost.core.lifecycle import State
from roost.detector.fencing import LeaseConfig, has_contact, must_fence, takeover_at
from roost.detector.standby import MachineView, takeovers, watched_on


def mv(i, host, state=State.STARTED, standbys=()):
    return MachineView(i, host, state, tuple(standbys))


def test_a_standby_starts_only_for_a_machine_on_the_dead_host():
    machines = [mv("w", "h1"), mv("s", "h2", State.STOPPED, ["w"])]
    assert [(t.watched, t.standby) for t in takeovers("h1", machines, {"h2"})] == [("w", "s")]
    assert takeovers("h3", machines, {"h1", "h2"}) == []


def test_no_takeover_for_a_stopped_or_destroyed_watched_machine():
    for state in (State.STOPPED, State.DESTROYED, State.CREATED):
        assert takeovers("h1", [mv("w", "h1", state), mv("s", "h2", State.STOPPED, ["w"])], {"h2"}) == []


def test_standby_must_be_stopped_and_on_a_live_other_host():
    assert takeovers("h1", [mv("w", "h1"), mv("s", "h2", State.STARTED, ["w"])], {"h2"}) == []
    assert takeovers("h1", [mv("w", "h1"), mv("s", "h1", State.STOPPED, ["w"])], {"h2"}) == []
    assert takeovers("h1", [mv("w", "h1"), mv("s", "h2", State.STOPPED, ["w"])], set()) == []


def test_a_standby_for_several_machines_starts_once():
    machines = [mv("a", "h1"), mv("b", "h1"), mv("s", "h2", State.STOPPED, ["a", "b"])]
    assert len(takeovers("h1", machines, {"h2"})) == 1


def test_watched_machines_of_a_host():
    machines = [mv("w", "h1"), mv("x", "h1"), mv("s", "h2", State.STOPPED, ["w"]), mv("t", "h1", State.STOPPED, ["x"])]
    assert watched_on("h1", machines) == {"w"}, "a standby on the same host cannot replace anything"


def test_contact_and_fencing():
    assert has_contact(True, 0, 0)
    assert has_contact(False, 2, 3) and not has_contact(False, 1, 2) and not has_contact(False, 0, 0)
    cfg = LeaseConfig(lease=1.0, margin=0.5)
    assert must_fence(10.0, 8.9, cfg, peers_total=2, watched=1)
    assert not must_fence(10.0, 9.5, cfg, 2, 1)
    assert not must_fence(10.0, 0.0, cfg, 0, 1), "no peers: no standby elsewhere, nothing to fence for"
    assert not must_fence(10.0, 0.0, cfg, 2, 0)
    assert takeover_at(100.0, cfg) == 101.5


def test_the_server_waits_past_the_agents_lease():
    cfg = LeaseConfig()
    last = 50.0
    # the agent's own clock may have seen the last contact a little later (the heartbeat's round trip)
    agent_last_contact = last + 0.05
    fence_deadline = agent_last_contact + cfg.lease
    assert takeover_at(last, cfg) > fence_deadline + 0.2
