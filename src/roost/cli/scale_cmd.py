"""`roost scale count|show`: how many machines run, and where (flyctl's rules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from roost.cli.appconfig import APP_OPT, CONFIG_OPT, app_name, config_path, load_config, say
from roost.cli.output import CliError, command_group, print_json, print_table
from roost.client.api import Api
from roost.config.machines import process_groups

scale_app = command_group(help="Change how many machines run, and where.")


def register(app: typer.Typer) -> None:
    app.add_typer(scale_app, name="scale")


@scale_app.command("count")
def scale_count(
    counts: list[str] = typer.Argument(..., help="N, +N, -N, or GROUP=N ..."),
    app_: str = APP_OPT,
    config: Path = CONFIG_OPT,
    region: str = typer.Option(None, "--region", "-r", help="Comma-separated regions (N is the total over them)."),
    group: str = typer.Option(None, "--process-group", "-g", help="The process group (default: app)."),
    max_per_region: int = typer.Option(-1, "--max-per-region", help="At most this many per region."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Scale a process group to N machines over the listed regions (flyctl's rules)."""
    from roost.deploy.scale import execute, plan_scale

    cfg = load_config(config_path(config), required=False)
    name = app_name(app_, cfg)
    wanted: dict[str, str] = {}
    for item in counts:
        key, sep, value = item.partition("=")
        if sep:
            wanted[key] = value
        elif len(counts) == 1:
            wanted[group or (process_groups(cfg)[0] if cfg and len(process_groups(cfg)) == 1 else "app")] = item
        else:
            raise CliError(f"invalid count {item!r}: with several groups use GROUP=N")
    regions = [r.strip() for r in region.split(",") if r.strip()] if region else None
    api = Api()
    try:
        plans = plan_scale(api, name, wanted, regions, max_per_region, cfg)
    except CliError:
        raise
    except Exception as exc:
        message = getattr(exc, "message", None)
        if message:
            raise CliError(message) from None
        raise
    say(f"App {name!r} is going to be scaled according to this plan:")
    for gp in plans:
        for change in gp.changes:
            if change.delta:
                verb = "+" if change.delta > 0 else ""
                say(f"  {verb}{change.delta} machines for group {gp.group!r} in region {change.region!r} "
                    f"({change.current} -> {change.target})")
    if not any(c.delta for gp in plans for c in gp.changes):
        say("  nothing to change")
        return
    if not yes and not typer.confirm("Scale?"):
        raise CliError("not scaled")
    created, destroyed = execute(api, name, plans, say)
    say(f"Scaled {name}: {len(created)} created, {len(destroyed)} destroyed.")


@scale_app.command("vm")
def scale_vm(
    size: str = typer.Argument(..., help="A named size: shared-cpu-1x ... shared-cpu-8x, performance-1x ... "
                                         "performance-16x ('roost platform vm-sizes')."),
    memory: int = typer.Option(None, "--vm-memory", "--memory", help="Memory in MB (default: the size's)."),
    app_: str = APP_OPT, config: Path = CONFIG_OPT,
    group: str = typer.Option(None, "--process-group", "-g", help="Only this process group (default: all)."),
    wait_timeout: int = typer.Option(300, "--wait-timeout", help="Seconds each machine has to be healthy."),
) -> None:
    """Give the app's machines a new size, one running machine at a time (flyctl's rolling update)."""
    _resize(app_, config, size, memory, group, wait_timeout)


@scale_app.command("memory")
def scale_memory(
    memory: int = typer.Argument(..., help="Memory in MB, a multiple of 256."),
    app_: str = APP_OPT, config: Path = CONFIG_OPT,
    group: str = typer.Option(None, "--process-group", "-g", help="Only this process group (default: all)."),
    wait_timeout: int = typer.Option(300, "--wait-timeout", help="Seconds each machine has to be healthy."),
) -> None:
    """Give the app's machines more or less memory, keeping their cpus, one running machine at a time."""
    _resize(app_, config, None, memory, group, wait_timeout)


def _resize(app_: str | None, config: Path | None, size: str | None, memory: int | None, group: str | None,
            wait_timeout: int) -> None:
    from roost.deploy.resize import resize

    name = app_name(app_, load_config(config_path(config), required=False) if not app_ else None)
    what = " and ".join(x for x in (size, f"{memory} MB" if memory else None) if x)
    say(f"Scaling {name}{f' (group {group})' if group else ''} to {what}")
    updated = resize(Api(), name, size, memory, group, say, float(wait_timeout))
    if updated:
        say(f"Scaled {name}: {len(updated)} machine{'s' if len(updated) != 1 else ''} updated.")


@scale_app.command("show")
def scale_show(app_: str = APP_OPT, config: Path = CONFIG_OPT,
               json_out: bool = typer.Option(False, "--json", "-j")) -> None:
    """Machines per process group and region, with their size."""
    from roost.deploy.runner import group_of, managed_machines

    name = app_name(app_, load_config(config_path(config), required=False) if not app_ else None)
    machines = managed_machines(Api(), name)
    groups: dict[str, dict[str, Any]] = {}
    for m in machines:
        g = groups.setdefault(group_of(m), {"count": 0, "regions": {}, "guest": m["config"].get("guest")})
        g["count"] += 1
        g["regions"][m["region"]] = g["regions"].get(m["region"], 0) + 1
    if json_out:
        print_json(groups)
        return
    print_table(["PROCESS", "COUNT", "KIND", "CPUS", "MEMORY", "REGIONS"],
                [[g, v["count"], (v["guest"] or {}).get("cpu_kind"), (v["guest"] or {}).get("cpus"),
                  f"{(v['guest'] or {}).get('memory_mb')} MB",
                  ",".join(f"{r}({n})" for r, n in sorted(v["regions"].items()))] for g, v in sorted(groups.items())])
