"""Issue 16's pure cores: the runtime spec from an image and a machine config, manifests and indexes, exec
requests, /proc's socket tables, machine addresses, registry errors."""

from __future__ import annotations

import json

import pytest

from roost.agent.drivers.base import DriverError
from roost.agent.drivers.container import find_command
from roost.agent.procinfo import listening
from roost.core import oci_manifest, oci_spec
from roost.core.errors import RoostError
from roost.core.exec_request import exec_request
from roost.core.oci_manifest import ManifestError
from roost.core.oci_spec import MachineRun, SpecError
from roost.placement.scheduler import machine_address
from roost.registry import RegistryAccess, explain

IMAGE = {"Entrypoint": ["/entry"], "Cmd": ["serve", "--port", "8080"], "Env": ["PATH=/opt/bin:/bin", "A=image"],
         "WorkingDir": "/app", "User": "app"}
PASSWD = "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n"
GROUP = "root:x:0:\nstaff:x:50:\n"


def run(**kw) -> MachineRun:
    return MachineRun(**{"machine_id": "m1", "rootfs": "/r", "env": {"A": "machine"}, "memory_mb": 512, **kw})


def test_the_command_follows_flys_rule():
    assert oci_spec.argv(IMAGE, run()) == ["/entry", "serve", "--port", "8080"]
    assert oci_spec.argv(IMAGE, run(cmd=("other",))) == ["/entry", "other"]
    assert oci_spec.argv(IMAGE, run(entrypoint=("/bin/sh", "-c"))) == ["/bin/sh", "-c", "serve", "--port", "8080"]
    assert oci_spec.argv(IMAGE, run(exec_=("/bin/true",), cmd=("ignored",))) == ["/bin/true"]
    with pytest.raises(SpecError, match="nothing to run"):
        oci_spec.argv({}, run())


def test_the_spec_isolates_limits_and_layers_the_environment():
    spec = oci_spec.runtime_spec(IMAGE, run(cpus=2, cpu_kind="performance", netns="/var/run/netns/x",
                                            cgroups_path="/roost-h/m1", mounts=(("/vol", "/data", False),)),
                                 PASSWD, GROUP)
    process = spec["process"]
    assert process["user"] == {"uid": 1000, "gid": 1001} and process["cwd"] == "/app"
    env = dict(e.split("=", 1) for e in process["env"])
    assert env["A"] == "machine" and env["PATH"] == "/opt/bin:/bin" and env["HOSTNAME"] == "m1"
    assert spec["hostname"] == "m1" and spec["root"] == {"path": "/r", "readonly": False}
    kinds = {n["type"]: n.get("path") for n in spec["linux"]["namespaces"]}
    assert kinds == {"pid": None, "ipc": None, "uts": None, "mount": None, "cgroup": None,
                     "network": "/var/run/netns/x"}
    resources = spec["linux"]["resources"]
    assert resources["memory"] == {"limit": 512 << 20, "swap": 512 << 20}
    assert resources["cpu"]["quota"] == 200_000 and resources["cpu"]["period"] == 100_000
    assert resources["pids"]["limit"] == oci_spec.DEFAULT_PIDS_LIMIT
    assert "CAP_SYS_ADMIN" not in process["capabilities"]["bounding"]
    sys_mounts = {m["destination"]: m for m in spec["mounts"]}
    assert "ro" in sys_mounts["/sys/fs/cgroup"]["options"] and "ro" in sys_mounts["/sys"]["options"]
    assert sys_mounts["/data"]["source"] == "/vol" and "rw" in sys_mounts["/data"]["options"]
    json.dumps(spec)  # what runc reads


def test_users_numeric_named_and_unknown():
    assert oci_spec.user_ids("", PASSWD) == (0, 0)
    assert oci_spec.user_ids("1000", PASSWD) == (1000, 1001)
    assert oci_spec.user_ids("4242") == (4242, 0)
    assert oci_spec.user_ids("app:staff", PASSWD, GROUP) == (1000, 50)
    assert oci_spec.user_ids("7:8") == (7, 8)
    with pytest.raises(SpecError, match="not in the image's /etc/passwd"):
        oci_spec.user_ids("nobody", PASSWD)
    with pytest.raises(SpecError, match="group 'wheel'"):
        oci_spec.user_ids("app:wheel", PASSWD, GROUP)


def test_mounts_must_be_absolute_and_without_dotdot():
    with pytest.raises(SpecError, match="absolute path"):
        oci_spec.runtime_spec({"Cmd": ["x"]}, run(mounts=(("/v", "data", False),)))
    with pytest.raises(SpecError, match="absolute path"):
        oci_spec.runtime_spec({"Cmd": ["x"]}, run(mounts=(("/v", "/a/../etc", False),)))


def manifest(layers=((("sha256:" + "a" * 64), 10),)) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"digest": "sha256:" + "c" * 64, "size": 2},
                       "layers": [{"digest": d, "size": s} for d, s in layers]}).encode()


