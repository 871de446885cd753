"""The client for the Machines API (used by the CLI, deploy, scale and drills): one pooled connection, the server's
errors as one clear line, and where to find the server."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import httpx

from roost.client.errors import UserError
from roost.failover import parse_servers, server_list
from roost.tls import CA_ENV, TlsError, Trust

DEFAULT_HOME = Path(os.environ.get("ROOST_HOME", Path.home() / ".roost"))
DEFAULT_FLEET_DIR = DEFAULT_HOME / "dev"


def fleet_file(data_dir: Path | None = None) -> Path:
    return (data_dir or Path(os.environ.get("ROOST_DEV_DIR", DEFAULT_FLEET_DIR))) / "fleet.json"


def api_target() -> tuple[str, str]:
    """(server URL, token) from ROOST_API_URL/ROOST_API_TOKEN, else from the running dev fleet."""
    url = os.environ.get("ROOST_API_URL")
    token = os.environ.get("ROOST_API_TOKEN")
    if url and token:
        return url.rstrip("/"), token
    path = fleet_file()
    if path.exists():
        try:
            fleet = json.loads(path.read_text())
            return (url or server_list(fleet)).rstrip("/"), token or fleet["token"]
        except (ValueError, KeyError) as exc:
            raise UserError(f"{path} is damaged ({exc}); run 'roost dev down' and 'roost dev up' again") from None
    raise UserError("no Roost server found: set ROOST_API_URL and ROOST_API_TOKEN, or start a local fleet "
                   "with 'roost dev up'")


def api_trust() -> Trust:
    """Whom the CLI trusts: ROOST_CA_FILE, else the running dev fleet's CA, else the system's CAs."""
    ca = os.environ.get(CA_ENV)
    if not ca:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            ca = json.loads(fleet_file().read_text()).get("ca")
    if ca and not Path(ca).is_file():
        raise UserError(f"no CA file at {ca}: set ROOST_CA_FILE to the fleet CA's certificate (ca.pem)")
    return Trust(Path(ca) if ca else None)


class Api:
    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 70.0) -> None:
        if url is None or token is None:
            url, token = api_target()
        self.url = url.rstrip("/")
        self.token = token
        trust = api_trust()
        servers = parse_servers(self.url)  # ROOST_API_URL may list the control plane's replicas
        self.url = servers[0] if servers else self.url
        try:
            for server in servers or (self.url,):
                trust.check_url(server, "the server")
            transport = trust.with_servers(servers).transport()
        except TlsError as exc:
            raise UserError(str(exc)) from None
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"},
                                 timeout=httpx.Timeout(timeout, connect=5.0), trust_env=False, transport=transport)

    def request(self, method: str, path: str, *, json: Any = None, params: Any = None, content: Any = None,
                headers: dict[str, str] | None = None, ok_codes: tuple[int, ...] = ()) -> Any:
        response = self._send(method, path, json=json, params=params, content=content, headers=headers)
        if response.status_code >= 400 and response.status_code not in ok_codes:
            raise UserError(_error_of(response))
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return self.http.request(method, path, **kw)
        except httpx.ConnectError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "WRONG_VERSION_NUMBER" in str(exc):
                raise UserError(f"TLS with {self.url} failed ({exc}): set ROOST_CA_FILE to the fleet CA "
                                "(ca.pem) and use https:// for a fleet that speaks TLS") from None
            raise UserError(f"cannot reach the Roost server at {self.url}: is it running? "
                           "('roost dev status' shows the local fleet)") from None
        except httpx.HTTPError as exc:
            raise UserError(f"talking to {self.url}: {type(exc).__name__}: {exc}") from None

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def exists(self, path: str) -> bool:
        """Whether GET `path` finds something (404: no); other errors are raised as usual."""
        response = self._send("GET", path)
        if response.status_code == 404:
            return False
        if response.status_code >= 400:
            raise UserError(_error_of(response))
        return True

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
                raise UserError(f"timed out waiting for machine {machine_id} to be {state}")
            chunk = max(1, min(60, int(remaining)))
            response = self.http.get(f"/v1/apps/{app}/machines/{machine_id}/wait",
                                     params={"state": state, "timeout": chunk}, timeout=chunk + 10)
            if response.status_code == 200:
                return dict(response.json())
            if response.status_code != 408:
                raise UserError(_error_of(response))


def _error_of(response: httpx.Response) -> str:
    """The API's one-line error (`{"error": ...}`), or what the response says otherwise."""
    try:
        body = response.json()
        message = body.get("error") if isinstance(body, dict) else None
        return str(message or response.text)
    except ValueError:
        return response.text.strip() or response.reason_phrase
