"""The `.internal` names of the private network (issue 19), answered as Fly answers them: a directory of every
org's apps and machines, fed by the control plane's watch feed (its names view), and the answer to one question
from one machine. Pure: no sockets, no clock; the resolver (agent/resolver.py) does the wire.

Names (all under `internal`, for the asking machine's org only; another org's app does not exist):
    <app>.internal                      A/AAAA of the app's started machines
    <region>.<app>.internal             ... in that region
    <machine_id>.vm.<app>.internal      that machine (started)
    <group>.process.<app>.internal      ... of that process group
    topN.nearest.of.<app>.internal      the N closest to the asker (estimated RTT between regions)
    _apps.internal                      TXT: the org's app names, comma-separated
    regions.<app>.internal              TXT: regions with started machines
    vms.<app>.internal                  TXT: "machine_id region" of each started machine
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from roost.core.regions import estimated_rtt_ms

ZONE = "internal"
TTL = 1  # seconds: a stopped machine leaves every cache within 2 s of the feed saying so
MAX_NAME = 253
TOP = re.compile(r"top([1-9][0-9]?)")


@dataclass(frozen=True)
class NameEntry:
    id: str
    app: str
    region: str
    group: str
    address: str
    started: bool


@dataclass(frozen=True)
class Record:
    name: str
    type: str  # A | AAAA | TXT
    ttl: int
    value: str


@dataclass(frozen=True)
class Answer:
    rcode: str  # NOERROR | NXDOMAIN | REFUSED
    records: tuple[Record, ...] = ()


NXDOMAIN = Answer("NXDOMAIN")
REFUSED = Answer("REFUSED")


def names_view(kind: str, obj: dict[str, Any]) -> dict[str, Any] | None:
    """What the names feed carries of an object of the full feed (None: nothing): enough to answer, no config,
    no env, no secrets, so that every host may follow it."""
    if kind == "app":
        return {"name": obj.get("name"), "org": (obj.get("organization") or {}).get("slug") or "personal"}
    if kind == "machine":
        metadata = ((obj.get("config") or {}).get("metadata") or {})
        return {"id": obj.get("id"), "app": obj.get("app"), "region": obj.get("region"), "state": obj.get("state"),
                "private_ip": obj.get("private_ip"), "host_id": obj.get("host_id"),
                "group": metadata.get("fly_process_group") or "app"}
    return None


@dataclass
class Directory:
    """Every org's apps and machines as the names feed last described them."""

    apps: dict[str, str] = field(default_factory=dict)  # app -> org
    machines: dict[str, NameEntry] = field(default_factory=dict)
    revision: int = 0
    # kept on every change: a question reads its app's machines and its asker, not the whole fleet
    by_app: dict[str, dict[str, NameEntry]] = field(default_factory=dict)
    by_address: dict[str, dict[str, NameEntry]] = field(default_factory=dict)

    # ---- feeding (the watch feed's reset and change events, names view) ----

    def reset(self, objects: list[dict[str, Any]], revision: int) -> None:
        self.apps.clear()
        self.machines.clear()
        self.by_app.clear()
        self.by_address.clear()
        for obj in objects:
            self._put(str(obj.get("kind")), str(obj.get("key")), obj.get("object"))
        self.revision = revision

    def apply(self, event: dict[str, Any]) -> None:
        kind, key = str(event.get("kind")), str(event.get("key"))
        if event.get("op") == "delete" or event.get("object") is None:
            if kind == "app":
                self.apps.pop(key, None)
            elif kind == "machine":
                self._drop(key)
        else:
            self._put(kind, key, event["object"])
        self.revision = max(self.revision, int(event.get("rev") or 0))

    def _put(self, kind: str, key: str, obj: Any) -> None:
        if not isinstance(obj, dict):
            return
        if kind == "app":
            self.apps[key] = str(obj.get("org") or "personal")
        elif kind == "machine":
            self._drop(key)
            if obj.get("state") == "destroyed":
                return
            m = NameEntry(key, str(obj.get("app") or ""), str(obj.get("region") or ""),
                          str(obj.get("group") or "app"), str(obj.get("private_ip") or ""),
                          obj.get("state") == "started")
            self.machines[key] = m
            self.by_app.setdefault(m.app, {})[key] = m
            self.by_address.setdefault(m.address, {})[key] = m

    def _drop(self, key: str) -> None:
        old = self.machines.pop(key, None)
        if old is None:
            return
        for index, value in ((self.by_app, old.app), (self.by_address, old.address)):
            entries = index.get(value)
            if entries is not None:
                entries.pop(key, None)
                if not entries:
                    del index[value]

    # ---- asking ----

    def asker(self, address: str) -> NameEntry | None:
        """The machine that asks from `address` (its own private address), if exactly one holds it."""
        found = list(self.by_address.get(address, {}).values())
        return found[0] if len(found) == 1 else None

    def answer(self, qname: str, qtype: str, asker: NameEntry) -> Answer:
        labels = qname.lower().rstrip(".").split(".")
        if len(qname) > MAX_NAME or labels[-1] != ZONE or any(not label for label in labels):
            return REFUSED  # not ours: machines have no way out by default, and we resolve nothing else
        org = self.apps.get(asker.app)
        if org is None:
            return REFUSED
        name = ".".join(labels)
        if labels == ["_apps", ZONE]:
            apps = sorted(a for a, o in self.apps.items() if o == org)
            return self._txt(name, qtype, ",".join(apps))
        app = labels[-2] if len(labels) >= 2 else ""
        if self.apps.get(app) != org:
            return NXDOMAIN
        started = sorted((m for m in self.by_app.get(app, {}).values() if m.started), key=lambda m: m.id)
        head = labels[:-2]
        if not head:
            return self._addresses(name, qtype, started)
        if head == ["regions"]:
            return self._txt(name, qtype, ",".join(sorted({m.region for m in started})))
        if head == ["vms"]:
            return self._txt(name, qtype, ",".join(f"{m.id} {m.region}" for m in started))
        if len(head) == 1:
            return self._addresses(name, qtype, [m for m in started if m.region == head[0]])
        if len(head) == 2 and head[1] == "vm":
            return self._addresses(name, qtype, [m for m in started if m.id == head[0]])
        if len(head) == 2 and head[1] == "process":
            return self._addresses(name, qtype, [m for m in started if m.group == head[0]])
        top = TOP.fullmatch(head[0])
        if len(head) == 3 and head[1:] == ["nearest", "of"] and top:
            nearest = sorted(started, key=lambda m: (estimated_rtt_ms(asker.region, m.region), m.id))
            return self._addresses(name, qtype, nearest[:int(top.group(1))])
        return NXDOMAIN

    @staticmethod
    def _addresses(name: str, qtype: str, machines: list[NameEntry]) -> Answer:
        records = []
        for m in machines:
            try:
                family = "AAAA" if ipaddress.ip_address(m.address).version == 6 else "A"
            except ValueError:
                continue
            if qtype in (family, "ANY"):
                records.append(Record(name, family, TTL, m.address))
        return Answer("NOERROR", tuple(records))

    @staticmethod
    def _txt(name: str, qtype: str, text: str) -> Answer:
        return Answer("NOERROR", (Record(name, "TXT", TTL, text),) if qtype in ("TXT", "ANY") else ())
