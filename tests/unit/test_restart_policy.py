from roost.core.machine_config import RestartPolicy
from roost.core.restart import backoff, should_restart


def test_no_never_restarts():
    assert not should_restart(RestartPolicy("no", 10), 1, [], 0)


def test_always_restarts_even_clean_exits():
    assert should_restart(RestartPolicy("always", 0), 0, [1.0] * 100, 2.0)


def test_on_failure_restarts_failures_up_to_max_retries_in_the_window():
    policy = RestartPolicy("on-failure", 3)
    assert not should_restart(policy, 0, [], 100)
    assert should_restart(policy, 1, [90, 95], 100)
    assert not should_restart(policy, 1, [90, 95, 99], 100)
    # restarts older than five minutes no longer count
    assert should_restart(policy, 1, [1, 2, 3], 1000)


def test_backoff_grows_and_is_capped():
    assert backoff(1) < backoff(3) <= 5.0
    assert backoff(50) == 5.0
