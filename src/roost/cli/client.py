"""The CLI's client for the Machines API: one pooled connection, the server's errors as one clear line."""

from __future__ import annotations

from typing import Any

import httpx

from roost.cli.common import api_target
from roost.cli.output import CliError


class Api:
    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 70.0) -> None:
        if url is None or token is None:
            url, token = api_target()
        self.url = url.rstrip("/")
        self.token = token
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"},
                                 timeout=httpx.Timeout(timeout, connect=5.0), trust_env=False)

    def request(self, method: str, path: str, *, json: Any = None, params: Any = None, content: Any = None,
                headers: dict[str, str] | None = None, ok_codes: tuple[int, ...] = ()) -> Any:
        try:
            response = self.http.request(method, path, json=json, params=params, content=content, headers=headers)
        except httpx.ConnectError:
            raise CliError(f"cannot reach the Roost server at {self.url}: is it running? "
                           "('roost dev status' shows the local fleet)") from None
        except httpx.HTTPError as exc:
            raise CliError(f"talking to {self.url}: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 400 and response.status_code not in ok_codes:
            try:
                message = response.json().get("error") or response.text
            except ValueError:
                message = response.text.strip() or response.reason_phrase
            raise CliError(message)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.request("POST", path, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)

    def wait_state(self, app: str, machine_id: str, state: str, timeout: float) -> dict[str, Any]:
        """Wait (server-side, in chunks of up to 60 s) until the machine reaches `state`."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CliError(f"timed out waiting for machine {machine_id} to be {state}")
            chunk = max(1, min(60, int(remaining)))
            response = self.http.get(f"/v1/apps/{app}/machines/{machine_id}/wait",
                                     params={"state": state, "timeout": chunk}, timeout=chunk + 10)
            if response.status_code == 200:
                return dict(response.json())
            if response.status_code != 408:
                try:
                    raise CliError(response.json().get("error", response.text))
                except ValueError:
                    raise CliError(response.text) from None
