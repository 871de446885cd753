"""`roost machine ...`: flyctl's machine verbs against the Machines API."""

from __future__ import annotations

import copy
import time
from typing import Any

import typer

from roost.cli.appconfig import APP, key_values
from roost.cli.output import CliError, command_group, console, print_json, print_table, progress
from roost.client.api import Api
from roost.core import machine_config as mc
from roost.core.errors import RoostError
from roost.core.portspec import services_from_ports

machine_app = command_group(help="Run and manage machines.")

JSON_OPT = typer.Option(False, "--json", "-j", help="Print JSON.")


def register(app: typer.Typer) -> None:
    app.add_typer(machine_app, name="machine")
    app.add_typer(machine_app, name="machines", hidden=True)
    app.add_typer(machine_app, name="m", hidden=True)


def _services(ports: list[str], autostop: str | None, autostart: bool | None) -> list[dict[str, Any]]:
    try:
        services = services_from_ports(ports)
    except RoostError as exc:
        raise CliError(exc.message) from None
    for service in services:
        if autostop is not None:
            service["autostop"] = autostop
        if autostart is not None:
            service["autostart"] = autostart
    return services


def _standbys(value: str | None, source_id: str | None = None) -> list[str] | None:
    if value is None:
        return None
    ids = [v.strip() for v in value.split(",") if v.strip()]
    if source_id:
        ids = [source_id if v == "source" else v for v in ids]
    return ids


def _apply_standbys(config: dict[str, Any], standbys: list[str] | None) -> dict[str, Any]:
    """The config made a standby for `standbys` (services dropped: a standby is never routed to); None
    leaves it as it is."""
    return config if standbys is None else mc.as_standby(config, standbys)


def _checks(values: list[str]) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    for item in values:
        name, sep, target = item.partition("=")
        kind, _, rest = target.partition(":")
        port, _, path = rest.partition("/")
        if not sep or kind not in ("http", "tcp") or not port.isdigit():
            raise CliError(f"invalid --check {item!r}: expected NAME=http:PORT/PATH or NAME=tcp:PORT")
        check: dict[str, Any] = {"type": kind, "port": int(port), "interval": "5s", "timeout": "2s",
                                 "grace_period": "1s"}
        if kind == "http":
            check["path"] = "/" + path
        checks[name] = check
    return checks


