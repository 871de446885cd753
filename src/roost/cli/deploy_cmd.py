"""`roost launch|deploy|releases|status|scale|secrets|config|volumes`: apps described by fly.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from roost.cli.client import Api
from roost.cli.output import CliError, console, err_console, print_json, print_table, progress
from roost.config.flytoml import AppConfig, ConfigError, load_text
from roost.config.machines import machine_config, process_groups

CONFIG_OPT = typer.Option(None, "--config", "-c", help="Path to fly.toml (default: ./fly.toml).")
APP_OPT = typer.Option(None, "--app", "-a", help="App name (default: fly.toml's app).")

scale_app = typer.Typer(no_args_is_help=True, help="Change how many machines run, and where.")
secrets_app = typer.Typer(no_args_is_help=True, help="App secrets, given to machines as environment variables.")
config_app = typer.Typer(no_args_is_help=True, help="fly.toml: validate and show.")
volumes_app = typer.Typer(no_args_is_help=True, help="Volumes: a directory on one host, one machine at a time.")

DEFAULT_FLY_TOML = """app = "{app}"
primary_region = "{region}"

[http_service]
  internal_port = 8080
  force_https = true
  auto_stop_machines = "stop"
  auto_start_machines = true
  min_machines_running = 0
  processes = ["app"]

[[vm]]
  memory = "256mb"
  cpu_kind = "shared"
  cpus = 1
