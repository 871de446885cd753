"""An organization's machines and volumes across its apps (Fly's `/orgs/{org}/machines|volumes`), a page at a
time: ordered by last update then id, with an opaque cursor to the next page."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from roost.core.errors import bad_request
from roost.core.lifecycle import State
from roost.server.state import ClusterState

MAX_PAGE = 1000
OVERVIEW_CONFIG = ("guest", "image", "metadata")


@dataclass(frozen=True)
class Filters:
    """The filters both listings take: region, states, include_deleted, summary."""

    region: str | None
    states: frozenset[str]
    include_deleted: bool
    summary: bool

    @classmethod
    def of(cls, query: dict[str, str]) -> Filters:
        return cls(query.get("region") or None, frozenset(s for s in (query.get("state") or "").split(",") if s),
                   _flag(query.get("include_deleted"), "include_deleted"), _flag(query.get("summary"), "summary"))

    def keeps(self, region: str, state: str, deleted: bool) -> bool:
        return ((self.region is None or region == self.region) and (not self.states or state in self.states)
                and (self.include_deleted or not deleted))


class OrgService:
    def __init__(self, state: ClusterState) -> None:
        self.state = state

    def _apps(self, org: str) -> set[str]:
        return {a.name for a in self.state.apps.values() if a.org_slug == org}

    def machines(self, org: str, query: dict[str, str]) -> dict[str, Any]:
        apps, want = self._apps(org), Filters.of(query)
        rows = []
        for m in self.state.machines.values():
            if m.app not in apps or not want.keeps(m.region, str(m.state), m.state is State.DESTROYED):
                continue
            full = self.state.machine_api(m)
            row = {"id": m.id, "name": full.get("name"), "app_name": m.app, "state": full.get("state"),
                   "region": m.region, "private_ip": full.get("private_ip"), "instance_id": full.get("instance_id"),
                   "version": full.get("instance_id"), "created_at": full.get("created_at"),
                   "updated_at": full.get("updated_at")}
            if not want.summary:
                config = full.get("config") or {}
                row["config"] = {k: config[k] for k in OVERVIEW_CONFIG if k in config}
            rows.append(row)
        page, cursor = _page(rows, query)
        last = page[-1] if page else None
        return {"machines": page, "next_cursor": cursor, "last_machine_id": last["id"] if last else "",
                "last_updated_at": last["updated_at"] if last else "", "error_regions": []}

    def volumes(self, org: str, query: dict[str, str]) -> dict[str, Any]:
        apps, want = self._apps(org), Filters.of(query)
        rows = []
        for v in self.state.volumes.values():
            view = self.state.volume_api(v)
            if v.app not in apps or not want.keeps(v.region, str(view.get("state")), view.get("state") == "destroyed"):
                continue
            row = {**view, "app_name": v.app}
            if want.summary:
                for key in ("block_size", "blocks", "blocks_avail", "blocks_free"):
                    row.pop(key, None)
            rows.append(row)
        page, cursor = _page(rows, query)
        last = page[-1] if page else None
        return {"volumes": page, "next_cursor": cursor, "last_volume_id": last["id"] if last else "",
                "last_updated_at": last.get("updated_at", "") if last else ""}


def _page(rows: list[dict[str, Any]], query: dict[str, str]) -> tuple[list[dict[str, Any]], str]:
    """Rows after the cursor (or updated after `updated_after`), at most `limit`; and the next cursor."""
    def key(r: dict[str, Any]) -> tuple[str, str]:
        return (str(r.get("updated_at") or ""), str(r["id"]))
    rows.sort(key=key)
    limit = _limit(query.get("limit"))
    if query.get("cursor"):
        after = _cursor(query["cursor"])
        rows = [r for r in rows if key(r) > after]
    elif query.get("updated_after"):
        since = _time(query["updated_after"])
        rows = [r for r in rows if r.get("updated_at") and _time(str(r["updated_at"])) > since]
    page = rows[:limit]
    more = len(rows) > limit
    return page, _encode(key(page[-1])) if more and page else ""


def _limit(value: str | None) -> int:
    if not value:
        return MAX_PAGE
    try:
        limit = int(value)
    except ValueError:
        raise bad_request("limit: expected a whole number from 1 to 1000") from None
    if limit < 1:
        raise bad_request("limit: expected a whole number from 1 to 1000")
    return min(limit, MAX_PAGE)  # advisory, as Fly's


def _encode(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(f"{key[0]}|{key[1]}".encode()).decode()


def _cursor(value: str) -> tuple[str, str]:
    try:
        stamp, _, ident = base64.urlsafe_b64decode(value.encode()).decode().partition("|")
    except (ValueError, UnicodeDecodeError):
        raise bad_request("cursor: not a cursor this server gave (use next_cursor from the last page)") from None
    if not ident:
        raise bad_request("cursor: not a cursor this server gave (use next_cursor from the last page)")
    return stamp, ident


def _time(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"updated_after: {value!r} is not an RFC 3339 time (e.g. 2026-01-02T15:04:05Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # no zone given: UTC, as Fly's times


def _flag(value: str | None, name: str) -> bool:
    if value in (None, "", "false", "0"):
        return False
    if value in ("true", "1"):
        return True
    raise bad_request(f"{name}: expected true or false")
