"""A host's own credential, from joining the fleet with a one-time join token (issue 15).

With it the agent reports for its host alone (registration, heartbeats, reports, image pulls). It holds no
other token, only digests, by which it knows its callers:
- the server, by its control credential (which the server's API itself refuses): everything;
- an edge, by its edge token: start, stop and suspend machines already placed here, nothing else;
- the operator, by the operator token: what an edge may (as much as it may do through the server anyway), and
  read /metrics;
- a read-only token: read /metrics, nothing else;
- a peer host, by its credential: probes only.
The digests come with the join and with every heartbeat answer, so a revoked edge token is refused within a
heartbeat. Kept in the agent's data directory, 0600.
"""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from roost.core.access import token_digest
from roost.core.errors import RoostError
from roost.private_files import write_private
from roost.tls import Trust

SERVER, OPERATOR, EDGE, PEER, READER = "server", "operator", "edge", "peer", "reader"
EDGE_CALL = re.compile(r"/v1/machines/[A-Za-z0-9_-]{1,64}/(start|stop|suspend)")


@dataclass
class HostCredential:
    host_id: str
    token: str
    operator_digest: str
    server_digest: str = ""
    edge_digests: frozenset[str] = field(default_factory=frozenset)  # from heartbeat answers, not saved
    peer_digests: frozenset[str] = field(default_factory=frozenset)
    reader_digests: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def load(cls, path: Path) -> HostCredential | None:
        try:
            doc = json.loads(path.read_text())
            return cls(str(doc["host_id"]), str(doc["token"]), str(doc["operator_digest"]),
                       str(doc.get("server_digest", "")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RoostError(500, f"cannot read this host's credential {path}: {exc}") from None

    def save(self, path: Path) -> None:
        doc = {k: v for k, v in asdict(self).items() if k not in ("peer_digests", "edge_digests", "reader_digests")}
        write_private(path, json.dumps(doc))

    def learn(self, view: dict[str, Any]) -> bool:
        """Take the server's view of this host's callers (a join or heartbeat answer); True if what is saved
        changed."""
        if isinstance(view.get("edge_digests"), list):
            self.edge_digests = frozenset(str(d) for d in view["edge_digests"])
        if isinstance(view.get("host_digests"), list):
            self.peer_digests = frozenset(str(d) for d in view["host_digests"])
        if isinstance(view.get("reader_digests"), list):
            self.reader_digests = frozenset(str(d) for d in view["reader_digests"])
        changed = False
        for name in ("server_digest", "operator_digest"):
            value = view.get(name)
            if isinstance(value, str) and value and value != getattr(self, name):
                setattr(self, name, value)
                changed = True
        return changed

    def identify(self, presented: bytes) -> str | None:
        """Who calls this agent: the server, an edge, a peer host, or nobody."""
        digest = token_digest(presented)
        if self.server_digest and hmac.compare_digest(digest, self.server_digest):
            return SERVER
        if hmac.compare_digest(digest, self.operator_digest):
            return OPERATOR
        if digest in self.edge_digests:
            return EDGE
        if digest in self.peer_digests:
            return PEER
        if digest in self.reader_digests:
            return READER
        return None


def authorize(who: object, method: str, path: str) -> tuple[int, str] | None:
    if who == PEER and (method, path) != ("POST", "/v1/probe"):
        return 403, "a peer host may only probe this one"
    if who in (OPERATOR, READER) and (method, path) == ("GET", "/metrics"):
        return None  # what a Prometheus scrape with the operator's or a read-only token reads
    if who == READER:
        return 403, "a read-only token may only read this host's /metrics"
    if who in (EDGE, OPERATOR) and not (method == "POST" and EDGE_CALL.fullmatch(path)):
        return 403, "an edge may only start, stop or suspend machines on this host"
    return None


def join(server_url: str, join_token: str, host_id: str, local_address: str | None = None,
         trust: Trust | None = None) -> HostCredential:
    transport = (trust or Trust()).transport(local_address)
    try:
        with httpx.Client(timeout=10, trust_env=False, transport=transport) as client:
            response = client.post(f"{server_url.rstrip('/')}/v1/hosts/join", json={"host_id": host_id},
                                   headers={"Authorization": f"Bearer {join_token}"})
    except httpx.HTTPError as exc:
        raise RoostError(503, f"joining the fleet at {server_url}: {exc}") from None
    if response.status_code != 201:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        raise RoostError(response.status_code, f"joining the fleet: {message}")
    doc = response.json()
    credential = HostCredential(host_id, str(doc["token"]), str(doc["operator_digest"]))
    credential.learn(doc)
    return credential
