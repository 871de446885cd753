"""App secrets: set, list (names and digests only), unset. Delivered to machines as environment variables
when they start (so a deploy, or any restart, applies new values); never shown by the API, logs or feed."""

from __future__ import annotations

import copy
import hashlib
import re
import time
from typing import Any

from roost.core.errors import bad_request, not_found
from roost.core.model import AppSecrets
from roost.server.state import ClusterState

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_VALUE_BYTES = 64 * 1024


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class SecretService:
    def __init__(self, state: ClusterState) -> None:
        self.state = state

    def _app(self, app: str) -> AppSecrets:
        if app not in self.state.apps:
            raise not_found(f"app {app!r} not found")
        return self.state.secrets.get(app) or AppSecrets(app)

    def list(self, app: str) -> dict[str, Any]:
        return self._app(app).to_api()

    def env(self, app: str) -> dict[str, str]:
        secrets = self.state.secrets.get(app)
        return secrets.env() if secrets else {}

    async def set(self, app: str, values: Any) -> dict[str, Any]:
        if not isinstance(values, dict) or not values:
            raise bad_request("body must be {\"values\": {\"NAME\": \"value\", ...}}")
        for name, value in values.items():
            if not isinstance(name, str) or not NAME.match(name):
                raise bad_request(f"secret name {name!r}: letters, digits and underscores, not starting with a digit")
            if name.startswith("FLY_"):
                raise bad_request(f"secret name {name!r}: names starting with FLY_ are reserved")
            if value is not None and (not isinstance(value, str) or len(value.encode("utf-8", "surrogatepass"))
                                      > MAX_VALUE_BYTES):
                raise bad_request(f"secret {name}: the value must be a string of at most 64 KB (null unsets it)")
            if value is not None and ("\x00" in value or not _utf8(value)):
                # It becomes an environment variable of every machine of the app: a NUL would break every start.
                raise bad_request(f"secret {name}: the value must be text without NUL characters")
        async with self.state.lock:
            current = copy.deepcopy(self._app(app))
            now = time.time()
            for name, value in values.items():
                if value is None:
                    current.values.pop(name, None)
                    continue
                digest = hashlib.sha256(value.encode()).hexdigest()[:16]
                created = current.values.get(name, {}).get("created_at", now)
                current.values[name] = {"value": value, "digest": digest, "created_at": created, "updated_at": now}
            current.version += 1
            await self.state.save(current)
        return current.to_api()

    async def unset(self, app: str, name: str) -> dict[str, Any]:
        current = self._app(app)
        if name not in current.values:
            raise not_found(f"secret {name!r} is not set on app {app!r}")
        await self.set(app, {name: None})
        return {"version": self.state.secrets[app].version}
