"""`roost scale vm|memory`: give an app's machines a new guest, as flyctl does: one running machine at a time
(each started and passing its checks before the next), stopped machines and standbys updated in place
without starting them."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from roost.client.api import Api
from roost.client.errors import UserError
from roost.deploy.runner import group_of, managed_machines, wait_healthy
from roost.plan import deploy as plan
from roost.plan.resize import new_guest, size_name

Say = Callable[[str], None]


def resize(api: Api, app: str, size: str | None, memory_mb: int | None, group: str | None, say: Say,
           wait_timeout: float = 300.0) -> list[str]:
    """Update every machine of the app (or of `group`) to the new guest; returns the ids updated."""
    machines = [m for m in managed_machines(api, app) if group is None or group_of(m) == group]
    if not machines:
        where = f" in process group {group!r}" if group else ""
        raise UserError(f"app {app!r} has no machines{where} to resize: deploy it first")
    updates: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for m in machines:
        config = copy.deepcopy(m.get("config") or {})
        old = dict(config.get("guest") or {})
        try:
            config["guest"] = new_guest(old, size, memory_mb)
        except Exception as exc:  # a bad size or memory: one line, nothing changed yet
            raise UserError(getattr(exc, "message", str(exc))) from None
        if config["guest"] != old:
            updates.append((m, config))
    if not updates:
        say("Nothing to change: every machine already has that size")
        return []
    done: list[str] = []
    for m, config in updates:
        old, new = m["config"].get("guest") or {}, config["guest"]
        change = f"{size_name(old)} {old.get('memory_mb')} MB -> {size_name(new)} {new['memory_mb']} MB"
        cold = plan.skip_launch(m["state"], bool(config.get("standbys")))
        say(f"  updating {m['id']} ({group_of(m)}, {m['state']}): {change}")
        api.post(f"/v1/apps/{app}/machines/{m['id']}", json={"config": config, "skip_launch": cold})
        if not cold:
            wait_healthy(api, app, m["id"], wait_timeout, what="scale")
        state = "started, checks passing" if not cold else f"{m['state']}, not started"
        say(f"  updated {m['id']} ({state})")
        done.append(m["id"])
    return done
