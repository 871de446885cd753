"""`roost deploy` and `roost releases`: roll fly.toml out, and the record of it."""

from __future__ import annotations

from pathlib import Path

import typer

from roost.cli.appconfig import APP_OPT, CONFIG_OPT, app_name, config_path, load_config, say
from roost.cli.output import CliError, print_json, print_table, progress
from roost.client.api import Api
from roost.config.flytoml import AppConfig
from roost.core.regions import is_known


def run_deploy(api: Api, cfg: AppConfig, app_: str, directory: Path, strategy: str | None, ha: bool,
            image: str | None, wait_timeout: float | None = None, standby_region: str | None = None) -> None:
    from roost.deploy.runner import Deployer, DeployOptions, wait_timeout_of

    if standby_region is not None and not is_known(standby_region):
        raise CliError(f"unknown region {standby_region!r} for --standby-region; see 'roost platform regions'")
    if not api.exists(f"/v1/apps/{app_}"):
        region = f" --primary-region {cfg.primary_region}" if cfg.primary_region else ""
        raise CliError(f"app {app_!r} not found: create it with 'roost apps create {app_}{region}' and deploy again, "
                       "or run 'roost launch', which creates it and deploys")
    options = DeployOptions(strategy=strategy, ha=ha, image=image,
                            wait_timeout=wait_timeout or wait_timeout_of(cfg), standby_region=standby_region)
    with progress(f"Deploying {app_}..."):
        result = Deployer(api, cfg, app_, directory, options, say).run()
    say(f"Deployed v{result.version} of {app_}: {len(result.created)} created, {len(result.updated)} updated, "
        f"{len(result.destroyed)} destroyed.")


def register(app: typer.Typer) -> None:
    @app.command("deploy")
    def deploy(
        config: Path = CONFIG_OPT,
        app_: str = APP_OPT,
        strategy: str = typer.Option(None, "--strategy", help="rolling (default), immediate, canary, bluegreen."),
        ha: bool = typer.Option(True, "--ha/--no-ha", help="New groups: 2 machines or 1 + standby (--ha=false: 1)."),
        image: str = typer.Option(None, "--image", "-i", help="Deploy this image instead of building the directory."),
        wait_timeout: float = typer.Option(None, "--wait-timeout", help="Seconds to wait for each machine."),
        standby_region: str = typer.Option(
            None, "--standby-region",
            help="New groups without services: put the worker's standby in this region, so that it survives "
                 "the loss of the worker's whole region (default: the worker's region, on another host)."),
    ) -> None:
        """Deploy fly.toml: create machines for new groups, update the others."""
        if strategy and strategy not in ("rolling", "immediate", "canary", "bluegreen"):
            raise CliError(f"invalid --strategy {strategy!r}: rolling, immediate, canary or bluegreen")
        path = config_path(config)
        cfg = load_config(path)
        assert cfg is not None
        run_deploy(Api(), cfg, app_name(app_, cfg), path.parent, strategy, ha, image, wait_timeout, standby_region)

    releases_app = typer.Typer(invoke_without_command=True, rich_markup_mode=None,
                               help="The app's deploys; roll back to an earlier one.")
    app.add_typer(releases_app, name="releases")

    @releases_app.callback()
    def releases(ctx: typer.Context, app_: str = APP_OPT, config: Path = CONFIG_OPT,
                 json_out: bool = typer.Option(False, "--json", "-j")) -> None:
        """List the app's deploys (newest first); 'roost releases rollback [VERSION]' redeploys an earlier one."""
        if ctx.invoked_subcommand is not None:
            return
        name = app_name(app_, load_config(config_path(config), required=False) if not app_ else None)
        data = Api().get(f"/v1/apps/{name}/releases")
        if json_out:
            print_json(data)
            return
        print_table(["VERSION", "STATUS", "STRATEGY", "IMAGE", "CREATED", "DESCRIPTION"],
                    [[f"v{r['version']}", r["status"], r["strategy"], r["image"], r["created_at"], r["description"]]
                     for r in data])

    @releases_app.command("rollback")
    def rollback(version: int = typer.Argument(None, help="The release to go back to (default: the one before "
                                                          "the current)."),
                 app_: str = APP_OPT, config: Path = CONFIG_OPT,
                 strategy: str = typer.Option(None, "--strategy", help="rolling (default), immediate, canary, "
                                                                        "bluegreen."),
                 wait_timeout: float = typer.Option(None, "--wait-timeout",
                                                    help="Seconds to wait for each machine.")) -> None:
        """Deploy an earlier release's image again, with fly.toml as it is now (a new release records it)."""
        path = config_path(config)
        cfg = load_config(path)
        assert cfg is not None
        name = app_name(app_, cfg)
        api = Api()
        done = sorted((r for r in api.get(f"/v1/apps/{name}/releases") if r["status"] == "complete"),
                      key=lambda r: int(r["version"]))
        if version is None:
            if len(done) < 2:
                raise CliError(f"app {name!r} has no earlier complete release to roll back to")
            target = done[-2]
        else:
            target = next((r for r in done if int(r["version"]) == version), None)
            if target is None:
                raise CliError(f"no complete release v{version} of app {name!r}: 'roost releases -a {name}' lists them")
        say(f"Rolling {name} back to v{target['version']} (image {target['image']})")
        run_deploy(api, cfg, name, path.parent, strategy, True, str(target["image"]), wait_timeout)
