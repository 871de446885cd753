"""`roost server`: wire the store, state, services and API together and serve them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette

from roost import logsetup
from roost.core.access import refusal
from roost.core.cost import Prices
from roost.core.ids import new_token
from roost.core.lifecycle import State
from roost.detector.fencing import LeaseConfig
from roost.detector.membership import DetectorConfig
from roost.registry import RegistryAccess
from roost.server.acme_issuer import AcmeConfig, AcmeIssuer
from roost.server.agent_client import AgentClient
from roost.server.api import Services, routes
from roost.server.apps import AppService
from roost.server.certificates import CertificateService
from roost.server.costs import CostService
from roost.server.hosts import HostService
from roost.server.images import BlobStore
from roost.server.leases import LeaseService
from roost.server.logs import LogService
from roost.server.machines import MachineService
from roost.server.metrics import MetricsMiddleware, ServerMetrics
from roost.server.releases import ReleaseService
from roost.server.replica import Replica, ReplicaRouter, singletons_of
from roost.server.sealing import Keyring
from roost.server.secretkeys import SecretKeyService
from roost.server.secrets import SecretService
from roost.server.snapshots import SnapshotService
from roost.server.specs import SpecBuilder
from roost.server.state import ClusterState
from roost.server.takeover import StandbyController
from roost.server.tokens import TokenService
from roost.server.ui import routes as ui_routes
from roost.server.volumes import VolumeService
from roost.server.watch import WatchHub
from roost.store import open_store
from roost.tasks import spawn
from roost.tls import Listener, Trust
from roost.weblib import EXCEPTION_HANDLERS, KEEP_ALIVE_SECONDS, BearerAuth, SessionCookie

log = logging.getLogger("roost.server")

CHANGE_LOG_KEEP = 100_000
COMPACT_EVERY_SECONDS = 60.0


@dataclass
class ServerConfig:
    data_dir: Path
    listen_host: str = "127.0.0.1"
    listen_port: int = 4280
    default_region: str = "ams"
    store_url: str = ""
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    lease: LeaseConfig = field(default_factory=LeaseConfig)
    secrets_key: Path | None = None  # the sealing keyring (default: secrets.key in the data dir)
    rotate_secrets_key: bool = False
    tls: Listener | None = None  # HTTPS only, with this certificate
    trust: Trust = field(default_factory=Trust)  # whom it trusts when it calls agents (a pinned fleet CA)
    acme: AcmeConfig | None = None  # where apps' certificates are ordered (POST .../certificates/acme)
    registry: RegistryAccess = field(default_factory=RegistryAccess)  # how images are resolved to digests
    allowed_registries: tuple[str, ...] = ()  # patterns of registries machines may use (empty: any)
    registry_address: str = ""  # the fleet's own registry, where clients push (GET /v1/registry)
    advertise_url: str = ""  # how other replicas reach this one (default: its listen address)
    prices: Prices = field(default_factory=Prices)  # what machines cost (GET /v1/apps/{app}/cost)
    snapshot_interval: float = 86400.0  # how often each auto-backed-up volume is snapshotted (a day)
    snapshot_copy: bool = True  # a second copy of each snapshot on another host of its region


def load_or_create_token(data_dir: Path, name: str = "admin-token") -> tuple[str, Path, bool]:
    """The admin token, or (`control-token`) the server's own credential towards the agents."""
    path = data_dir / name
    if path.exists():
        return path.read_text().strip(), path, False
    token = new_token() if name == "admin-token" else f"rc1_{secrets.token_urlsafe(32)}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return token, path, True


