"""What a machine's config says about its services, in the terms the proxy routes by."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from roost.core.machine_config import MAX_BODY_KEY, parse_autostop

DEFAULT_SOFT_LIMIT = 20


@dataclass(frozen=True)
class ServiceSpec:
    internal_port: int
    protocol: str
    ports: tuple[int, ...]  # public ports
    http: bool  # has the http handler: routed by Host header on the edge's HTTP listener
    autostop: str  # off | stop | suspend
    autostart: bool
    min_machines_running: int
    concurrency_type: str  # connections | requests
    soft_limit: int
    hard_limit: int | None  # None: no hard limit (Fly's default since 2024)
    has_checks: bool
    max_request_body: int | None = None  # bytes; None: no limit (Fly sets none)
    balancing: str = "latency"  # among equals: latency-aware two choices, or Fly's "random"


def services_of(config: dict[str, Any]) -> list[ServiceSpec]:
    out = []
    for service in config.get("services") or []:
        if not isinstance(service, dict) or not isinstance(service.get("internal_port"), int):
            continue
        ports: list[int] = []
        http = False
        max_body: int | None = None
        for port in service.get("ports") or []:
            if not isinstance(port, dict):
                continue
            handlers = port.get("handlers") or []
            http = http or "http" in handlers
            limit = (port.get("http_options") or {}).get(MAX_BODY_KEY)
            if isinstance(limit, int) and (max_body is None or limit < max_body):
                max_body = limit
            if isinstance(port.get("port"), int):
                ports.append(port["port"])
            elif isinstance(port.get("start_port"), int) and isinstance(port.get("end_port"), int):
                ports.extend(range(port["start_port"], min(port["end_port"], port["start_port"] + 64) + 1))
        concurrency = service.get("concurrency") or {}
        try:
            autostop = parse_autostop(service.get("autostop"))
        except Exception:
            autostop = "off"
        autostart = service.get("autostart")
        if autostart is None:
            autostart = not config.get("disable_machine_autostart", False)
        soft = concurrency.get("soft_limit")
        hard = concurrency.get("hard_limit")
        out.append(ServiceSpec(
            internal_port=service["internal_port"], protocol=service.get("protocol") or "tcp",
            ports=tuple(ports), http=http, autostop=autostop, autostart=bool(autostart),
            min_machines_running=int(service.get("min_machines_running") or 0),
            concurrency_type=concurrency.get("type") or "connections",
            soft_limit=int(soft) if soft else DEFAULT_SOFT_LIMIT,
            hard_limit=int(hard) if hard else None,
            has_checks=bool(service.get("checks")), max_request_body=max_body,
            balancing="random" if concurrency.get("balancing") == "random" else "latency",
        ))
    return out


def http_service(services: list[ServiceSpec]) -> ServiceSpec | None:
    """The service an HTTP request for the app goes to: the http-handled one on port 80, else any
    http-handled one (Fly's http_service expands to 80 [http] and 443 [http, tls])."""
    http = [s for s in services if s.http]
    for s in http:
        if 80 in s.ports:
            return s
    return http[0] if http else None
