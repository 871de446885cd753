"""The host's `.internal` resolver (issue 19): a DNS server on the address its machines reach the host at (the
machine subnet's first address, set as their nameserver), answering from the control plane's feed of names
(privnet/names.py) for the org of the machine that asks, known by its own private address. UDP, as resolvers
ask; an answer too big for the datagram is truncated (TC) with no records, as the protocol says.

The wire is dnspython's; what to answer is the pure directory's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from roost.privnet.names import Directory

log = logging.getLogger("roost.agent.resolver")
PORT = 53
MAX_UDP = 1232  # the payload every resolver accepts over EDNS without fragments (DNS flag day 2020)
RCODES = {"NOERROR": dns.rcode.NOERROR, "NXDOMAIN": dns.rcode.NXDOMAIN, "REFUSED": dns.rcode.REFUSED}


def respond(directory: Directory, wire: bytes, source: str) -> bytes | None:
    """The reply to one datagram from `source`, or None for what is not a DNS query (dropped unanswered)."""
    try:
        query = dns.message.from_wire(wire)
    except (dns.exception.DNSException, ValueError):
        return None
    if query.flags & dns.flags.QR:
        return None  # a response sent to us: never answer one (no loops)
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    response.flags &= ~dns.flags.RA
    if query.opcode() != dns.opcode.QUERY:
        response.set_rcode(dns.rcode.NOTIMP)
        return response.to_wire()
    if len(query.question) != 1:
        response.set_rcode(dns.rcode.FORMERR)
        return response.to_wire()
    asker = directory.asker(source)
    if asker is None:
        response.set_rcode(dns.rcode.REFUSED)  # not one of our machines: no org to answer for
        return response.to_wire()
    question = query.question[0]
    answer = directory.answer(question.name.to_text(), dns.rdatatype.to_text(question.rdtype), asker)
    response.set_rcode(RCODES[answer.rcode])
    for record in answer.records:
        rdtype = dns.rdatatype.from_text(record.type)
        value = f'"{record.value}"' if record.type == "TXT" else record.value
        rrset = response.find_rrset(response.answer, question.name, dns.rdataclass.IN, rdtype, create=True)
        rrset.add(dns.rdata.from_text(dns.rdataclass.IN, rdtype, value), record.ttl)
    limit = max(512, min(query.payload, MAX_UDP)) if query.edns >= 0 else 512
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        response.answer.clear()
        response.flags |= dns.flags.TC
        return response.to_wire()


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        reply = respond(self.directory, data, str(addr[0]))
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


class Resolver:
    """Serves `directory` on UDP `host:port` until closed."""

    def __init__(self, directory: Directory, host: str, port: int = PORT) -> None:
        self.directory = directory
        self.host = host
        self.port = port
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self.directory),
                                                           local_addr=(self.host, self.port))
        self._transport = transport
        sock = transport.get_extra_info("sockname")
        self.port = int(sock[1]) if sock else self.port
        log.info("resolving .internal names on %s:%d", self.host, self.port)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