def _wait_started(api: Api, app: str, machine: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    mid = machine["id"]
    with progress(f"Waiting for machine {mid} to start..."):
        try:
            api.wait_state(app, mid, "started", timeout)
        except CliError:
            current = api.get(f"/v1/apps/{app}/machines/{mid}")
            if current.get("state") == "failed":
                reason = next((e.get("request", {}).get("error") for e in current.get("events", [])
                               if e.get("status") == "failed" and e.get("request")), None)
                raise CliError(f"machine {mid} failed to start: {reason or 'see roost logs -a ' + app}") from None
            raise
    return dict(api.get(f"/v1/apps/{app}/machines/{mid}"))


def _address(m: dict[str, Any]) -> str:
    roost = m.get("roost") or {}
    ports = roost.get("ports") or {}
    if not ports:
        return str(m.get("private_ip", ""))
    return ", ".join(f"{m.get('private_ip')}:{host} (guest {guest})" for guest, host in ports.items())


@machine_app.command("run")
def run(
    image: str = typer.Argument(..., help="Image name (pushed with 'roost image push')."),
    command: list[str] = typer.Argument(None, help="Command to run instead of the image's default."),
    app: str = APP,
    region: str = typer.Option(None, "--region", "-r", help="Region (default: the app's primary region)."),
    name: str = typer.Option(None, "--name", "-n", help="Machine name."),
    env: list[str] = typer.Option([], "--env", "-e", help="KEY=VALUE, repeatable."),
    port: list[str] = typer.Option([], "--port", "-p", help="[EXT:]INT[/PROTO][:HANDLERS], e.g. 80:8080/tcp:http"),
    autostop: str = typer.Option(None, "--autostop", help="off, stop or suspend (services only)."),
    autostart: bool = typer.Option(None, "--autostart/--no-autostart", help="Proxy starts it on traffic."),
    restart: str = typer.Option("always", "--restart", help="no, always or on-failure."),
    standby_for: str = typer.Option(None, "--standby-for", help="Comma-separated machine ids this one stands by for."),
    cpus: int = typer.Option(None, "--vm-cpus", "--cpus", help="CPUs."),
    memory: int = typer.Option(None, "--vm-memory", "--memory", help="Memory, MB."),
    metadata: list[str] = typer.Option([], "--metadata", "-m", help="KEY=VALUE, repeatable."),
    entrypoint: str = typer.Option(None, "--entrypoint", help="Override the entrypoint."),
    kill_signal: str = typer.Option(None, "--kill-signal", help="Signal a stop sends first (default SIGINT)."),
    kill_timeout: str = typer.Option(None, "--kill-timeout",
                                     help="Wait before SIGKILL on stop, e.g. 10s (default 5s)."),
    check: list[str] = typer.Option([], "--check", help="NAME=http:PORT/PATH or NAME=tcp:PORT, repeatable."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Return without waiting for the machine to start."),
    json_out: bool = JSON_OPT,
) -> None:
    """Create and start a machine from an image."""
    if autostop is not None and autostop not in ("off", "stop", "suspend"):
        raise CliError(f"invalid --autostop {autostop!r}: use off, stop or suspend")
    if restart not in ("no", "always", "on-failure"):
        raise CliError(f"invalid --restart {restart!r}: use no, always or on-failure")
    config: dict[str, Any] = {"image": image, "env": key_values(env, "--env"), "restart": {"policy": restart}}
    services = _services(port, autostop, autostart)
    if services:
        config["services"] = services
    if command or entrypoint:
        config["init"] = {}
        if command:
            config["init"]["cmd"] = list(command)
        if entrypoint:
            config["init"]["entrypoint"] = entrypoint.split()
    if cpus or memory:
        config["guest"] = {"cpu_kind": "shared", "cpus": cpus or 1, "memory_mb": memory or 256}
    if metadata:
        config["metadata"] = key_values(metadata, "--metadata")
    if kill_signal or kill_timeout:
        config["stop_config"] = {k: v for k, v in (("signal", kill_signal), ("timeout", kill_timeout)) if v}
    if check:
        config["checks"] = _checks(check)
    standbys = _standbys(standby_for)
    if standbys and services:
        raise CliError("a standby has no services (the edge never routes to it): drop --port, or --standby-for")
    config = _apply_standbys(config, standbys)
    api = Api()
    body: dict[str, Any] = {"config": config, "skip_launch": bool(standbys)}
    if region:
        body["region"] = region
    if name:
        body["name"] = name
    with progress("Creating machine..."):
        machine = api.post(f"/v1/apps/{app}/machines", json=body)
    if not detach and not standbys:
        machine = _wait_started(api, app, machine)
    if json_out:
        print_json(machine)
        return
    state = "stopped standby" if standbys else machine["state"]
    console.print(f"Machine [bold]{machine['id']}[/bold] ({machine['name']}) in {machine['region']} "
                  f"on host {machine.get('host_id')}: {state}")
    if machine.get("roost", {}).get("ports"):
        console.print(f"  reachable at {_address(machine)}")


@machine_app.command("list")
def list_machines(app: str = APP, json_out: bool = JSON_OPT) -> None:
    """List an app's machines."""
    machines = Api().get(f"/v1/apps/{app}/machines")
    if json_out:
        print_json(machines)
        return
    if not machines:
        console.print(f"No machines in app {app}.")
        return
    rows = []
    for m in machines:
        checks = m.get("checks") or []
        passing = sum(1 for c in checks if c.get("status") == "passing")
        group = (m.get("config", {}).get("metadata") or {}).get("fly_process_group", "")
        standby = "†" if m.get("config", {}).get("standbys") else ""
        rows.append([m["id"] + standby, m["name"], m["state"], m["region"], m.get("host_id"), group,
                     f"{passing}/{len(checks)}" if checks else "", m.get("image_ref", {}).get("tag", ""),
                     _address(m), m["updated_at"]])
    print_table(["ID", "NAME", "STATE", "REGION", "HOST", "GROUP", "CHECKS", "IMAGE", "ADDRESS", "UPDATED"], rows)
    if any(m.get("config", {}).get("standbys") for m in machines):
        console.print("† standby machine (it takes over only when a watched machine's host fails)")


@machine_app.command("status")
def status(machine_id: str = typer.Argument(...), app: str = APP, json_out: bool = JSON_OPT) -> None:
    """Show one machine, its checks and its recent events."""
    m = Api().get(f"/v1/apps/{app}/machines/{machine_id}")
    if json_out:
        print_json(m)
        return
    config = m.get("config") or {}
    console.print(f"Machine [bold]{m['id']}[/bold] ({m['name']})")
    fields = [
        ("State", m["state"]), ("Region", m["region"]), ("Host", f"{m.get('host_id')} ({m.get('host_status')})"),
        ("Image", f"{config.get('image')} {m.get('image_ref', {}).get('digest', '')[:19]}"),
        ("Version", m.get("instance_id")), ("Address", _address(m)), ("Cordoned", m.get("cordoned")),
        ("Standby for", ", ".join(config.get("standbys") or []) or "-"), ("Created", m.get("created_at")),
        ("Updated", m.get("updated_at")),
    ]
    if m.get("roost", {}).get("note"):
        fields.append(("Note", m["roost"]["note"]))
    for key, value in fields:
        console.print(f"  {key:<12} {value}")
    if m.get("checks"):
        print_table(["CHECK", "STATUS", "OUTPUT", "UPDATED"],
                    [[c["name"], c["status"], c.get("output", ""), c.get("updated_at", "")] for c in m["checks"]],
                    title="Checks")
    events = m.get("events") or []
    if events:
        rows = []
        for e in events[:15]:
            detail = ""
            exit_event = (e.get("request") or {}).get("exit_event")
            if exit_event:
                detail = f"exit_code={exit_event.get('exit_code')} oom_killed={exit_event.get('oom_killed')}"
            elif (e.get("request") or {}).get("error"):
                detail = e["request"]["error"]
            rows.append([time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e["timestamp"] / 1000)), e["type"],
                         e["status"], e["source"], detail])
        print_table(["TIMESTAMP (UTC)", "TYPE", "STATUS", "SOURCE", "DETAIL"], rows, title="Events")


