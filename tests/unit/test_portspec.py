import pytest

from roost.core.errors import RoostError
from roost.core.portspec import parse_port, services_from_ports


def test_flyctl_forms():
    assert parse_port("80:8080/tcp:http") == (8080, "tcp", {"port": 80, "handlers": ["http"]})
    assert parse_port("443:8080/tcp:http,tls") == (8080, "tcp", {"port": 443, "handlers": ["http", "tls"]})
    assert parse_port("5432/tcp") == (5432, "tcp", {"port": 5432})
    assert parse_port("8080") == (8080, "tcp", {"port": 8080})
    assert parse_port("10000-10010:9000/udp") == (9000, "udp", {"start_port": 10000, "end_port": 10010})


def test_same_internal_port_merges_into_one_service():
    services = services_from_ports(["80:8080/tcp:http", "443:8080/tcp:http,tls"])
    assert services == [{"protocol": "tcp", "internal_port": 8080,
                         "ports": [{"port": 80, "handlers": ["http"]}, {"port": 443, "handlers": ["http", "tls"]}]}]


@pytest.mark.parametrize("bad", ["", "abc", "80:", "80:8080/sctp", "80:8080/tcp:bogus", "0", "70000", "9-1:80"])
def test_bad_mappings_say_what_is_expected(bad):
    with pytest.raises(RoostError) as err:
        parse_port(bad)
    assert err.value.status == 400
    assert "port mapping" in err.value.message
