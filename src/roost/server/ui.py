"""The web dashboard at /ui, served by the control plane: log in with an org or read-only token (kept in an
HttpOnly, SameSite=Strict cookie), then the fleet and each app, drawn on the server from the cluster state and
kept live by the page's script (the watch feed, the app's logs). Nothing but the login form is served without a
credential; the cookie stands for the token on the dashboard's pages and on the API's reads, never on a write."""

from __future__ import annotations

import urllib.parse
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from roost.core.access import Identity
from roost.core.lifecycle import State
from roost.core.machine_config import process_group
from roost.server.api import Services
from roost.ui import pages
from roost.weblib import SESSION_COOKIE

SESSION_SECONDS = 12 * 3600
MAX_FORM_BYTES = 4096
STATIC = {"ui.css": "text/css; charset=utf-8", "ui.js": "text/javascript; charset=utf-8",
          "uPlot.iife.min.js": "text/javascript; charset=utf-8", "uPlot.min.css": "text/css; charset=utf-8"}
HEADERS = {  # the pages load only their own script and style; nobody may frame them
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
}


def _page(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=HEADERS)


def _to_login() -> Response:
    return RedirectResponse("/ui/login", status_code=303, headers=HEADERS)


def routes(s: Services) -> list[BaseRoute]:
    def viewer(request: Request) -> Identity | None:
        token = request.cookies.get(SESSION_COOKIE, "")
        who = s.tokens.identify(token.encode()) if token else None
        return who if who is not None and (who.operator or who.kind == "readonly") else None

    async def login_form(request: Request) -> Response:
        return _page(pages.login())

    async def login(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return _page(pages.login("That is not a token."), 400)
        token = (urllib.parse.parse_qs(body.decode("utf-8", "replace")).get("token") or [""])[0].strip()
        who = s.tokens.identify(token.encode()) if token else None
        if who is None:
            return _page(pages.login("Unknown or revoked token."), 401)
        if not (who.operator or who.kind == "readonly"):
            return _page(pages.login("The dashboard needs an org or read-only token."), 403)
        response = RedirectResponse("/ui", status_code=303, headers=HEADERS)
        response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_SECONDS, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/")
        return response

    async def logout(request: Request) -> Response:
        response = _to_login()
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if viewer(request) is None:
            return _to_login()
        if name not in STATIC:
            return _page(pages.not_found(f"no file {name!r}"), 404)
        text = resources.files("roost.ui").joinpath("static", name).read_text()
        return Response(text, media_type=STATIC[name], headers=HEADERS)

    async def fleet(request: Request) -> Response:
        if viewer(request) is None:
            return _to_login()
        st = s.state
        usage = {v.id: v for v in st.host_views()}
        regions: dict[str, list[dict[str, Any]]] = {}
        machines_by_host: dict[str, list[dict[str, Any]]] = {}
        for h in sorted(st.hosts.values(), key=lambda h: h.id):
            on = sorted(st.machines_on(h.id), key=lambda m: (m.app, m.created_at))
            view = usage.get(h.id)
            regions.setdefault(h.region, []).append({
                "id": h.id, "status": h.status, "cordoned": h.cordoned, "machines": len(on), "cpus": h.cpus,
                "memory_mb": h.memory_mb, "used_memory_mb": view.used_memory_mb if view else 0})
            machines_by_host[h.id] = [{**st.machine_api(m, with_events=False), "app": m.app} for m in on]
        return _page(pages.fleet(regions, machines_by_host, sorted(st.apps), st.hub.revision))

    async def app_page(request: Request) -> Response:
        if viewer(request) is None:
            return _to_login()
        name = request.path_params["app"]
        st = s.state
        info = st.apps.get(name)
        if info is None:
            return _page(pages.not_found(f"no app {name!r} in this fleet"), 404)
        machines = [{**st.machine_api(m), "app": m.app, "process_group": process_group(m.config)}
                    for m in sorted(st.app_machines.get(name, {}).values(), key=lambda m: m.created_at)
                    if m.state is not State.DESTROYED]
        volumes = [st.volume_api(v) for v in st.volumes.values() if v.app == name]
        return _page(pages.app(name, st.app_api(info), machines, s.releases.list(name), volumes,
                               s.costs.report(name, None), st.hub.revision, s.drills.list(name)))

    async def drill_page(request: Request) -> Response:
        if viewer(request) is None:
            return _to_login()
        name, drill_id = request.path_params["app"], request.path_params["drill"]
        if name not in s.state.apps:
            return _page(pages.not_found(f"no app {name!r} in this fleet"), 404)
        drill = s.drills.get(name, drill_id)
        if drill is None:
            return _page(pages.not_found(f"no drill {drill_id!r} of app {name!r} (the last 20 are kept)"), 404)
        return _page(pages.drill(name, drill, s.state.hub.revision))

    return [
        Route("/ui", fleet, methods=["GET"]),
        Route("/ui/login", login_form, methods=["GET"]),
        Route("/ui/login", login, methods=["POST"]),
        Route("/ui/logout", logout, methods=["POST"]),
        Route("/ui/apps/{app}", app_page, methods=["GET"]),
        Route("/ui/apps/{app}/drills/{drill}", drill_page, methods=["GET"]),
        Route("/ui/static/{name}", static, methods=["GET"]),
    ]
