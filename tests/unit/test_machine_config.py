import pytest

from roost.core import machine_config as mc
from roost.core.errors import RoostError


def test_unknown_keys_are_kept_and_guest_is_filled():
    config = mc.normalize({"image": "app:v1", "dns": {"skip_registration": True}, "x_custom": [1, 2]})
    assert config["dns"] == {"skip_registration": True}
    assert config["x_custom"] == [1, 2]
    assert config["guest"] == {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256}


def test_input_is_not_mutated():
    raw = {"image": "a", "services": [{"internal_port": 80, "autostop": "stop"}]}
    mc.normalize(raw)
    assert raw["services"][0]["autostop"] == "stop"


@pytest.mark.parametrize(("given", "wire"), [("off", False), ("stop", True), ("suspend", "suspend"),
                                             (True, True), (False, False)])
def test_autostop_accepts_all_five_forms_and_emits_flys_wire_form(given, wire):
    config = mc.normalize({"image": "a", "services": [{"internal_port": 80, "autostop": given}]})
    assert config["services"][0]["autostop"] == wire


def test_autostop_on_is_rejected_like_flyctl():
    with pytest.raises(RoostError) as err:
        mc.normalize({"image": "a", "services": [{"internal_port": 80, "autostop": "on"}]})
    assert "config.services[0].autostop" in err.value.message


@pytest.mark.parametrize(("config", "key"), [
    ({}, "config.image"),
    ({"image": ""}, "config.image"),
    ({"image": "a", "env": {"A": 1}}, "config.env.A"),
    ({"image": "a", "guest": {"cpus": 0}}, "config.guest.cpus"),
    ({"image": "a", "services": [{"ports": []}]}, "config.services[0].internal_port"),
    ({"image": "a", "services": [{"internal_port": 70000}]}, "config.services[0].internal_port"),
    ({"image": "a", "restart": {"policy": "sometimes"}}, "config.restart.policy"),
    ({"image": "a", "stop_config": {"signal": "SIGNOPE"}}, "config.stop_config.signal"),
    ({"image": "a", "checks": {"c": {"type": "http"}}}, "config.checks.c.port"),
    ({"image": "a", "mounts": [{"volume": "v", "path": "/"}]}, "config.mounts[0].path"),
    ({"image": "a", "size": "huge"}, "config.size"),
    ({"image": "a\u0000b"}, "config.image"),
    ({"image": "a", "env": {"A": "x\u0000"}}, "config.env.A"),
    ({"image": "a", "env": {"A=B": "x"}}, "config.env: invalid name"),
    ({"image": "a", "env": {"": "x"}}, "config.env: invalid name"),
    ({"image": "a", "env": {"A": "\ud800"}}, "config.env.A"),
    ({"image": "a", "env": {f"K{i}": "v" for i in range(mc.MAX_ENV + 1)}}, "config.env: more than"),
    ({"image": "a", "init": {"cmd": ["x"] * (mc.MAX_ARGS + 1)}}, "config.init.cmd: more than"),
    ({"image": "a", "init": {"exec": ["x" * (mc.MAX_ARG_BYTES + 1)]}}, "config.init.exec[0]"),
    ({"image": "a", "mounts": [{"volume": "v", "path": "/data/../../etc"}]}, "config.mounts[0].path"),
    ({"image": "a", "mounts": [{"volume": "v", "path": "data"}]}, "config.mounts[0].path"),
    ({"image": "a", "mounts": [{"volume": "v", "path": "/proc/self"}]}, "system directory"),
    ({"image": "a", "mounts": [{"volume": "v", "path": "//usr/"}]}, "system directory"),
])
def test_bad_values_name_their_key(config, key):
    with pytest.raises(RoostError) as err:
        mc.normalize(config)
    assert err.value.status == 400
    assert key in err.value.message


def test_size_preset_sets_guest():
    assert mc.guest(mc.normalize({"image": "a", "size": "performance-2x"})) == mc.Guest("performance", 2, 4096)


def test_accessors_defaults_and_values():
    config = mc.normalize({"image": "a", "stop_config": {"signal": "SIGTERM", "timeout": "12s"},
                           "services": [{"internal_port": 8080}], "checks": {"h": {"port": 9090, "type": "tcp"}},
                           "metadata": {"fly_process_group": "web"}})
    assert mc.stop_signal(config) == 15
    assert mc.stop_timeout(config) == 12
    assert mc.internal_ports(config) == [8080, 9090]
    assert mc.process_group(config) == "web"
    plain = mc.normalize({"image": "a"})
    assert mc.stop_signal(plain) == 2 and mc.stop_timeout(plain) == 5
    assert mc.restart_policy(plain) == mc.RestartPolicy("on-failure", 10)


def test_a_standby_carries_fly_standby_for_however_it_was_made():
    # Issue 12 case 2: a standby created through the API with config.standbys gets FLY_STANDBY_FOR too.
    config = mc.normalize({"image": "x", "standbys": ["a", "b"]})
    assert config["env"]["FLY_STANDBY_FOR"] == "a,b"
    cleared = mc.normalize({"image": "x", "standbys": [], "env": {"FLY_STANDBY_FOR": "a", "K": "v"}})
    assert "standbys" not in cleared and cleared["env"] == {"K": "v"}


def test_a_standby_of_a_machine_with_services_has_none():
    # Issue 12 case 3: the guide's `clone --standby-for` works for a machine with services.
    source = {"image": "x", "services": [{"internal_port": 8080}], "env": {"A": "1"}}
    standby = mc.as_standby(source, ["m1"])
    assert "services" not in standby and standby["standbys"] == ["m1"]
    assert standby["env"] == {"A": "1", "FLY_STANDBY_FOR": "m1"}
    assert source["services"], "the source config is not changed"
    plain = mc.as_standby(standby, [])
    assert "standbys" not in plain and "FLY_STANDBY_FOR" not in plain["env"]


def test_a_ports_body_limit_is_checked_and_stored_in_bytes() -> None:
    import pytest

    from roost.balancer.services import services_of
    from roost.core.errors import RoostError
    from roost.core.machine_config import normalize

    def config(limit: object) -> dict:
        return {"image": "a:b", "services": [{"internal_port": 8080, "ports": [
            {"port": 80, "handlers": ["http"], "http_options": {"max_request_body_size": limit}}]}]}

    normalized = normalize(config("2MB"))
    assert normalized["services"][0]["ports"][0]["http_options"]["max_request_body_size"] == 2 << 20
    assert services_of(normalized)[0].max_request_body == 2 << 20
    with pytest.raises(RoostError) as err:
        normalize(config("huge"))
    assert "config.services[0].ports[0].http_options.max_request_body_size" in err.value.message


def test_a_mount_path_is_kept_in_its_normal_form():
    config = mc.normalize({"image": "a", "mounts": [{"volume": "v", "path": "//data//db/"}]})
    assert config["mounts"][0]["path"] == "/data/db"


def test_balancing_is_latency_or_flys_random_and_nothing_else():
    config = mc.normalize({"image": "a", "services": [{"internal_port": 80,
                                                       "concurrency": {"balancing": "random"}}]})
    assert config["services"][0]["concurrency"]["balancing"] == "random"
    with pytest.raises(RoostError) as err:
        mc.normalize({"image": "a", "services": [{"internal_port": 80, "concurrency": {"balancing": "fastest"}}]})
    assert "config.services[0].concurrency.balancing" in err.value.message and "random" in err.value.message
