"""flyctl's `--port` flag: `[EXTERNAL:]INTERNAL[/PROTOCOL][:HANDLER[,HANDLER...]]` -> machine services.

Examples: `80:8080/tcp:http`, `443:8080/tcp:http,tls`, `5432/tcp`, `8080`. Several flags for the same
internal port and protocol become one service with several ports.
"""

from __future__ import annotations

import re
from typing import Any

from roost.core.errors import bad_request

HANDLERS = {"http", "tls", "pg_tls", "proxy_proto", "edge_http"}
_SPEC = re.compile(r"^(?:(?P<ext>\d+(?:-\d+)?):)?(?P<int>\d+)(?:/(?P<proto>[a-z]+))?(?::(?P<handlers>[a-z_,]+))?$")

EXAMPLE = "80:8080/tcp:http"


def parse_port(spec: str) -> tuple[int, str, dict[str, Any]]:
    """(internal port, protocol, port entry) for one flag value; raises a clear error on a bad one."""
    m = _SPEC.match(spec.strip())
    if not m:
        raise bad_request(f"invalid port mapping {spec!r}: expected [EXTERNAL:]INTERNAL[/PROTOCOL][:HANDLERS], "
                          f"e.g. {EXAMPLE}")
    internal = int(m.group("int"))
    protocol = m.group("proto") or "tcp"
    if protocol not in ("tcp", "udp"):
        raise bad_request(f"invalid port mapping {spec!r}: protocol must be tcp or udp, not {protocol!r}")
    if not 1 <= internal <= 65535:
        raise bad_request(f"invalid port mapping {spec!r}: internal port must be 1-65535")
    entry: dict[str, Any] = {}
    ext = m.group("ext")
    if ext:
        if "-" in ext:
            start, end = (int(x) for x in ext.split("-", 1))
            if not 1 <= start <= end <= 65535:
                raise bad_request(f"invalid port mapping {spec!r}: bad external port range")
            entry["start_port"], entry["end_port"] = start, end
        else:
            port = int(ext)
            if not 1 <= port <= 65535:
                raise bad_request(f"invalid port mapping {spec!r}: external port must be 1-65535")
            entry["port"] = port
    else:
        entry["port"] = internal
    handlers = [h for h in (m.group("handlers") or "").split(",") if h]
    unknown = [h for h in handlers if h not in HANDLERS]
    if unknown:
        raise bad_request(f"invalid port mapping {spec!r}: unknown handler {unknown[0]!r} "
                          f"(known: {', '.join(sorted(HANDLERS))})")
    if handlers:
        entry["handlers"] = handlers
    return internal, protocol, entry


def services_from_ports(specs: list[str]) -> list[dict[str, Any]]:
    services: dict[tuple[int, str], dict[str, Any]] = {}
    for spec in specs:
        internal, protocol, entry = parse_port(spec)
        service = services.setdefault((internal, protocol),
                                      {"protocol": protocol, "internal_port": internal, "ports": []})
        service["ports"].append(entry)
    return list(services.values())