"""


def config_path(value: Path | None) -> Path:
    return (value or Path("fly.toml")).resolve()


def load_config(path: Path, required: bool = True) -> AppConfig | None:
    if not path.exists():
        if required:
            raise CliError(f"{path} not found: run 'roost launch' to create one, or pass -c PATH")
        return None
    try:
        cfg = load_text(path.read_text(), str(path))
    except ConfigError as exc:
        raise CliError(exc.message) from None
    for warning in cfg.warnings:
        err_console.print(f"[yellow]Warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    return cfg


def app_name(app: str | None, cfg: AppConfig | None) -> str:
    name = app or (cfg.app if cfg else "")
    if not name:
        raise CliError("no app name: pass -a APP, or set app in fly.toml")
    return name


def say(message: str) -> None:
    console.print(message, highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(scale_app, name="scale")
    app.add_typer(secrets_app, name="secrets")
    app.add_typer(config_app, name="config")
    app.add_typer(volumes_app, name="volumes")
    app.add_typer(volumes_app, name="volume", hidden=True)

    @app.command("launch")
    def launch(
        name: str = typer.Option(None, "--name", help="App name (default: fly.toml's, else the directory's)."),
        region: str = typer.Option(None, "--region", "-r", help="Primary region."),
        org: str = typer.Option("personal", "--org"),
        no_deploy: bool = typer.Option(False, "--no-deploy", help="Create the app and fly.toml only."),
        config: Path = CONFIG_OPT,
        ha: bool = typer.Option(True, "--ha/--no-ha", help="Two machines per service group (or a standby)."),
    ) -> None:
        """Create an app (and a fly.toml with Fly's launch defaults when there is none), then deploy it."""
        path = config_path(config)
        api = Api()
        cfg = load_config(path, required=False)
        app_ = name or (cfg.app if cfg else "") or path.parent.name.lower().replace("_", "-")
        primary = region or (cfg.primary_region if cfg else "") or _default_region(api)
        if cfg is None:
            path.write_text(DEFAULT_FLY_TOML.format(app=app_, region=primary))
            say(f"Wrote {path} (http_service on 8080, auto_stop_machines = \"stop\", min_machines_running = 0)")
            cfg = load_config(path)
        existing = {a["name"] for a in api.get("/v1/apps")["apps"]}
        if app_ not in existing:
            api.post("/v1/apps", json={"app_name": app_, "org_slug": org, "primary_region": primary})
            say(f"Created app {app_} in {primary}")
        else:
            api.request("PATCH", f"/v1/apps/{app_}", json={"primary_region": primary})
        if not no_deploy:
            assert cfg is not None
            _deploy(api, cfg, app_, path.parent, None, ha, None)

    @app.command("deploy")
    def deploy(
        config: Path = CONFIG_OPT,
        app_: str = APP_OPT,
        strategy: str = typer.Option(None, "--strategy", help="rolling (default), immediate, canary, bluegreen."),
        ha: bool = typer.Option(True, "--ha/--no-ha", help="New groups: 2 machines or 1 + standby (--ha=false: 1)."),
        image: str = typer.Option(None, "--image", "-i", help="Deploy this image instead of building the directory."),
        wait_timeout: float = typer.Option(None, "--wait-timeout", help="Seconds to wait for each machine."),
    ) -> None:
        """Deploy fly.toml: create machines for new groups, update the others."""
        if strategy and strategy not in ("rolling", "immediate", "canary", "bluegreen"):
            raise CliError(f"invalid --strategy {strategy!r}: rolling, immediate, canary or bluegreen")
        path = config_path(config)
        cfg = load_config(path)
        assert cfg is not None
        _deploy(Api(), cfg, app_name(app_, cfg), path.parent, strategy, ha, image, wait_timeout)

    @app.command("releases")
    def releases(app_: str = APP_OPT, config: Path = CONFIG_OPT,
                 json_out: bool = typer.Option(False, "--json", "-j")) -> None:
        """List the app's deploys."""
        name = app_name(app_, load_config(config_path(config), required=False) if not app_ else None)
        data = Api().get(f"/v1/apps/{name}/releases")
        if json_out:
            print_json(data)
            return
        print_table(["VERSION", "STATUS", "STRATEGY", "IMAGE", "CREATED", "DESCRIPTION"],
                    [[f"v{r['version']}", r["status"], r["strategy"], r["image"], r["created_at"], r["description"]]
                     for r in data])

    @app.command("status")
    def status(app_: str = APP_OPT, config: Path = CONFIG_OPT,
               json_out: bool = typer.Option(False, "--json", "-j")) -> None:
        """The app, its image, and per process group its machines (like fly status)."""
        name = app_name(app_, load_config(config_path(config), required=False) if not app_ else None)
        api = Api()
        info = api.get(f"/v1/apps/{name}")
        machines = api.get(f"/v1/apps/{name}/machines")
        releases = api.get(f"/v1/apps/{name}/releases")
        if json_out:
            print_json({"app": info, "releases": releases[:1], "machines": machines})
            return
        image = releases[0]["image"] if releases else "-"
        say(f"App         {info['name']}\nPrimary     {info.get('primary_region') or '-'}\n"
            f"Image       {image}\nRelease     {('v' + str(releases[0]['version'])) if releases else '-'}")
        if not machines:
            say("No machines.")
            return
        rows = []
        for m in sorted(machines, key=lambda m: (_group(m), m["region"], m["id"])):
            checks = m.get("checks") or []
            passing = sum(1 for c in checks if c["status"] == "passing")
            mark = "†" if (m.get("config") or {}).get("standbys") else ""
            note = (m.get("roost") or {}).get("note") or ""
            rows.append([_group(m) or "-", m["id"] + mark, (m.get("config") or {}).get("metadata", {})
                         .get("fly_release_version", ""), m["region"], m.get("host_id"), m["state"],
                         f"{passing} passing / {len(checks)}" if checks else "", m["host_status"], note,
                         m["updated_at"]])
        print_table(["PROCESS", "ID", "VERSION", "REGION", "HOST", "STATE", "CHECKS", "HOST STATUS", "NOTE",
                     "LAST UPDATED"], rows)
        if any((m.get("config") or {}).get("standbys") for m in machines):
            say("† Standby machine (it will take over only in case of host hardware failure)")


def _group(m: dict[str, Any]) -> str:
    return str(((m.get("config") or {}).get("metadata") or {}).get("fly_process_group", ""))


def _default_region(api: Api) -> str:
    hosts = api.get("/v1/hosts")
    if not hosts:
        raise CliError("the fleet has no hosts: pass --region")
    return str(hosts[0]["region"])


def _deploy(api: Api, cfg: AppConfig, app_: str, directory: Path, strategy: str | None, ha: bool,
            image: str | None, wait_timeout: float | None = None) -> None:
    from roost.deploy.runner import Deployer, DeployOptions, wait_timeout_of

    options = DeployOptions(strategy=strategy, ha=ha, image=image,
                            wait_timeout=wait_timeout or wait_timeout_of(cfg))
    with progress(f"Deploying {app_}..."):
        result = Deployer(api, cfg, app_, directory, options, say).run()
    say(f"Deployed v{result.version} of {app_}: {len(result.created)} created, {len(result.updated)} updated, "
        f"{len(result.destroyed)} destroyed.")


# ---- scale ----


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


# ---- secrets ----


@secrets_app.command("set")
def secrets_set(pairs: list[str] = typer.Argument(..., help="NAME=VALUE ..."), app_: str = APP_OPT,
                config: Path = CONFIG_OPT,
                stage: bool = typer.Option(False, "--stage", help="Store only; apply with the next deploy.")) -> None:
    """Set secrets; running machines restart to pick them up unless --stage."""
    name = app_name(app_, load_config(config_path(config), required=False) if not app_ else None)
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"invalid secret {pair!r}: expected NAME=VALUE")
        values[key] = value
    api = Api()
    api.post(f"/v1/apps/{name}/secrets", json={"values": values})
    say(f"Set {', '.join(sorted(values))} on {name}.")
    if not stage:
        _restart_running(api, name)


