"""fly.toml translation, checked against flyctl's own test vectors (internal/appconfig/machines_test.go) on
flyctl's fixtures, which are part of the corpus in tests/data/flytoml."""

from pathlib import Path

import pytest

from roost.config.flytoml import ConfigError, load_text
from roost.config.machines import (
    default_group,
    group_mounts,
    machine_config,
    process_groups,
    release_command_config,
)

CORPUS = Path(__file__).resolve().parents[1] / "data" / "flytoml"


def load(name: str):
    return load_text((CORPUS / name).read_text(), name)


def test_tomachine_matches_flyctl():
    cfg = load("superfly__flyctl__8.toml")  # flyctl's testdata/tomachine.toml
    got = machine_config(cfg, "app")
    assert got["env"] == {"FOO": "BAR", "PRIMARY_REGION": "mia", "FLY_PROCESS_GROUP": "app"}
    assert got["services"] == [{"protocol": "tcp", "internal_port": 8080, "ports": [
        {"port": 80, "handlers": ["http"], "force_https": True}, {"port": 443, "handlers": ["http", "tls"]}]}]
    assert got["metadata"]["fly_platform_version"] == "v2" and got["metadata"]["fly_process_group"] == "app"
    assert got["metrics"] == {"port": 9999, "path": "/metrics"}
    assert got["statics"] == [{"guest_path": "/guest/path", "url_prefix": "/url/prefix",
                               "tigris_bucket": "example-bucket", "index_document": "index.html"}]
    assert got["mounts"] == [{"name": "data", "path": "/data"}]
    assert got["checks"] == {"listening": {"port": 8080, "type": "tcp"},
                             "status": {"port": 8080, "type": "http", "interval": "10s", "timeout": "1s",
                                        "path": "/status"}}
    assert got["stop_config"] == {"timeout": "10s", "signal": "SIGTERM"}
    assert got["init"] == {"swap_size_mb": 512}
    assert got["restart"] == {"policy": "always"}
    assert got["dns"] == {"nameservers": ["1.2.3.4"]}
    assert "guest" not in got, "without [[vm]] a deploy leaves the size alone"


def test_release_command_machine_matches_flyctl():
    cfg = load("superfly__flyctl__8.toml")
    got = release_command_config(cfg, "img")
    assert got["init"]["cmd"] == ["migrate-db"]
    assert got["env"] == {"FOO": "BAR", "PRIMARY_REGION": "mia", "RELEASE_COMMAND": "1",
                          "FLY_PROCESS_GROUP": "fly_app_release_command"}
    assert got["auto_destroy"] is True and got["restart"] == {"policy": "no"}
    assert got["stop_config"] == {"timeout": "10s", "signal": "SIGTERM"}


@pytest.mark.parametrize(("group", "cmd", "ports", "checks"), [
    ("app", ["run-nginx"], [8080, 1111], {"listening": {"port": 8080, "type": "tcp"}}),
    ("vpn", ["run-tailscale"], [9999, 1111], None),
    ("foo", ["keep", "me", "alive"], [1111], {"listening": {"port": 8080, "type": "tcp"}}),
])
def test_process_groups_match_flyctl(group, cmd, ports, checks):
    cfg = load("superfly__flyctl__7.toml")  # testdata/tomachine-processgroups.toml
    assert process_groups(cfg) == ["app", "foo", "vpn"] and default_group(cfg) == "app"
    got = machine_config(cfg, group)
    assert got["init"]["cmd"] == cmd
    assert [s["internal_port"] for s in got["services"]] == ports
    assert got.get("checks") == checks
    assert got["metadata"]["fly_process_group"] == group


def test_services_autostop_autostart_match_flyctl():
    cfg = load("superfly__flyctl__4.toml")  # testdata/tomachine-services.toml
    services = machine_config(cfg, "app")["services"]
    assert [(s["internal_port"], s.get("autostart"), s.get("autostop")) for s in services] == [
        (8080, True, True), (1000, True, True), (1001, False, False), (1002, False, None), (1003, None, True),
        (1004, None, None)]


@pytest.mark.parametrize(("group", "guest"), [
    ("app", {"cpu_kind": "shared", "cpus": 2, "memory_mb": 512}),
    ("worker", {"cpu_kind": "shared", "cpus": 2, "memory_mb": 512}),
    ("whisper", {"cpu_kind": "performance", "cpus": 8, "memory_mb": 65536, "gpu_kind": "a100-pcie-40gb"}),
    ("isolated", {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256, "host_dedication_id": "lookma-iamsolo"}),
])
def test_compute_matches_flyctl(group, guest):
    cfg = load("superfly__flyctl__3.toml")  # testdata/tomachine-compute.toml
    assert machine_config(cfg, group)["guest"] == guest


@pytest.mark.parametrize(("group", "guest"), [
    ("front", None),
    ("back", {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256, "host_dedication_id": "specific"}),
    ("other", {"cpu_kind": "shared", "cpus": 4, "memory_mb": 1024, "host_dedication_id": "toplevel"}),
])
def test_host_dedication_matches_flyctl(group, guest):
    cfg = load("superfly__flyctl__5.toml")  # testdata/tomachine-hostdedicationid.toml
    assert machine_config(cfg, group).get("guest") == guest


