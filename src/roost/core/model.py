"""The records the control plane keeps: apps, machines, volumes, hosts, images, leases.

Each record has `to_doc`/`from_doc` for the store (a superset of what the API shows) and `to_api` for the
Fly-shaped JSON. Timestamps are passed in; nothing here reads a clock.
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass, field, replace
from typing import Any

from roost.core.lifecycle import State

JSON = dict[str, Any]
MAX_EVENTS = 50
MAX_VERSIONS = 10


def rfc3339(ts: float) -> str:
    return _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime(ts))


@dataclass
class App:
    name: str
    id: str
    org_slug: str
    created_at: float
    network: str = "default"
    primary_region: str = ""
    internal_numeric_id: int = 0
    ip_index: int = 0  # the app's slot in each edge's block of TCP addresses (Roost's dedicated IPs)

    def to_doc(self) -> JSON:
        return {
            "name": self.name, "id": self.id, "org_slug": self.org_slug, "created_at": self.created_at,
            "network": self.network, "primary_region": self.primary_region,
            "internal_numeric_id": self.internal_numeric_id, "ip_index": self.ip_index,
        }

    @classmethod
    def from_doc(cls, doc: JSON) -> App:
        return cls(doc["name"], doc["id"], doc["org_slug"], doc["created_at"], doc.get("network", "default"),
                   doc.get("primary_region", ""), doc.get("internal_numeric_id", 0), doc.get("ip_index", 0))

    def to_api(self, machine_count: int, volume_count: int) -> JSON:
        return {
            "id": self.id, "name": self.name, "internal_numeric_id": self.internal_numeric_id,
            "machine_count": machine_count, "volume_count": volume_count, "network": self.network,
            "organization": {"name": self.org_slug, "slug": self.org_slug},
            "status": "deployed" if machine_count else "pending",
            "primary_region": self.primary_region, "created_at": rfc3339(self.created_at),
            "ip_index": self.ip_index,
        }


@dataclass
class Lease:
    nonce: str
    expires_at: float
    owner: str
    description: str
    version: str

    def to_api(self) -> JSON:
        return {"nonce": self.nonce, "expires_at": int(self.expires_at), "owner": self.owner,
                "description": self.description, "version": self.version}

    @classmethod
    def from_doc(cls, doc: JSON) -> Lease:
        return cls(doc["nonce"], doc["expires_at"], doc["owner"], doc.get("description", ""), doc.get("version", ""))


@dataclass
class Machine:
    id: str
    app: str
    name: str
    region: str
    host_id: str
    state: State
    instance_id: str
    config: JSON
    image_ref: JSON
    private_ip: str
    created_at: float
    updated_at: float
    ports: dict[str, int] = field(default_factory=dict)  # guest port -> host port on private_ip
    events: list[JSON] = field(default_factory=list)  # newest first, bounded
    checks: dict[str, JSON] = field(default_factory=dict)
    cordoned: bool = False
    lease: Lease | None = None
    versions: list[JSON] = field(default_factory=list)  # newest first, bounded
    skip_service_registration: bool = False
    exit_code: int | None = None
    fencing: JSON = field(default_factory=dict)  # issue 6: takeover tokens
    note: str = ""  # why the machine is in its state, when it is not obvious (e.g. replaced after takeover)
    image_source: str = ""  # "" (a bundle pushed to the control plane) or "registry" (an OCI image, by digest)
    ledger: JSON = field(default_factory=dict)  # seconds in each billing state (core/cost.py); not in the API

    def copy(self) -> Machine:
        return replace(self, config=dict(self.config), ports=dict(self.ports), events=list(self.events),
                       checks=dict(self.checks), versions=list(self.versions), fencing=dict(self.fencing))

    def add_event(self, event: JSON) -> None:
        self.events.insert(0, event)
        del self.events[MAX_EVENTS:]

    def to_doc(self) -> JSON:
        return {
            "id": self.id, "app": self.app, "name": self.name, "region": self.region, "host_id": self.host_id,
            "state": str(self.state), "instance_id": self.instance_id, "config": self.config,
            "image_ref": self.image_ref, "private_ip": self.private_ip, "created_at": self.created_at,
            "updated_at": self.updated_at, "ports": self.ports, "events": self.events, "checks": self.checks,
            "cordoned": self.cordoned, "lease": self.lease.to_api() if self.lease else None,
            "versions": self.versions, "skip_service_registration": self.skip_service_registration,
            "exit_code": self.exit_code, "fencing": self.fencing, "note": self.note,
            "image_source": self.image_source, "ledger": self.ledger,
        }

    @classmethod
    def from_doc(cls, doc: JSON) -> Machine:
        lease = Lease.from_doc(doc["lease"]) if doc.get("lease") else None
        return cls(
            id=doc["id"], app=doc["app"], name=doc["name"], region=doc["region"], host_id=doc["host_id"],
            state=State(doc["state"]), instance_id=doc["instance_id"], config=doc["config"],
            image_ref=doc.get("image_ref") or {}, private_ip=doc.get("private_ip", ""),
            created_at=doc["created_at"], updated_at=doc["updated_at"], ports=doc.get("ports") or {},
            events=doc.get("events") or [], checks=doc.get("checks") or {}, cordoned=doc.get("cordoned", False),
            lease=lease, versions=doc.get("versions") or [],
            skip_service_registration=doc.get("skip_service_registration", False),
            exit_code=doc.get("exit_code"), fencing=doc.get("fencing") or {}, note=doc.get("note", ""),
            image_source=doc.get("image_source", ""), ledger=doc.get("ledger") or {},
        )

    def checks_api(self) -> list[JSON]:
        return [{"name": name, **check} for name, check in sorted(self.checks.items())]

    def to_api(self, host_status: str, *, host_address: str = "", with_events: bool = True) -> JSON:
        body: JSON = {
            "id": self.id, "name": self.name, "state": str(self.state), "region": self.region,
            "instance_id": self.instance_id, "version": self.instance_id, "private_ip": self.private_ip,
            "config": self.config, "image_ref": self.image_ref, "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at), "checks": self.checks_api(), "host_status": host_status,
            "cordoned": self.cordoned,
            # Roost extensions: where the machine runs and which host ports serve its guest ports.
            "host_id": self.host_id,
            "roost": {"host_id": self.host_id, "address": host_address or self.private_ip, "ports": self.ports,
                      "fencing": self.fencing, "note": self.note,
                      "skip_service_registration": self.skip_service_registration},
        }
        if with_events:
            body["events"] = self.events
        return body


@dataclass
class Volume:
    id: str
    app: str
    name: str
    region: str
    host_id: str
    size_gb: int
    created_at: float
    encrypted: bool = True
    state: str = "created"
    attached_machine_id: str = ""
    attached_alloc_id: str = ""
    snapshot_retention: int = 5
    auto_backup_enabled: bool = True
    fstype: str = "ext4"

    def to_doc(self) -> JSON:
        return {
            "id": self.id, "app": self.app, "name": self.name, "region": self.region, "host_id": self.host_id,
            "size_gb": self.size_gb, "created_at": self.created_at, "encrypted": self.encrypted,
            "state": self.state, "attached_machine_id": self.attached_machine_id,
            "attached_alloc_id": self.attached_alloc_id, "snapshot_retention": self.snapshot_retention,
            "auto_backup_enabled": self.auto_backup_enabled, "fstype": self.fstype,
        }

    @classmethod
    def from_doc(cls, doc: JSON) -> Volume:
        return cls(**doc)

    def to_api(self, host_status: str) -> JSON:
        body: JSON = {
            "id": self.id, "name": self.name, "state": self.state, "size_gb": self.size_gb, "region": self.region,
            "zone": self.host_id, "encrypted": self.encrypted, "created_at": rfc3339(self.created_at),
            "host_status": host_status, "snapshot_retention": self.snapshot_retention,
            "auto_backup_enabled": self.auto_backup_enabled, "fstype": self.fstype, "type": "local",
            "block_size": 4096, "blocks": self.size_gb * 262144, "bytes_total": self.size_gb * 1024**3,
            "host_id": self.host_id,
        }
        if self.attached_machine_id:  # absent, not null, when unattached: the spec types them as strings
            body["attached_machine_id"] = self.attached_machine_id
            body["attached_alloc_id"] = self.attached_alloc_id
        return body


@dataclass
class VolumeSnapshot:
    """A copy of a volume's files at one moment, kept on the volume's host (a gzip'd tar) and on a second host
    of the region, restorable into a new volume on any host of the region. Kept `retention_days`, even after its
    volume is gone."""

    id: str
    app: str
    volume_id: str
    host_id: str  # where the file is
    region: str
    created_at: float
    size: int = 0  # bytes of the snapshot file
    digest: str = ""  # sha256 of the snapshot file, hex
    volume_size_gb: int = 1
    retention_days: int = 5
    kind: str = "on-demand"  # on-demand | daily | fork
    status: str = "created"
    copy_host_id: str = ""  # a second copy, on another host of the region, so a lost host loses no snapshot

    def to_doc(self) -> JSON:
        return dict(self.__dict__)

    @classmethod
    def from_doc(cls, doc: JSON) -> VolumeSnapshot:
        return cls(**doc)

    def to_api(self) -> JSON:
        return {"id": self.id, "created_at": rfc3339(self.created_at), "digest": self.digest, "size": self.size,
                "retention_days": self.retention_days, "status": self.status,
                "volume_size": self.volume_size_gb * 1024**3, "volume_id": self.volume_id, "type": self.kind,
                "host_id": self.host_id, "copy_host_id": self.copy_host_id or None, "region": self.region}


@dataclass
class Host:
    id: str
    region: str
    address: str  # the host's own loopback/private address; machines bind here
    agent_url: str
    cpus: int
    memory_mb: int
    registered_at: float
    last_heartbeat: float
    status: str = "ok"  # ok | unknown | unreachable
    cordoned: bool = False
    version: str = ""
    boot_id: str = ""
    driver: str = ""  # how its agent runs machines: container | process | fake
    machine_net: str = ""  # container hosts: the subnet its machines' own addresses come from
    wireguard_key: str = ""  # its WireGuard public key, when the private network crosses hosts over WireGuard
    wireguard_port: int = 0
    # The watched machines its agent last said it would fence (kept in the store, so that a control-plane
    # replica that takes over the lead knows them too: a takeover needs them)
    acknowledged: list[str] = field(default_factory=list)

    def to_doc(self) -> JSON:
        return {
            "id": self.id, "region": self.region, "address": self.address, "agent_url": self.agent_url,
            "cpus": self.cpus, "memory_mb": self.memory_mb, "registered_at": self.registered_at,
            "last_heartbeat": self.last_heartbeat, "status": self.status, "cordoned": self.cordoned,
            "version": self.version, "boot_id": self.boot_id, "driver": self.driver, "machine_net": self.machine_net,
            "wireguard_key": self.wireguard_key, "wireguard_port": self.wireguard_port,
            "acknowledged": self.acknowledged,
        }

    @classmethod
    def from_doc(cls, doc: JSON) -> Host:
        return cls(**doc)

    def to_api(self, used_cpus: int, used_memory_mb: int, machines: int) -> JSON:
        return {
            "id": self.id, "region": self.region, "address": self.address, "agent_url": self.agent_url,
            "capacity": {"cpus": self.cpus, "memory_mb": self.memory_mb},
            "used": {"cpus": used_cpus, "memory_mb": used_memory_mb, "machines": machines},
            "status": self.status, "cordoned": self.cordoned, "last_heartbeat": rfc3339(self.last_heartbeat),
            "last_heartbeat_unix": self.last_heartbeat, "registered_at": rfc3339(self.registered_at),
            "version": self.version, "driver": self.driver, "machine_net": self.machine_net,
            "wireguard": ({"public_key": self.wireguard_key, "port": self.wireguard_port}
                          if self.wireguard_key else None),
        }


@dataclass
class Image:
    ref: str  # repository:tag, as pushed
    registry: str
    repository: str
    tag: str
    digest: str
    size: int
    created_at: float
    cmd: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    source: str = ""  # "" (a bundle kept by the server) or "registry" (a name for an OCI image in a registry)

    def to_doc(self) -> JSON:
        return {
            "ref": self.ref, "registry": self.registry, "repository": self.repository, "tag": self.tag,
            "digest": self.digest, "size": self.size, "created_at": self.created_at, "cmd": self.cmd,
            "labels": self.labels, "source": self.source,
        }

    @classmethod
    def from_doc(cls, doc: JSON) -> Image:
        return cls(**doc)

    def image_ref(self) -> JSON:
        return {"registry": self.registry, "repository": self.repository, "tag": self.tag,
                "digest": self.digest, "labels": self.labels}

    def to_api(self) -> JSON:
        return {**self.to_doc(), "created_at": rfc3339(self.created_at)}


@dataclass
class EdgeProxy:
    """A registered edge proxy: where it listens, and its block of per-app TCP addresses."""

    id: str
    region: str
    url: str
    tcp_prefix: str
    admin_url: str
    domain: str
    registered_at: float
    pid: int = 0

    def to_doc(self) -> JSON:
        return {"id": self.id, "region": self.region, "url": self.url, "tcp_prefix": self.tcp_prefix,
                "admin_url": self.admin_url, "domain": self.domain, "registered_at": self.registered_at,
                "pid": self.pid}

    @classmethod
    def from_doc(cls, doc: JSON) -> EdgeProxy:
        return cls(**doc)

    def to_api(self) -> JSON:
        return {**self.to_doc(), "registered_at": rfc3339(self.registered_at)}

    def app_address(self, ip_index: int) -> str:
        return f"{self.tcp_prefix}.{ip_index // 250}.{ip_index % 250 + 1}"


@dataclass
class AppSecrets:
    """An app's secrets, sealed (server/sealing.py); never shown by the API or the feed."""

    app: str
    values: dict[str, JSON] = field(default_factory=dict)  # name -> {sealed, digest, created_at, updated_at}
    version: int = 0
    keys: dict[str, JSON] = field(default_factory=dict)  # secret keys: name -> {type, sealed, public_key?, ...}

    def to_doc(self) -> JSON:
        return {"app": self.app, "values": self.values, "version": self.version, "keys": self.keys}

    @classmethod
    def from_doc(cls, doc: JSON) -> AppSecrets:
        return cls(doc["app"], doc.get("values") or {}, doc.get("version", 0), doc.get("keys") or {})

    def to_api(self) -> JSON:
        return {"secrets": [{"name": name, "digest": item["digest"], "created_at": rfc3339(item["created_at"]),
                             "updated_at": rfc3339(item["updated_at"])} for name, item in sorted(self.values.items())],
                "version": self.version}


# What an operator makes; "host" tokens come from a join.
TOKEN_KINDS = ("org", "deploy", "readonly", "join", "edge", "machine-exec")
APP_TOKEN_KINDS = ("deploy", "machine-exec")  # the kinds that belong to one app


@dataclass
class ApiToken:
    """A credential for the API besides the admin token: org-wide, read-only, or one app's deploy token. Only
    a digest of its secret is kept; the secret is shown once, when it is made."""

    id: str
    kind: str  # org | deploy | readonly | join | edge | machine-exec | host
    digest: str  # sha256 of the secret, hex
    app: str = ""  # a deploy token's app
    name: str = ""
    created_at: float = 0.0
    expires_at: float = 0.0  # 0: never
    revoked_at: float = 0.0  # 0: in force
    host: str = ""  # a host token's host

    def live(self, now: float) -> bool:
        return not self.revoked_at and (not self.expires_at or now < self.expires_at)

    def to_doc(self) -> JSON:
        return {"id": self.id, "kind": self.kind, "digest": self.digest, "app": self.app, "name": self.name,
                "created_at": self.created_at, "expires_at": self.expires_at, "revoked_at": self.revoked_at,
                "host": self.host}

    @classmethod
    def from_doc(cls, doc: JSON) -> ApiToken:
        return cls(doc["id"], doc["kind"], doc["digest"], doc.get("app", ""), doc.get("name", ""),
                   doc.get("created_at", 0.0), doc.get("expires_at", 0.0), doc.get("revoked_at", 0.0),
                   doc.get("host", ""))

    def to_api(self) -> JSON:
        return {"id": self.id, "kind": self.kind, "app": self.app or None, "host": self.host or None,
                "name": self.name,
                "created_at": rfc3339(self.created_at),
                "expires_at": rfc3339(self.expires_at) if self.expires_at else None,
                "revoked_at": rfc3339(self.revoked_at) if self.revoked_at else None}


@dataclass
class Release:
    app: str
    version: int
    status: str  # pending | running | complete | failed
    image: str
    strategy: str
    created_at: float
    updated_at: float
    description: str = ""

    @property
    def key(self) -> str:
        return f"{self.app}/{self.version:08d}"

    def to_doc(self) -> JSON:
        return {"app": self.app, "version": self.version, "status": self.status, "image": self.image,
                "strategy": self.strategy, "created_at": self.created_at, "updated_at": self.updated_at,
                "description": self.description}

    @classmethod
    def from_doc(cls, doc: JSON) -> Release:
        return cls(**doc)

    def to_api(self) -> JSON:
        return {**self.to_doc(), "id": self.key, "created_at": rfc3339(self.created_at),
                "updated_at": rfc3339(self.updated_at)}


def parse_image_name(name: str) -> tuple[str, str, str]:
    """'ghcr.io/org/app:latest' -> ('ghcr.io', 'org/app', 'latest'); 'nginx' -> ('', 'nginx', 'latest').

    A digest suffix ('@sha256:...') is dropped here; the caller resolves digests.
    """
    name = name.split("@", 1)[0]
    registry = ""
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, name = first, rest
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > last_slash:
        repository, tag = name[:colon], name[colon + 1:]
    else:
        repository, tag = name, "latest"
    return registry, repository, tag or "latest"


def canonical_image_ref(name: str) -> str:
    registry, repository, tag = parse_image_name(name)
    return f"{registry + '/' if registry else ''}{repository}:{tag}"


@dataclass
class Certificate:
    """A TLS certificate an app's edges present for one hostname: the operator's own (`custom`) or one from
    an ACME CA. Its key is sealed like a secret; the API shows what the certificate says, never the key."""

    app: str
    hostname: str
    fullchain: str  # PEM, leaf first
    key_sealed: str  # the private key, sealed (server/sealing.py) in the slot "cert:APP/HOSTNAME"
    source: str = "custom"  # custom | acme
    names: list[str] = field(default_factory=list)  # what the leaf covers
    not_after: float = 0.0
    issuer: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.app}/{self.hostname}"

    def to_doc(self) -> JSON:
        return {"app": self.app, "hostname": self.hostname, "fullchain": self.fullchain,
                "key_sealed": self.key_sealed, "source": self.source, "names": self.names,
                "not_after": self.not_after, "issuer": self.issuer, "created_at": self.created_at,
                "updated_at": self.updated_at}

    @classmethod
    def from_doc(cls, doc: JSON) -> Certificate:
        return cls(doc["app"], doc["hostname"], doc["fullchain"], doc["key_sealed"], doc.get("source", "custom"),
                   list(doc.get("names") or []), doc.get("not_after", 0.0), doc.get("issuer", ""),
                   doc.get("created_at", 0.0), doc.get("updated_at", 0.0))

    def to_api(self) -> JSON:
        return {"app": self.app, "hostname": self.hostname, "source": self.source, "names": self.names,
                "not_after": rfc3339(self.not_after)}  # never the key

    def status(self, now: float) -> str:
        return "Ready" if now < self.not_after else "Expired"

    def summary(self, now: float) -> JSON:
        """Fly's CertificateSummary."""
        return {"hostname": self.hostname, "configured": True, "status": self.status(now),
                "acme_requested": self.source == "acme", "has_custom_certificate": self.source == "custom",
                "has_fly_certificate": self.source == "acme", "acme_alpn_configured": False,
                "acme_dns_configured": False, "acme_http_configured": self.source == "acme",
                "ownership_txt_configured": False, "dns_provider": "",
                "created_at": rfc3339(self.created_at), "updated_at": rfc3339(self.updated_at)}

    def detail(self, now: float) -> JSON:
        """Fly's CertificateDetail."""
        return {"hostname": self.hostname, "configured": True, "status": self.status(now),
                "acme_requested": self.source == "acme", "dns_provider": "", "validation_errors": [],
                "certificates": [{"source": "fly" if self.source == "acme" else "custom", "status": "active",
                                  "issuer": self.issuer, "expires_at": rfc3339(self.not_after),
                                  "created_at": rfc3339(self.created_at)}],
                "roost": {"names": self.names}}
