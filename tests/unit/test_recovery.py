"""The recovery rule (detector/recovery.py): what runs again after a host comes back, and the hand-back."""

from roost.core.lifecycle import State
from roost.detector.recovery import (
    AgentAction,
    ServerAction,
    hand_back,
    holds_work,
    on_agent_start,
    on_machine_lost,
    replaced_by,
)


def test_an_agent_restarts_what_should_run_unless_a_standby_may_hold_it():
    assert on_agent_start(State.STARTED, alive=True, watched=False, host_restarted=False) is AgentAction.ADOPT
    assert on_agent_start(State.STARTED, alive=True, watched=True, host_restarted=False) is AgentAction.ADOPT
    assert on_agent_start(State.STARTED, alive=False, watched=False, host_restarted=True) is AgentAction.RESTART
    # Issue 12 case 1: a watched worker waits for the control plane instead of staying down for good.
    assert on_agent_start(State.STARTED, alive=False, watched=True, host_restarted=True) is AgentAction.AWAIT
    assert on_agent_start(State.STARTED, alive=False, watched=True, host_restarted=False) is AgentAction.AWAIT


def test_an_exit_while_only_the_agent_was_down_follows_the_restart_policy():
    assert on_agent_start(State.STARTED, alive=False, watched=False, host_restarted=False) is AgentAction.EXITED


def test_a_suspended_machine_lost_with_its_host_stays_down():
    # Issue 12 case 6: never woken by the host's return; it becomes stopped (its files kept).
    for watched in (False, True):
        assert on_agent_start(State.SUSPENDED, alive=False, watched=watched, host_restarted=True) is AgentAction.STOPPED
    assert on_agent_start(State.SUSPENDED, alive=True, watched=False, host_restarted=False) is AgentAction.ADOPT


def test_machines_that_were_not_running_are_left_alone():
    for state in (State.STOPPED, State.CREATED, State.FAILED):
        assert on_agent_start(state, alive=False, watched=False, host_restarted=True) is AgentAction.NOTHING


def test_the_control_plane_runs_a_lost_machine_again_unless_its_standby_took_over():
    assert on_machine_lost(State.STARTED, {}) is ServerAction.START
    assert on_machine_lost(State.STARTING, {"token": 3, "holder": "w"}) is ServerAction.START
    assert on_machine_lost(State.STOPPED, {"token": 2, "replaced_by": "s", "holder": "s"}) is ServerAction.KEEP_STOPPED
    assert on_machine_lost(State.STARTED, {"replaced_by": "s"}) is ServerAction.KEEP_STOPPED
    assert on_machine_lost(State.STOPPED, {}) is ServerAction.NOTHING  # the user had stopped it


def test_hand_back_gives_a_token_above_both_and_the_work_to_the_machine():
    # Issue 12 case 5: the operator starts a replaced machine again.
    back = hand_back("w", "s", {"token": 2, "replaced_by": "s", "holder": "s"}, {"token": 2, "holder": "s"}, 10.0)
    assert back.token == 3
    assert back.watched["holder"] == "w" and back.standby["holder"] == "w"
    assert not replaced_by(back.watched) and not holds_work("s", back.standby) and holds_work("w", back.watched)
    assert hand_back("w", "s", {"token": 5, "replaced_by": "s"}, {}, 0.0).token == 6


def test_a_standby_that_took_over_holds_the_work():
    assert holds_work("s", {"token": 2, "holder": "s"})
    assert not holds_work("s", {}) and not holds_work("s", {"holder": "w"})
