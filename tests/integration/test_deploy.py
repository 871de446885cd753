"""Issue 5's end-to-end check: fly.toml deploys, scale count, status, secrets, releases, through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.integration.conftest import Fleet

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fleet3(tmp_path_factory):
    f = Fleet(tmp_path_factory.mktemp("fleet3"), ["ams", "ewr", "syd"], 2)
    yield f
    f.close()


@pytest.fixture(scope="module")
def stack(fleet3, tmp_path_factory):
    directory = tmp_path_factory.mktemp("stack") / "stack"
    shutil.copytree(ROOT / "examples" / "stack", directory)
    fleet3.roost("apps", "create", "stack", "--primary-region", "ams")
    return directory


def machines(f: Fleet, app: str = "stack") -> list[dict]:
    return f.api.get(f"/v1/apps/{app}/machines").json()


def by_group(ms: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for m in ms:
        out.setdefault(m["config"]["metadata"]["fly_process_group"], []).append(m)
    return out


def assert_defaults(f: Fleet) -> dict[str, list[dict]]:
    groups = by_group(machines(f))
    assert sorted(groups) == ["db", "web", "worker"]
    web, worker, db = groups["web"], groups["worker"], groups["db"]
    assert len(web) == 2 and all(m["state"] == "started" and m["region"] == "ams" for m in web)
    assert len({m["host_id"] for m in web}) == 2, "spread over hosts"
    primary = [m for m in worker if not m["config"].get("standbys")]
    standby = [m for m in worker if m["config"].get("standbys")]
    assert len(primary) == 1 and len(standby) == 1
    assert primary[0]["state"] == "started" and standby[0]["state"] in ("created", "stopped")
    assert standby[0]["config"]["standbys"] == [primary[0]["id"]]
    assert standby[0]["config"]["env"]["FLY_STANDBY_FOR"] == primary[0]["id"]
    assert len(db) == 1 and db[0]["state"] == "started"
    volumes = f.api.get("/v1/apps/stack/volumes").json()
    assert len(volumes) == 1 and volumes[0]["attached_machine_id"] == db[0]["id"]
    assert db[0]["config"]["mounts"][0]["volume"] == volumes[0]["id"]
    for m in web + db + worker:
        assert m["config"]["env"]["PRIMARY_REGION"] == "ams"
        assert m["config"]["env"]["GREETING"] == "hello from the stack"
    return groups


def test_first_deploy_gives_flys_defaults(fleet3, stack):
    out = fleet3.roost("deploy", "-c", str(stack / "fly.toml"), timeout=300)
    assert "Deployed v1" in out.stdout
    groups = assert_defaults(fleet3)
    assert groups["web"][0]["config"]["init"]["cmd"] == ["python3", "app.py"]
    assert groups["web"][0]["config"]["stop_config"] == {"timeout": "5s", "signal": "SIGTERM"}
    releases = json.loads(fleet3.roost("releases", "-a", "stack", "--json").stdout)
    assert releases[0]["version"] == 1 and releases[0]["status"] == "complete"
    assert releases[0]["image"].startswith("stack:deployment-")
    status = fleet3.roost("status", "-a", "stack").stdout
    assert "†" in status and "web" in status and "worker" in status and "db" in status


def test_second_deploy_updates_in_place_and_keeps_the_standby_stopped(fleet3, stack):
    before = {m["id"]: m for m in machines(fleet3)}
    fleet3.roost("deploy", "-c", str(stack / "fly.toml"), timeout=300)
    after = {m["id"]: m for m in machines(fleet3)}
    assert set(after) == set(before), "no machine created or destroyed"
    for mid, m in after.items():
        assert m["instance_id"] != before[mid]["instance_id"]
        assert m["config"]["metadata"]["fly_release_version"] == "2"
        assert m["state"] == before[mid]["state"] or (before[mid]["state"] == "created" and m["state"] == "created")
    standby = next(m for m in after.values() if m["config"].get("standbys"))
    assert standby["state"] in ("created", "stopped")


def test_scale_count_over_three_regions(fleet3, stack):
    out = fleet3.roost("scale", "count", "6", "--region", "ams,ewr,syd", "--process-group", "web", "--yes",
                       "-c", str(stack / "fly.toml"), timeout=300)
    assert "+2 machines for group 'web' in region 'ewr'" in out.stdout
    web = by_group(machines(fleet3))["web"]
    per_region = {r: sum(1 for m in web if m["region"] == r) for r in ("ams", "ewr", "syd")}
    assert per_region == {"ams": 2, "ewr": 2, "syd": 2}
    assert all(m["state"] == "started" for m in web)
    assert all(not m["config"].get("standbys") for m in web)
    shown = json.loads(fleet3.roost("scale", "show", "-a", "stack", "--json").stdout)
    assert shown["web"]["count"] == 6


def test_scaling_to_zero_then_deploying_restores_the_defaults(fleet3, stack):
    fleet3.roost("scale", "count", "web=0", "worker=0", "db=0", "--yes", "-a", "stack", timeout=300)
    assert machines(fleet3) == []
    volumes = fleet3.api.get("/v1/apps/stack/volumes").json()
    assert len(volumes) == 1 and not volumes[0].get("attached_machine_id"), "the volume stays, unattached"
    fleet3.roost("deploy", "-c", str(stack / "fly.toml"), timeout=300)
    assert_defaults(fleet3)
    assert fleet3.api.get("/v1/apps/stack/volumes").json()[0]["id"] == volumes[0]["id"], "volume reused"


def test_secrets_reach_machines_and_are_never_shown(fleet3, stack):
    fleet3.roost("secrets", "set", "DB_PASSWORD=hunter2", "-a", "stack", timeout=300)
    listing = fleet3.api.get("/v1/apps/stack/secrets").json()
    assert [s["name"] for s in listing["secrets"]] == ["DB_PASSWORD"]
    assert "hunter2" not in json.dumps(listing)
    ms = machines(fleet3)
    assert all("DB_PASSWORD" not in m["config"].get("env", {}) for m in ms)
    assert "hunter2" not in json.dumps(fleet3.api.get("/v1/watch", params={"since": 0}).json())
    running = next(m for m in ms if m["state"] == "started")
    record = json.loads(Path(fleet3.host(running["host_id"])["data_dir"], "records",
                             f"{running['id']}.json").read_text())
    assert record["spec"]["env"]["DB_PASSWORD"] == "hunter2", "delivered to the machine as env"
    fleet3.roost("secrets", "unset", "DB_PASSWORD", "-a", "stack", "--stage")
    assert fleet3.api.get("/v1/apps/stack/secrets").json()["secrets"] == []


def test_checks_and_sizes_from_the_apps_directory(fleet3, stack):
    """Issue 21: flyctl's habits. In the app's directory no -a is needed (fly.toml names the app); checks list
    shows each web machine's check; scale vm and scale memory resize one running machine at a time."""
    listed = json.loads(fleet3.roost("checks", "list", "--json", cwd=stack).stdout)
    web = by_group(machines(fleet3))["web"]
    assert sorted(r["machine"] for r in listed) == sorted(m["id"] for m in web)
    assert all(r["status"] == "passing" and r["region"] == "ams" for r in listed), listed
    table = fleet3.roost("checks", "list", cwd=stack).stdout
    assert "passing" in table.splitlines()[1] and "NAME" in table.splitlines()[0]
    # $FLY_APP wins over fly.toml, -a over both
    other = fleet3.roost("checks", "list", cwd=stack, env={"FLY_APP": "no-such-app"}, check=False)
    assert other.returncode != 0 and "app 'no-such-app' not found" in other.stderr
    assert fleet3.roost("checks", "list", "-a", "stack", "--json", env={"FLY_APP": "no-such-app"}).returncode == 0

    out = fleet3.roost("scale", "vm", "shared-cpu-2x", "-g", "web", "--wait-timeout", "60", cwd=stack,
                       timeout=200).stdout
    assert out.count("updated ") == len(web) and "shared-cpu-1x 256 MB -> shared-cpu-2x 512 MB" in out, out
    groups = by_group(machines(fleet3))
    assert all(m["config"]["guest"] == {"cpu_kind": "shared", "cpus": 2, "memory_mb": 512} and
               m["state"] == "started" for m in groups["web"])
    assert all(m["config"]["guest"]["cpus"] == 1 for m in groups["worker"] + groups["db"]), "other groups stay"
    fleet3.roost("scale", "memory", "1024", "-g", "web", "-a", "stack", timeout=300)
    assert all(m["config"]["guest"]["memory_mb"] == 1024 for m in by_group(machines(fleet3))["web"])
    for args, message in ((["scale", "vm", "huge-cpu-9x"], "unknown size 'huge-cpu-9x'"),
                          (["scale", "memory", "1000"], "must be a multiple of 256 MB"),
                          (["scale", "memory", "8192", "-g", "web"], "takes 512 to 4096 MB")):
        bad = fleet3.roost(*args, "-a", "stack", check=False)
        assert bad.returncode != 0 and message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad
    assert all(m["config"]["guest"]["memory_mb"] == 1024 for m in by_group(machines(fleet3))["web"]), "unchanged"
    fleet3.roost("scale", "vm", "shared-cpu-1x", "-g", "web", "-a", "stack", timeout=300)


