"""The control plane's HTTP API: Fly's Machines API paths under /v1 plus Roost's documented extensions."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from roost.core import cost
from roost.core.access import ADMIN, Identity, may_push_image
from roost.core.drills import DrillBoard, DrillEventError
from roost.core.drills import parse_event as parse_drill_event
from roost.core.errors import RoostError, bad_request, not_found
from roost.core.exec_request import console_argv
from roost.core.lifecycle import State
from roost.core.model import EdgeProxy, Image, canonical_image_ref, parse_image_name
from roost.core.regions import REGIONS
from roost.core.traffic import WINDOW as TRAFFIC_WINDOW
from roost.core.traffic import TrafficBoard, TrafficError, parse_report
from roost.core.units import duration_seconds
from roost.privnet.names import names_view
from roost.server import api_parity, console
from roost.server.apps import AppService
from roost.server.certificates import CertificateService
from roost.server.costs import CostService
from roost.server.hosts import HostService
from roost.server.images import BlobStore
from roost.server.leases import LeaseService
from roost.server.logs import LogFilter, LogService, log_cutoff
from roost.server.machines import MachineService
from roost.server.metrics import ServerMetrics
from roost.server.releases import ReleaseService
from roost.server.secretkeys import SecretKeyService
from roost.server.secrets import SecretService
from roost.server.snapshots import SnapshotService
from roost.server.state import ClusterState
from roost.server.tokens import TokenService
from roost.server.volumes import VolumeService
from roost.weblib import IDENTITY, json_body, ok, query_bool, query_number

LEASE_HEADER = "fly-machine-lease-nonce"
TOKEN_OWNER = "admin@roost"
REVOCATION_SLICE = 1.0  # an open watch stream re-checks its token this often
KEEPALIVE_SECONDS = 15.0


@dataclass
class Services:
    state: ClusterState
    apps: AppService
    machines: MachineService
    leases: LeaseService
    volumes: VolumeService
    hosts: HostService
    blobs: BlobStore
    logs: LogService
    secrets: SecretService
    secret_keys: SecretKeyService
    snapshots: SnapshotService
    releases: ReleaseService
    tokens: TokenService
    certificates: CertificateService
    costs: CostService
    registry_address: str = ""  # the fleet's own registry (HOST:PORT), where `roost image push` pushes
    registry_plain_http: bool = False  # ... spoken to over plain HTTP (loopback, or listed as insecure)
    # Who leads the control plane, as this server sees it (issue 18); one server alone always leads.
    control_plane: Callable[[], dict[str, Any]] = lambda: {"replicated": False, "leads": True}
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    traffic: TrafficBoard = field(default_factory=TrafficBoard)  # what the edges answered lately (dashboard)
    drills: DrillBoard = field(default_factory=DrillBoard)  # drills run lately, as they announce themselves


def routes(s: Services) -> list[BaseRoute]:
    def nonce(request: Request) -> str | None:
        return request.headers.get(LEASE_HEADER)

    def identity(request: Request) -> Identity:
        who = request.scope.get(IDENTITY)
        return who if isinstance(who, Identity) else ADMIN

    # ---- apps ----
    async def list_apps(request: Request) -> Response:
        who = identity(request)
        return ok(s.apps.list(request.query_params.get("org_slug"), who.app or None))

    async def create_app(request: Request) -> Response:
        return ok(await s.apps.create(await json_body(request, required=True)), 201)

    async def get_app(request: Request) -> Response:
        return ok(s.state.app_api(s.apps.get(request.path_params["app"])))

    async def delete_app(request: Request) -> Response:
        await s.apps.delete(request.path_params["app"])
        await s.certificates.forget_app(request.path_params["app"])
        return ok(None, 202)

    # ---- certificates (Fly's TLS Certificates; custom ones, terminated by the edges) ----
    async def list_certificates(request: Request) -> Response:
        return ok(s.certificates.list(request.path_params["app"], request.query_params.get("filter", ""),
                                      int(query_number(request, "limit", 25, lo=1, hi=500))))

    async def add_custom_certificate(request: Request) -> Response:
        return ok(await s.certificates.add_custom(request.path_params["app"], await json_body(request, required=True)),
                  201)

    async def request_acme_certificate(request: Request) -> Response:
        body = await json_body(request, required=True)
        return ok(await s.certificates.request_acme(request.path_params["app"], body), 201)

    async def show_certificate(request: Request) -> Response:
        return ok(s.certificates.show(request.path_params["app"], request.path_params["hostname"]))

    async def delete_certificate(request: Request) -> Response:
        await s.certificates.delete(request.path_params["app"], request.path_params["hostname"])
        return Response(status_code=204)

    async def delete_custom_certificate(request: Request) -> Response:
        return ok(await s.certificates.delete(request.path_params["app"], request.path_params["hostname"]))

    async def check_certificate(request: Request) -> Response:
        return ok(s.certificates.check(request.path_params["app"], request.path_params["hostname"]))

    async def certificate_bundle(request: Request) -> Response:
        return ok(s.certificates.bundle(request.query_params.get("since", "")))

    async def patch_app(request: Request) -> Response:
        body = await json_body(request, required=True)
        if not isinstance(body, dict) or "primary_region" not in body:
            raise bad_request("body must be {\"primary_region\": \"ams\"}")
        return ok(await s.apps.set_primary_region(request.path_params["app"], str(body["primary_region"] or "")))

    # ---- machines ----
    async def list_machines(request: Request) -> Response:
        q = request.query_params
        metadata = {k[len("metadata."):]: v for k, v in q.multi_items() if k.startswith("metadata.")}
        states = set(q.get("state", "").split(",")) - {""} if q.get("state") else None
        body = s.machines.list_json(
            request.path_params["app"], region=q.get("region") or None,
            include_deleted=query_bool(request, "include_deleted"), metadata=metadata,
            summary=query_bool(request, "summary"), states=states,
        )
        return Response(body, media_type="application/json")

    async def create_machine(request: Request) -> Response:
        body = await json_body(request, required=True)
        return ok(await s.machines.create(request.path_params["app"], body, TOKEN_OWNER))

    async def get_machine(request: Request) -> Response:
        m = s.machines.get(request.path_params["app"], request.path_params["id"])
        return ok(s.state.machine_api(m))

    async def update_machine(request: Request) -> Response:
        body = await json_body(request, required=True)
        return ok(await s.machines.update(request.path_params["app"], request.path_params["id"], body,
                                          nonce(request)))

    async def delete_machine(request: Request) -> Response:
        force = query_bool(request, "force") or query_bool(request, "kill")
        return ok(await s.machines.destroy(request.path_params["app"], request.path_params["id"], force,
                                           nonce(request)))

    async def start(request: Request) -> Response:
        return ok(await s.machines.start(request.path_params["app"], request.path_params["id"], nonce(request)))

    async def stop(request: Request) -> Response:
        body = await json_body(request)
        if body is not None and not isinstance(body, dict):
            raise bad_request("body must be {\"signal\": \"SIGINT\", \"timeout\": \"10s\"} or empty")
        return ok(await s.machines.stop(request.path_params["app"], request.path_params["id"], body,
                                        nonce(request)))

    async def suspend(request: Request) -> Response:
        return ok(await s.machines.suspend(request.path_params["app"], request.path_params["id"], nonce(request)))

    async def restart(request: Request) -> Response:
        return ok(await s.machines.restart(request.path_params["app"], request.path_params["id"],
                                           dict(request.query_params), nonce(request)))

    async def signal(request: Request) -> Response:
        body = await json_body(request, required=True)
        return ok(await s.machines.signal(request.path_params["app"], request.path_params["id"], body,
                                          nonce(request)))

    async def exec_command(request: Request) -> Response:
        body = await json_body(request, required=True)
        return ok(await s.machines.exec(request.path_params["app"], request.path_params["id"], body))

    async def processes(request: Request) -> Response:
        q = request.query_params
        return ok(await s.machines.processes(request.path_params["app"], request.path_params["id"],
                                             q.get("sort_by", ""), q.get("order", "")))

    async def console_socket(ws: WebSocket) -> None:
        try:
            agent_url, m = s.machines.console_target(ws.path_params["app"], ws.path_params["id"])
            command = console_argv(ws.query_params.getlist("cmd"))
        except RoostError as exc:
            await console.refuse(ws, exc)
            return
        query = "&".join(f"cmd={quote(a, safe='')}" for a in command)
        await console.relay(ws, s.machines.ops.agents.connect_socket(agent_url, f"/v1/machines/{m.id}/console?{query}"))

    async def wait(request: Request) -> Response:
        states = [v for item in request.query_params.getlist("state") for v in item.split(",") if v]
        timeout = query_number(request, "timeout", 60, lo=0, hi=10**9)
        return ok(await s.machines.wait(request.path_params["app"], request.path_params["id"], states, timeout))

    async def cordon(request: Request) -> Response:
        return ok(await s.machines.cordon(request.path_params["app"], request.path_params["id"], True,
                                          nonce(request)))

    async def uncordon(request: Request) -> Response:
        return ok(await s.machines.cordon(request.path_params["app"], request.path_params["id"], False,
                                          nonce(request)))

    async def events(request: Request) -> Response:
        m = s.machines.get(request.path_params["app"], request.path_params["id"])
        limit = int(query_number(request, "limit", len(m.events), lo=0, hi=10**6))
        return ok(m.events[:limit])

    async def versions(request: Request) -> Response:
        m = s.machines.get(request.path_params["app"], request.path_params["id"])
        current = [{"version": m.instance_id, "user_config": m.config}]
        return ok(current + m.versions)

    async def get_metadata(request: Request) -> Response:
        m = s.machines.get(request.path_params["app"], request.path_params["id"])
        return ok(dict(m.config.get("metadata") or {}))

    async def get_metadata_key(request: Request) -> Response:
        m = s.machines.get(request.path_params["app"], request.path_params["id"])
        key = request.path_params["key"]
        metadata = m.config.get("metadata") or {}
        if key not in metadata:
            raise not_found(f"metadata key {key!r} not found on machine {m.id}")
        return ok({"value": metadata[key]})

    async def set_metadata_key(request: Request) -> Response:
        body = await json_body(request, required=True)
        if not isinstance(body, dict) or not isinstance(body.get("value"), str):
            raise bad_request("body must be {\"value\": \"...\"}")
        await s.machines.set_metadata(request.path_params["app"], request.path_params["id"],
                                      {request.path_params["key"]: body["value"]}, nonce(request))
        return ok(None, 204)

    async def delete_metadata_key(request: Request) -> Response:
        await s.machines.set_metadata(request.path_params["app"], request.path_params["id"], {}, nonce(request),
                                      remove=request.path_params["key"])
        return ok(None, 204)

    async def put_metadata(request: Request) -> Response:
        body = await json_body(request, required=True)
        values = body.get("metadata") if isinstance(body, dict) else None
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise bad_request("body must be {\"metadata\": {\"key\": \"value\", ...}}")
        m = s.machines.get(request.path_params["app"], request.path_params["id"])
        version = body.get("machine_version")
        if version and version != m.instance_id:
            from roost.core.errors import precondition
            raise precondition(f"machine_version {version!r} does not match the machine's {m.instance_id!r}")
        await s.machines.set_metadata(m.app, m.id, values, nonce(request),
                                      replace_all=request.method == "PUT")
        return ok(None, 204)

    async def acquire_lease(request: Request) -> Response:
        body = await json_body(request)
        if body is not None and not isinstance(body, dict):
            raise bad_request("body must be {\"ttl\": SECONDS, \"description\": \"...\"} or empty")
        body = body or {}
        ttl = body.get("ttl", request.query_params.get("ttl"))
        description = body.get("description") or ""
        if not isinstance(description, str):
            raise bad_request("description: expected a string")
        status, envelope = await s.leases.acquire(
            request.path_params["app"], request.path_params["id"], ttl, description, nonce(request), TOKEN_OWNER)
        return ok(envelope, status)

    async def get_lease(request: Request) -> Response:
        return ok(s.leases.get(request.path_params["app"], request.path_params["id"]))

    async def release_lease(request: Request) -> Response:
        return ok(await s.leases.release(request.path_params["app"], request.path_params["id"], nonce(request)))

    # ---- volumes ----
    async def list_volumes(request: Request) -> Response:
        return ok(s.volumes.list(request.path_params["app"]))

    async def create_volume(request: Request) -> Response:
        body = await json_body(request, required=True)
        if isinstance(body, dict) and (body.get("snapshot_id") or body.get("source_volume_id")):
            return ok(await s.snapshots.create_volume(request.path_params["app"], body))
        return ok(await s.volumes.create(request.path_params["app"], body))

    async def get_volume(request: Request) -> Response:
        return ok(s.state.volume_api(s.volumes.get(request.path_params["app"], request.path_params["vid"])))

    async def update_volume(request: Request) -> Response:
        return ok(await s.volumes.update(request.path_params["app"], request.path_params["vid"],
                                         await json_body(request, required=True)))

    async def delete_volume(request: Request) -> Response:
        return ok(await s.volumes.delete(request.path_params["app"], request.path_params["vid"]))

    async def extend_volume(request: Request) -> Response:
        return ok(await s.volumes.extend(request.path_params["app"], request.path_params["vid"],
                                         await json_body(request, required=True)))

    # ---- Roost extensions: hosts, watch, images, logs, platform ----
    async def list_hosts(request: Request) -> Response:
        return ok(s.hosts.list())

    async def register_host(request: Request) -> Response:
        body = await json_body(request, required=True)
        who = identity(request)
        if who.kind == "host" and (not isinstance(body, dict) or body.get("id") != who.host):
            raise RoostError(403, f"the credential of host {who.host!r} registers that host only")
        return ok(await s.hosts.register(body))

    async def join_host(request: Request) -> Response:
        body = await json_body(request, required=True)
        if not isinstance(body, dict):
            raise bad_request('body must be {"host_id": "..."}')
        return ok(await s.tokens.join(identity(request), body.get("host_id")), 201)

    async def heartbeat(request: Request) -> Response:
        reply = await s.hosts.heartbeat(request.path_params["host"], await json_body(request))
        if identity(request).kind == "host":
            reply.update(s.tokens.host_view())  # whose calls a joined host answers, revocations included
        return ok(reply)

    async def host_reports(request: Request) -> Response:
        return ok(await s.hosts.report(request.path_params["host"], await json_body(request, required=True)))

    async def cordon_host(request: Request) -> Response:
        return ok(await s.hosts.set_cordon(request.path_params["host"], True))

    async def uncordon_host(request: Request) -> Response:
        return ok(await s.hosts.set_cordon(request.path_params["host"], False))

    async def watch(request: Request) -> Response:
        return await _watch(request, names=False)

    async def watch_names(request: Request) -> Response:
        """The feed's names view (apps, machines: who is where, no config): what every host's `.internal`
        resolver follows, so a host credential may read it."""
        return await _watch(request, names=True)

    async def _watch(request: Request, names: bool) -> Response:
        since = int(query_number(request, "since", 0, lo=0, hi=2**62))
        timeout = query_number(request, "timeout", 30, lo=0, hi=300)
        limit = int(query_number(request, "limit", 1000, lo=1, hi=10000))
        accept = request.headers.get("accept", "")
        if "text/event-stream" in accept or query_bool(request, "stream"):
            return StreamingResponse(_sse(s, request, since, limit, names), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        batch = await _watch_batch(s, since, limit, names)
        if not batch["events"] and not batch.get("reset") and timeout > 0:
            await s.state.hub.wait(since, timeout)
            batch = await _watch_batch(s, since, limit, names)
        return ok(batch)

    async def push_image(request: Request) -> Response:
        name = request.query_params.get("name", "")
        if not name.strip():
            raise bad_request("query parameter name: required, e.g. ?name=myapp:v1")
        if request.headers.get("content-type", "").startswith("application/json"):
            return await register_image(request, name.strip())
        cmd_raw = request.query_params.get("cmd")
        cmd: list[str] = []
        if cmd_raw:
            try:
                cmd = json.loads(cmd_raw)
            except ValueError:
                raise bad_request("query parameter cmd: expected a JSON array of strings") from None
            if not isinstance(cmd, list) or not all(isinstance(c, str) for c in cmd):
                raise bad_request("query parameter cmd: expected a JSON array of strings")
        registry, repository, tag = parse_image_name(name.strip())
        who = identity(request)
        if not may_push_image(who, repository):
            raise RoostError(403, f"a deploy token of app {who.app!r} pushes images named {who.app} or "
                                  f"{who.app}/...; got {repository!r}")
        digest, size = await s.blobs.put_stream(request.stream())
        ref = canonical_image_ref(name.strip())

        image = Image(ref=ref, registry=registry or "roost", repository=repository, tag=tag, digest=digest,
                      size=size, created_at=time.time(), cmd=cmd)
        async with s.state.lock:
            await s.state.save(image)
        return ok(image.to_api(), 201)

    async def register_image(request: Request, name: str) -> Response:
        """Give a registry image a name here (what `roost image push` does once it has pushed to the fleet's
        registry): machines that say `"image": NAME` run it at the digest it has now."""
        body = await json_body(request, required=True)
        reference = body.get("image") if isinstance(body, dict) else None
        if not isinstance(reference, str) or not reference:
            raise bad_request("body must be {\"image\": \"REGISTRY/REPOSITORY:TAG\"}")
        _, repository, _ = parse_image_name(name)
        who = identity(request)
        if not may_push_image(who, repository):
            raise RoostError(403, f"a deploy token of app {who.app!r} pushes images named {who.app} or "
                                  f"{who.app}/...; got {repository!r}")
        resolved = await s.machines.specs.resolve(reference)
        ref = resolved.ref
        command = resolved.config.get("Cmd") or []
        image = Image(ref=canonical_image_ref(name), registry=ref.registry, repository=ref.repository,
                      tag=ref.tag, digest=ref.digest, size=resolved.size, created_at=time.time(),
                      cmd=[str(c) for c in command] if isinstance(command, list) else [], source="registry")
        async with s.state.lock:
            await s.state.save(image)
        return ok(image.to_api(), 201)

    async def registry_info(request: Request) -> Response:
        if not s.registry_address:
            raise RoostError(404, "this fleet has no image registry of its own (roost server --registry "
                                  "HOST:PORT); push images to your registry and use their full names")
        return ok({"address": s.registry_address, "plain_http": s.registry_plain_http})

    async def list_images(request: Request) -> Response:
        return ok([i.to_api() for i in sorted(s.state.images.values(), key=lambda i: i.ref)])

    async def get_blob(request: Request) -> Response:
        path = s.blobs.path(request.path_params["digest"])
        if not path.exists():
            raise not_found(f"blob {request.path_params['digest']} not found")
        return FileResponse(path, media_type="application/gzip")

    async def app_logs(request: Request) -> Response:
        app = request.path_params["app"]
        s.apps.get(app)
        lines = int(query_number(request, "lines", 100, lo=0, hi=100000))
        want = LogFilter(request.query_params.get("machine") or request.query_params.get("instance"),
                         request.query_params.get("region"), log_cutoff(request.query_params.get("since")))
        if query_bool(request, "follow"):
            return StreamingResponse(s.logs.follow(app, want, lines), media_type="application/x-ndjson",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return ok(await s.logs.tail(app, want, lines))

    async def app_cost(request: Request) -> Response:
        app = request.path_params["app"]
        s.apps.get(app)
        since = request.query_params.get("since")
        seconds = duration_seconds(since, field="since", int_unit=1.0) if since else None
        if seconds is not None and not 0 < seconds <= cost.RETAIN_HOURS * cost.HOUR:
            raise bad_request(f"since: between 1s and {cost.RETAIN_HOURS // 24} days (what the ledger keeps)")
        return ok(s.costs.report(app, seconds))

    async def regions(request: Request) -> Response:
        live = {h.region for h in s.state.hosts.values()}
        return ok({"regions": [{"code": code, "name": name, "hosts": sum(1 for h in s.state.hosts.values()
                                                                          if h.region == code),
                                "live": code in live} for code, name in REGIONS.items()]})

    async def register_proxy(request: Request) -> Response:
        body = await json_body(request, required=True)
        if not isinstance(body, dict):
            raise bad_request("body must be a JSON object")
        fields = {k: body.get(k) for k in ("id", "region", "url", "tcp_prefix")}
        if not all(isinstance(v, str) and v for v in fields.values()):
            raise bad_request("id, region, url and tcp_prefix are required strings")
        pid = body.get("pid") or 0
        if isinstance(pid, bool) or not isinstance(pid, int) or not 0 <= pid < 2 ** 22:
            raise bad_request(f"pid: expected a process id, got {pid!r}")
        for key in ("admin_url", "domain"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise bad_request(f"{key}: expected a string")

        edge = EdgeProxy(id=str(fields["id"]), region=str(fields["region"]), url=str(fields["url"]),
                         tcp_prefix=str(fields["tcp_prefix"]),
                         admin_url=str(body.get("admin_url") or ""), domain=str(body.get("domain") or "localhost"),
                         registered_at=time.time(), pid=pid)
        current = s.state.proxies.get(edge.id)
        if current is None or current.to_doc() | {"registered_at": 0} != edge.to_doc() | {"registered_at": 0}:
            async with s.state.lock:
                await s.state.save(edge)
        return ok(edge.to_api())

    async def takeovers(request: Request) -> Response:
        controller = s.hosts.takeover
        return ok(list(reversed(controller.history)) if controller else [])

    async def proxy_traffic(request: Request) -> Response:
        """An edge's cumulative request counts and latency estimates, for the dashboard's live charts."""
        try:
            region, counts, latency = parse_report(await json_body(request, required=True))
        except TrafficError as exc:
            raise bad_request(str(exc)) from None
        edge_id = request.path_params["id"]
        if not 0 < len(edge_id) <= 64:
            raise bad_request("edge id: 1 to 64 characters")
        return ok({"points": s.traffic.report(edge_id, region, counts, latency, time.time())})

    async def app_traffic(request: Request) -> Response:
        app = request.path_params["app"]
        s.apps.get(app)
        since = query_number(request, "since", 300, lo=1, hi=TRAFFIC_WINDOW)
        regions = {m.id: m.region for m in s.state.app_machines.get(app, {}).values()}
        return ok({"app": app, "window_s": since, "now": time.time(), "machines": regions,
                   "points": [p.to_json() for p in s.traffic.points(app, time.time(), since)]})

    async def drill_event(request: Request) -> Response:
        """A drill against the app says what it is doing (started, fault, heal, finished with its report)."""
        app = request.path_params["app"]
        s.apps.get(app)
        try:
            event = parse_drill_event(await json_body(request, required=True))
        except DrillEventError as exc:
            raise bad_request(str(exc)) from None
        entry = s.drills.record(app, event)
        return ok({"drill": entry["drill"], "state": entry["state"]})

    async def list_drills(request: Request) -> Response:
        app = request.path_params["app"]
        s.apps.get(app)
        return ok(s.drills.list(app))

    async def get_drill(request: Request) -> Response:
        app = request.path_params["app"]
        s.apps.get(app)
        drill = s.drills.get(app, request.path_params["drill"])
        if drill is None:
            raise not_found(f"no drill {request.path_params['drill']!r} of app {app!r} (the control plane keeps "
                            "the last 20 per app, in memory)")
        return ok(drill)

    async def list_proxies(request: Request) -> Response:
        return ok([p.to_api() for p in sorted(s.state.proxies.values(), key=lambda p: (p.region, p.id))])

    async def list_secrets(request: Request) -> Response:
        return ok(s.secrets.list(request.path_params["app"]))

    async def set_secrets(request: Request) -> Response:
        body = await json_body(request, required=True)
        return ok(await s.secrets.set(request.path_params["app"], body.get("values") if isinstance(body, dict)
                                      else None))

    async def set_secret(request: Request) -> Response:
        body = await json_body(request, required=True)
        if not isinstance(body, dict) or not isinstance(body.get("value"), str):
            raise bad_request("body must be {\"value\": \"...\"}")
        name = request.path_params["name"]
        result = await s.secrets.set(request.path_params["app"], {name: body["value"]})
        entry = next(x for x in result["secrets"] if x["name"] == name)
        return ok({**entry, "version": result["version"]}, 201)

    async def get_secret(request: Request) -> Response:
        listing = s.secrets.list(request.path_params["app"])
        entry = next((x for x in listing["secrets"] if x["name"] == request.path_params["name"]), None)
        if entry is None:
            raise not_found(f"secret {request.path_params['name']!r} is not set")
        return ok(entry)

    async def unset_secret(request: Request) -> Response:
        return ok(await s.secrets.unset(request.path_params["app"], request.path_params["name"]))

    async def list_releases(request: Request) -> Response:
        return ok(s.releases.list(request.path_params["app"]))

    async def create_release(request: Request) -> Response:
        return ok(await s.releases.create(request.path_params["app"], await json_body(request, required=True)), 201)

    async def update_release(request: Request) -> Response:
        version = request.path_params["version"]
        if not version.isdigit():
            raise bad_request("release version must be a number")
        return ok(await s.releases.update(request.path_params["app"], int(version),
                                          await json_body(request, required=True)))

    async def healthz(request: Request) -> Response:
        return ok({"ok": True, "revision": s.state.hub.revision})

    async def control_plane(request: Request) -> Response:
        return ok(s.control_plane())

    async def metrics(request: Request) -> Response:
        return Response(s.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    # ---- tokens ----
    async def create_token(request: Request) -> Response:
        body = await json_body(request, required=True)
        if not isinstance(body, dict):
            raise bad_request('body must be {"kind": "deploy"|"readonly"|"org"|"edge"|"machine-exec"|"join", '
                              '"app": ..., "expiry": "720h"}')
        token, secret = await s.tokens.create(body.get("kind"), body.get("app") or "", body.get("name") or "",
                                              body.get("expiry"))
        return ok({**token.to_api(), "token": secret}, 201)

    async def list_tokens(request: Request) -> Response:
        return ok({"tokens": s.tokens.list()})

    async def revoke_token(request: Request) -> Response:
        return ok(await s.tokens.revoke(request.path_params["id"]))

    async def current_token(request: Request) -> Response:
        return ok(s.tokens.current(identity(request)))

    async def deploy_token(request: Request) -> Response:
        body = await json_body(request) or {}
        if not isinstance(body, dict):
            raise bad_request("body must be {\"expiry\": \"720h\"} or empty")
        app = request.path_params["app"]
        s.apps.get(app)
        _, secret = await s.tokens.create("deploy", app, "deploy token", body.get("expiry"))
        return ok({"token": secret})

    m = "/v1/apps/{app}/machines/{id}"
    return [
        Route("/healthz", healthz),
        Route("/v1/control-plane", control_plane, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1/apps", list_apps, methods=["GET"]),
        Route("/v1/apps", create_app, methods=["POST"]),
        Route("/v1/apps/{app}", get_app, methods=["GET"]),
        Route("/v1/apps/{app}", delete_app, methods=["DELETE"]),
        Route("/v1/apps/{app}", patch_app, methods=["PATCH"]),
        Route("/v1/apps/{app}/machines", list_machines, methods=["GET"]),
        Route("/v1/apps/{app}/machines", create_machine, methods=["POST"]),
        Route(m, get_machine, methods=["GET"]),
        Route(m, update_machine, methods=["POST", "PUT"]),
        Route(m, delete_machine, methods=["DELETE"]),
        Route(m + "/start", start, methods=["POST"]),
        Route(m + "/stop", stop, methods=["POST"]),
        Route(m + "/suspend", suspend, methods=["POST"]),
        Route(m + "/restart", restart, methods=["POST"]),
        Route(m + "/signal", signal, methods=["POST"]),
        Route(m + "/wait", wait, methods=["GET"]),
        Route(m + "/exec", exec_command, methods=["POST"]),
        Route(m + "/ps", processes, methods=["GET"]),
        WebSocketRoute(m + "/console", console_socket),
        Route(m + "/cordon", cordon, methods=["POST"]),
        Route(m + "/uncordon", uncordon, methods=["POST"]),
        Route(m + "/events", events, methods=["GET"]),
        Route(m + "/versions", versions, methods=["GET"]),
        Route(m + "/metadata", get_metadata, methods=["GET"]),
        Route(m + "/metadata", put_metadata, methods=["PUT", "PATCH"]),
        Route(m + "/metadata/{key}", get_metadata_key, methods=["GET"]),
        Route(m + "/metadata/{key}", set_metadata_key, methods=["POST"]),
        Route(m + "/metadata/{key}", delete_metadata_key, methods=["DELETE"]),
        Route(m + "/lease", acquire_lease, methods=["POST"]),
        Route(m + "/lease", get_lease, methods=["GET"]),
        Route(m + "/lease", release_lease, methods=["DELETE"]),
        Route("/v1/apps/{app}/volumes", list_volumes, methods=["GET"]),
        Route("/v1/apps/{app}/volumes", create_volume, methods=["POST"]),
        Route("/v1/apps/{app}/volumes/{vid}", get_volume, methods=["GET"]),
        Route("/v1/apps/{app}/volumes/{vid}", update_volume, methods=["PUT"]),
        Route("/v1/apps/{app}/volumes/{vid}", delete_volume, methods=["DELETE"]),
        Route("/v1/apps/{app}/volumes/{vid}/extend", extend_volume, methods=["PUT"]),
        Route("/v1/apps/{app}/logs", app_logs, methods=["GET"]),
        Route("/v1/apps/{app}/cost", app_cost, methods=["GET"]),
        Route("/v1/hosts", list_hosts, methods=["GET"]),
        Route("/v1/hosts", register_host, methods=["POST"]),
        Route("/v1/hosts/join", join_host, methods=["POST"]),
        Route("/v1/hosts/{host}/heartbeat", heartbeat, methods=["POST"]),
        Route("/v1/hosts/{host}/reports", host_reports, methods=["POST"]),
        Route("/v1/hosts/{host}/cordon", cordon_host, methods=["POST"]),
        Route("/v1/hosts/{host}/uncordon", uncordon_host, methods=["POST"]),
        Route("/v1/watch", watch, methods=["GET"]),
        Route("/v1/watch/names", watch_names, methods=["GET"]),
        Route("/v1/images", list_images, methods=["GET"]),
        Route("/v1/images", push_image, methods=["POST"]),
        Route("/v1/registry", registry_info, methods=["GET"]),
        Route("/v1/images/blobs/{digest}", get_blob, methods=["GET"]),
        Route("/v1/platform/regions", regions, methods=["GET"]),
        Route("/v1/proxies", list_proxies, methods=["GET"]),
        Route("/v1/takeovers", takeovers, methods=["GET"]),
        Route("/v1/proxies", register_proxy, methods=["POST"]),
        Route("/v1/proxies/{id}/traffic", proxy_traffic, methods=["POST"]),
        Route("/v1/apps/{app}/traffic", app_traffic, methods=["GET"]),
        Route("/v1/apps/{app}/drills", drill_event, methods=["POST"]),
        Route("/v1/apps/{app}/drills", list_drills, methods=["GET"]),
        Route("/v1/apps/{app}/drills/{drill}", get_drill, methods=["GET"]),
        Route("/v1/apps/{app}/secrets", list_secrets, methods=["GET"]),
        Route("/v1/apps/{app}/secrets", set_secrets, methods=["POST"]),
        Route("/v1/apps/{app}/secrets/{name}", get_secret, methods=["GET"]),
        Route("/v1/apps/{app}/secrets/{name}", set_secret, methods=["POST"]),
        Route("/v1/apps/{app}/secrets/{name}", unset_secret, methods=["DELETE"]),
        Route("/v1/apps/{app}/releases", list_releases, methods=["GET"]),
        Route("/v1/apps/{app}/releases", create_release, methods=["POST"]),
        Route("/v1/apps/{app}/releases/{version}", update_release, methods=["PATCH"]),
        Route("/v1/apps/{app}/deploy_token", deploy_token, methods=["POST"]),
        Route("/v1/tokens", list_tokens, methods=["GET"]),
        Route("/v1/tokens", create_token, methods=["POST"]),
        Route("/v1/tokens/current", current_token, methods=["GET"]),
        Route("/v1/tokens/{id}", revoke_token, methods=["DELETE"]),
        Route("/v1/apps/{app}/certificates", list_certificates, methods=["GET"]),
        Route("/v1/apps/{app}/certificates/custom", add_custom_certificate, methods=["POST"]),
        Route("/v1/apps/{app}/certificates/acme", request_acme_certificate, methods=["POST"]),
        Route("/v1/apps/{app}/certificates/{hostname}", show_certificate, methods=["GET"]),
        Route("/v1/apps/{app}/certificates/{hostname}", delete_certificate, methods=["DELETE"]),
        Route("/v1/apps/{app}/certificates/{hostname}/custom", delete_custom_certificate, methods=["DELETE"]),
        Route("/v1/apps/{app}/certificates/{hostname}/acme", delete_custom_certificate, methods=["DELETE"]),
        Route("/v1/apps/{app}/certificates/{hostname}/check", check_certificate, methods=["POST"]),
        Route("/v1/certificates/bundle", certificate_bundle, methods=["GET"]),
        *api_parity.routes(s),
    ]


async def _watch_batch(s: Services, since: int, limit: int, names: bool = False) -> dict[str, Any]:
    hub = s.state.hub
    if since == 0 or not hub.covers(since):
        oldest = await s.state.in_store_thread(s.state.store.oldest_revision)
        if since == 0 or not oldest or since + 1 < oldest:
            return _reset(s, names)
        records = await s.state.in_store_thread(s.state.store.changes_since, since, limit)
    else:
        records = hub.since(since, limit)
    last = records[-1].rev if records else max(since, 0)
    events = [r.to_json() for r in records]
    if names:
        events = [_names_event(e) for e in events if e["kind"] in ("app", "machine")]
    return {"revision": last, "events": events, "reset": False}


def _names_event(event: dict[str, Any]) -> dict[str, Any]:
    view = names_view(event["kind"], event["object"]) if isinstance(event.get("object"), dict) else None
    return {**event, "object": view}


def _reset(s: Services, names: bool = False) -> dict[str, Any]:
    """A full snapshot at the current revision: what a new (or too far behind) watcher starts from."""
    st = s.state
    objects: list[dict[str, Any]] = []
    if names:
        objects += [{"kind": "app", "key": a.name, "object": names_view("app", st.public_view(a))}
                    for a in st.apps.values()]
        objects += [{"kind": "machine", "key": m.id, "object": names_view("machine", st.public_view(m))}
                    for m in st.machines.values() if m.state is not State.DESTROYED]
        return {"revision": st.hub.revision, "events": [], "reset": True, "objects": objects}
    objects += [{"kind": "host", "key": h.id, "object": st.public_view(h)} for h in st.hosts.values()]
    objects += [{"kind": "app", "key": a.name, "object": st.public_view(a)} for a in st.apps.values()]
    objects += [{"kind": "machine", "key": m.id, "object": st.public_view(m)} for m in st.machines.values()]
    objects += [{"kind": "volume", "key": v.id, "object": st.public_view(v)} for v in st.volumes.values()]
    return {"revision": st.hub.revision, "events": [], "reset": True, "objects": objects}


async def _sse(s: Services, request: Request, since: int, limit: int, names: bool = False) -> Any:
    """Server-sent events: `reset` then `change` events, each with its revision as the SSE id."""
    with s.metrics.watch_subscribers.track_inprogress():
        async for chunk in _sse_events(s, request, since, limit, names):
            yield chunk


async def _sse_events(s: Services, request: Request, since: int, limit: int, names: bool) -> Any:
    cursor = since
    who = request.scope.get(IDENTITY)
    quiet = 0.0
    while True:
        if isinstance(who, Identity) and not s.tokens.in_force(who):
            return  # revoked or expired while the stream was open: it ends within a slice
        batch = await _watch_batch(s, cursor, limit, names)
        if batch.get("reset"):
            yield f"id: {batch['revision']}\nevent: reset\ndata: {json.dumps(batch)}\n\n"
        for event in batch["events"]:
            yield f"id: {event['rev']}\nevent: change\ndata: {json.dumps(event)}\n\n"
        cursor = batch["revision"]
        if await request.is_disconnected():
            return
        if await s.state.hub.wait(cursor, REVOCATION_SLICE):
            quiet = 0.0
        else:
            quiet += REVOCATION_SLICE
            if quiet >= KEEPALIVE_SECONDS:
                quiet = 0.0
                yield ": keep-alive\n\n"
        await asyncio.sleep(0)
