"""`roost agent`: wire the driver, records, image cache, supervisor, uplink and API, and serve."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal as signals
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette

from roost import __version__, logsetup, tasks
from roost.agent import resolver
from roost.agent.api import routes
from roost.agent.cgroups import Cgroups
from roost.agent.credential import HostCredential, join
from roost.agent.credential import authorize as authorize_call
from roost.agent.drivers.container import ContainerDriver
from roost.agent.drivers.fake import FakeDriver
from roost.agent.drivers.process import ProcessDriver
from roost.agent.images import ImageCache
from roost.agent.keeper import KeeperClient
from roost.agent.netns import HostNetwork, NetworkError, keep_isolated
from roost.agent.oci_images import OciImages, oci_tools_available
from roost.agent.records import RecordStore
from roost.agent.supervisor import Supervisor, runtime_bin_dir
from roost.agent.uplink import Heartbeat, Outbox
from roost.agent.volumes import VolumeStore
from roost.agent.wireguard import MeshFollower, WireGuard
from roost.core.errors import RoostError
from roost.privnet.names import Directory
from roost.registry import RegistryAccess
from roost.tls import Listener, Trust
from roost.watchfeed import FeedFollower
from roost.weblib import EXCEPTION_HANDLERS, KEEP_ALIVE_SECONDS, BearerAuth, token_list

log = logging.getLogger("roost.agent")


@dataclass
class AgentConfig:
    server_url: str
    token: str
    region: str
    host_id: str
    listen_host: str
    listen_port: int
    cpus: int
    memory_mb: int
    data_dir: Path
    heartbeat_interval: float = 0.25
    fence_keeper: bool = True  # a separate process fences watched machines if this agent cannot (frozen, crashed)
    driver: str = "process"
    cgroups: bool = True
    join_token: str = ""  # join the fleet with it (once) instead of holding the fleet token
    tls: Listener | None = None  # listen with HTTPS only, with this certificate
    trust: Trust = field(default_factory=Trust)  # whom it trusts: the server, its peers (a pinned fleet CA)
    machine_net: str = ""  # the container driver's machine subnet on this host (unique in the fleet)
    private_net: str = ""  # the fleet's machine range, routed between hosts (empty: machines reach this host only)
    wireguard_port: int = 0  # join the fleet's WireGuard mesh on this UDP port (0: routes are the operator's)
    dns_port: int = 53  # the `.internal` resolver's port on the machine subnet's gateway (0: none)
    registry: RegistryAccess = field(default_factory=RegistryAccess)  # how to pull OCI images
    advertise: str = ""  # the address others reach this host at (default: listen_host)

    @property
    def address(self) -> str:
        """Where the control plane, edges and peers reach this host."""
        return self.advertise or self.listen_host

    @property
    def source_address(self) -> str | None:
        """The address this host sends from (its own, so that a fault on it cuts both ways); none when it
        listens on every address."""
        return None if self.listen_host in UNSPECIFIED else self.listen_host


def build_app(config: AgentConfig) -> Starlette:
    nameserver = ""  # where this host's `.internal` resolver listens (only with a machine subnet)
    network: HostNetwork | None = None  # the container driver's machine network
    data = config.data_dir
    data.mkdir(parents=True, exist_ok=True)
    os.chmod(data, 0o700)  # machine specs (secrets in their env), logs and volumes: the agent's alone
    if config.driver == "fake":
        driver: Any = FakeDriver()
    elif config.driver == "container":
        network = HostNetwork(config.host_id, config.machine_net, config.private_net)
        if network.subnet is not None and config.dns_port:
            nameserver = str(network.gateway)
        # Machines ask port 53: a resolver elsewhere (a test's) is reached by name only from the host.
        driver = ContainerDriver(data / "machines", config.host_id, network,
                                 nameserver=nameserver if config.dns_port == resolver.PORT else "")
    else:
        driver = ProcessDriver(data / "machines", Cgroups(config.host_id, enabled=config.cgroups))
    credential = _credential(config)
    outbound = credential.token if credential else config.token  # what this host presents to the server
    outbox = Outbox(config.server_url, outbound, config.host_id, local_address=config.source_address,
                    trust=config.trust)
    images = ImageCache(data / "images", config.server_url, outbound, local_address=config.source_address,
                        trust=config.trust)
    oci = OciImages(data / "oci", config.registry) if oci_tools_available() else None
    supervisor = Supervisor(driver, RecordStore(data / "records"), images,
                            outbox.put, runtime_bin_dir(data / "bin"),
                            VolumeStore(data / "volumes", data / "volume-images",
                                        enforce=False if config.driver == "fake" else None), oci)
    agent_url = f"{'https' if config.tls else 'http'}://{config.address}:{config.listen_port}"
    registration = {
        "id": config.host_id, "region": config.region, "address": config.address, "agent_url": agent_url,
        "cpus": config.cpus, "memory_mb": config.memory_mb, "version": __version__, "boot_id": _boot_id(data),
        "driver": driver.name, "machine_net": config.machine_net if driver.isolated else "",
    }
    mesh_follower = None
    if network is not None and config.wireguard_port:
        # Other hosts' own traffic arrives over the mesh from their gateways: taken in as this host's.
        mesh_follower = MeshFollower(_join_mesh(config, registration),
                                     lambda peers: network.set_peer_gateways([p.gateway for p in peers]))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError, ValueError):
            supervisor.watched = list(json.loads((data / "watched.json").read_text()))
        await supervisor.recover(host_restarted=_host_restarted(data))

        watched_file = data / "watched.json"

        def on_reply(reply: dict[str, Any]) -> None:
            if credential is not None and credential.learn(reply):
                credential.save(data / "credential.json")
            watched = sorted(reply.get("watched") or [])
            if watched != supervisor.watched:
                # Kept on disk: after a crash, a watched machine found dead is not restarted by this host
                # (its standby may have taken over); the control plane decides.
                supervisor.watched = watched
                tmp = watched_file.with_suffix(".tmp")
                tmp.write_text(json.dumps(watched))
                os.replace(tmp, watched_file)
            for mid in reply.get("destroy") or []:
                if mid in supervisor.records:
                    log.info("server no longer knows machine %s: removing it", mid)
                    asyncio.run_coroutine_threadsafe(supervisor.destroy(mid), loop)
            if mesh_follower is not None:
                mesh_follower.follow(reply)
            for mid in reply.get("stop") or []:
                if mid in supervisor.records:
                    log.info("machine %s was replaced by its standby while this host was away: stopping it", mid)
                    asyncio.run_coroutine_threadsafe(supervisor.stop(mid, 9, 1.0), loop)

        keeper = KeeperClient(data) if config.fence_keeper else None
        if keeper is not None:
            log.info("fence keeper running (pid %d)", keeper.start())

        def publish_lease(until: float, watched: list[str]) -> None:
            assert keeper is not None
            keeper.publish(until, supervisor.fence_targets(watched))

        heartbeat = Heartbeat(config.server_url, outbound, registration, config.heartbeat_interval,
                              lambda: supervisor.snapshot, on_reply, supervisor.fence,
                              local_address=config.source_address, alive=supervisor.mark_alive, trust=config.trust,
                              keeper=publish_lease if keeper is not None else None)
        if mesh_follower is not None:
            heartbeat.status = mesh_follower.report  # every beat says which mesh this host has applied
        stop = asyncio.Event()
        serving = tasks.spawn(_start_when_serving(heartbeat, config.source_address or "127.0.0.1",
                                                  config.listen_port), "register")
        outbox_task = tasks.spawn(outbox.run(stop), "outbox")
        dns_server, names_tasks = None, []
        if network is not None and network.subnet is not None:
            # The names feed answers `.internal` questions and says which org each machine address is of.
            names = Directory()
            follower = FeedFollower(names, config.server_url, outbound, None, config.trust, path="/v1/watch/names")
            names_tasks = [tasks.spawn(follower.run(stop), "names-feed"),
                           tasks.spawn(keep_isolated(names, network, stop), "isolation")]
            if nameserver:
                dns_server = resolver.Resolver(names, nameserver, config.dns_port)
                try:
                    await dns_server.start()
                except OSError as exc:
                    log.error("the .internal resolver cannot listen on %s:%d: %s", nameserver, config.dns_port, exc)
                    dns_server = None
        _app.state.heartbeat = heartbeat
        # Drills pause heartbeats with SIGUSR1 and resume them with SIGUSR2 (a host that goes silent).
        loop.add_signal_handler(signals.SIGUSR1, heartbeat.paused.set)
        loop.add_signal_handler(signals.SIGUSR2, heartbeat.paused.clear)
        try:
            yield
        finally:
            serving.cancel()
            await outbox.flush(1.0)
            stop.set()
            heartbeat.stop()
            await asyncio.wait([outbox_task, *names_tasks], timeout=3)
            if dns_server is not None:
                dns_server.close()
            await supervisor.shutdown()
            if keeper is not None:
                keeper.stop()
            # Machines keep running: the agent's exit is not theirs.
            driver.close() if isinstance(driver, ContainerDriver) else driver.shutdown()

    app = Starlette(routes=routes(supervisor, {"host_id": config.host_id, "region": config.region,
                                               "address": config.address}, config.trust),
                    exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    guarded = ("/v1", "/metrics")  # everything but /healthz needs a credential
    if credential is not None:
        app.add_middleware(BearerAuth, identify=credential.identify, authorize=authorize_call, prefixes=guarded)
    else:
        app.add_middleware(BearerAuth, identify=token_list(lambda: [config.token]), prefixes=guarded)
    return app


def _credential(config: AgentConfig) -> HostCredential | None:
    """This host's own credential: kept from an earlier join, or obtained now with the join token; None for
    an agent that holds the fleet token instead."""
    path = config.data_dir / "credential.json"
    credential = HostCredential.load(path)
    if credential is None and config.join_token:
        credential = join(config.server_url, config.join_token, config.host_id, config.address, config.trust)
        credential.save(path)
        log.info("joined the fleet as host %s (credential in %s)", config.host_id, path)
    if credential is not None and credential.host_id != config.host_id:
        raise RoostError(400, f"{path} is the credential of host {credential.host_id!r}, not {config.host_id!r}")
    return credential


async def _start_when_serving(heartbeat: Heartbeat, host: str, port: int, timeout: float = 10.0) -> None:
    """Register (and heartbeat) only once this agent's own API accepts connections: the control plane acts on
    the first heartbeat (it starts machines that its host's return should run again), and uvicorn listens
    only after the lifespan's startup."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            break
        except OSError:
            await asyncio.sleep(0.02)
    heartbeat.start()


def _host_restarted(data: Path) -> bool:
    """Did the host itself go down since this agent last ran (a power cut or a reboot), rather than the agent
    alone? The kernel's boot id says so; the dev fleet's simulated power cut rewrites `simulated-boot`."""
    current = ""
    with contextlib.suppress(OSError):
        current = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    with contextlib.suppress(OSError):
        current += ":" + (data / "simulated-boot").read_text().strip()
    path = data / "host-boot"
    try:
        previous: str | None = path.read_text().strip()
    except OSError:
        previous = None
    path.write_text(current + "\n")
    return previous is not None and previous != current


def _boot_id(data: Path) -> str:
    path = data / "boot-id"
    if not path.exists():
        path.write_text(uuid.uuid4().hex)
    return path.read_text().strip()


UNSPECIFIED = ("0.0.0.0", "::", "")


def _join_mesh(config: AgentConfig, registration: dict[str, Any]) -> WireGuard:
    """Bring up this host's WireGuard interface and say its public key at registration."""
    link = WireGuard(config.host_id, config.data_dir, config.wireguard_port, config.machine_net)
    try:
        link.up()
        registration["wireguard"] = {"public_key": link.public_key(), "port": config.wireguard_port}
    except NetworkError as exc:
        raise RoostError(500, f"the WireGuard mesh: {exc}") from None
    return link


def default_host_id(listen_host: str) -> str:
    return f"{socket.gethostname().split('.')[0]}-{listen_host.replace('.', '-')}"


def run(config: AgentConfig) -> None:
    logsetup.configure()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        app = build_app(config)
    except RoostError as exc:  # a refused join, an unreadable credential: one line, not a traceback
        print(f"roost agent: {exc.message}", file=sys.stderr)
        raise SystemExit(1) from None
    scheme = "https" if config.tls else "http"
    print(f"roost agent: host {config.host_id} in {config.region} serving on "
          f"{scheme}://{config.listen_host}:{config.listen_port} (pid {os.getpid()})", file=sys.stderr, flush=True)
    uvicorn.run(app, host=config.listen_host, port=config.listen_port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False, timeout_graceful_shutdown=3,
                timeout_keep_alive=KEEP_ALIVE_SECONDS,
                ssl_certfile=str(config.tls.cert) if config.tls else None,
                ssl_keyfile=str(config.tls.key) if config.tls else None)
