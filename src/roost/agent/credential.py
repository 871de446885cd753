"""A host's own credential, from joining the fleet with a one-time join token (issue 15).

With it the agent reports for its host alone (registration, heartbeats, reports, image pulls); it never holds
the operator's token, only its digest, by which it recognises the calls of the server and the edges. Its
peers' probes are recognised by the digests of their credentials, which the server sends with each
heartbeat answer. Kept in the agent's data directory, 0600.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from roost.core.access import token_digest
from roost.core.errors import RoostError
from roost.private_files import write_private

OPERATOR, PEER = "operator", "peer"


@dataclass
class HostCredential:
    host_id: str
    token: str
    operator_digest: str
    peer_digests: frozenset[str] = field(default_factory=frozenset)  # from heartbeat answers, not saved

    @classmethod
    def load(cls, path: Path) -> HostCredential | None:
        try:
            doc = json.loads(path.read_text())
            return cls(str(doc["host_id"]), str(doc["token"]), str(doc["operator_digest"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RoostError(500, f"cannot read this host's credential {path}: {exc}") from None

    def save(self, path: Path) -> None:
        doc = {k: v for k, v in asdict(self).items() if k != "peer_digests"}
        write_private(path, json.dumps(doc))

    def identify(self, presented: bytes) -> str | None:
        """Who calls this agent: the operator (the server, an edge), a peer host (probes only), or nobody."""
        digest = token_digest(presented)
        if hmac.compare_digest(digest, self.operator_digest):
            return OPERATOR
        if digest in self.peer_digests:
            return PEER
        return None


def authorize(who: object, method: str, path: str) -> tuple[int, str] | None:
    if who == PEER and (method, path) != ("POST", "/v1/probe"):
        return 403, "a peer host may only probe this one"
    return None


def join(server_url: str, join_token: str, host_id: str, local_address: str | None = None) -> HostCredential:
    transport = httpx.HTTPTransport(local_address=local_address) if local_address else None
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
    return HostCredential(host_id, str(doc["token"]), str(doc["operator_digest"]))