def _restart_running(api: Api, name: str) -> None:
    for m in api.get(f"/v1/apps/{name}/machines"):
        if m["state"] == "started" and not (m.get("config") or {}).get("standbys"):
            api.post(f"/v1/apps/{name}/machines/{m['id']}/restart")
            api.wait_state(name, m["id"], "started", 120)
            say(f"  restarted {m['id']}")


@secrets_app.command("list")
def secrets_list(app_: str = APP_OPT, config: Path = CONFIG_OPT,
                 json_out: bool = typer.Option(False, "--json", "-j")) -> None:
    """Secret names and digests (never values)."""
    name = app_name(app_, load_config(config_path(config), required=False) if not app_ else None)
    data = Api().get(f"/v1/apps/{name}/secrets")["secrets"]
    if json_out:
        print_json(data)
        return
    print_table(["NAME", "DIGEST", "UPDATED"], [[s["name"], s["digest"], s["updated_at"]] for s in data])


@secrets_app.command("unset")
def secrets_unset(names: list[str] = typer.Argument(...), app_: str = APP_OPT, config: Path = CONFIG_OPT,
                  stage: bool = typer.Option(False, "--stage")) -> None:
    """Remove secrets; running machines restart unless --stage."""
    name = app_name(app_, load_config(config_path(config), required=False) if not app_ else None)
    api = Api()
    for secret in names:
        api.delete(f"/v1/apps/{name}/secrets/{secret}")
    say(f"Unset {', '.join(names)} on {name}.")
    if not stage:
        _restart_running(api, name)


# ---- config ----


@config_app.command("validate")
def config_validate(config: Path = CONFIG_OPT) -> None:
    """Load fly.toml as flyctl does; report errors, unknown and unsupported keys."""
    path = config_path(config)
    cfg = load_config(path)
    assert cfg is not None
    for group in process_groups(cfg):
        try:
            machine_config(cfg, group)
        except ConfigError as exc:
            raise CliError(exc.message) from None
    say(f"{path} is valid ({len(cfg.warnings)} warning{'s' if len(cfg.warnings) != 1 else ''}); "
        f"process groups: {', '.join(process_groups(cfg))}")


@config_app.command("show")
def config_show(config: Path = CONFIG_OPT, group: str = typer.Option(None, "--process-group", "-g"),
                json_out: bool = typer.Option(True, "--json/--toml-doc")) -> None:
    """The machine config each process group gets from fly.toml."""
    cfg = load_config(config_path(config))
    assert cfg is not None
    groups = [group] if group else process_groups(cfg)
    try:
        out = {g: machine_config(cfg, g, image="<image at deploy>") for g in groups}
    except ConfigError as exc:
        raise CliError(exc.message) from None
    if json_out:
        print_json(out)
    else:
        print_json(cfg.doc)


# ---- volumes ----


@volumes_app.command("list")
def volumes_list(app_: str = typer.Option(..., "--app", "-a"), json_out: bool = typer.Option(False, "--json", "-j")
                 ) -> None:
    """An app's volumes."""
    data = Api().get(f"/v1/apps/{app_}/volumes")
    if json_out:
        print_json(data)
        return
    print_table(["ID", "NAME", "SIZE", "REGION", "HOST", "ATTACHED TO", "CREATED"],
                [[v["id"], v["name"], f"{v['size_gb']} GB", v["region"], v["zone"], v.get("attached_machine_id", ""),
                  v["created_at"]] for v in data])


@volumes_app.command("create")
def volumes_create(name: str = typer.Argument(...), app_: str = typer.Option(..., "--app", "-a"),
                   region: str = typer.Option(None, "--region", "-r"), size: int = typer.Option(1, "--size", "-s"),
                   count: int = typer.Option(1, "--count", "-n", min=1, max=20)) -> None:
    """Create volumes (one per host: same-named volumes go to different hosts)."""
    api = Api()
    for _ in range(count):
        body: dict[str, Any] = {"name": name, "size_gb": size}
        if region:
            body["region"] = region
        v = api.post(f"/v1/apps/{app_}/volumes", json=body)
        say(f"Created {v['id']} ({name}, {size} GB) in {v['region']} on host {v['zone']}")


@volumes_app.command("destroy")
def volumes_destroy(volume_id: str = typer.Argument(...), app_: str = typer.Option(..., "--app", "-a"),
                    yes: bool = typer.Option(False, "--yes", "-y")) -> None:
    """Destroy a volume (its data is gone; volumes are not replicated)."""
    if not yes and not typer.confirm(f"Destroy volume {volume_id}? Its data is not replicated anywhere."):
        raise CliError("not destroyed")
    Api().delete(f"/v1/apps/{app_}/volumes/{volume_id}")
    say(f"Destroyed {volume_id}")

