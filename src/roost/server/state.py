"""The control plane's state: records in memory, every change written through the store first.

Reads come from memory (fast lists, a snapshot for the scheduler); writes go to the store on its own
thread, and only once the store has them durably are they applied in memory and published on the watch
feed. One asyncio lock serialises read-modify-write sections; agents are never called while holding it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from roost.core import machine_config as mc
from roost.core.lifecycle import State
from roost.core.model import App, Host, Image, Machine, Volume
from roost.placement.scheduler import HostView, millicpus
from roost.server.watch import WatchHub
from roost.store.base import ChangeRecord, Delete, FeedEntry, Put, Store

T = TypeVar("T")
Record = App | Machine | Volume | Host | Image

KIND = {App: "app", Machine: "machine", Volume: "volume", Host: "host", Image: "image"}


def key_of(obj: Record) -> str:
    if isinstance(obj, App):
        return obj.name
    if isinstance(obj, Image):
        return obj.ref
    return obj.id


class ClusterState:
    def __init__(self, store: Store, hub: WatchHub) -> None:
        self.store = store
        self.hub = hub
        self.apps: dict[str, App] = {}
        self.machines: dict[str, Machine] = {}
        self.app_machines: dict[str, dict[str, Machine]] = {}
        self.volumes: dict[str, Volume] = {}
        self.hosts: dict[str, Host] = {}
        self.images: dict[str, Image] = {}
        self.lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="roost-store")
        self.machine_waiters: dict[str, asyncio.Event] = {}

    # ---- loading and persistence ----

    def load(self) -> None:
        revision, docs = self.store.load()
        for doc in docs.get("app", {}).values():
            app = App.from_doc(doc)
            self.apps[app.name] = app
        for doc in sorted(docs.get("machine", {}).values(), key=lambda d: d["created_at"]):
            self._index_machine(Machine.from_doc(doc))
        for doc in docs.get("volume", {}).values():
            vol = Volume.from_doc(doc)
            self.volumes[vol.id] = vol
        for doc in docs.get("host", {}).values():
            host = Host.from_doc(doc)
            self.hosts[host.id] = host
        for doc in docs.get("image", {}).values():
            image = Image.from_doc(doc)
            self.images[image.ref] = image
        self.hub.revision = revision
        oldest = self.store.oldest_revision()
        if oldest:
            self.hub.ring.extend(self.store.changes_since(max(oldest - 1, revision - self.hub.ring.maxlen + 1),
                                                          self.hub.ring.maxlen or 1))

    async def in_store_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def save(self, *objs: Record, deleted: Iterable[Record] = (), extra_feed: Iterable[Record] = ()) -> int:
        """Durably write `objs` (and delete `deleted`), then apply them in memory and publish them.

        `extra_feed` are records whose public view changed without their own doc changing (e.g. the
        machines of a host whose status changed): published, not written.
        """
        writes: list[Put | Delete] = [Put(KIND[type(o)], key_of(o), o.to_doc()) for o in objs]
        writes += [Delete(KIND[type(o)], key_of(o)) for o in deleted]
        feed = [FeedEntry(KIND[type(o)], key_of(o), "put", self.public_view(o)) for o in (*objs, *extra_feed)]
        feed += [FeedEntry(KIND[type(o)], key_of(o), "delete", None) for o in deleted]
        now = time.time()
        revision = await self.in_store_thread(self.store.commit, writes, feed, now)
        for obj in objs:
            self._apply(obj)
        for obj in deleted:
            self._remove(obj)
        first = revision - len(feed) + 1
        self.hub.publish([ChangeRecord(first + i, f.kind, f.key, f.op, f.doc, now) for i, f in enumerate(feed)],
                         revision)
        return revision

    def _index_machine(self, m: Machine) -> None:
        self.machines[m.id] = m
        self.app_machines.setdefault(m.app, {})[m.id] = m

    def _apply(self, obj: Record) -> None:
        if isinstance(obj, Machine):
            self._index_machine(obj)
            waiter = self.machine_waiters.pop(obj.id, None)
            if waiter:
                waiter.set()
        elif isinstance(obj, App):
            self.apps[obj.name] = obj
        elif isinstance(obj, Volume):
            self.volumes[obj.id] = obj
        elif isinstance(obj, Host):
            self.hosts[obj.id] = obj
        elif isinstance(obj, Image):
            self.images[obj.ref] = obj

    def _remove(self, obj: Record) -> None:
        if isinstance(obj, Machine):
            self.machines.pop(obj.id, None)
            self.app_machines.get(obj.app, {}).pop(obj.id, None)
            waiter = self.machine_waiters.pop(obj.id, None)
            if waiter:
                waiter.set()
        elif isinstance(obj, App):
            self.apps.pop(obj.name, None)
            self.app_machines.pop(obj.name, None)
        elif isinstance(obj, Volume):
            self.volumes.pop(obj.id, None)
        elif isinstance(obj, Host):
            self.hosts.pop(obj.id, None)
        elif isinstance(obj, Image):
            self.images.pop(obj.ref, None)

    def machine_changed(self, machine_id: str) -> asyncio.Event:
        """An event set at the next change of this machine (used by /wait)."""
        event = self.machine_waiters.get(machine_id)
        if event is None:
            event = self.machine_waiters[machine_id] = asyncio.Event()
        return event

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.store.close()

    # ---- views ----

    def host_status(self, host_id: str) -> str:
        host = self.hosts.get(host_id)
        return host.status if host else "unknown"

    def machine_api(self, m: Machine, *, with_events: bool = True) -> dict[str, Any]:
        host = self.hosts.get(m.host_id)
        return m.to_api(host.status if host else "unknown", host_address=host.address if host else "",
                        with_events=with_events)

    def volume_api(self, v: Volume) -> dict[str, Any]:
        return v.to_api(self.host_status(v.host_id))

    def host_usage(self, host_id: str) -> tuple[int, int, int]:
        """(milli-cpus, memory MB, machines) reserved on a host by its machines that are not destroyed."""
        cpu = mem = count = 0
        for m in self.machines.values():
            if m.host_id == host_id and m.state is not State.DESTROYED:
                g = mc.guest(m.config)
                cpu += millicpus(g.cpu_kind, g.cpus)
                mem += g.memory_mb
                count += 1
        return cpu, mem, count

    def host_api(self, host: Host) -> dict[str, Any]:
        cpu, mem, count = self.host_usage(host.id)
        return host.to_api(cpu, mem, count)

    def app_api(self, app: App) -> dict[str, Any]:
        machines = sum(1 for m in self.app_machines.get(app.name, {}).values() if m.state is not State.DESTROYED)
        volumes = sum(1 for v in self.volumes.values() if v.app == app.name)
        return app.to_api(machines, volumes)

    def public_view(self, obj: Record) -> dict[str, Any]:
        if isinstance(obj, Machine):
            view = self.machine_api(obj, with_events=False)
            view["app"] = obj.app
            return view
        if isinstance(obj, Volume):
            return {**self.volume_api(obj), "app": obj.app}
        if isinstance(obj, Host):
            return self.host_api(obj)
        if isinstance(obj, App):
            return self.app_api(obj)
        return obj.to_api()

    def host_views(self) -> list[HostView]:
        """The scheduler's snapshot of every host."""
        usage: dict[str, list[int]] = {h: [0, 0] for h in self.hosts}
        groups: dict[str, dict[tuple[str, str], int]] = {h: {} for h in self.hosts}
        apps: dict[str, dict[str, int]] = {h: {} for h in self.hosts}
        for m in self.machines.values():
            if m.state is State.DESTROYED or m.host_id not in usage:
                continue
            g = mc.guest(m.config)
            usage[m.host_id][0] += millicpus(g.cpu_kind, g.cpus)
            usage[m.host_id][1] += g.memory_mb
            key = (m.app, mc.process_group(m.config))
            groups[m.host_id][key] = groups[m.host_id].get(key, 0) + 1
            apps[m.host_id][m.app] = apps[m.host_id].get(m.app, 0) + 1
        return [
            HostView(h.id, h.region, h.status, h.cordoned, h.cpus * 1000, h.memory_mb,
                     usage[h.id][0], usage[h.id][1], groups[h.id], apps[h.id])
            for h in self.hosts.values()
        ]

    def used_ports(self, host_id: str, except_machine: str = "") -> set[int]:
        return {p for m in self.machines.values()
                if m.host_id == host_id and m.id != except_machine and m.state is not State.DESTROYED
                for p in m.ports.values()}
