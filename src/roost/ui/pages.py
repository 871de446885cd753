"""The dashboard's pages, rendered on the server from plain data (no I/O here): the login form, the fleet
(regions → hosts → machines), an app (machines by process group and region, checks, events, releases, volumes,
cost, live logs) and a page for what is not there. Every value is escaped; the page's script (static/ui.js)
keeps states live from the watch feed and follows the app's logs."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from typing import Any

JSON = dict[str, Any]


def e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def layout(title: str, body: str, *, revision: int = 0, app: str = "", nav: bool = True, charts: bool = False) -> str:
    links = ('<nav><a href="/ui">Fleet</a><form method="post" action="/ui/logout">'
             '<button type="submit">Log out</button></form></nav>') if nav else ""
    chart_lib = ("<link rel=\"stylesheet\" href=\"/ui/static/uPlot.min.css\">"
                 "<script src=\"/ui/static/uPlot.iife.min.js\" defer></script>") if charts else ""
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width\"><title>{e(title)} · Roost</title>"
        f"<link rel=\"stylesheet\" href=\"/ui/static/ui.css\">{chart_lib}</head>"
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
        report: JSON, revision: int, drills: Sequence[JSON] = ()) -> str:
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
    parts.append(f"<section id=\"traffic\" data-app=\"{e(name)}\"><h3>Traffic <small>(through the edges, live)</small>"
                 "</h3><p class=\"traffic-empty\">No requests through the edges in the last 5 minutes.</p>"
                 "<div class=\"chart\" id=\"chart-machines\" data-title=\"requests/s by machine\"></div>"
                 "<div class=\"chart\" id=\"chart-regions\" data-title=\"requests/s by machine region\"></div>"
                 "<div class=\"chart\" id=\"chart-latency\" data-title=\"latency (ms) by machine, the edges' "
                 "estimate\"></div></section>")
    parts.append(_drills(name, drills))
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
    return layout(name, "".join(parts), revision=revision, app=name, charts=True)


def _drills(app_name: str, drills: Sequence[JSON]) -> str:
    if not drills:
        return ("<section id=\"drills\"><h3>Drills</h3><p>No drills yet: <code>roost drill kill-host -a "
                f"{e(app_name)}</code> shows up here while it runs.</p></section>")
    rows = "".join(
        f"<tr data-drill=\"{e(d['drill'])}\"><td><a href=\"/ui/apps/{e(app_name)}/drills/{e(d['drill'])}\">"
        f"{e(d['drill'])}</a></td><td>{e(d.get('fault', '-'))}</td><td>{e((d.get('target') or {}).get('name', '-'))}"
        f"</td><td>{e(d['state'])}</td><td>{e(_verdict(d.get('passed')))}</td></tr>" for d in drills)
    return ("<section id=\"drills\"><h3>Drills</h3><table><thead><tr><th>drill</th><th>fault</th><th>target</th>"
            f"<th>state</th><th>checks</th></tr></thead><tbody>{rows}</tbody></table></section>")


def _verdict(passed: object) -> str:
    return "-" if passed is None else ("passed" if passed else "FAILED")


def drill(app_name: str, d: JSON, revision: int) -> str:
    """A drill, running (the app's live traffic, the fault and heal as they happen) or finished (its report's
    timeline with the fault and heal marked, its checks, standbys that took over, its errors)."""
    target = d.get("target") or {}
    report = d.get("report")
    head = (f"<h2>Drill {e(d['drill'])} <small>on <a href=\"/ui/apps/{e(app_name)}\">{e(app_name)}</a></small></h2>"
            f"<p class=\"summary\" id=\"drill-state\" data-state=\"{e(d['state'])}\">{e(d.get('fault', '-'))} "
            f"of {e(target.get('kind', ''))} {e(target.get('name', '-'))}: <strong>{e(d['state'])}</strong>"
            f"{'' if d.get('fault_at') is None else ', fault injected'}"
            f"{'' if d.get('heal_at') is None else ', healed'}</p>")
    parts = [head]
    if report is None:
        parts.append(f"<section id=\"traffic\" data-app=\"{e(app_name)}\" data-drill=\"{e(d['drill'])}\" "
                     "data-window=\"60\"><h3>Traffic, the last minute <small>(through the edges, live)</small></h3>"
                     "<p class=\"traffic-empty\">"
                     "Waiting for the edges' first figures.</p><div class=\"chart\" id=\"chart-machines\" "
                     "data-title=\"requests/s by machine\"></div><div class=\"chart\" id=\"chart-regions\" "
                     "data-title=\"requests/s by machine region\"></div><div class=\"chart\" id=\"chart-latency\" "
                     "data-title=\"latency (ms) by machine\"></div></section>")
        return layout(f"drill {d['drill']}", "".join(parts), revision=revision, app=app_name, charts=True)
    totals = report.get("totals") or {}
    parts.append(f"<p class=\"verdict\" data-passed=\"{e(report.get('passed'))}\">checks "
                 f"<strong>{e(_verdict(report.get('passed')))}</strong>; {e(totals.get('sent', 0))} requests, "
                 f"{e(totals.get('failed', 0))} failed; time to shift "
                 f"{e((report.get('shift') or {}).get('seconds'))} s</p>")
    timeline = report.get("timeline") or {}
    chart = {"width_s": timeline.get("width_s", 1), "series_by": timeline.get("series_by", "machine"),
             "buckets": timeline.get("buckets") or [], "fault_at_s": report.get("fault_at_s"),
             "heal_at_s": report.get("heal_at_s")}
    parts.append(f"<section id=\"timeline\"><h3>Requests/s by {e(chart['series_by'])} over the drill "
                 "<small>(F fault, H heal)</small></h3><div class=\"chart\" id=\"chart-drill\"></div>"
                 f"<script type=\"application/json\" id=\"drill-data\">{_json_in_html(chart)}</script></section>")
    checks = report.get("checks") or []
    parts.append("<section id=\"checks\"><h3>Checks</h3>" + (_table(
        ["check", "target", "measured", "result"],
        [[c.get("name"), c.get("target"), c.get("measured"), "pass" if c.get("passed") else "FAIL"] for c in checks])
        if checks else "<p>None asked (<code>--expect-no-errors</code>, <code>--expect-shift-under</code>).</p>")
        + "</section>")
    standbys = report.get("standbys") or []
    parts.append("<section id=\"takeovers\"><h3>Standbys</h3>" + (_table(
        ["machine", "standby", "hit by the fault", "machine ended after (s)", "standby started after (s)",
         "double runs"],
        [[r.get("watched"), r.get("standby"), "yes" if r.get("hit") else "no", r.get("watched_ended_after_s"),
          r.get("standby_started_after_s"), r.get("double_runs")] for r in standbys])
        if standbys else "<p>No standby was involved.</p>") + "</section>")
    return layout(f"drill {d['drill']}", "".join(parts), revision=revision, app=app_name, charts=True)


def _json_in_html(value: object) -> str:
    """JSON inside a <script type="application/json">: nothing in it can close the element."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


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
