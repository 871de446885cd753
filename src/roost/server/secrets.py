"""App secrets: set, list (names and digests only), unset. Sealed at rest (server/sealing.py) and opened only
to build the environment of a machine about to start (so a deploy, or any restart, applies new values);
never shown by the API, logs or feed."""

from __future__ import annotations

import copy
import re
import time
from typing import Any

from roost.core.errors import bad_request, not_found
from roost.core.machine_config import text_value
from roost.core.model import AppSecrets
from roost.server.sealing import Keyring
from roost.server.state import ClusterState

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_VALUE_BYTES = 64 * 1024


class SecretService:
    def __init__(self, state: ClusterState, keyring: Keyring) -> None:
        self.state = state
        self.keyring = keyring

    def _app(self, app: str) -> AppSecrets:
        if app not in self.state.apps:
            raise not_found(f"app {app!r} not found")
        return self.state.secrets.get(app) or AppSecrets(app)

    def list(self, app: str) -> dict[str, Any]:
        return self._app(app).to_api()

    def env(self, app: str) -> dict[str, str]:
        """The app's secrets in clear, for the start spec of one of its machines (and nothing else)."""
        secrets = self.state.secrets.get(app)
        if secrets is None:
            return {}
        return {name: self._open(app, name, item) for name, item in secrets.values.items()}

    def _open(self, app: str, name: str, item: dict[str, Any]) -> str:
        if "sealed" in item:
            return self.keyring.open(str(item["sealed"]), f"{app}/{name}")
        return str(item["value"])  # stored before sealing: re-sealed at the next start

    def _sealed(self, app: str, name: str, value: str, created: float, updated: float) -> dict[str, Any]:
        return {"sealed": self.keyring.seal(value, f"{app}/{name}"), "digest": self.keyring.digest(value),
                "created_at": created, "updated_at": updated}

    async def reseal(self) -> int:
        """Seal what was stored in clear (before sealing) or under an older key; returns how many."""
        count = 0
        for app, secrets in list(self.state.secrets.items()):
            stale = [name for name, item in secrets.values.items()
                     if "sealed" not in item or not self.keyring.sealed_with_current(str(item["sealed"]))]
            if not stale:
                continue
            async with self.state.lock:
                current = copy.deepcopy(self.state.secrets[app])
                for name in stale:
                    item = current.values[name]
                    current.values[name] = self._sealed(app, name, self._open(app, name, item),
                                                        item["created_at"], item["updated_at"])
                await self.state.save(current)
            count += len(stale)
        return count

    async def set(self, app: str, values: Any) -> dict[str, Any]:
        if not isinstance(values, dict) or not values:
            raise bad_request("body must be {\"values\": {\"NAME\": \"value\", ...}}")
        for name, value in values.items():
            if not isinstance(name, str) or not NAME.match(name):
                raise bad_request(f"secret name {name!r}: letters, digits and underscores, not starting with a digit")
            if name.startswith("FLY_"):
                raise bad_request(f"secret name {name!r}: names starting with FLY_ are reserved")
            if value is not None and not isinstance(value, str):
                raise bad_request(f"secret {name}: the value must be a string of at most 64 KB (null unsets it)")
            if value is not None:
                # It becomes an environment variable of every machine of the app: a NUL would break every start.
                text_value(value, f"secret {name}", MAX_VALUE_BYTES)
        async with self.state.lock:
            current = copy.deepcopy(self._app(app))
            now = time.time()
            for name, value in values.items():
                if value is None:
                    current.values.pop(name, None)
                    continue
                created = current.values.get(name, {}).get("created_at", now)
                current.values[name] = self._sealed(app, name, value, created, now)
            current.version += 1
            await self.state.save(current)
        return current.to_api()

    async def unset(self, app: str, name: str) -> dict[str, Any]:
        current = self._app(app)
        if name not in current.values:
            raise not_found(f"secret {name!r} is not set on app {app!r}")
        await self.set(app, {name: None})
        return {"version": self.state.secrets[app].version}
