"""`roost hosts list|cordon|uncordon|join-token` and `roost platform regions`."""

from __future__ import annotations

import typer

from roost.cli.output import command_group, console, print_json, print_table
from roost.client.api import Api

hosts_app = command_group(help="The fleet's hosts.")
platform_app = command_group(help="Platform information.")


def register(app: typer.Typer) -> None:
    app.add_typer(hosts_app, name="hosts")
    app.add_typer(platform_app, name="platform")


@hosts_app.command("join-token")
def join_token(expiry: str = typer.Option("1h", "--expiry", "-x", help="How long it may wait to be used."),
               json_out: bool = typer.Option(False, "--json", "-j")) -> None:
    """A one-time token for a new host: 'ROOST_JOIN_TOKEN=... roost agent ...' joins with it and keeps a
    credential of its own (it never holds the fleet's token)."""
    made = Api().post("/v1/tokens", json={"kind": "join", "expiry": expiry, "name": "join"})
    if json_out:
        print_json(made)
        return
    console.print(f"One-time join token {made['id']} (expires {made['expires_at']}); give it to the new host as "
                  "ROOST_JOIN_TOKEN:", highlight=False)
    print(made["token"])


@hosts_app.command("list")
def list_hosts(json_out: bool = typer.Option(False, "--json", "-j")) -> None:
    """List hosts with their status, capacity and machines."""
    hosts = Api().get("/v1/hosts")
    if json_out:
        print_json(hosts)
        return
    print_table(["ID", "REGION", "ADDRESS", "STATUS", "CORDONED", "MACHINES", "CPU (m)", "MEMORY MB", "LAST BEAT"],
                [[h["id"], h["region"], h["address"], h["status"], "yes" if h["cordoned"] else "",
                  h["used"]["machines"], f"{h['used']['cpus']}/{h['capacity']['cpus'] * 1000}",
                  f"{h['used']['memory_mb']}/{h['capacity']['memory_mb']}", f"{h.get('last_heartbeat_age_s', '')}s ago"]
                 for h in hosts])


@hosts_app.command("cordon")
def cordon(host_id: str) -> None:
    """Take a host out of placement (for maintenance); its machines keep running."""
    Api().post(f"/v1/hosts/{host_id}/cordon")
    console.print(f"host {host_id} cordoned: no new machines will be placed on it")


@hosts_app.command("uncordon")
def uncordon(host_id: str) -> None:
    """Put a host back into placement."""
    Api().post(f"/v1/hosts/{host_id}/uncordon")
    console.print(f"host {host_id} uncordoned")


@platform_app.command("regions")
def regions(json_out: bool = typer.Option(False, "--json", "-j")) -> None:
    """List region codes (and which have hosts in this fleet)."""
    data = Api().get("/v1/platform/regions")["regions"]
    if json_out:
        print_json(data)
        return
    print_table(["CODE", "NAME", "HOSTS"], [[r["code"], r["name"], r["hosts"] or ""] for r in data])


@platform_app.command("vm-sizes")
def vm_sizes(json_out: bool = typer.Option(False, "--json", "-j")) -> None:
    """The named machine sizes (`roost scale vm SIZE`, fly.toml's [[vm]] size) and the memory each takes."""
    from roost.core.machine_config import GUEST_PRESETS
    from roost.plan.resize import memory_range

    sizes = [(name, kind, cpus, memory, memory_range(kind, cpus))
             for name, (kind, cpus, memory) in GUEST_PRESETS.items()]
    if json_out:
        print_json([{"name": name, "cpu_kind": kind, "cpus": cpus, "memory_mb": memory, "memory_range_mb": list(rng)}
                    for name, kind, cpus, memory, rng in sizes])
        return
    print_table(["NAME", "CPU KIND", "CPUS", "MEMORY", "MEMORY RANGE"],
                [[name, kind, cpus, f"{memory} MB", f"{rng[0]}-{rng[1]} MB"]
                 for name, kind, cpus, memory, rng in sizes])