def test_legacy_format_is_normalised_like_flyctl():
    cfg = load("superfly__flyctl__2.toml")  # testdata/old-format.toml
    doc = cfg.doc
    assert doc["env"] == {"FOO": "STRING", "BAR": "123"}
    assert doc["build"] == {"build-target": "thalayer"}
    assert "processes" not in doc and "experimental" not in doc
    assert doc["mounts"] == [{"source": "data", "destination": "/data"}]
    assert doc["metrics"] == [{"port": 9999, "path": "/metrics"}]
    service = machine_config(cfg, "app")["services"][0]
    assert service["internal_port"] == 8080 and service["ports"] == [{"port": 80, "handlers": ["http"]}]
    assert service["concurrency"] == {"type": "requests", "hard_limit": 23, "soft_limit": 12}
    assert service["autostop"] is False
    assert service["checks"] == [
        {"type": "tcp", "interval": "10s", "timeout": "2s"}, {"type": "tcp", "interval": "20s", "timeout": "3s"},
        {"type": "http", "interval": "30s", "timeout": "4s",
         "headers": [{"name": "origin", "values": ["http://localhost:8000"]}]},
        {"type": "http", "interval": "20s", "timeout": "3s",
         "headers": [{"name": "astring", "values": ["string"]}, {"name": "fly-healthcheck", "values": ["1"]},
                     {"name": "metoo", "values": ["true"]}]}]


def test_a_top_level_check_without_port_needs_an_http_service():
    with pytest.raises(ConfigError, match="has no port set"):
        machine_config(load_text('app = "x"\n[checks.alive]\ntype = "tcp"\n'), "app")
    got = machine_config(load_text('app = "x"\n[http_service]\ninternal_port = 3000\n'
                                   '[checks.alive]\ntype = "tcp"\n'), "app")
    assert got["checks"]["alive"]["port"] == 3000


def test_items_without_processes_go_to_the_default_group_only():
    cfg = load_text('app = "x"\n[processes]\nweb = "w"\nworker = "k"\n[[mounts]]\nsource = "d"\n'
                    'destination = "/d"\n[http_service]\ninternal_port = 8080\n')
    assert default_group(cfg) == "web"
    assert group_mounts(cfg, "web") and not group_mounts(cfg, "worker")
    assert "services" in machine_config(cfg, "web") and "services" not in machine_config(cfg, "worker")


@pytest.mark.parametrize(("text", "words"), [
    ('app = "x"\n[http_service]\ninternal_port = 8080\nauto_stop_machines = "on"\n', "http_service.auto_stop_machines"),
    ('app = "x"\n[[services]]\nprotocol = "tcp"\n', "services[0].internal_port"),
    ('app = "x"\n[[services]]\ninternal_port = 80\nprotocol = "sctp"\n', "services[0].protocol"),
    ('app = "x"\n[checks.a]\nport = 1\n', "checks.a.type"),
    ('app = "x"\n[[mounts]]\nsource = "d"\ndestination = "/"\n', "mounts[0].destination"),
    ('app = "x"\nkill_signal = "SIGNOPE"\n', "kill_signal"),
    ('app = "x"\n[[vm]]\nmemory = "lots"\n', "vm[0].memory"),
    ('app = "x"\n[[restart]]\npolicy = "sometimes"\n', "restart[0].policy"),
    ('app = "x"\n[http_service\n', "not valid TOML"),
    ('app = "x"\n[[services]]\ninternal_port = 80\nconcurrency = "20"\n', "services[0].concurrency"),
])
def test_real_errors_name_the_key(text, words):
    with pytest.raises(ConfigError) as err:
        load_text(text)
    assert words in err.value.message


def test_unknown_and_unsupported_keys_are_reported_by_name():
    cfg = load_text('app = "x"\nprimary_regoin = "ams"\n[http_service]\ninternal_port = 8080\nforce_https = true\n'
                    'auto_stop_machine = "stop"\n[build]\nbuildpacks = ["x"]\n')
    text = "\n".join(cfg.warnings)
    assert "unknown key 'primary_regoin'" in text
    assert "unknown key 'auto_stop_machine' in [http_service]" in text
    assert "'build.buildpacks' is not supported" in text


def test_a_body_limit_in_http_options_reaches_both_ports() -> None:
    from roost.core.machine_config import normalize

    cfg = load_text('app = "up"\n[http_service]\ninternal_port = 8080\n'
                    '[http_service.http_options]\nmax_request_body_size = "1MB"\n', "fly.toml")
    config = normalize({**machine_config(cfg, "app"), "image": "up:v1"})
    limits = [p["http_options"]["max_request_body_size"] for p in config["services"][0]["ports"]]
    assert limits == [1 << 20, 1 << 20]


def test_http_service_balancing_reaches_the_machine_config_and_a_typo_is_refused():
    got = machine_config(load_text('app = "x"\n[http_service]\ninternal_port = 3000\n'
                                   '[http_service.concurrency]\nbalancing = "random"\n'), "app")
    assert got["services"][0]["concurrency"]["balancing"] == "random"
    with pytest.raises(ConfigError, match="balancing: expected"):
        load_text('app = "x"\n[http_service]\ninternal_port = 3000\n[http_service.concurrency]\nbalancing = "rr"\n')
