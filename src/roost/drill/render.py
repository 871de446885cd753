"""A drill report for people: Rich in the terminal, and one self-contained HTML file with an SVG chart."""

from __future__ import annotations

import html
import json
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

BLOCKS = " ▁▂▃▄▅▆▇█"
PALETTE = ["#4e79a7", "#59a14f", "#f28e2b", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]
ERROR_COLOR = "#e15759"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def _served(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    if not total:
        return "-"
    return ", ".join(f"{name} {100 * n / total:.0f}%" for name, n in list(counts.items())[:4])


def _series(report: dict[str, Any]) -> list[str]:
    names: dict[str, int] = {}
    for bucket in report["timeline"]["buckets"]:
        for name, n in bucket["ok"].items():
            names[name] = names.get(name, 0) + n
    return sorted(names, key=lambda k: -names[k])


def shift_text(shift: dict[str, Any]) -> str:
    if shift["requests"] == 0:
        return "no traffic during the fault"
    if shift["seconds"] is None:
        return (f"never: requests were still failing, stalling or being rerouted when the fault ended "
                f"({shift['affected']} affected)")
    if shift["affected"] == 0:
        return (f"0s: no request failed, stalled > {shift['slow_threshold_s']:g}s or was rerouted")
    return (f"{shift['seconds']:.3f}s ({shift['affected']} requests affected: failed, stalled > "
            f"{shift['slow_threshold_s']:g}s, or rerouted to another machine or connection)")


def return_text(back: dict[str, Any], target: str) -> str:
    """Where new clients landed after the heal (keep-alive clients stay where they were)."""
    total = sum(back["by_region"].values())
    if not total:
        return "no new connection after the heal"
    spread = ", ".join(f"{region} {100 * n / total:.0f}%" for region, n in back["by_region"].items())
    when = (f"; back in {target} {back['back_after_s']:.2f}s after the heal" if back.get("back_after_s") is not None
            else f"; none back in {target}")
    return f"new connections after the heal: {spread}{when}"


def control_plane_text(c: dict[str, Any]) -> str:
    """A kill-server drill on replicas: API writes, the new leader, lost writes."""
    leader = (f"{c['new_leader']} leads (term {c['term_after']}) {c['new_leader_after_s']:.2f}s after the kill"
              if c.get("new_leader") else "no new leader during the drill")
    back = ("writes never failed" if c["failed"] == 0 else
            f"writes succeeded again {c['writes_back_after_s']:.2f}s after the kill" if c["writes_back_after_s"]
            is not None else "writes never succeeded again")
    return (f"{c['killed']} of {c['replicas']} replicas killed; {c['writes']} API writes, {c['failed']} failed "
            f"({', '.join(str(s) for s in c['failed_statuses']) or '-'}); {back}; {leader}; "
            f"{c['writes_lost']} acknowledged writes lost; "
            f"{c.get('takeovers_decided_twice', 0)} takeovers decided twice")


def headline(report: dict[str, Any]) -> str:
    t = report["totals"]
    shift = report["shift"]
    took = "nothing to shift" if shift["requests"] == 0 else (
        "traffic never shifted" if shift["seconds"] is None else f"traffic shifted in {shift['seconds']:.3f}s")
    return (f"{report['fault']} {report['target']['name']}: {t['sent']} requests, {t['failed']} failed; {took}; "
            f"{'all checks passed' if report['passed'] else 'CHECKS FAILED'}")


def print_report(report: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    target = report["target"]
    heal = f", healed at {report['heal_at_s']:.2f}s ({report['heal']})" if report["heal_at_s"] is not None else ""
    console.print(f"[bold]Drill {report['drill']}[/]: {report['fault']} on {target['kind']} [bold]{target['name']}[/]"
                  f" of app {report['app']} at {report['fault_at_s']:.2f}s{heal}; "
                  f"{report['rps']:g} req/s for {report['duration_s']:g}s via {report['entry']}")
    if target["machines"]:
        console.print(f"  the app's machines it hits: {', '.join(target['machines'])}")
    if report["rps"] > 0:
        table = Table(title="Requests", title_justify="left")
        for column in ("phase", "sent", "ok", "failed", "p50 ms", "p99 ms", "max ms", "served by"):
            table.add_column(column, justify="left" if column in ("phase", "served by") else "right")
        for name in ("before", "during", "after"):
            p = report["phases"][name]
            if p["sent"]:
                table.add_row(name, str(p["sent"]), str(p["ok"]), str(p["failed"]), _ms(p["p50_ms"]),
                              _ms(p["p99_ms"]), _ms(p["max_ms"]),
                              _served(p["by_region"] if target["kind"] == "region" else p["by_machine"]))
        t = report["totals"]
        table.add_row("[bold]all[/]", str(t["sent"]), str(t["ok"]), str(t["failed"]), _ms(t["p50_ms"]),
                      _ms(t["p99_ms"]), _ms(t["max_ms"]), "")
        console.print(table)
        if t["causes"]:
            console.print("  failures: " + ", ".join(f"{n} {cause}" for cause, n in t["causes"].items()))
        console.print(f"  time to shift: {shift_text(report['shift'])}")
        if target["kind"] == "region" and report.get("after_heal") and report["heal_at_s"] is not None:
            console.print(f"  {return_text(report['after_heal'], target['name'])}")
        print_timeline(report, console)
    for row in report["standbys"]:
        started = row["standby_started_after_s"]
        console.print(f"  standby {row['standby']} for {row['watched']}"
                      f"{' (hit)' if row['hit'] else ''}: "
                      + (f"started {started:.3f}s after the fault" if started is not None else "did not start")
                      + (f", fencing token {row['fencing_token']}" if row["fencing_token"] is not None else "")
                      + (f"; the watched machine ended {row['watched_ended_after_s']:.3f}s after the fault"
                         f" ({row['watched_end_reason'] or 'exit'})"
                         if row["watched_ended_after_s"] is not None else "")
                      + f"; ran together: {row['double_runs']}")
    if report.get("control_plane"):
        console.print(f"  control plane: {control_plane_text(report['control_plane'])}")
    if report["writes"]:
        w = report["writes"]
        console.print(f"  writes: {w['acknowledged']} acknowledged, [bold]{w['lost']} lost[/]"
                      + (f", {w['stored_unacknowledged']} stored without an acknowledgement"
                         if w.get("stored_unacknowledged") else "")
                      + (f" ({w['error']})" if w.get("error") else ""))
    for note in report["notes"]:
        console.print(f"  note: {note}")
    for check in report["checks"]:
        mark = "[green]pass[/]" if check["passed"] else "[red]FAIL[/]"
        console.print(f"  {mark} {check['name']}: {check['measured']} (target {check['target']})")


def print_timeline(report: dict[str, Any], console: Console) -> None:
    """One row of block characters per machine (or region), one for errors; F marks the fault, H the heal."""
    buckets = report["timeline"]["buckets"]
    width = report["timeline"]["width_s"]
    peak = max([sum(b["ok"].values()) + b["errors"] for b in buckets] + [1])
    names = _series(report)[:8]
    marks = [" "] * len(buckets)
    for at, letter in ((report["fault_at_s"], "F"), (report["heal_at_s"], "H")):
        if at is not None:
            marks[min(len(buckets) - 1, int(at // width))] = letter
    label = max([len(n) for n in names] + [6])
    console.print(f"  timeline ({width:g}s per column, tallest = {peak / width:.0f} req/s; F fault, H heal)")
    console.print(Text(f"  {'':<{label}} {''.join(marks)}", style="bold"))
    for i, name in enumerate(names):
        row = "".join(BLOCKS[round(8 * b["ok"].get(name, 0) / peak)] for b in buckets)
        console.print(Text(f"  {name:<{label}} ") + Text(row, style=PALETTE[i % len(PALETTE)]))
    errors = "".join(BLOCKS[max(1 if b["errors"] else 0, round(8 * b["errors"] / peak))] for b in buckets)
    console.print(Text(f"  {'errors':<{label}} ") + Text(errors, style=ERROR_COLOR))


def _svg(report: dict[str, Any]) -> str:
    buckets = report["timeline"]["buckets"]
    width_s = report["timeline"]["width_s"]
    names = _series(report)
    w, h, left, bottom, top = 900, 300, 50, 30, 20
    plot_w, plot_h = w - left - 10, h - bottom - top
    peak = max([sum(b["ok"].values()) + b["errors"] for b in buckets] + [1])
    bar = plot_w / max(1, len(buckets))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
             'font-family="sans-serif" font-size="11">']
    for frac in (0, 0.5, 1):
        y = top + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" x2="{w - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{peak * frac / width_s:.0f}/s</text>')
    for i, b in enumerate(buckets):
        x = left + i * bar
        y = top + plot_h
        stack = [(n, b["ok"].get(n, 0), PALETTE[k % len(PALETTE)]) for k, n in enumerate(names)]
        stack.append(("errors", b["errors"], ERROR_COLOR))
        for name, n, color in stack:
            if not n:
                continue
            height = plot_h * n / peak
            y -= height
            parts.append(f'<rect x="{x + 0.5:.1f}" y="{y:.1f}" width="{max(1.0, bar - 1):.1f}" height="{height:.1f}" '
                         f'fill="{color}"><title>{b["start"]:g}s {html.escape(name)}: {n}</title></rect>')
        if i % max(1, len(buckets) // 10) == 0:
            parts.append(f'<text x="{x:.1f}" y="{h - 12}">{b["start"]:g}s</text>')
    for at, label, color in ((report["fault_at_s"], "fault", "#c00"), (report["heal_at_s"], "heal", "#080")):
        if at is not None:
            x = left + plot_w * at / (len(buckets) * width_s)
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 8}" y2="{top + plot_h}" stroke="{color}" '
                         f'stroke-width="2" stroke-dasharray="5,3"/><text x="{x + 3:.1f}" y="{top - 8}" '
                         f'fill="{color}">{label} {at:.2f}s</text>')
    parts.append("</svg>")
    legend = "".join(f'<span class="key"><i style="background:{PALETTE[k % len(PALETTE)]}"></i>{html.escape(n)}</span>'
                     for k, n in enumerate(names))
    legend += f'<span class="key"><i style="background:{ERROR_COLOR}"></i>errors</span>'
    return "".join(parts) + f'<div class="legend">{legend}</div>'


def _table(columns: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_report(report: dict[str, Any]) -> str:
    target = report["target"]
    phases = [[name, p["sent"], p["ok"], p["failed"], _ms(p["p50_ms"]), _ms(p["p99_ms"]), _ms(p["max_ms"]),
               _served(p["by_region"] if target["kind"] == "region" else p["by_machine"]),
               ", ".join(f"{n} {c}" for c, n in p["causes"].items()) or "-"]
              for name, p in report["phases"].items()]
    shift = report["shift"]
    standbys = [[r["standby"], r["watched"], _secs(r["standby_started_after_s"]), r["fencing_token"] or "-",
                 _secs(r["watched_ended_after_s"]), r["watched_end_reason"] or "-", r["double_runs"]]
                for r in report["standbys"]]
    checks = [[("pass" if c["passed"] else "FAIL"), c["name"], c["measured"], c["target"]] for c in report["checks"]]
    sections = [
        f"<h1>Drill {html.escape(report['drill'])}: {html.escape(report['fault'])} "
        f"{html.escape(target['name'])}</h1>",
        f"<p class='{'ok' if report['passed'] else 'bad'}'>{html.escape(headline(report))}</p>",
        f"<p>App <b>{html.escape(report['app'])}</b>; {report['rps']:g} requests/s for {report['duration_s']:g}s "
        f"({html.escape(report['method'])} {html.escape(report['path'])}) via {html.escape(report['entry'])}; "
        f"fault at {report['fault_at_s']:.2f}s"
        + (f", healed at {report['heal_at_s']:.2f}s ({html.escape(report['heal'] or '')})"
           if report["heal_at_s"] is not None else ", not healed") + ".</p>",
    ]
    if report["rps"] > 0:
        sections += ["<h2>Traffic</h2>", _svg(report),
                     _table(["phase", "sent", "ok", "failed", "p50 ms", "p99 ms", "max ms", "served by", "failures"],
                            phases),
                     f"<p>Time to shift: {html.escape(shift_text(shift))}.</p>"]
        if target["kind"] == "region" and report.get("after_heal") and report["heal_at_s"] is not None:
            sections.append(f"<p>{html.escape(return_text(report['after_heal'], target['name']))}.</p>")
    if standbys:
        sections += ["<h2>Standbys</h2>", _table(["standby", "watches", "started after fault", "fencing token",
                                                  "watched ended after fault", "how", "ran together"], standbys)]
    if report.get("control_plane"):
        sections.append(f"<h2>Control plane</h2><p>{html.escape(control_plane_text(report['control_plane']))}.</p>")
    if report["writes"]:
        w = report["writes"]
        sections.append(f"<h2>Data</h2><p>{w['acknowledged']} writes acknowledged, <b>{w['lost']} lost</b>.</p>")
    if report["checks"]:
        sections += ["<h2>Checks</h2>", _table(["result", "check", "measured", "target"], checks)]
    if report["notes"]:
        sections.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in report["notes"]) + "</ul>")
    data = html.escape(json.dumps(report, indent=1))
    sections.append(f"<details><summary>Raw report (JSON)</summary><pre>{data}</pre></details>")
    style = ("body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}"
             ".ok{color:#080;font-weight:bold}.bad{color:#c00;font-weight:bold}.legend .key{margin-right:1em}"
             ".legend i{display:inline-block;width:10px;height:10px;margin-right:4px}pre{font-size:11px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Roost drill {html.escape(report['drill'])}"
            f"</title><style>{style}</style></head><body>{''.join(sections)}</body></html>\n")


# ---- campaigns: `drill all` and `drill chaos` ----

def all_rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in result["drills"]:
        t, before, during = r["totals"], r["phases"]["before"], r["phases"]["during"]
        recovered = r.get("recovered_after_s")
        rows.append([r["fault"], r["target"]["name"], str(t["sent"]), str(t["failed"]), _ms(before["p99_ms"]),
                     _ms(during["p99_ms"]), shift_text(r["shift"]) if t["sent"] else "no traffic",
                     "-" if r["double_runs"] is None else str(r["double_runs"]),
                     "-" if r["writes"] is None else f"{r['writes']['lost']}/{r['writes']['acknowledged']}",
                     "-" if recovered is None else f"{recovered:.1f}s", "pass" if r["passed"] else "FAIL"])
    return rows


ALL_COLUMNS = ["fault", "target", "sent", "failed", "p99 before ms", "p99 during ms", "time to shift", "double runs",
               "writes lost", "settled in", "result"]


def print_all(result: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"Every fault on app {result['app']}", title_justify="left")
    for column in ALL_COLUMNS:
        table.add_column(column)
    for row in all_rows(result):
        table.add_row(*row, style=None if row[-1] == "pass" else "red")
    console.print(table)
    for item in result["skipped"]:
        console.print(f"  skipped {item['fault']}: {item['why']}")
    failed = ", ".join(r["fault"] for r in result["drills"] if not r["passed"]) or "nothing ran"
    console.print("[green]all passed[/]" if result["passed"] else f"[red]failed: {failed}[/]")


def html_all(result: dict[str, Any]) -> str:
    parts = [f"<h1>Every fault on app {html.escape(result['app'])}</h1>",
             f"<p class='{'ok' if result['passed'] else 'bad'}'>{'all passed' if result['passed'] else 'FAILED'}</p>",
             _table(ALL_COLUMNS, all_rows(result))]
    parts += [f"<p>skipped {html.escape(s['fault'])}: {html.escape(s['why'])}</p>" for s in result["skipped"]]
    for r in result["drills"]:  # each drill's own report, as it would be alone
        parts.append(f"<details><summary>{html.escape(r['fault'])} {html.escape(r['target']['name'])}</summary>"
                     f"<iframe style='width:100%;height:900px;border:0' srcdoc=\"{html.escape(html_report(r))}\">"
                     "</iframe></details>")
    return _page(f"Roost drill all: {result['app']}", parts)


def print_chaos(result: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    console.print(f"[bold]Chaos[/] on app {result['app']} for {result['duration_s']:g}s (seed {result['seed']}): "
                  f"{len(result['steps'])} faults from {', '.join(result['faults'])}; {result['sent']} requests, "
                  f"{result['ok']} ok")
    table = Table(title="Faults", title_justify="left")
    for column in ("at", "fault", "target", "healed at", "settled in", "double runs so far"):
        table.add_column(column)
    for s in result["steps"]:
        table.add_row(f"{s['at_s']:.1f}s", s["fault"], s["target"], f"{s['healed_at_s']:.1f}s",
                      "NOT" if s["recovered_after_s"] is None else f"{s['recovered_after_s']:.1f}s",
                      str(s["double_runs_so_far"]))
    console.print(table)
    table = Table(title="Invariants", title_justify="left")
    table.add_column("invariant")
    table.add_column("count")
    for name, value in result["invariants"].items():
        table.add_row(name.replace("_", " "), "-" if value is None else str(value),
                      style=None if not value else "red")
    console.print(table)
    if result["excused_failures"]:
        console.print(f"  {result['excused_failures']} failed requests died with an edge (not counted)")
    for f in result.get("failures", [])[:10]:
        console.print(f"  failed at {f['sent_s']:.2f}s: {f['cause']} (during {f['during'] or 'no fault'})")
    console.print("[green]every invariant held[/]" if result["passed"] else "[red]an invariant was broken[/]")


def html_chaos(result: dict[str, Any]) -> str:
    steps = [[f"{s['at_s']:.1f}s", s["fault"], s["target"], f"{s['healed_at_s']:.1f}s",
              "NOT" if s["recovered_after_s"] is None else f"{s['recovered_after_s']:.1f}s", s["double_runs_so_far"]]
             for s in result["steps"]]
    counts = [[name.replace("_", " "), "-" if v is None else v] for name, v in result["invariants"].items()]
    parts = [f"<h1>Chaos on app {html.escape(result['app'])} (seed {result['seed']})</h1>",
             f"<p class='{'ok' if result['passed'] else 'bad'}'>"
             f"{'every invariant held' if result['passed'] else 'an invariant was broken'}</p>",
             f"<p>{result['duration_s']:g}s at {result['rps']:g} requests/s: {result['sent']} sent, {result['ok']} ok; "
             f"{result['excused_failures']} failed with an edge that died.</p>",
             "<h2>Invariants</h2>", _table(["invariant", "count"], counts),
             "<h2>Faults</h2>", _table(["at", "fault", "target", "healed at", "settled in", "double runs so far"],
                                       steps),
             f"<details><summary>Raw report (JSON)</summary><pre>{html.escape(json.dumps(result, indent=1))}</pre>"
             "</details>"]
    return _page(f"Roost chaos: {result['app']}", parts)


def _page(title: str, parts: list[str]) -> str:
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px}.ok{color:#080;font-weight:bold}"
             ".bad{color:#c00;font-weight:bold}pre{font-size:11px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
