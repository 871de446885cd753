"""The `.internal` resolver's wire (dnspython both ways), and the real UDP server on loopback."""

from __future__ import annotations

import asyncio

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from roost.agent.resolver import Resolver, respond
from roost.privnet.names import Directory
from tests.unit.test_internal_names import app, machine


def directory(asker: str = "10.201.3.9") -> Directory:
    d = Directory()
    d.reset([app("db"), app("web"), machine("m-syd", "db", "syd", "10.201.1.2"),
             machine("m-ams", "db", "ams", "10.201.2.2"), machine("w-ewr", "web", "ewr", asker)], 3)
    return d


def ask(d: Directory, name: str, qtype: str = "A", source: str = "10.201.3.9") -> dns.message.Message:
    wire = respond(d, dns.message.make_query(name, qtype).to_wire(), source)
    assert wire is not None
    return dns.message.from_wire(wire)


def test_answers_with_the_directorys_records_authoritatively():
    reply = ask(directory(), "db.internal")
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    assert sorted(r.address for r in reply.answer[0]) == ["10.201.1.2", "10.201.2.2"]
    assert reply.answer[0].ttl == 1
    txt = ask(directory(), "_apps.internal", "TXT")
    assert [b"".join(r.strings) for r in txt.answer[0]] == [b"db,web"]


def test_refuses_strangers_and_other_zones_and_says_nxdomain_for_unknown_apps():
    assert ask(directory(), "db.internal", source="10.9.9.9").rcode() == dns.rcode.REFUSED
    assert ask(directory(), "example.com").rcode() == dns.rcode.REFUSED
    assert ask(directory(), "nope.internal").rcode() == dns.rcode.NXDOMAIN


def test_garbage_and_responses_get_no_answer():
    d = directory()
    assert respond(d, b"\x00\x01garbage", "10.201.3.9") is None
    reply = dns.message.make_response(dns.message.make_query("db.internal", "A"))
    assert respond(d, reply.to_wire(), "10.201.3.9") is None


def test_an_answer_too_big_for_a_datagram_is_truncated():
    d = Directory()
    d.reset([app("big"), *(machine(f"m{i:03d}", "big", "ams", f"10.201.{i // 250}.{i % 250 + 2}")
                           for i in range(300))], 1)
    reply = ask(d, "big.internal", source="10.201.0.2")
    assert reply.flags & dns.flags.TC and not reply.answer


def test_the_udp_server_answers_on_loopback():
    async def scenario() -> dns.message.Message:
        resolver = Resolver(directory(asker="127.0.0.1"), "127.0.0.1", 0)
        await resolver.start()
        try:
            query = dns.message.make_query("m-syd.vm.db.internal", "A")
            return await asyncio.to_thread(dns.query.udp, query, "127.0.0.1", timeout=2, port=resolver.port)
        finally:
            resolver.close()

    reply = asyncio.run(scenario())
    assert [r.address for r in reply.answer[0]] == ["10.201.1.2"]
    assert reply.answer[0].rdtype == dns.rdatatype.A