def test_rolling_back_to_an_earlier_release(fleet3, stack):
    releases = json.loads(fleet3.roost("releases", "-a", "stack", "--json").stdout)
    first = min(releases, key=lambda r: r["version"])
    out = fleet3.roost("releases", "rollback", str(first["version"]), cwd=stack, timeout=300).stdout
    assert f"Rolling stack back to v{first['version']}" in out and "Deployed v" in out
    after = json.loads(fleet3.roost("releases", "-a", "stack", "--json").stdout)
    newest = max(after, key=lambda r: r["version"])
    assert newest["version"] > max(r["version"] for r in releases) and newest["status"] == "complete"
    assert newest["image"] == first["image"]
    assert all(m["state"] == "started" for m in by_group(machines(fleet3))["web"])
    missing = fleet3.roost("releases", "rollback", "999", "-a", "stack", "-c", str(stack / "fly.toml"), check=False)
    assert missing.returncode != 0 and "no complete release v999" in missing.stderr


def test_a_failing_release_command_stops_the_deploy(fleet3, stack, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(stack, broken)
    text = (broken / "fly.toml").read_text().replace(
        'kill_timeout = "5s"',
        'kill_timeout = "5s"\n\n[deploy]\n  release_command = "sh -c \'echo migrating; exit 3\'"')
    (broken / "fly.toml").write_text(text)
    before = {m["id"]: m["instance_id"] for m in machines(fleet3)}
    result = fleet3.roost("deploy", "-c", str(broken / "fly.toml"), check=False, timeout=300)
    assert result.returncode != 0
    assert "exit code 3" in result.stderr and "migrating" in result.stderr
    assert {m["id"]: m["instance_id"] for m in machines(fleet3)} == before, "nothing was updated"
    assert fleet3.api.get("/v1/apps/stack/releases").json()[0]["status"] == "failed"


def test_a_failing_health_check_stops_a_rolling_deploy_and_names_the_machine(fleet3, stack, tmp_path):
    broken = tmp_path / "unhealthy"
    shutil.copytree(stack, broken)
    text = (broken / "fly.toml").read_text() + (
        '\n[checks.nothing]\n  type = "tcp"\n  port = 9\n  interval = "1s"\n  grace_period = "0s"\n'
        '  processes = ["web"]\n')
    (broken / "fly.toml").write_text(text)
    result = fleet3.roost("deploy", "-c", str(broken / "fly.toml"), "--wait-timeout", "6", check=False,
                          timeout=300)
    assert result.returncode != 0
    web = by_group(machines(fleet3))["web"]
    assert any(m["id"] in result.stderr for m in web) and "health checks" in result.stderr
    updated = [m for m in web if "nothing" in m["config"].get("checks", {})]
    assert len(updated) == 1, "the rollout stopped after the first chunk"
    # put things right for whoever comes next
    fleet3.roost("deploy", "-c", str(stack / "fly.toml"), timeout=300)


def test_user_errors(fleet3, stack, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('app = "stack"\n[http_service]\ninternal_port = 8080\nauto_stop_machines = "on"\n')
    result = fleet3.roost("deploy", "-c", str(bad), check=False)
    assert result.returncode != 0 and "auto_stop_machines" in result.stderr and "Traceback" not in result.stderr
    result = fleet3.roost("deploy", "-c", str(tmp_path / "missing.toml"), check=False)
    assert result.returncode != 0 and "not found" in result.stderr
    result = fleet3.roost("scale", "count", "7", "--max-per-region", "2", "--region", "ams,ewr", "-a", "stack",
                          "-g", "web", "--yes", check=False)
    assert result.returncode != 0 and "max-per-region" in result.stderr
    assert "valid" in fleet3.roost("config", "validate", "-c", str(stack / "fly.toml")).stdout
