"""Who may do what on the API: the rule, as a pure function of an identity, a method and a path.

Identities: `admin` (the server's own token) and `org` tokens may do everything; a `readonly` token may read
everything but tokens; a `deploy` token is one app's: it reaches that app (and pushes images named after it),
the regions list, and its own description. Another app answers 404, as if it did not exist, so that a
token does not tell which app names are taken. A `join` token only joins a host, once; the `host` credential
a join gives reports for that host alone (registration, heartbeats, reports), pulls image blobs and follows
the feed's names view (who is where, for its `.internal` resolver; no configs): stolen, it gives little the
host did not have. An `edge` token routes: it follows the watch feed, reads machines and
hosts, registers its edge, and starts, stops and suspends machines (autostart, autostop); nothing else. A
`machine-exec` token is one app's too: it reads that app's machines and runs commands in them
(`POST .../machines/{id}/exec`, the console), nothing more, e.g. for a support tool or a CI smoke test.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


def token_digest(secret: bytes) -> str:
    """How a token is known where it is not held (the server's token store, a host's view of its callers)."""
    return hashlib.sha256(secret).hexdigest()


READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Identity:
    kind: str  # admin | org | deploy | readonly | join | host | edge
    app: str = ""  # a deploy token's app
    token_id: str = ""
    host: str = ""  # a host credential's host

    @property
    def operator(self) -> bool:
        return self.kind in ("admin", "org")


ADMIN = Identity("admin", token_id="admin")


def refusal(who: Identity, method: str, path: str) -> tuple[int, str] | None:
    """None if `who` may `method` `path`; else the status and message to answer."""
    if who.operator or path == "/v1/tokens/current":
        return None
    parts = path.strip("/").split("/")
    if parts == ["v1", "platform", "placements"] and method == "POST" and who.kind in ("readonly", "deploy"):
        return None  # a question about capacity, asked with a body: a read
    if who.kind == "join":
        return None if (method, path) == ("POST", "/v1/hosts/join") else (
            403, "a join token only joins a host: roost agent --join-token")
    if who.kind == "host":
        if parts[:2] == ["v1", "hosts"] and method == "POST" and (
                len(parts) == 2 or (len(parts) == 4 and parts[2] == who.host and parts[3] in ("heartbeat", "reports"))):
            return None  # its own registration (the body's id is checked too), heartbeats and reports
        if (parts[:3] == ["v1", "images", "blobs"] or parts == ["v1", "watch", "names"]) and method in READ_METHODS:
            return None  # image blobs; who is where, for the host's `.internal` resolver (no configs)
        return 403, f"the credential of host {who.host!r} reports for that host only"
    if who.kind == "edge":
        return _edge_refusal(method, parts)
    if who.kind == "machine-exec":
        return _exec_refusal(who, method, parts)
    if who.kind == "readonly":
        if parts[:2] in (["v1", "tokens"], ["v1", "certificates"]):
            return 403, "a read-only token cannot see tokens or certificate keys; use an org token"
        if method in READ_METHODS:
            return None
        return 403, "a read-only token cannot change anything; use a deploy or org token"
    if who.kind != "deploy":
        return 403, f"unknown token kind {who.kind!r}"
    if parts[:2] == ["v1", "apps"]:
        if len(parts) == 2:
            return None if method in READ_METHODS else (403, "a deploy token cannot create apps; use an org token")
        if parts[2] != who.app:
            return 404, f"app {parts[2]!r} not found"
        if len(parts) > 3 and parts[3] == "deploy_token":
            return 403, "a deploy token cannot make tokens; use an org token"
        if len(parts) == 3 and method == "DELETE":
            return 403, "a deploy token cannot delete its app; use an org token"
        return None
    if parts[:2] == ["v1", "images"] or (parts[:3] == ["v1", "platform", "regions"] and method in READ_METHODS):
        return None  # image names are checked on push (an app's own only)
    return 403, f"a deploy token of app {who.app!r} reaches only that app; use an org token"


EDGE_ACTIONS = frozenset({"start", "stop", "suspend"})


def _edge_refusal(method: str, parts: list[str]) -> tuple[int, str] | None:
    """An edge reads what routing needs and starts or stops machines; it sees no secrets, logs or tokens."""
    if method in READ_METHODS:
        if parts[:2] in (["v1", "watch"], ["v1", "hosts"], ["v1", "platform"], ["v1", "proxies"]) \
                or parts == ["v1", "certificates", "bundle"]:
            return None  # the bundle: the apps' certificates with their keys, to terminate TLS
        if parts[:2] == ["v1", "apps"] and (len(parts) <= 3 or parts[3] == "machines") and "logs" not in parts:
            return None
    elif method == "POST":
        if parts == ["v1", "proxies"] or (len(parts) == 4 and parts[:2] == ["v1", "proxies"] and parts[3] == "traffic"):
            return None  # its registration; its traffic counts (the dashboard's charts)
        if len(parts) == 6 and parts[:2] == ["v1", "apps"] and parts[3] == "machines" and parts[5] in EDGE_ACTIONS:
            return None
    return 403, "an edge's token routes only (watch, machines, start/stop); use an org token"


def _exec_refusal(who: Identity, method: str, parts: list[str]) -> tuple[int, str] | None:
    if parts[:2] == ["v1", "apps"] and len(parts) >= 3:
        if parts[2] != who.app:
            return 404, f"app {parts[2]!r} not found"
        if method in READ_METHODS and (len(parts) == 3 or parts[3] == "machines") and "logs" not in parts:
            return None
        if method == "POST" and len(parts) == 6 and parts[3] == "machines" and parts[5] in ("exec", "console"):
            return None
    return 403, f"a machine-exec token of app {who.app!r} only reads its machines and runs commands in them"


def may_push_image(who: Identity, repository: str) -> bool:
    """A deploy token pushes images of its own app only (`APP` or `APP/...`), as Fly's registry namespaces them."""
    return who.operator or (who.kind == "deploy" and (repository == who.app or repository.startswith(who.app + "/")))
