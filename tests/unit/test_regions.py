import json

import pytest

from roost.core.regions import COORDINATES, REGIONS, RttTable, estimated_rtt_ms
from roost.dev.anycast import Anycast, EdgeAddress, client_region
from roost.proxy.forwarding import Replay


def test_every_region_has_coordinates():
    assert set(REGIONS) == set(COORDINATES)


@pytest.mark.parametrize(("a", "b", "published"), [("ams", "ewr", 80), ("ewr", "syd", 205), ("ams", "syd", 270),
                                                    ("fra", "ams", 8)])
def test_estimates_are_within_a_quarter_of_published_pings(a, b, published):
    assert abs(estimated_rtt_ms(a, b) - published) <= max(5, published * 0.25)


def test_rtt_is_symmetric_and_zero_at_home():
    table = RttTable()
    assert table.rtt("ams", "ams") == 0 and table.rtt("ams", "syd") == table.rtt("syd", "ams")
    assert table.nearest("ams", ["syd", "ewr", "fra"]) == ["fra", "ewr", "syd"]


def test_overrides_from_a_file(tmp_path):
    path = tmp_path / "rtt.json"
    path.write_text(json.dumps({"ams-ewr": 300}))
    table = RttTable.from_file(path)
    assert table.rtt("ewr", "ams") == 300 and table.rtt("ams", "syd") == estimated_rtt_ms("ams", "syd")
    path.write_text("[1, 2]")
    with pytest.raises(ValueError):
        RttTable.from_file(path)


def test_fly_replay_header():
    r = Replay.parse(b'region="sjc,any";state=abc;elsewhere=true', "m1", "ams")
    assert r.regions == ("sjc", "any") and r.state == "abc" and r.elsewhere and r.source == "m1"
    assert Replay.parse(b"instance=00aa11bb22cc33", "m", "ams").instance == "00aa11bb22cc33"


def test_anycast_ranks_edges_by_distance_from_the_client():
    edges = [EdgeAddress("ams", "h", 1), EdgeAddress("ewr", "h", 2), EdgeAddress("syd", "h", 3)]
    anycast = Anycast(edges, "ams", RttTable())
    assert [e.region for e in anycast.ranked("syd")] == ["syd", "ewr", "ams"]
    assert [e.region for e in anycast.ranked("ams")] == ["ams", "ewr", "syd"]
    head = b"GET / HTTP/1.1\r\nHost: x\r\nFly-Client-Region: SYD\r\n\r\n"
    assert client_region(head, "ams") == "syd" and client_region(b"GET / HTTP/1.1\r\n\r\n", "ams") == "ams"
