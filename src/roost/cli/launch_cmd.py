"""`roost launch`: create an app (and a fly.toml with Fly's launch defaults), then deploy it."""

from __future__ import annotations

from pathlib import Path

import typer

from roost.cli.appconfig import CONFIG_OPT, config_path, load_config, say
from roost.cli.deploy_cmd import run_deploy
from roost.cli.output import CliError
from roost.client.api import Api

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



def _default_region(api: Api) -> str:
    hosts = api.get("/v1/hosts")
    if not hosts:
        raise CliError("the fleet has no hosts: pass --region")
    return str(hosts[0]["region"])


def register(app: typer.Typer) -> None:
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
            run_deploy(api, cfg, app_, path.parent, None, ha, None)
