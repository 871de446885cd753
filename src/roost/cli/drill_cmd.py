"""`roost drill FAULT -a APP`: rehearse a failure on the local fleet under load, and report what happened;
`roost drill all` runs every fault in turn, `roost drill chaos` random ones for a while."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from roost.cli.appconfig import APP
from roost.cli.common import DEFAULT_FLEET_DIR
from roost.cli.output import CliError, console, err_console, print_json
from roost.client.api import Api
from roost.core.units import parse_go_duration
from roost.dev.fleet import FleetError, read_fleet
from roost.drill.campaign import CampaignOptions, Chaos, run_all
from roost.drill.faults import FAULTS, DrillError
from roost.drill.render import html_all, html_chaos, html_report, print_all, print_chaos, print_report
from roost.drill.runner import Drill, DrillOptions
from roost.failover import server_list


def _seconds(value: str, flag: str) -> float:
    try:
        return float(value) if value.replace(".", "", 1).isdigit() else parse_go_duration(value)
    except ValueError:
        raise CliError(f"{flag}: invalid duration {value!r} (use forms like 500ms, 10s, 1m)") from None


def _finish(result: dict[str, Any], page: Callable[[dict[str, Any]], str],
            show: Callable[[dict[str, Any], Console], None], report: Path | None, json_out: bool) -> None:
    """Write the HTML report (when asked), print the result, and exit 1 when a check failed."""
    if report is not None:
        try:
            report.write_text(page(result))
        except OSError as exc:
            raise CliError(f"cannot write the report to {report}: {exc.strerror}") from None
    if json_out:
        print_json(result)
    else:
        show(result, console)
        if report is not None:
            console.print(f"  HTML report: {report}")
    if not result["passed"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    @app.command("drill")
    def drill(
        fault: str = typer.Argument(..., help=f"One of: {', '.join(FAULTS)}; or all (each in turn), or chaos "
                                              "(random faults at random times)."),
        app_name: str = APP,
        target: str = typer.Option(None, "--target", help="A machine ID, host ID or region, as the fault needs "
                                                          "(default: one the drill picks)."),
        rps: float = typer.Option(100.0, "--rps", help="Requests per second, sent open-loop."),
        duration: str = typer.Option("30s", "--duration", help="How long the load runs."),
        at: str = typer.Option("10s", "--at", help="When the fault happens, from the start of the load."),
        heal_after: str = typer.Option("10s", "--heal-after", help="How long the fault lasts before it is healed."),
        no_heal: bool = typer.Option(False, "--no-heal", help="Leave the fault until the end (it is healed then)."),
        path: str = typer.Option("/", "--path"),
        method: str = typer.Option("GET", "--method", "-X"),
        body: str = typer.Option(None, "--body", help="Request body; {n} is the request's number, {token} its "
                                                      "unique write text."),
        check_writes: str = typer.Option(None, "--check-writes", metavar="PATH",
                                         help="After the drill, read PATH (in the primary region) and count "
                                              "acknowledged writes that are not there."),
        client_region: str = typer.Option(None, "--client-region",
                                          help="Where the clients are (default: the target's region)."),
        timeout: str = typer.Option("5s", "--timeout", help="Each request's time limit."),
        expect_no_errors: bool = typer.Option(False, "--expect-no-errors", help="Fail if any request failed."),
        expect_shift_under: str = typer.Option(None, "--expect-shift-under",
                                               help="Fail if traffic took longer than this to shift."),
        json_out: bool = typer.Option(False, "--json", "-j", help="Print the report as JSON."),
        report: Path = typer.Option(None, "--report", help="Also write a self-contained HTML report here."),
        data_dir: Path = typer.Option(None, "--data-dir", help="Fleet directory (default: $ROOST_DEV_DIR or "
                                                               "~/.roost/dev)."),
        fault_time: str = typer.Option("5s", "--fault-time",
                                       help="all/chaos: how long each fault lasts (chaos: up to this)."),
        faults: str = typer.Option(None, "--faults", help="all/chaos: comma-separated faults (default: every one)."),
        seed: int = typer.Option(0, "--seed", help="chaos: the random seed (the same seed, the same faults)."),
        recover_within: str = typer.Option("30s", "--recover-within",
                                           help="all/chaos: what should run must run again this soon after a heal."),
    ) -> None:
        """Rehearse a failure: steady load through the edges, one fault, its heal, and a report of what users saw.

        Exits 1 when a check fails: --expect-*, a machine ran beside its standby, an acknowledged write was lost.
        """
        if fault not in (*FAULTS, "all", "chaos"):
            raise CliError(f"unknown fault {fault!r}: choose one of {', '.join(FAULTS)}, all or chaos")
        directory = (data_dir or Path(os.environ.get("ROOST_DEV_DIR", DEFAULT_FLEET_DIR))).expanduser().resolve()
        fleet = read_fleet(directory)
        if fleet is None:
            raise CliError(f"no fleet in {directory}: a drill runs on the local fleet ('roost dev up' starts one, "
                           "--data-dir points at another)")
        options = DrillOptions(
            fault=fault, app=app_name, target=target, rps=rps, duration=_seconds(duration, "--duration"),
            at=_seconds(at, "--at"), heal_after=None if no_heal else _seconds(heal_after, "--heal-after"),
            path=path, method=method, body=body, check_writes=check_writes, client_region=client_region,
            timeout=_seconds(timeout, "--timeout"), expect_no_errors=expect_no_errors,
            expect_shift_under=_seconds(expect_shift_under, "--expect-shift-under") if expect_shift_under else None)
        # Always the fleet's own control plane: a drill never reaches outside the fleet it manages.
        api = Api(server_list(fleet), fleet["token"])
        def say(message: str) -> None:
            if not json_out:
                err_console.print(f"[dim]drill:[/dim] {message}", highlight=False)

        if fault in ("all", "chaos"):
            if target:
                raise CliError(f"drill {fault} chooses its own targets: drop --target (or drill one fault with it)")
            campaign = CampaignOptions(
                app=app_name, rps=rps, fault_time=_seconds(fault_time, "--fault-time"), path=path, method=method,
                body=body, check_writes=check_writes, client_region=client_region,
                timeout=_seconds(timeout, "--timeout"), expect_no_errors=expect_no_errors,
                faults=tuple(f.strip() for f in faults.split(",") if f.strip()) if faults else FAULTS, seed=seed,
                duration=_seconds(duration, "--duration"), recover_within=_seconds(recover_within, "--recover-within"))
            try:
                if fault == "all":
                    result = run_all(directory, api, campaign, say)
                else:
                    chaos = Chaos(directory, api, campaign, say)
                    chaos.prepare()
                    result = chaos.run()
            except (DrillError, FleetError) as exc:
                raise CliError(str(exc)) from None
            if fault == "all":
                _finish(result, html_all, print_all, report, json_out)
            else:
                _finish(result, html_chaos, print_chaos, report, json_out)
            return

        try:
            run = Drill(directory, api, options, say)
            run.prepare()
            result = run.run()
        except (DrillError, FleetError) as exc:
            raise CliError(str(exc)) from None
        _finish(result, html_report, print_report, report, json_out)
