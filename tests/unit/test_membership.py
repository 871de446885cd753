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
