import pytest

from roost.core import lifecycle
from roost.core.errors import RoostError
from roost.core.lifecycle import TABLE, Action, State


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("state", list(State))
def test_every_action_from_every_state_is_decided(action, state):
    rule = TABLE[action]
    if state in rule.allowed:
        assert lifecycle.check(action, state) is True
    elif state in rule.noop:
        assert lifecycle.check(action, state) is False
    else:
        with pytest.raises(RoostError) as err:
            lifecycle.check(action, state)
        assert err.value.status == 412
        assert str(state) in err.value.message


def test_allowed_and_noop_never_overlap():
    for rule in TABLE.values():
        assert not rule.allowed & rule.noop


def test_start_destroyed_is_refused_with_flys_message():
    with pytest.raises(RoostError) as err:
        lifecycle.check(Action.START, State.DESTROYED)
    assert err.value.status == 412
    assert err.value.message == "failed_precondition: unable to start machine from current state: 'destroyed'"


def test_destroying_a_running_machine_needs_force():
    with pytest.raises(RoostError) as err:
        lifecycle.check(Action.DESTROY, State.STARTED)
    assert "force=true" in err.value.message
    assert lifecycle.check(Action.FORCE_DESTROY, State.STARTED)


def test_nothing_moves_a_destroyed_machine():
    for action in Action:
        with pytest.raises(RoostError):
            lifecycle.check(action, State.DESTROYED)


def test_observed_state_cannot_revive_a_destroyed_machine():
    assert lifecycle.observed(State.DESTROYED, State.STARTED) is State.DESTROYED
    assert lifecycle.observed(State.DESTROYING, State.STOPPED) is State.DESTROYING
    assert lifecycle.observed(State.DESTROYING, State.DESTROYED) is State.DESTROYED
    assert lifecycle.observed(State.STARTING, State.STARTED) is State.STARTED
