"""Issue 20: the Grafana dashboard in docs/ loads as Grafana's dashboard model reads it (every field survives a
decode and encode by grafana-foundation-sdk, Grafana's generated types), its panels tile the grid, and every
metric it queries is one docs/metrics.md lists (and, for the edges, one an edge serves)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from roost.proxy.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana" / "roost-fleet.json"
DOCS = ROOT / "docs" / "metrics.md"


def paths(value: Any, prefix: str = "") -> set[str]:
    if isinstance(value, dict):
        return set().union(*(paths(v, f"{prefix}/{k}") for k, v in value.items())) if value else {prefix}
    if isinstance(value, list):
        return set().union(*(paths(v, f"{prefix}/{i}") for i, v in enumerate(value))) if value else {prefix}
    return {prefix}


def documented() -> set[str]:
    return set(re.findall(r"^\| `(roost_\w+)` \|", DOCS.read_text(), re.M))


def test_the_dashboard_is_what_grafanas_model_reads() -> None:
    raw = json.loads(DASHBOARD.read_text())
    decoded = json.loads(json.dumps(Dashboard.from_json(raw), cls=JSONEncoder))
    lost = paths(raw) - paths(decoded)
    assert not lost, f"fields Grafana's dashboard schema does not know: {sorted(lost)[:10]}"
    assert raw["uid"] and raw["title"] and raw["schemaVersion"] >= 36


def test_the_panels_tile_the_grid_and_query_documented_metrics() -> None:
    raw = json.loads(DASHBOARD.read_text())
    panels = raw["panels"]
    assert len({p["id"] for p in panels}) == len(panels) >= 20
    cells: set[tuple[int, int]] = set()
    names = documented()
    queried: set[str] = set()
    for panel in panels:
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"panel {panel['title']!r} overlaps another"
        cells |= mine
        for target in panel.get("targets", []):
            expr = target["expr"]
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
            for name in re.findall(r"\b(roost_\w+)", expr):
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                assert name in names or base in names, f"{name} in {panel['title']!r} is not in docs/metrics.md"
                queried.add(base if base in names else name)
    assert {n.split("_")[1] for n in queried} >= {"server", "proxy", "agent", "machines", "hosts"}


def test_every_documented_edge_metric_is_served_by_an_edge() -> None:
    metrics = Metrics()
    metrics.answered("web", "m1", 200, 0.01)
    metrics.autostarts.labels("web", "ok").inc()
    text = metrics.render().decode()
    for name in (n for n in documented() if n.startswith("roost_proxy_")):
        assert re.search(rf"^# HELP {name} ", text, re.M), f"{name} is documented but an edge does not serve it"