def _simple(verb: str, path: str, done: str, wait_for: str | None = None):  # type: ignore[no-untyped-def]
    def command(machine_ids: list[str] = typer.Argument(..., help="Machine id(s)."), app: str = APP) -> None:
        api = Api()
        for machine_id in machine_ids:
            api.post(f"/v1/apps/{app}/machines/{machine_id}/{path}", json={})
            if wait_for:
                with progress(f"Waiting for {machine_id} to be {wait_for}..."):
                    api.wait_state(app, machine_id, wait_for, 120)
            console.print(f"{machine_id} {done}")

    command.__doc__ = f"{verb.capitalize()} machines."
    return command


machine_app.command("start")(_simple("start", "start", "started", "started"))
machine_app.command("suspend")(_simple("suspend", "suspend", "suspended", "suspended"))
machine_app.command("cordon")(_simple("cordon", "cordon", "cordoned: it gets no proxied traffic"))
machine_app.command("uncordon")(_simple("uncordon", "uncordon", "uncordoned"))


@machine_app.command("stop")
def stop(
    machine_ids: list[str] = typer.Argument(..., help="Machine id(s)."),
    app: str = APP,
    signal: str = typer.Option(None, "--signal", "-s", help="Signal to send (default: the machine's kill_signal)."),
    timeout: str = typer.Option(None, "--timeout", help="How long to wait before SIGKILL, e.g. 10s."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until stopped."),
) -> None:
    """Stop machines: kill_signal, wait kill_timeout, then SIGKILL."""
    api = Api()
    body: dict[str, Any] = {}
    if signal:
        body["signal"] = signal
    if timeout:
        body["timeout"] = timeout
    for machine_id in machine_ids:
        api.post(f"/v1/apps/{app}/machines/{machine_id}/stop", json=body)
        if wait:
            with progress(f"Waiting for {machine_id} to stop..."):
                api.wait_state(app, machine_id, "stopped", 330)
        console.print(f"{machine_id} stopped" if wait else f"{machine_id} stopping")


@machine_app.command("restart")
def restart_cmd(
    machine_ids: list[str] = typer.Argument(...),
    app: str = APP,
    signal: str = typer.Option(None, "--signal", "-s"),
    force_stop: bool = typer.Option(False, "--force-stop", help="SIGKILL instead of the kill_signal."),
) -> None:
    """Restart running machines."""
    api = Api()
    for machine_id in machine_ids:
        params = {"signal": signal} if signal else {}
        if force_stop:
            params["force_stop"] = "true"
        api.post(f"/v1/apps/{app}/machines/{machine_id}/restart", params=params)
        with progress(f"Restarting {machine_id}..."):
            time.sleep(0.05)
            api.wait_state(app, machine_id, "started", 330)
        console.print(f"{machine_id} restarted")


@machine_app.command("kill")
def kill(machine_id: str = typer.Argument(...), app: str = APP) -> None:
    """Send SIGKILL to a machine."""
    Api().post(f"/v1/apps/{app}/machines/{machine_id}/signal", json={"signal": "SIGKILL"})
    console.print(f"{machine_id} killed")


@machine_app.command("exec")
def exec_cmd(
    machine_id: str = typer.Argument(..., help="Machine id."),
    command: list[str] = typer.Argument(..., help="The command and its arguments, after --."),
    app: str = APP,
    timeout: int = typer.Option(30, "--timeout", help="Seconds before the command is killed (1-600)."),
    json_out: bool = JSON_OPT,
) -> None:
    """Run a command in a started machine; prints its output and exits with its exit code."""
    import sys

    if not 1 <= timeout <= 600:
        raise CliError("--timeout must be between 1 and 600 seconds")
    result = Api(timeout=timeout + 15).post(f"/v1/apps/{app}/machines/{machine_id}/exec",
                                            json={"command": command, "timeout": timeout})
    if json_out:
        print_json(result)
        return
    sys.stdout.write(result.get("stdout", ""))
    sys.stderr.write(result.get("stderr", ""))
    sys.stdout.flush()
    raise typer.Exit(int(result.get("exit_code") or 0))


@machine_app.command("ps")
def ps(machine_id: str = typer.Argument(..., help="Machine id."), app: str = APP,
       json_out: bool = JSON_OPT) -> None:
    """List the processes in a started machine."""
    found = Api().get(f"/v1/apps/{app}/machines/{machine_id}/ps")
    if json_out:
        print_json(found)
        return
    print_table(["PID", "RSS", "CPU", "LISTENING", "COMMAND"], [
        [str(p["pid"]), f"{p['rss'] // 1024} KiB", f"{p['cpu']}%",
         " ".join(s["address"] for s in p.get("listen_sockets") or []), p["command"]] for p in found])


@machine_app.command("destroy")
def destroy(
    machine_ids: list[str] = typer.Argument(...),
    app: str = APP,
    force: bool = typer.Option(False, "--force", "-f", help="Kill it if it is running."),
) -> None:
    """Destroy machines (stop them first, or --force)."""
    api = Api()
    for machine_id in machine_ids:
        api.delete(f"/v1/apps/{app}/machines/{machine_id}", params={"force": "true"} if force else None)
        console.print(f"{machine_id} destroyed")


@machine_app.command("clone")
def clone(
    machine_id: str = typer.Argument(..., help="Machine to clone."),
    app: str = APP,
    region: str = typer.Option(None, "--region", "-r", help="Region (default: the source's)."),
    name: str = typer.Option(None, "--name", "-n"),
    standby_for: str = typer.Option(None, "--standby-for",
                                    help="Comma-separated ids ('source' = the cloned machine): make a standby."),
    detach: bool = typer.Option(False, "--detach", "-d"),
    json_out: bool = JSON_OPT,
) -> None:
    """Create a machine with another machine's config (as flyctl's clone does)."""
    api = Api()
    source = api.get(f"/v1/apps/{app}/machines/{machine_id}")
    config = copy.deepcopy(source["config"])
    target_region = region or source["region"]
    standbys = _standbys(standby_for, source["id"])
    for mount in config.get("mounts") or []:
        volumes = api.get(f"/v1/apps/{app}/volumes")
        size = max([v["size_gb"] for v in volumes if v["name"] == mount.get("name")] or [1])
        # A standby's volume must not sit on the source's host (the standby is pinned to its volume's host):
        # require_unique_zone puts it on a host without a volume of that name.
        volume = api.post(f"/v1/apps/{app}/volumes",
                          json={"name": mount.get("name") or "data", "region": target_region, "size_gb": size,
                                "require_unique_zone": bool(standbys)})
        mount["volume"] = volume["id"]
    dropped = bool(standbys and config.get("services"))
    config = _apply_standbys(config, standbys)
    body: dict[str, Any] = {"config": config, "region": target_region, "skip_launch": bool(standbys)}
    if name:
        body["name"] = name
    with progress(f"Cloning {machine_id}..."):
        machine = api.post(f"/v1/apps/{app}/machines", json=body)
    if not detach and not standbys:
        machine = _wait_started(api, app, machine)
    if json_out:
        print_json(machine)
        return
    kind = f"standby for {', '.join(standbys)}" if standbys else machine["state"]
    console.print(f"Cloned {machine_id} into [bold]{machine['id']}[/bold] in {machine['region']} on host "
                  f"{machine.get('host_id')}: {kind}")
    if dropped:
        console.print("  without the source's services: a standby is never routed to")


@machine_app.command("update")
def update(
    machine_id: str = typer.Argument(...),
    app: str = APP,
    image: str = typer.Option(None, "--image", "-i"),
    env: list[str] = typer.Option([], "--env", "-e", help="KEY=VALUE to set, repeatable."),
    port: list[str] = typer.Option(None, "--port", "-p", help="Replace the services with these port mappings."),
    autostop: str = typer.Option(None, "--autostop"),
    autostart: bool = typer.Option(None, "--autostart/--no-autostart"),
    restart: str = typer.Option(None, "--restart"),
    standby_for: str = typer.Option(None, "--standby-for", help="Standby ids; \"\" clears."),
    cpus: int = typer.Option(None, "--vm-cpus", "--cpus"),
    memory: int = typer.Option(None, "--vm-memory", "--memory"),
    command: str = typer.Option(None, "--command", help="New command (init.cmd), space-separated."),
    skip_start: bool = typer.Option(False, "--skip-start", help="Leave a stopped machine stopped."),
    yes: bool = typer.Option(False, "--yes", "-y", help="No confirmation."),
    detach: bool = typer.Option(False, "--detach", "-d"),
) -> None:
    """Update a machine's config (a running machine restarts with it)."""
    api = Api()
    m = api.get(f"/v1/apps/{app}/machines/{machine_id}")
    config = copy.deepcopy(m["config"])
    if image:
        config["image"] = image
    if env:
        config["env"] = {**(config.get("env") or {}), **key_values(env, "--env")}
    if port is not None and port:
        config["services"] = _services(port, autostop, autostart)
    elif autostop is not None or autostart is not None:
        for service in config.get("services") or []:
            if autostop is not None:
                service["autostop"] = autostop
            if autostart is not None:
                service["autostart"] = autostart
    if restart:
        if restart not in ("no", "always", "on-failure"):
            raise CliError(f"invalid --restart {restart!r}: use no, always or on-failure")
        config["restart"] = {**(config.get("restart") or {}), "policy": restart}
    if cpus or memory:
        guest = dict(config.get("guest") or {})
        if cpus:
            guest["cpus"] = cpus
        if memory:
            guest["memory_mb"] = memory
        config["guest"] = guest
    if command:
        config["init"] = {**(config.get("init") or {}), "cmd": command.split()}
    config = _apply_standbys(config, _standbys(standby_for))
    if config == m["config"]:
        console.print("Nothing to change.")
        return
    del yes  # no interactive prompt: updates are explicit flags
    body: dict[str, Any] = {"config": config}
    if skip_start or config.get("standbys"):
        body["skip_launch"] = True
    updated = api.post(f"/v1/apps/{app}/machines/{machine_id}", json=body)
    if m["state"] == "started" and not detach and not body.get("skip_launch"):
        updated = _wait_started(api, app, updated)
    console.print(f"{machine_id} updated to version {updated['instance_id']} ({updated['state']})")
