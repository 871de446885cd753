"""The control plane's state: records in memory, every change written through the store first.

Reads come from memory (fast lists, a snapshot for the scheduler); writes go to the store on its own
thread, and only once the store has them durably are they applied in memory and published on the watch
feed. One asyncio lock serialises read-modify-write sections; agents are never called while holding it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from roost.core import cost
from roost.core import machine_config as mc
from roost.core.lifecycle import State
from roost.core.model import (
    ApiToken,
    App,
    AppSecrets,
    Certificate,
    EdgeProxy,
    Host,
    Image,
    Machine,
    Release,
    Volume,
    VolumeSnapshot,
    canonical_image_ref,
)
from roost.placement.scheduler import HostView, millicpus
from roost.server.watch import WatchHub
from roost.store.base import ChangeRecord, Delete, Delta, Deposed, FeedEntry, Fence, Put, Store

T = TypeVar("T")
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _encode_bytes(value: Any) -> bytes:
    return _encode(value).encode()
Record = (App | Machine | Volume | Host | Image | EdgeProxy | AppSecrets | Release | ApiToken | Certificate
          | VolumeSnapshot)

KIND = {App: "app", Machine: "machine", Volume: "volume", Host: "host", Image: "image", EdgeProxy: "proxy",
        AppSecrets: "secrets", Release: "release", ApiToken: "token", Certificate: "certificate",
        VolumeSnapshot: "snapshot"}
PRIVATE_KINDS = {"secrets", "token", "certificate"}  # stored, never published on the watch feed
FROM_DOC: dict[str, Callable[[dict[str, Any]], Record]] = {
    "app": App.from_doc, "machine": Machine.from_doc, "volume": Volume.from_doc, "host": Host.from_doc,
    "image": Image.from_doc, "proxy": EdgeProxy.from_doc, "secrets": AppSecrets.from_doc,
    "release": Release.from_doc, "token": ApiToken.from_doc, "certificate": Certificate.from_doc,
    "snapshot": VolumeSnapshot.from_doc}


def key_of(obj: Record) -> str:
    if isinstance(obj, App):
        return obj.name
    if isinstance(obj, AppSecrets):
        return obj.app
    if isinstance(obj, Release | Certificate):
        return obj.key
    if isinstance(obj, Image):
        return obj.ref
    return obj.id


class ClusterState:
    def __init__(self, store: Store, hub: WatchHub, inline: bool = False) -> None:
        self.store = store
        self.inline = inline  # tests with an in-memory store: no thread hop (a virtual clock can't wait for one)
        self.hub = hub
        self.on_commit: Callable[[float], None] = lambda seconds: None  # each commit's time (the server's metrics)
        self.apps: dict[str, App] = {}
        self.machines: dict[str, Machine] = {}
        self.app_machines: dict[str, dict[str, Machine]] = {}
        self.volumes: dict[str, Volume] = {}
        self.hosts: dict[str, Host] = {}
        self.images: dict[str, Image] = {}
        self.proxies: dict[str, EdgeProxy] = {}
        self.secrets: dict[str, AppSecrets] = {}
        self.releases: dict[str, Release] = {}
        self.tokens: dict[str, ApiToken] = {}
        self.token_digests: dict[str, str] = {}  # sha256 of a token's secret -> its id
        self.tokens_version = 0  # moves on every change of a token (for what is derived from them)
        self.certificates: dict[str, Certificate] = {}  # "APP/HOSTNAME" -> its certificate
        self.snapshots: dict[str, VolumeSnapshot] = {}
        self.certificates_version = 0  # moves on every change: edges fetch the certificates again
        # Several servers on one database (issue 18): `seq` is the store's commit counter as far as this server
        # has applied it; only the leader writes, each write fenced with its term (`fence`, None: not leading).
        self.replicated = False
        self.fence: Fence | None = None
        self.seq = 0
        self.lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="roost-store")
        self.machine_waiters: dict[str, asyncio.Event] = {}
        # Serialised machine views for lists: (record, host status, host address, variant) -> JSON bytes.
        # The record object is replaced on every write, so holding it makes the key exact.
        self._json_cache: dict[tuple[str, str], tuple[Machine, str, str, bytes]] = {}
        # What each host's machines reserve, kept up to date on every write so that placement reads a
        # snapshot in O(hosts), not O(machines).
        self._usage: dict[str, _HostUsage] = {}
        # The live machines of each host, and the live machines that are someone's standby, kept on every write:
        # a heartbeat reads what concerns its host in O(its machines), not O(fleet).
        self._on_host: dict[str, dict[str, Machine]] = {}
        self._standbys: dict[str, Machine] = {}

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
        for doc in docs.get("proxy", {}).values():
            edge = EdgeProxy.from_doc(doc)
            self.proxies[edge.id] = edge
        for doc in docs.get("secrets", {}).values():
            secrets = AppSecrets.from_doc(doc)
            self.secrets[secrets.app] = secrets
        for doc in docs.get("release", {}).values():
            release = Release.from_doc(doc)
            self.releases[release.key] = release
        for doc in docs.get("token", {}).values():
            self._apply(ApiToken.from_doc(doc))
        for doc in docs.get("certificate", {}).values():
            self._apply(Certificate.from_doc(doc))
        for doc in docs.get("snapshot", {}).values():
            self._apply(VolumeSnapshot.from_doc(doc))
        self.hub.revision = revision
        self._fill_ring(revision)

    def load_replica(self) -> None:
        """Load as one of several servers: everything from the store's delta, with its commit counter."""
        self.replicated = True
        delta = self.store.delta(0)
        self.follow(delta, [])
        self._fill_ring(delta.revision)

    def _fill_ring(self, revision: int) -> None:
        oldest = self.store.oldest_revision()
        if oldest:
            ring = self.hub.ring.maxlen or 1
            self.hub.ring.extend(c for c in self.store.changes_since(max(oldest - 1, revision - ring + 1), ring)
                                 if c.rev <= revision)

    async def in_store_thread(self, fn: Any, *args: Any) -> Any:
        if self.inline:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def write_machine(self, machine_id: str, *, state: State | None = None, event: dict[str, Any] | None = None,
                            now: float, **changes: Any) -> Machine:
        """The one writer of a machine's record: under the state lock, a copy with `changes` (and `state`,
        and `event` added), saved durably, then applied and published."""
        async with self.lock:
            m = self.machines[machine_id].copy()
            if state is not None:
                m.state = state
            for key, value in changes.items():
                setattr(m, key, value)
            if event:
                m.add_event(event)
            m.updated_at = now
            await self.save(m)
            return m

    async def save(self, *objs: Record, deleted: Iterable[Record] = (), extra_feed: Iterable[Record] = ()) -> int:
        """Durably write `objs` (and delete `deleted`), then apply them in memory and publish them.

        `extra_feed` are records whose public view changed without their own doc changing (e.g. the
        machines of a host whose status changed): published, not written.
        """
        now = time.time()
        for obj in objs:
            if isinstance(obj, Machine):
                obj.ledger = self._ledger(obj, now)
        writes: list[Put | Delete] = [Put(KIND[type(o)], key_of(o), o.to_doc()) for o in objs]
        writes += [Delete(KIND[type(o)], key_of(o)) for o in deleted]
        feed = [FeedEntry(KIND[type(o)], key_of(o), "put", self.public_view(o)) for o in (*objs, *extra_feed)
                if KIND[type(o)] not in PRIVATE_KINDS]
        feed += [FeedEntry(KIND[type(o)], key_of(o), "delete", None) for o in deleted
                 if KIND[type(o)] not in PRIVATE_KINDS]
        if self.replicated and self.fence is None:
            raise Deposed()  # a follower never writes: the leader does (requests are forwarded to it)
        started = time.perf_counter()
        revision = int(await self.in_store_thread(self.store.commit, writes, feed, now, self.fence))
        self.on_commit(time.perf_counter() - started)
        self.seq += 1  # the one writer: its commit is the next
        for obj in objs:
            self._apply(obj)
        for obj in deleted:
            self._remove(obj)
        first = revision - len(feed) + 1
        self.hub.publish([ChangeRecord(first + i, f.kind, f.key, f.op, f.doc, now) for i, f in enumerate(feed)],
                         revision)
        return revision

    def _ledger(self, m: Machine, now: float) -> dict[str, Any]:
        """The machine's cost ledger brought up to `now`, in the billing state and size it has from now on."""
        g = mc.guest(m.config)
        image = self.images.get(canonical_image_ref(str(m.config.get("image") or "")))
        mount = mc.volume_mount(m.config)
        volume = self.volumes.get(mount[0]) if mount else None
        size = {"cpu_kind": g.cpu_kind, "cpus": g.cpus, "memory_mb": g.memory_mb,
                "rootfs_gb": round(image.size / 1024**3, 6) if image and image.size else cost.UNKNOWN_ROOTFS_GB,
                "volume_gb": volume.size_gb if volume else 0}
        return cost.account(m.ledger, cost.category(str(m.state), bool(mc.standbys(m.config))), now, size)

    def _table(self, kind: str) -> dict[str, Any]:
        tables: dict[str, dict[str, Any]] = {
            "app": self.apps, "machine": self.machines, "volume": self.volumes, "host": self.hosts,
            "image": self.images, "proxy": self.proxies, "secrets": self.secrets, "release": self.releases,
            "token": self.tokens, "certificate": self.certificates, "snapshot": self.snapshots}
        return tables[kind]

    def follow(self, delta: Delta, records: Iterable[ChangeRecord]) -> int:
        """Apply what another server (the leader) committed, as the store's delta says, and publish its
        change-log entries up to the delta's revision; returns how many records changed in memory."""
        changed = 0
        if delta.full:  # the tombstones were compacted away: whatever the delta lacks is gone
            listed = {(kind, key) for kind, key, _ in delta.puts}
            for kind in FROM_DOC:
                for key, obj in list(self._table(kind).items()):
                    if (kind, key) not in listed:
                        self._remove(obj)
                        changed += 1
        for kind, key in delta.deletes:
            obj = self._table(kind).get(key) if kind in FROM_DOC else None
            if obj is not None:
                self._remove(obj)
                changed += 1
        # hosts before their machines, machines in the order they were made (an app's listing order)
        for kind, _key, doc in sorted(delta.puts, key=lambda p: (p[0] != "host", p[2].get("created_at") or 0)):
            if kind in FROM_DOC:
                self._apply(FROM_DOC[kind](doc))
                changed += 1
        self.seq = max(self.seq, delta.seq)
        fresh = [r for r in records if self.hub.revision < r.rev <= delta.revision]
        if fresh or delta.revision > self.hub.revision:
            self.hub.publish(fresh, max(delta.revision, self.hub.revision))
        return changed

    def _index_machine(self, m: Machine) -> None:
        old = self.machines.get(m.id)
        if old is not None:
            self._account(old, -1)
            self._unplace(old)
        self._account(m, +1)
        if m.state is not State.DESTROYED:
            self._on_host.setdefault(m.host_id, {})[m.id] = m
            if mc.standbys(m.config):
                self._standbys[m.id] = m
        self.machines[m.id] = m
        self.app_machines.setdefault(m.app, {})[m.id] = m

    def _unplace(self, m: Machine) -> None:
        on_host = self._on_host.get(m.host_id)
        if on_host is not None:
            on_host.pop(m.id, None)
            if not on_host:
                del self._on_host[m.host_id]
        self._standbys.pop(m.id, None)

    def machines_on(self, host_id: str) -> list[Machine]:
        """The host's machines that are not destroyed."""
        return list(self._on_host.get(host_id, {}).values())

    def standby_machines(self) -> list[Machine]:
        """The machines, not destroyed, that stand by for another."""
        return list(self._standbys.values())

    def _account(self, m: Machine, sign: int) -> None:
        if m.state is State.DESTROYED:
            return
        usage = self._usage.setdefault(m.host_id, _HostUsage())
        g = mc.guest(m.config)
        usage.millicpus += sign * millicpus(g.cpu_kind, g.cpus)
        usage.memory_mb += sign * g.memory_mb
        usage.machines += sign
        group = (m.app, mc.process_group(m.config))
        usage.groups[group] = usage.groups.get(group, 0) + sign
        usage.apps[m.app] = usage.apps.get(m.app, 0) + sign
        for port in m.ports.values():
            usage.ports[port] = usage.ports.get(port, 0) + sign
            if usage.ports[port] <= 0:
                del usage.ports[port]

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
        elif isinstance(obj, EdgeProxy):
            self.proxies[obj.id] = obj
        elif isinstance(obj, AppSecrets):
            self.secrets[obj.app] = obj
        elif isinstance(obj, Release):
            self.releases[obj.key] = obj
        elif isinstance(obj, ApiToken):
            self.tokens[obj.id] = obj
            self.token_digests[obj.digest] = obj.id
            self.tokens_version += 1
        elif isinstance(obj, Certificate):
            self.certificates[obj.key] = obj
            self.certificates_version += 1
        elif isinstance(obj, VolumeSnapshot):
            self.snapshots[obj.id] = obj

    def _remove(self, obj: Record) -> None:
        if isinstance(obj, Machine):
            self.forget_json(obj.id)
            old = self.machines.pop(obj.id, None)
            if old is not None:
                self._account(old, -1)
                self._unplace(old)
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
        elif isinstance(obj, EdgeProxy):
            self.proxies.pop(obj.id, None)
        elif isinstance(obj, AppSecrets):
            self.secrets.pop(obj.app, None)
        elif isinstance(obj, Release):
            self.releases.pop(obj.key, None)
        elif isinstance(obj, ApiToken):
            self.tokens.pop(obj.id, None)
            self.token_digests.pop(obj.digest, None)
            self.tokens_version += 1
        elif isinstance(obj, Certificate):
            self.certificates.pop(obj.key, None)
            self.certificates_version += 1
        elif isinstance(obj, VolumeSnapshot):
            self.snapshots.pop(obj.id, None)

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

    def machine_json(self, m: Machine, variant: str) -> bytes:
        """The machine's API view as JSON bytes ("full" or "summary"), cached until the machine or its
        host changes: listing 1,000 machines is then a join, not 1,000 serialisations."""
        host = self.hosts.get(m.host_id)
        status, address = (host.status, host.address) if host else ("unknown", "")
        cached = self._json_cache.get((m.id, variant))
        if cached and cached[0] is m and cached[1] == status and cached[2] == address:
            return cached[3]
        view = self.machine_api(m, with_events=variant == "full")
        if variant == "summary":
            view.pop("config", None)
        data = _encode_bytes(view)
        self._json_cache[(m.id, variant)] = (m, status, address, data)
        return data

    def forget_json(self, machine_id: str) -> None:
        for variant in ("full", "summary"):
            self._json_cache.pop((machine_id, variant), None)

    def volume_api(self, v: Volume) -> dict[str, Any]:
        return v.to_api(self.host_status(v.host_id))

    def host_usage(self, host_id: str) -> tuple[int, int, int]:
        """(milli-cpus, memory MB, machines) reserved on a host by its machines that are not destroyed."""
        usage = self._usage.get(host_id) or _HostUsage()
        return usage.millicpus, usage.memory_mb, usage.machines

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
        views = []
        for h in self.hosts.values():
            usage = self._usage.get(h.id) or _HostUsage()
            views.append(HostView(h.id, h.region, h.status, h.cordoned, h.cpus * 1000, h.memory_mb,
                                  usage.millicpus, usage.memory_mb, dict(usage.groups), dict(usage.apps)))
        return views

    def used_addresses(self, host_id: str) -> set[str]:
        """The private addresses machines on a host hold (container hosts give each machine its own)."""
        return {m.private_ip for m in self.machines_on(host_id)}

    def used_ports(self, host_id: str, except_machine: str = "") -> set[int]:
        usage = self._usage.get(host_id)
        used = set(usage.ports) if usage else set()
        if except_machine and except_machine in self.machines:
            used -= set(self.machines[except_machine].ports.values())
        return used


class _HostUsage:
    __slots__ = ("apps", "groups", "machines", "memory_mb", "millicpus", "ports")

    def __init__(self) -> None:
        self.millicpus = 0
        self.memory_mb = 0
        self.machines = 0
        self.groups: dict[tuple[str, str], int] = {}
        self.apps: dict[str, int] = {}
        self.ports: dict[int, int] = {}
