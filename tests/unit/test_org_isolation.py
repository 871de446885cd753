"""Which machines may talk on the private network (issue 19): the orgs' members from the names feed, and the
bridge's nftables rules made of them. The rules themselves run in the kernel in tests/integration/test_containers.py."""

from __future__ import annotations

from roost.privnet.isolation import org_members, port_name, removal, ruleset
from roost.privnet.names import Directory
from tests.unit.test_internal_names import app, machine


def directory() -> Directory:
    d = Directory()
    d.reset([app("db"), app("web"), app("shop", org="acme"),
             machine("m1", "db", "syd", "10.201.1.3"), machine("m2", "db", "ams", "10.201.1.10"),
             machine("m3", "web", "ams", "10.202.1.2", state="stopped"),
             machine("s1", "shop", "ams", "10.201.1.4"),
             machine("x1", "ghost", "ams", "10.201.1.5"),  # an app the feed has not described: no org yet
             machine("v6", "db", "ams", "fdaa::2")], 7)
    return d


def test_members_are_each_orgs_ipv4_machine_addresses_stopped_ones_included():
    assert org_members(directory()) == {"acme": ["10.201.1.4"],
                                        "personal": ["10.201.1.3", "10.201.1.10", "10.202.1.2"]}


def test_an_address_two_orgs_claim_belongs_to_neither():
    d = directory()
    d.apply({"op": "put", "kind": "machine", "key": "s2", "rev": 8,
             "object": machine("s2", "shop", "ams", "10.201.1.3")["object"]})
    members = org_members(d)
    assert "10.201.1.3" not in members["personal"] and "10.201.1.3" not in members["acme"]


def test_the_rules_keep_orgs_apart_bind_ports_and_let_the_gateway_through():
    script = ruleset("10.200.0.0/13", "10.201.1.1", org_members(directory()),
                     {port_name("m1"): "10.201.1.3", port_name("s1"): "10.201.1.4"}, "up0")
    lines = [line.strip() for line in script.splitlines()]
    assert lines[:2] == ["table bridge roost_private_net", "delete table bridge roost_private_net"]  # atomic swap
    assert "set org0 { type ipv4_addr; elements = { 10.201.1.4 }; }" in lines  # acme
    assert "set org1 { type ipv4_addr; elements = { 10.201.1.3, 10.201.1.10, 10.202.1.2 }; }" in lines
    assert "chain org0 { ip daddr @org0 accept; drop; }" in lines
    assert any(line.startswith("map org_of") and "10.201.1.4 : jump org0" in line
               and "10.202.1.2 : jump org1" in line for line in lines)
    assert 'set bound { type ifname . ipv4_addr; elements = { "vm1" . 10.201.1.3, "vs1" . 10.201.1.4 }; }' in lines
    forward = lines[lines.index("chain forward {"):]
    assert forward[2:] == [
        'iifname "up0" ip saddr 10.201.1.1 accept',
        'iifname != "up0" meta protocol != { ip, arp } drop',
        'iifname != "up0" meta protocol ip iifname . ip saddr != @bound drop',
        'iifname != "up0" meta protocol arp iifname . arp saddr ip != @bound drop',
        "ip daddr 10.201.1.1 accept",
        "ip saddr 10.200.0.0/13 ip daddr 10.200.0.0/13 ip saddr vmap @org_of",
        "ip saddr 10.200.0.0/13 ip daddr 10.200.0.0/13 drop",
        "}", "}"]
    assert "fdaa" not in script


def test_with_no_machine_wired_and_no_members_every_machine_packet_is_dropped():
    script = ruleset("10.201.1.0/24", "10.201.1.1", {}, {}, "up0")
    assert "org_of" not in script and "@bound" not in script
    assert 'iifname != "up0" meta protocol ip drop' in script and 'iifname != "up0" meta protocol arp drop' in script
    assert "ip saddr 10.201.1.0/24 ip daddr 10.201.1.0/24 drop" in script


def test_addresses_outside_the_range_are_left_to_the_other_hosts_rules():
    script = ruleset("10.201.1.0/24", "10.201.1.1", {"personal": ["10.201.1.3", "10.202.1.2"]}, {}, "up0")
    assert "10.202.1.2" not in script


def test_removal_touches_only_our_table():
    assert removal() == "table bridge roost_private_net\ndelete table bridge roost_private_net\n"
