"""The dashboard's pages, rendered on the server from plain data (no I/O here): the login form, the fleet
(regions → hosts → machines), an app (machines by process group and region, checks, events, releases, volumes,
cost, live logs) and a page for what is not there. Every value is escaped; the page's script (static/ui.js)
keeps states live from the watch feed and follows the app's logs."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

JSON = dict[str, Any]


def e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def layout(title: str, body: str, *, revision: int = 0, app: str = "", nav: bool = True) -> str:
    links = ('<nav><a href="/ui">Fleet</a><form method="post" action="/ui/logout">'
             '<button type="submit">Log out</button></form></nav>') if nav else ""
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width\"><title>{e(title)} · Roost</title>"
        "<link rel=\"stylesheet\" href=\"/ui/static/ui.css\"></head>"
        f"<body data-revision=\"{revision}\" data-app=\"{e(app)}\"><header><h1><a href=\"/ui\">Roost</a></h1>{links}"
        f"</header><main>{body}</main><script src=\"/ui/static/ui.js\" defer></script></body></html>"
    )


def login(error: str = "") -> str:
    """The one page served without a credential; styled inline, as nothing else is served before login."""
    message = f"<p class=\"error\" role=\"alert\">{e(error)}</p>" if error else ""
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Log in · Roost</title>"
        "<style>body{font:15px system-ui,sans-serif;display:grid;place-items:center;height:90vh;margin:0}"
        "form{display:grid;gap:.6em;min-width:22em}input{font:inherit;padding:.4em}"
        ".error{color:#b00020}</style></head><body><form method=\"post\" action=\"/ui/login\">"
        "<h1>Roost</h1><label for=\"token\">An org or read-only token</label>"
        "<input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required autofocus>"
        f"{message}<button type=\"submit\">Log in</button>"
        "<p><small>Make one with <code>roost tokens create readonly</code>.</small></p></form></body></html>"
    )


def not_found(what: str) -> str:
    return layout("Not found", f"<h2>Not found</h2><p class=\"error\">{e(what)}</p>"
                  "<p><a href=\"/ui\">Back to the fleet</a></p>")


def _machine_row(m: JSON, columns: Sequence[str]) -> str:
    cells = []
    for column in columns:
        if column == "id":
            cells.append(f"<td><a href=\"/ui/apps/{e(m['app'])}#{e(m['id'])}\">{e(m['id'])}</a></td>")
        elif column == "state":
            cells.append(f"<td class=\"state\">{e(m['state'])}</td>")
        elif column == "checks":
            cells.append(f"<td class=\"checks\">{e(checks_summary(m.get('checks') or []))}</td>")
        else:
            cells.append(f"<td>{e(m.get(column, ''))}</td>")
    return (f"<tr data-machine=\"{e(m['id'])}\" data-state=\"{e(m['state'])}\">" + "".join(cells) + "</tr>")


def checks_summary(checks: Iterable[JSON]) -> str:
    items = list(checks)
    if not items:
        return "-"
    passing = sum(1 for c in items if c.get("status") == "passing")
    return f"{passing}/{len(items)} passing"


def fleet(regions: dict[str, list[JSON]], machines_by_host: dict[str, list[JSON]], apps: list[str],
          revision: int) -> str:
    """`regions`: region → hosts ({id, status, cordoned, machines, cpus, memory_mb, used_memory_mb}); machines of
    each host as the API shows them (with `app`)."""
    parts = [f"<h2>Fleet</h2><p class=\"summary\">{sum(len(h) for h in regions.values())} hosts in "
             f"{len(regions)} regions; apps: " + (", ".join(f"<a href=\"/ui/apps/{e(a)}\">{e(a)}</a>" for a in apps)
                                                   or "none") + "</p>"]
    for region, hosts in sorted(regions.items()):
        parts.append(f"<section class=\"region\" data-region=\"{e(region)}\"><h3>{e(region)}</h3>")
        for h in hosts:
            load = f"{h['used_memory_mb']}/{h['memory_mb']} MB, {h['machines']} machines"
            cordoned = " <span class=\"cordoned\">cordoned</span>" if h.get("cordoned") else ""
            parts.append(f"<article class=\"host\" data-host=\"{e(h['id'])}\"><h4>{e(h['id'])} "
                         f"<span class=\"status status-{e(h['status'])}\">{e(h['status'])}</span>{cordoned}"
                         f"<small>{e(load)}</small></h4>")
            rows = machines_by_host.get(h["id"], [])
            if rows:
                parts.append("<table><thead><tr><th>machine</th><th>app</th><th>state</th><th>checks</th></tr>"
                             "</thead><tbody>" + "".join(_machine_row(m, ("id", "app", "state", "checks"))
                                                         for m in rows) + "</tbody></table>")
            parts.append("</article>")
        parts.append("</section>")
    return layout("Fleet", "".join(parts), revision=revision)


def app(name: str, info: JSON, machines: list[JSON], releases: list[JSON], volumes: list[JSON],
        report: JSON, revision: int) -> str:
    """An app's page; `machines` as the API shows them, each with its `process_group`."""
    parts = [f"<h2>{e(name)}</h2><p class=\"summary\">primary region {e(info.get('primary_region') or '-')}, "
             f"{len(machines)} machines</p>"]
    groups: dict[str, dict[str, list[JSON]]] = {}
    for m in machines:
        groups.setdefault(m.get("process_group") or "-", {}).setdefault(m["region"], []).append(m)
    parts.append("<section id=\"machines\"><h3>Machines</h3>")
    for group, by_region in sorted(groups.items()):
        parts.append(f"<h4>process group {e(group)}</h4>")
        for region, rows in sorted(by_region.items()):
            parts.append(f"<table class=\"machines\" data-group=\"{e(group)}\" data-region=\"{e(region)}\">"
                         f"<caption>{e(region)}</caption><thead><tr><th>machine</th><th>name</th><th>host</th>"
                         "<th>state</th><th>checks</th><th>last event</th></tr></thead><tbody>"
                         + "".join(_machine_row({**m, "last_event": _last_event(m)},
                                                ("id", "name", "host_id", "state", "checks", "last_event"))
                                   for m in rows) + "</tbody></table>")
    parts.append("</section>")
    parts.append(_events(machines))
    parts.append("<section id=\"releases\"><h3>Releases</h3>" + (_table(
        ["version", "status", "image", "strategy", "description"],
        [[f"v{r.get('version')}", r.get("status"), r.get("image"), r.get("strategy"), r.get("description")]
         for r in releases[:10]]) if releases else "<p>No releases.</p>") + "</section>")
    parts.append("<section id=\"volumes\"><h3>Volumes</h3>" + (_table(
        ["volume", "name", "region", "host", "size", "attached to"],
        [[v.get("id"), v.get("name"), v.get("region"), v.get("host_id"), f"{v.get('size_gb')} GB",
          v.get("attached_machine_id") or "-"] for v in volumes]) if volumes else "<p>No volumes.</p>")
        + "</section>")
    parts.append(cost(report))
    parts.append(f"<section id=\"logs\"><h3>Logs <small>(live)</small></h3><pre class=\"logs\" data-app=\"{e(name)}\">"
                 "</pre></section>")
    return layout(name, "".join(parts), revision=revision, app=name)


