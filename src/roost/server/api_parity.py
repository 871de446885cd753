"""The rest of Fly's Machines API: secret keys, a machine's memory, volume snapshots, an org's machines and
volumes, placements, IP assignments; and, for every path of Fly's spec Roost does not serve, a 501 that says
so (a 404 would read as "no such app or machine" to a client)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from roost.core.errors import RoostError
from roost.server.orgs import OrgService
from roost.server.platform import PlatformService
from roost.weblib import json_body, ok

if TYPE_CHECKING:
    from roost.server.api import Services

# Paths of Fly's spec that Roost answers 501 (Fly-only: its own token service and OIDC; memory ballooning).
NOT_IMPLEMENTED: tuple[tuple[str, str], ...] = (
    ("POST", "/v1/tokens/authenticate"),
    ("POST", "/v1/tokens/authorize"),
    ("POST", "/v1/tokens/kms"),
    ("POST", "/v1/tokens/oidc"),
    ("POST", "/v1/apps/{app}/machines/{id}/memory/reclaim"),
)


def not_implemented(method: str, path: str) -> Callable[[Request], Awaitable[Response]]:
    async def refuse(request: Request) -> Response:
        raise RoostError(501, f"not implemented in Roost: {method} {path}")

    return refuse


def routes(s: Services) -> list[BaseRoute]:
    orgs = OrgService(s.state)
    platform = PlatformService(s.state)
    keys = "/v1/apps/{app}/secretkeys"

    # ---- secret keys ----
    async def list_keys(request: Request) -> Response:
        q = request.query_params
        return ok(s.secret_keys.list(request.path_params["app"], q.get("types"), q.get("min_version")))

    async def get_key(request: Request) -> Response:
        p = request.path_params
        return ok(s.secret_keys.get(p["app"], p["name"], request.query_params.get("min_version")))

    async def set_key(request: Request) -> Response:
        p = request.path_params
        return ok(await s.secret_keys.set(p["app"], p["name"], await json_body(request, required=True), False), 201)

    async def generate_key(request: Request) -> Response:
        p = request.path_params
        return ok(await s.secret_keys.set(p["app"], p["name"], await json_body(request, required=True), True), 201)

    async def delete_key(request: Request) -> Response:
        p = request.path_params
        return ok(await s.secret_keys.delete(p["app"], p["name"]))

    def use_key(operation: str) -> Callable[[Request], Awaitable[Response]]:
        async def use(request: Request) -> Response:
            p = request.path_params
            answer = s.secret_keys.use(p["app"], p["name"], operation, await json_body(request, required=True),
                                       request.query_params.get("min_version"))
            return ok(answer) if answer is not None else ok(None, 204)

        return use

    # ---- a machine's memory ----
    async def get_memory(request: Request) -> Response:
        return ok(await s.machines.memory(request.path_params["app"], request.path_params["id"]))

    async def set_memory(request: Request) -> Response:
        return ok(await s.machines.set_memory(request.path_params["app"], request.path_params["id"],
                                              await json_body(request, required=True)))

    # ---- volume snapshots ----
    async def list_snapshots(request: Request) -> Response:
        return ok(s.snapshots.list(request.path_params["app"], request.path_params["vid"]))

    async def take_snapshot(request: Request) -> Response:
        return ok(await s.snapshots.take(request.path_params["app"], request.path_params["vid"]))

    # ---- org listings, placements, addresses ----
    async def org_machines(request: Request) -> Response:
        return ok(orgs.machines(request.path_params["org"], dict(request.query_params)))

    async def org_volumes(request: Request) -> Response:
        return ok(orgs.volumes(request.path_params["org"], dict(request.query_params)))

    async def placements(request: Request) -> Response:
        return ok(platform.placements(await json_body(request, required=True)))

    async def list_ips(request: Request) -> Response:
        return ok(s.apps.ip_assignments(request.path_params["app"]))

    async def assign_ip(request: Request) -> Response:
        return ok(await s.apps.assign_ip(request.path_params["app"], await json_body(request)))

    async def release_ip(request: Request) -> Response:
        await s.apps.release_ip(request.path_params["app"], request.path_params["ip"])
        return ok(None, 204)

    served: list[BaseRoute] = [
        Route(keys, list_keys, methods=["GET"]),
        Route(keys + "/{name}", get_key, methods=["GET"]),
        Route(keys + "/{name}", set_key, methods=["POST"]),
        Route(keys + "/{name}", delete_key, methods=["DELETE"]),
        Route(keys + "/{name}/generate", generate_key, methods=["POST"]),
        *(Route(keys + "/{name}/" + op, use_key(op), methods=["POST"])
          for op in ("sign", "verify", "encrypt", "decrypt")),
        Route("/v1/apps/{app}/machines/{id}/memory", get_memory, methods=["GET"]),
        Route("/v1/apps/{app}/machines/{id}/memory", set_memory, methods=["PUT"]),
        Route("/v1/apps/{app}/volumes/{vid}/snapshots", list_snapshots, methods=["GET"]),
        Route("/v1/apps/{app}/volumes/{vid}/snapshots", take_snapshot, methods=["POST"]),
        Route("/v1/orgs/{org}/machines", org_machines, methods=["GET"]),
        Route("/v1/orgs/{org}/volumes", org_volumes, methods=["GET"]),
        Route("/v1/platform/placements", placements, methods=["POST"]),
        Route("/v1/apps/{app}/ip_assignments", list_ips, methods=["GET"]),
        Route("/v1/apps/{app}/ip_assignments", assign_ip, methods=["POST"]),
        Route("/v1/apps/{app}/ip_assignments/{ip}", release_ip, methods=["DELETE"]),
    ]
    return served + [Route(path, not_implemented(method, path), methods=[method]) for method, path in NOT_IMPLEMENTED]
