from roost.detector.membership import DetectorConfig, judge


def test_statuses_follow_silence():
    cfg = DetectorConfig(heartbeat_interval=0.25, suspect_after=0.75, dead_after=1.5)
    assert judge(100.0, 100.5, cfg) == "ok"
    assert judge(100.0, 100.8, cfg) == "unknown"
    assert judge(100.0, 101.5, cfg) == "unreachable"


def test_default_declares_death_within_two_seconds_with_slack_for_busy_hosts():
    cfg = DetectorConfig()
    assert cfg.dead_after + cfg.heartbeat_interval / 4 < 2.0
    assert cfg.dead_after / cfg.heartbeat_interval >= 5


def test_peer_confirmation_of_a_silent_host():
    from roost.detector.membership import Probe, confirm

    assert confirm(None, last_heartbeat=10.0, now=11.0) == (None, True), "ask the peers"
    assert confirm(Probe(9.0, False), 10.0, 11.0) == (None, True), "an answer from before the silence says nothing"
    assert confirm(Probe(10.5, False), 10.0, 11.0) == (True, False), "nobody reaches it: dead"
    assert confirm(Probe(10.5, True), 10.0, 11.0) == (False, False), "the peers reach it: only we lost it"
    assert confirm(Probe(10.5, True), 10.0, 12.0) == (False, True), "and we keep asking"