def _last_event(m: JSON) -> str:
    events = m.get("events") or []
    if not events:
        return "-"
    latest = events[0]
    return f"{latest.get('type', '')} {latest.get('status', '')}".strip()


def _events(machines: list[JSON]) -> str:
    rows = []
    for m in machines:
        for ev in (m.get("events") or [])[:5]:
            rows.append((int(ev.get("timestamp") or 0), m["id"], ev))
    rows.sort(key=lambda r: r[0], reverse=True)
    body = _table(["machine", "event", "status", "source"],
                  [[mid, ev.get("type"), ev.get("status"), ev.get("source")] for _, mid, ev in rows[:20]])
    return f"<section id=\"events\"><h3>Recent events</h3>{body if rows else '<p>No events.</p>'}</section>"


def cost(report: JSON) -> str:
    """The cost report of GET /v1/apps/{app}/cost, as a table and one line of totals."""
    symbol = "$" if report.get("currency") == "USD" else f"{report.get('currency', '')} "

    def money(value: float) -> str:
        return f"{symbol}{value:.6f}" if value < 0.01 else f"{symbol}{value:.2f}"

    rows = [[m["id"], m["process_group"] or "-", m["region"], f"{m['seconds']['started']:.0f} s",
             f"{m['seconds']['stopped'] + m['seconds']['suspended'] + m['seconds']['standby']:.0f} s",
             money(m["compute"]), money(m["rootfs"] + m["volumes"]), money(m["total"]), money(m["saved"])]
            for m in report.get("machines", [])]
    t = report.get("total") or {}
    total = (f"<p class=\"cost-total\">total {money(t.get('total', 0.0))}; always on "
             f"{money(t.get('always_on', 0.0))}; autostop saved <strong>{money(t.get('saved', 0.0))}</strong></p>")
    table = _table(["machine", "group", "region", "started", "not started", "compute", "storage", "total", "saved"],
                   rows) if rows else "<p>Nothing billed yet.</p>"
    return f"<section id=\"cost\"><h3>Cost</h3>{table}{total}</section>"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