def test_an_index_gives_its_linux_amd64_manifest_and_says_what_it_has_otherwise():
    index = json.dumps({"mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"digest": "sha256:" + "1" * 64, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"digest": "sha256:" + "2" * 64, "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
    assert oci_manifest.is_index(index) and not oci_manifest.is_index(manifest())
    assert oci_manifest.platform_digest(index) == "sha256:" + "2" * 64
    arm_only = json.dumps({"manifests": [{"digest": "sha256:" + "1" * 64,
                                          "platform": {"os": "linux", "architecture": "arm64"}}]}).encode()
    with pytest.raises(ManifestError, match=r"no linux/amd64 variant \(it has: linux/arm64\)"):
        oci_manifest.platform_digest(arm_only)


def test_a_manifest_its_size_digest_and_config_platform():
    raw = manifest(((("sha256:" + "a" * 64), 10), (("sha256:" + "b" * 64), 32)))
    found = oci_manifest.manifest(raw)
    assert found.size == 42 and found.digest == oci_manifest.digest_of(raw)
    assert found.config_digest == "sha256:" + "c" * 64
    assert oci_manifest.check_platform(b'{"os":"linux","architecture":"amd64","config":{"Cmd":["x"]}}') == \
        {"Cmd": ["x"]}
    with pytest.raises(ManifestError, match="the image is for linux/arm64"):
        oci_manifest.check_platform(b'{"os":"linux","architecture":"arm64"}')
    with pytest.raises(ManifestError, match="not JSON"):
        oci_manifest.manifest(b"<html>")
    with pytest.raises(ManifestError, match="unsupported manifest type"):
        oci_manifest.manifest(b'{"mediaType":"application/vnd.docker.distribution.manifest.v1+json"}')


def test_exec_requests():
    assert exec_request({"command": ["ls", "-l"]}) == (["ls", "-l"], b"", 30.0)
    assert exec_request({"cmd": "sh -c 'echo hi'", "stdin": "x", "timeout": 5}) == (["sh", "-c", "echo hi"], b"x", 5.0)
    for bad, message in (({"command": []}, "non-empty"), ({"command": "ls"}, "non-empty"),
                         ({"cmd": "'unclosed"}, "cmd:"), ({"command": ["ls"], "timeout": 601}, "timeout"),
                         ({"command": ["ls"], "timeout": True}, "timeout"), ({"command": ["a\x00"]}, "NUL"),
                         ([], "body must be")):
        with pytest.raises(RoostError, match=message):
            exec_request(bad)


def test_listening_sockets_from_proc_net_tables():
    tcp = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
           "   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1\n"
           "   1: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1\n"
           "   2: 0100007F:0051 0100007F:9999 01 00000000:00000000 00:00000000 00000000     0        0 111 1\n")
    assert listening(tcp, {"111"}, v6=False) == ["0.0.0.0:8080"]
    assert listening(tcp, {"111", "222"}, v6=False) == ["0.0.0.0:8080", "127.0.0.1:80"]
    tcp6 = ("header\n   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A "
            "00000000:00000000 00:00000000 00000000     0        0 333 1\n")
    assert listening(tcp6, {"333"}, v6=True) == ["[::]:8080"]


def test_machine_addresses_are_the_lowest_free_after_the_hosts_own():
    assert machine_address("10.213.0.0/24", set()) == "10.213.0.2"
    assert machine_address("10.213.0.0/24", {"10.213.0.2", "10.213.0.4"}) == "10.213.0.3"
    with pytest.raises(RoostError, match="no free machine address"):
        machine_address("10.213.0.0/30", {"10.213.0.2"})


def test_registry_access_and_errors():
    access = RegistryAccess(insecure=frozenset({"reg.internal:5000"}))
    assert access.plain_http("127.0.0.1:5000") and access.plain_http("localhost:5000")
    assert access.plain_http("[::1]:5000") and access.plain_http("reg.internal:5000")
    assert not access.plain_http("ghcr.io") and not access.plain_http("10.0.0.1:5000")
    assert "no such image or tag" in explain('time="x" level=fatal msg="reading manifest nope: manifest unknown"')
    assert "unreachable" in explain("dial tcp 127.0.0.1:1: connect: connection refused")
    assert "refused access" in explain("unauthorized: authentication required")


def test_commands_are_found_inside_the_image_and_symlinks_stay_in_it(tmp_path):
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "busybox").write_text("#!/bin/sh\n")
    (root / "bin" / "busybox").chmod(0o755)
    (root / "bin" / "sh").symlink_to("/bin/busybox")  # absolute: inside the machine's root, not the host's
    (root / "bin" / "escape").symlink_to("../../../../../../usr/bin/env")
    (root / "bin" / "data").write_text("x")
    assert find_command(root, "sh", "/usr/bin:/bin") == "/bin/sh"
    assert find_command(root, "/bin/busybox", "") == "/bin/busybox"
    with pytest.raises(DriverError, match="not found in the image"):
        find_command(root, "escape", "/bin")
    with pytest.raises(DriverError, match="not executable"):
        find_command(root, "/bin/data", "")
    with pytest.raises(DriverError, match=r"looked in PATH=/usr/bin"):
        find_command(root, "python3", "/usr/bin")

