"""The agent's HTTP API (token-protected): what the control plane and the proxies ask of a host."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from roost.agent import app_metrics, console, logs
from roost.agent.drivers.base import KeepsLogs
from roost.agent.snapshots import SnapshotStore
from roost.agent.supervisor import Supervisor
from roost.core.agent_spec import AgentSpec, safe_id
from roost.core.errors import RoostError, bad_request
from roost.core.exec_request import console_argv, exec_request
from roost.core.lifecycle import State
from roost.core.units import duration_seconds, parse_signal
from roost.tls import Trust
from roost.weblib import json_body, ok, query_bool, query_number

MAX_SNAPSHOT_BYTES = 512 * 1024**3  # a snapshot sent from another host: no bigger than the largest volume


def machine_id(request: Request) -> str:
    """The machine id in the path, checked before it names a file, a cgroup or a process."""
    return safe_id(request.path_params["id"], "machine id")


def routes(sup: Supervisor, host_info: dict[str, Any], trust: Trust | None = None) -> list[BaseRoute]:
    peers = trust or Trust()
    scraper = app_metrics.AppScraper(sup.metrics.registry, str(host_info.get("region") or ""))
    snapshots = SnapshotStore(sup.volumes, sup.volumes.dir.parent / "snapshots")
    sup.metrics.extra = scraper.families
    def signal_and_timeout(body: Any, default_signal: int = 2, default_timeout: float = 5.0) -> tuple[int, float]:
        body = body if isinstance(body, dict) else {}
        sig = parse_signal(body["signal"]) if body.get("signal") is not None else default_signal
        timeout = duration_seconds(body["timeout"], field="timeout", int_unit=1.0) \
            if body.get("timeout") is not None else default_timeout
        return sig, timeout

    def defaults(machine_id: str) -> tuple[int, float]:
        record = sup.records.get(machine_id)
        return (record.spec.stop_signal, record.spec.stop_timeout) if record else (2, 5.0)

    def spec_for(request: Request, body: Any) -> AgentSpec:
        spec = AgentSpec.from_json(body)
        if spec.id != machine_id(request):
            raise bad_request(f"spec.id {spec.id!r} is not the machine in the path")
        return spec

    async def start(request: Request) -> Response:
        body = await json_body(request, required=True)
        if isinstance(body, dict) and "config" not in body:
            # A start by reference (a proxy's autostart): the id and the version the server staged here.
            mid = machine_id(request)
            instance_id = body.get("instance_id")
            if body.get("id") != mid or not isinstance(instance_id, str):
                raise bad_request("body must be the machine's spec, or {\"id\", \"instance_id\"} of a staged one")
            return ok(await sup.start_staged(mid, instance_id))
        return ok(await sup.start(spec_for(request, body)))

    async def prepare(request: Request) -> Response:
        return ok(await sup.prepare(spec_for(request, await json_body(request, required=True))))

    async def stop(request: Request) -> Response:
        mid = machine_id(request)
        sig, timeout = signal_and_timeout(await json_body(request), *defaults(mid))
        return ok(await sup.stop(mid, sig, timeout))

    async def suspend(request: Request) -> Response:
        return ok(await sup.suspend(machine_id(request)))

    async def restart(request: Request) -> Response:
        mid = machine_id(request)
        body = await json_body(request) or {}
        sig, timeout = signal_and_timeout(body, *defaults(mid))
        raw = body.get("spec") if isinstance(body, dict) else None
        return ok(await sup.restart(mid, sig, timeout, None if raw is None else spec_for(request, raw)))

    async def signal(request: Request) -> Response:
        body = await json_body(request, required=True)
        if not isinstance(body, dict) or "signal" not in body:
            raise bad_request("body must be {\"signal\": ...}")
        sup.signal(machine_id(request), parse_signal(body["signal"]))
        return ok({"ok": True})

    async def destroy(request: Request) -> Response:
        await sup.destroy(machine_id(request))
        return ok({"ok": True})

    async def list_machines(request: Request) -> Response:
        out = []
        for mid, r in sup.records.items():
            out.append({"id": mid, "app": r.spec.app, "instance_id": r.instance_id, "state": r.state,
                        "pid": (r.run or {}).get("pid"), "restart_count": r.restart_count,
                        "last_exit": r.last_exit, "ports": r.spec.ports,
                        "running": sup.driver.inspect(mid)})
        return ok(out)

    async def machine_logs(request: Request) -> Response:
        mid = machine_id(request)
        if not isinstance(sup.driver, KeepsLogs):
            return ok({"lines": [], "offset": 0})
        path = sup.driver.log_path
        if query_bool(request, "follow"):
            start = int(query_number(request, "offset", 0, lo=0, hi=2**62)) \
                if "offset" in request.query_params else None
            return StreamingResponse(logs.follow(path(mid), start, int(query_number(request, "lines", 100, lo=0,
                                                                                     hi=100000))),
                                     media_type="application/x-ndjson")
        if "offset" in request.query_params:
            return ok(logs.since(path(mid), int(query_number(request, "offset", 0, lo=0, hi=2**62))))
        return ok(logs.tail(path(mid), int(query_number(request, "lines", 100, lo=0, hi=100000))))

    async def probe(request: Request) -> Response:
        """An indirect probe for the control plane: can this host reach that one?"""
        body = await json_body(request, required=True)
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url.startswith("http"):
            raise bad_request("body must be {\"url\": \"http://...\", \"timeout\": 0.3}")
        timeout = float(body.get("timeout") or 0.3)
        local = host_info.get("address")
        transport = peers.async_transport(local)
        try:
            async with httpx.AsyncClient(timeout=min(timeout, 2.0), trust_env=False, transport=transport) as client:
                reachable = (await client.get(url)).status_code < 500
        except httpx.HTTPError:
            reachable = False
        return ok({"reachable": reachable})

    async def exec_command(request: Request) -> Response:
        command, stdin, timeout = exec_request(await json_body(request, required=True))
        return ok(await sup.exec(machine_id(request), command, stdin, timeout))

    async def memory(request: Request) -> Response:
        return ok(sup.memory(machine_id(request)))

    async def set_memory(request: Request) -> Response:
        body = await json_body(request, required=True)
        limit = body.get("limit_mb") if isinstance(body, dict) else None
        # checked again here (the server checks it against the machine's guest memory): a whole number of MB
        if not isinstance(limit, int) or isinstance(limit, bool) or not 16 <= limit <= 1024 * 1024:
            raise bad_request("body must be {\"limit_mb\": N}, a whole number of MB from 16")
        return ok(sup.set_memory(machine_id(request), limit))

    async def processes(request: Request) -> Response:
        return ok(sup.processes(machine_id(request)))

    async def console_socket(ws: WebSocket) -> None:
        try:
            mid = safe_id(ws.path_params["id"], "machine id")
            command = console_argv(ws.query_params.getlist("cmd"))
            argv, cwd, env = sup.console_command(mid, command)
        except RoostError as exc:  # accepted, then closed: the caller reads why (code 4000 + HTTP status)
            await ws.accept()
            await ws.close(code=4000 + exc.status, reason=exc.message[:120])
            return
        await ws.accept()
        await console.serve(ws, argv, cwd, env)

    async def provision_volume(request: Request) -> Response:
        body = await json_body(request, required=True)
        size = body.get("size_gb") if isinstance(body, dict) else None
        if isinstance(size, bool) or not isinstance(size, int):
            raise bad_request("size_gb: expected a whole number of GB")
        return ok(await sup.provision_volume(request.path_params["vid"], size))

    async def delete_volume(request: Request) -> Response:
        return ok({"deleted": await sup.delete_volume(request.path_params["vid"])})

    # ---- volume snapshots (the server's calls only) ----
    async def take_snapshot(request: Request) -> Response:
        p = request.path_params
        return ok(await asyncio.to_thread(snapshots.take, p["vid"], p["sid"]))

    async def get_snapshot(request: Request) -> Response:
        path = snapshots.path(request.path_params["sid"])
        if not path.exists():
            raise RoostError(404, f"snapshot {request.path_params['sid']} is not on this host")
        return FileResponse(path, media_type="application/gzip")

    async def put_snapshot(request: Request) -> Response:
        digest = request.query_params.get("digest", "")
        if len(digest) != 64:
            raise bad_request("digest: the snapshot's sha256, hex, is required")
        size = await snapshots.receive(request.path_params["sid"], digest, request.stream(), MAX_SNAPSHOT_BYTES)
        return ok({"size": size})

    async def restore_snapshot(request: Request) -> Response:
        p = request.path_params
        await asyncio.to_thread(snapshots.restore, p["sid"], p["vid"], request.query_params.get("digest", ""))
        return ok({"restored": True})

    async def delete_snapshot(request: Request) -> Response:
        return ok({"deleted": snapshots.delete(request.path_params["sid"])})

    async def metrics(request: Request) -> Response:
        running = [r.spec for r in sup.records.values() if r.state == State.STARTED]
        await scraper.refresh(app_metrics.targets(running))
        return Response(sup.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def health(request: Request) -> Response:
        return ok({"ok": True, **host_info, "machines": len(sup.records)})

    base = "/v1/machines/{id}"
    return [
        Route("/healthz", health),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1/probe", probe, methods=["POST"]),
        Route("/v1/machines", list_machines, methods=["GET"]),
        Route(base + "/start", start, methods=["POST"]),
        Route(base + "/stop", stop, methods=["POST"]),
        Route(base + "/suspend", suspend, methods=["POST"]),
        Route(base + "/restart", restart, methods=["POST"]),
        Route(base + "/signal", signal, methods=["POST"]),
        Route(base, destroy, methods=["DELETE"]),
        Route(base, prepare, methods=["PUT"]),
        Route(base + "/logs", machine_logs, methods=["GET"]),
        Route(base + "/exec", exec_command, methods=["POST"]),
        Route(base + "/ps", processes, methods=["GET"]),
        Route(base + "/memory", memory, methods=["GET"]),
        Route(base + "/memory", set_memory, methods=["PUT"]),
        WebSocketRoute(base + "/console", console_socket),
        Route("/v1/volumes/{vid}", provision_volume, methods=["PUT"]),
        Route("/v1/volumes/{vid}", delete_volume, methods=["DELETE"]),
        Route("/v1/volumes/{vid}/snapshots/{sid}", take_snapshot, methods=["POST"]),
        Route("/v1/volumes/{vid}/restore/{sid}", restore_snapshot, methods=["POST"]),
        Route("/v1/snapshots/{sid}", get_snapshot, methods=["GET"]),
        Route("/v1/snapshots/{sid}", put_snapshot, methods=["PUT"]),
        Route("/v1/snapshots/{sid}", delete_snapshot, methods=["DELETE"]),
    ]
