"""API tokens besides the admin token: made, listed and revoked by an operator, looked up on every request
(so a revocation holds from the next request on). Only a digest of each secret is stored."""

from __future__ import annotations

import dataclasses
import hmac
import secrets as _random
from typing import Any

from roost.clock import SYSTEM, Clock
from roost.core.access import ADMIN, Identity, token_digest
from roost.core.errors import RoostError, bad_request, not_found
from roost.core.ids import HOST_ID_RE
from roost.core.model import APP_TOKEN_KINDS, TOKEN_KINDS, ApiToken
from roost.core.units import duration_seconds
from roost.server.state import ClusterState

PREFIX = "rt1_"  # recognisable in logs and secret scanners
MAX_EXPIRY_SECONDS = 10 * 365 * 86400


class TokenService:
    def __init__(self, state: ClusterState, admin_token: str, clock: Clock = SYSTEM, control_token: str = "") -> None:
        self.state = state
        self.admin = admin_token.encode()
        self.clock = clock
        # The server's own credential towards agents (never accepted here): agents know only its digest.
        self.control = control_token
        self._digests: dict[str, tuple[int, float, list[str]]] = {}
        self._joined: tuple[int, frozenset[str]] = (-1, frozenset())

    def identify(self, presented: bytes) -> Identity | None:
        """Whose token this is, if it is one in force."""
        if hmac.compare_digest(presented, self.admin):
            return ADMIN
        if not presented.startswith(PREFIX.encode()):
            return None
        token_id = self.state.token_digests.get(token_digest(presented))
        token = self.state.tokens.get(token_id or "")
        if token is None or not token.live(self.clock.time()):
            return None
        return Identity(token.kind, token.app, token.id, token.host)

    async def create(self, kind: Any, app: Any = "", name: Any = "", expiry: Any = None) -> tuple[ApiToken, str]:
        if kind not in TOKEN_KINDS:
            raise bad_request(f"kind: one of {', '.join(TOKEN_KINDS)}")
        if kind in APP_TOKEN_KINDS:
            if not isinstance(app, str) or app not in self.state.apps:
                raise not_found(f"app {app!r} not found")
        elif app:
            raise bad_request(f"app: only a deploy token belongs to an app (this is a {kind} token)")
        if not isinstance(name, str) or len(name) > 200 or "\x00" in name:
            raise bad_request("name: a string of at most 200 characters")
        now = self.clock.time()
        expires_at = 0.0
        if expiry not in (None, "", 0):
            seconds = duration_seconds(expiry, field="expiry", int_unit=1.0)
            if not 0 < seconds <= MAX_EXPIRY_SECONDS:
                raise bad_request("expiry: between 1s and 10 years, e.g. 720h")
            expires_at = now + seconds
        token_id = _random.token_hex(8)
        secret = f"{PREFIX}{_random.token_urlsafe(32)}"
        token = ApiToken(token_id, kind, token_digest(secret.encode()), app if kind in APP_TOKEN_KINDS else "",
                         name, now, expires_at)
        async with self.state.lock:
            await self.state.save(token)
        return token, secret

    async def join(self, who: Identity, host_id: Any) -> dict[str, Any]:
        """A host joins with a one-time join token (`who`): the token is spent, and the host gets a credential
        of its own, and the digest by which it recognises the operator's token (the server's and the edges'
        calls) without holding that token."""
        if who.kind != "join":
            raise RoostError(403, "joining needs a join token: roost hosts join-token")
        if not isinstance(host_id, str) or not HOST_ID_RE.match(host_id):
            raise bad_request(f"host_id: invalid host id {host_id!r}")
        now = self.clock.time()
        join = self.state.tokens.get(who.token_id)
        if join is None or not join.live(now):
            raise RoostError(401, "this join token was already used or revoked")
        secret = f"{PREFIX}{_random.token_urlsafe(32)}"
        host = ApiToken(_random.token_hex(8), "host", token_digest(secret.encode()), name=f"host {host_id}",
                        created_at=now, host=host_id)
        async with self.state.lock:
            await self.state.save(dataclasses.replace(join, revoked_at=now))  # once only
            for old in [t for t in self.state.tokens.values() if t.kind == "host" and t.host == host_id
                        and not t.revoked_at]:
                await self.state.save(dataclasses.replace(old, revoked_at=now))  # a re-join replaces it
            await self.state.save(host)
        return {"host_id": host_id, "token": secret, **self.host_view()}

    def host_view(self) -> dict[str, Any]:
        """What a joined host must know of its callers, sent at the join and with every heartbeat answer (so a
        revocation reaches every host within a heartbeat): the digests of the server's control credential,
        of the operator token (which an agent lets do what an edge may, and read its metrics), of the edges'
        tokens, of its peers' credentials (probes only) and of the read-only tokens (its metrics only)."""
        return {"server_digest": token_digest(self.control.encode()) if self.control else "",
                "operator_digest": token_digest(self.admin), "edge_digests": self.digests("edge"),
                "host_digests": self.digests("host"), "reader_digests": self.digests("readonly")}

    def digests(self, kind: str) -> list[str]:
        """The digests of the tokens of one kind in force. Asked on every heartbeat of every joined host, so
        kept until a token changes or the first of them expires."""
        now = self.clock.time()
        version, until, digests = self._digests.get(kind, (-1, 0.0, []))
        if version != self.state.tokens_version or now >= until:
            live = [t for t in self.state.tokens.values() if t.kind == kind and t.live(now)]
            digests = sorted(t.digest for t in live)
            until = min((t.expires_at for t in live if t.expires_at), default=float("inf"))
            self._digests[kind] = (self.state.tokens_version, until, digests)
        return digests

    def joined(self, host_id: str) -> bool:
        """Whether a host joined (so it knows the server by its control credential, not the operator token)."""
        return host_id in self._joined_hosts()

    def _joined_hosts(self) -> frozenset[str]:
        version, joined = self._joined
        if version != self.state.tokens_version:
            now = self.clock.time()
            joined = frozenset(t.host for t in self.state.tokens.values() if t.kind == "host" and t.live(now))
            self._joined = (self.state.tokens_version, joined)
        return joined

    def in_force(self, who: Identity) -> bool:
        """Whether the token `who` was identified by still holds (a long watch stream asks it now and then)."""
        if who.kind == "admin":
            return True
        token = self.state.tokens.get(who.token_id)
        return token is not None and token.live(self.clock.time())

    def list(self) -> list[dict[str, Any]]:
        return [t.to_api() for t in sorted(self.state.tokens.values(), key=lambda t: t.created_at)]

    async def revoke(self, token_id: str) -> dict[str, Any]:
        token = self.state.tokens.get(token_id)
        if token is None:
            raise not_found(f"token {token_id!r} not found")
        if not token.revoked_at:
            revoked = dataclasses.replace(token, revoked_at=self.clock.time())
            async with self.state.lock:
                await self.state.save(revoked)
            token = revoked
        return token.to_api()

    def current(self, who: Identity) -> dict[str, Any]:
        """Fly's /v1/tokens/current: what the presented token may reach."""
        token = self.state.tokens.get(who.token_id)
        apps = [who.app] if who.app else sorted(self.state.apps)
        return {"tokens": [{"token_id": who.token_id, "org_slug": "personal", "organization": "personal",
                            "apps": apps, "kind": who.kind, "name": token.name if token else "admin"}]}