def build_app(config: ServerConfig) -> tuple[Starlette, Services]:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    # The database holds secrets and the token: nobody else may even look inside the data directory.
    os.chmod(config.data_dir, 0o700)
    token, _, _ = load_or_create_token(config.data_dir)
    store = open_store(config.store_url or f"sqlite:///{config.data_dir / 'roost.db'}")
    for name in ("roost.db", "roost.db-wal", "roost.db-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(config.data_dir / name, 0o600)
    state = ClusterState(store, WatchHub())
    # On PostgreSQL a server is one of possibly several replicas: it follows, leads, or forwards (issue 18).
    replicated = config.store_url.startswith(("postgresql", "postgres:"))
    if replicated:
        state.load_replica()
    else:
        state.load()
    control, _, _ = load_or_create_token(config.data_dir, "control-token")
    tokens = TokenService(state, token, control_token=control)

    def credential_for(agent_url: str) -> str:
        # A joined host knows the server by its control credential; an agent given the fleet token, by that.
        host = next((h for h in state.hosts.values() if h.agent_url == agent_url), None)
        return control if host is not None and tokens.joined(host.id) else token

    agents = AgentClient(token, credential_for, trust=config.trust)
    keyring_path = config.secrets_key or config.data_dir / "secrets.key"
    keyring = Keyring.load_or_create(keyring_path)
    if config.rotate_secrets_key:
        log.info("new secrets key %s in %s: every secret is re-sealed with it", keyring.rotate(), keyring_path)
        keyring.save(keyring_path)
    secrets = SecretService(state, keyring)
    machines = MachineService(state, agents, config.default_region, secrets.env,
                              specs=SpecBuilder(state, secrets.env, config.registry, config.allowed_registries))
    volumes = VolumeService(state, config.default_region, agents)
    metrics = ServerMetrics()
    metrics.fleet = lambda: _fleet_rows(state)
    state.on_commit = metrics.commit_seconds.observe
    machines.on_placement = lambda region, result: metrics.placements.labels(region, result).inc()
    services = Services(
        state=state,
        apps=AppService(state, machines, volumes),
        machines=machines,
        leases=LeaseService(machines),
        volumes=volumes,
        hosts=HostService(state, machines, config.detector,
                          StandbyController(state, machines.ops, agents, config.lease, metrics=metrics),
                          https_only=config.tls is not None or config.trust.pinned, probe=agents.unreachable,
                          metrics=metrics),
        blobs=BlobStore(config.data_dir / "images"),
        logs=LogService(state, agents),
        secrets=secrets,
        secret_keys=SecretKeyService(state, keyring),
        releases=ReleaseService(state),
        tokens=tokens,
        certificates=CertificateService(state, keyring, acme=AcmeIssuer(
            config.acme, config.data_dir / "acme-account.pem") if config.acme else None),
        registry_address=config.registry_address,
        registry_plain_http=bool(config.registry_address) and config.registry.plain_http(config.registry_address),
        metrics=metrics,
        costs=CostService(state, config.prices),
        snapshots=SnapshotService(state, volumes, agents, config.snapshot_interval,
                                  config.snapshot_copy),
    )

    async def reseal(stop: asyncio.Event) -> None:
        """Secrets sealed under an older key, sealed again under the current one (once, by the writer)."""
        resealed = await secrets.reseal() + await services.secret_keys.reseal()
        if resealed:
            log.info("re-sealed %d secrets with the current key", resealed)

    # The jobs one server runs for the whole fleet: on the leader only, when there are replicas (a new leader
    # reseals too: one server does it before its first request).
    jobs: list[tuple[str, Callable[[asyncio.Event], Coroutine[Any, Any, None]]]] = [
        ("detector", services.hosts.run_detector),
        ("compactor", lambda stop: _compact_loop(state, stop)),
        ("certificate renewals", services.certificates.renew_loop),
        ("daily snapshots", services.snapshots.run_daily)]
    singletons = singletons_of(*([("reseal", reseal)] if replicated else []), *jobs)
    scheme = "https" if config.tls else "http"
    replica = Replica(state, config.advertise_url or f"{scheme}://{config.listen_host}:{config.listen_port}",
                      singletons) if replicated else None
    if replica is not None:
        services.control_plane = replica.view

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        if replica is None:
            await reseal(stop)  # before the first request, as one server always did
        if replica is not None:
            await replica.start()  # one round first: a lone server leads before its first request
            tasks = [spawn(replica.run(stop), "replica")]
        else:
            tasks = singletons(stop)
        try:
            yield
        finally:
            stop.set()
            await asyncio.wait(tasks, timeout=5)
            await services.certificates.shutdown()
            await machines.shutdown()
            await agents.close()
            state.close()

    app = Starlette(routes=routes(services) + ui_routes(services), exception_handlers=EXCEPTION_HANDLERS,
                    lifespan=lifespan)
    # Everything but /healthz and the dashboard's login form needs a credential (the dashboard checks its own).
    app.add_middleware(BearerAuth, identify=services.tokens.identify, authorize=refusal, prefixes=("/v1", "/metrics"))
    app.add_middleware(SessionCookie)  # a dashboard's reads of the API: its session cookie as the bearer token
    if replica is not None:  # a follower catches up before anything reads its state
        app.add_middleware(ReplicaRouter, replica=replica, trust=config.trust)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: every request counted, refused ones too
    return app, services


def _fleet_rows(state: ClusterState) -> Iterator[tuple[str, ...]]:
    """What the fleet gauges count: a row per live machine and per host (metrics.py tallies them)."""
    for m in state.machines.values():
        if m.state is not State.DESTROYED:
            yield ("machine", m.app, m.region, str(m.state))
    for h in state.hosts.values():
        yield ("host", h.region, h.status)


async def _compact_loop(state: ClusterState, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), COMPACT_EVERY_SECONDS)
        if stop.is_set():
            return
        try:
            await state.in_store_thread(state.store.compact, CHANGE_LOG_KEEP)
        except Exception:
            log.exception("compacting the change log failed")


def run(config: ServerConfig) -> None:
    logsetup.configure()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    _, token_path, created = load_or_create_token(config.data_dir)
    print(f"roost server: {'created' if created else 'using'} admin token in {token_path}", file=sys.stderr,
          flush=True)
    app, _ = build_app(config)
    scheme = "https" if config.tls else "http"
    print(f"roost server: Machines API on {scheme}://{config.listen_host}:{config.listen_port}/v1 "
          f"(default region {config.default_region})", file=sys.stderr, flush=True)
    uvicorn.run(app, host=config.listen_host, port=config.listen_port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False, timeout_graceful_shutdown=5,
                timeout_keep_alive=KEEP_ALIVE_SECONDS,
                ssl_certfile=str(config.tls.cert) if config.tls else None,
                ssl_keyfile=str(config.tls.key) if config.tls else None)
