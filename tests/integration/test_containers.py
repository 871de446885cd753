"""Issue 16: machines from OCI images in containers, each with a network of its own, on a real fleet (server,
agents on the container driver, edges) with a real registry on loopback."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import sys

import httpx
import pytest

from roost.agent.drivers.container import runc_available
from roost.agent.oci_images import oci_tools_available
from roost.client import oci_build
from tests.images import build_oci_image, busybox_rootfs, push
from tests.integration.conftest import EXAMPLES, ROOT, Fleet, free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (runc_available() and oci_tools_available()),
                       reason="needs root, runc, tini, skopeo and umoci (./scripts/setup installs them)"),
]
HTTPD = ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]


def fleet_with_httpd_image(tmp, driver: str, proxies: bool) -> Fleet:
    f = Fleet(tmp / "fleet", ["ams"], 1, proxies=proxies, driver=driver, registry_port=free_port())
    f.registry = f.info["registry"]["address"]
    rootfs = busybox_rootfs(tmp / "rootfs")
    build_oci_image(tmp / "layout", "httpd", rootfs, HTTPD, ports=["8080/tcp"])
    f.httpd_digest = push(tmp / "layout", "httpd", f"{f.registry}/some/httpd:1")
    # The same image said to be for another architecture: a fleet of amd64 hosts refuses it.
    oci_build.set_config(tmp / "layout", "httpd", architecture="arm64")
    push(tmp / "layout", "httpd", f"{f.registry}/some/arm:1")
    return f


@pytest.fixture(scope="module")
def cfleet(tmp_path_factory):
    f = fleet_with_httpd_image(tmp_path_factory.mktemp("containers"), "container", proxies=True)
    yield f
    f.close()


def service(port: int = 8080) -> dict:
    return {"protocol": "tcp", "internal_port": port, "autostop": "off", "autostart": True,
            "ports": [{"port": 80, "handlers": ["http"]}]}


def test_a_registry_image_runs_in_its_own_network_and_answers_through_the_edge(cfleet):
    f = cfleet
    assert f.api.post("/v1/apps", json={"app_name": "boxes", "primary_region": "ams"}).status_code == 201
    image = f"{f.registry}/some/httpd:1"
    machines = []
    for _ in range(2):
        r = f.api.post("/v1/apps/boxes/machines", json={"config": {"image": image, "services": [service()]}})
        assert r.status_code == 200, r.text
        machines.append(r.json())
    for m in machines:
        r = f.api.get(f"/v1/apps/boxes/machines/{m['id']}/wait", params={"state": "started", "timeout": 60})
        assert r.status_code == 200, r.text
    # The digest that runs is the one the registry holds for the tag, as Fly's image_ref says.
    assert {m["image_ref"]["digest"] for m in machines} == {f.httpd_digest}
    assert machines[0]["image_ref"]["repository"] == "some/httpd"
    # Both machines are on the one host, each with an address of its own, both listening on 8080 themselves.
    host = f.info["hosts"][0]
    subnet = ipaddress.IPv4Network(next(a for a in host["argv"][host["argv"].index("--machine-net") + 1:][:1]))
    addresses = {m["private_ip"] for m in machines}
    assert len(addresses) == 2 and all(ipaddress.IPv4Address(a) in subnet for a in addresses)
    for m in machines:
        env = f.api.post(f"/v1/apps/boxes/machines/{m['id']}/exec", json={"command": ["env"]}).json()["stdout"]
        assert f"ROOST_GATEWAY={next(subnet.hosts())}\n" in env, "where its host is, on its own network"
        assert m["roost"]["ports"] == {"8080": 8080}
        body = f.wait_for(lambda m=m: _get(f"http://{m['private_ip']}:8080/"), timeout=20, what="httpd to answer")
        assert body == "hello from busybox\n"
    # Through the edge, as a user sees it.
    r = httpx.get(f"{f.edge('ams')['url']}/", headers={"Host": "boxes.localhost"}, timeout=20, trust_env=False)
    assert r.status_code == 200 and r.text == "hello from busybox\n"


def test_a_tag_that_does_not_exist_is_a_clear_422_and_creates_nothing(cfleet):
    f = cfleet
    assert f.api.post("/v1/apps", json={"app_name": "nothing", "primary_region": "ams"}).status_code == 201
    r = f.api.post("/v1/apps/nothing/machines", json={"config": {"image": f"{f.registry}/some/httpd:nope"}})
    assert r.status_code == 422 and "no such image or tag" in r.json()["error"]
    r = f.api.post("/v1/apps/nothing/machines", json={"config": {"image": "docker.io/library/nginx:alpine"}})
    assert r.status_code == 422 and "pulls only from 127.0.0.1:*" in r.json()["error"]
    r = f.api.post("/v1/apps/nothing/machines", json={"config": {"image": f"127.0.0.1:{free_port()}/gone:1"}})
    assert r.status_code == 422 and "the registry is unreachable" in r.json()["error"]
    r = f.api.post("/v1/apps/nothing/machines", json={"config": {"image": f"{f.registry}/some/arm:1"}})
    assert r.status_code == 422 and "the image is for linux/arm64" in r.json()["error"]
    assert f.api.get("/v1/apps/nothing/machines").json() == []


def _get(url: str) -> str | None:
    try:
        r = httpx.get(url, timeout=2, trust_env=False)
    except httpx.HTTPError:
        return None
    return r.text if r.status_code == 200 else None


def test_exec_runs_in_the_machine_and_ps_lists_its_processes(cfleet):
    f = cfleet
    m = f.api.get("/v1/apps/boxes/machines").json()[0]
    r = f.api.post(f"/v1/apps/boxes/machines/{m['id']}/exec", json={"command": ["hostname"]})
    assert r.status_code == 200, r.text
    assert r.json() == {"stdout": f"{m['id']}\n", "stderr": "", "exit_code": 0, "exit_signal": None}
    r = f.api.post(f"/v1/apps/boxes/machines/{m['id']}/exec", json={"cmd": "sh -c 'echo oops >&2; exit 7'"})
    assert r.json()["exit_code"] == 7 and r.json()["stderr"] == "oops\n"
    r = f.api.post(f"/v1/apps/boxes/machines/{m['id']}/exec", json={"command": ["cat"], "stdin": "typed in"})
    assert r.json()["stdout"] == "typed in"
    r = f.api.post(f"/v1/apps/boxes/machines/{m['id']}/exec", json={"command": ["sleep", "30"], "timeout": 1})
    assert r.status_code == 408 and "did not finish within 1 s" in r.json()["error"]
    r = f.api.post(f"/v1/apps/boxes/machines/{m['id']}/exec", json={"command": []})
    assert r.status_code == 400 and "non-empty list" in r.json()["error"]
    # The machine's own view: its init (pid 1) and httpd listening on 0.0.0.0:8080 (or [::]:8080).
    procs = f.api.get(f"/v1/apps/boxes/machines/{m['id']}/ps").json()
    assert procs[0]["pid"] == 1 and procs[0]["command"].startswith("/.roost/init")
    httpd = next(p for p in procs if p["command"].startswith("/bin/httpd"))
    assert {s["address"] for s in httpd["listen_sockets"]} & {"0.0.0.0:8080", "[::]:8080"}
    # The CLI: output and exit code as the command's.
    done = f.roost("machine", "exec", m["id"], "-a", "boxes", "--", "sh", "-c", "echo hi; exit 3", check=False)
    assert done.returncode == 3 and done.stdout == "hi\n"


def test_a_machine_sees_nothing_of_the_host_or_other_machines(cfleet):
    f = cfleet
    a, b = f.api.get("/v1/apps/boxes/machines").json()[:2]
    host = f.info["hosts"][0]

    def run(*command: str) -> dict:
        r = f.api.post(f"/v1/apps/boxes/machines/{a['id']}/exec", json={"command": list(command)})
        assert r.status_code == 200, r.text
        return r.json()

    probes = isolation_probes(f, host, b["id"], run)
    assert probes == {"processes": probes["processes"], "agent_data": False, "admin_token": False,
                      "other_rootfs": False, "left_cgroup": False}
    assert probes["processes"] <= 4, "only its init, httpd and the probe itself"


def isolation_probes(f: Fleet, host: dict, other_machine: str, run) -> dict:
    """What a machine can reach of its host: the same probes on either driver (the process driver fails them)."""
    server_dir = f.info["server"]["data_dir"]
    agent_dir = host["data_dir"]
    return {
        "processes": len([p for p in run("ls", "/proc")["stdout"].split() if p.isdigit()]),
        "agent_data": run("ls", f"{agent_dir}/records")["exit_code"] == 0,
        "admin_token": run("cat", f"{server_dir}/admin-token")["exit_code"] == 0,
        "other_rootfs": run("ls", f"{agent_dir}/machines/{other_machine}")["exit_code"] == 0,
        "left_cgroup": run("sh", "-c", "echo $$ > /sys/fs/cgroup/pids/cgroup.procs")["exit_code"] == 0,
    }


def test_the_process_driver_isolates_nothing_the_same_probes_show_it(tmp_path_factory):
    """The isolation probes are real: on the process driver (which says it does not isolate) each one succeeds."""
    f = fleet_with_httpd_image(tmp_path_factory.mktemp("processes"), "process", proxies=False)
    try:
        assert f.api.post("/v1/apps", json={"app_name": "plain", "primary_region": "ams"}).status_code == 201
        config = {"image": f"{f.registry}/some/httpd:1", "init": {"cmd": ["/bin/sleep", "3600"]}}
        ids = [f.api.post("/v1/apps/plain/machines", json={"config": config}).json()["id"] for _ in range(2)]
        for mid in ids:
            assert f.api.get(f"/v1/apps/plain/machines/{mid}/wait",
                             params={"state": "started", "timeout": 60}).status_code == 200

        def run(*command: str) -> dict:
            r = f.api.post(f"/v1/apps/plain/machines/{ids[0]}/exec", json={"command": list(command)})
            assert r.status_code == 200, r.text
            return r.json()

        probes = isolation_probes(f, f.info["hosts"][0], ids[1], run)
        assert probes["processes"] > 20
        assert probes == {"processes": probes["processes"], "agent_data": True, "admin_token": True,
                          "other_rootfs": True, "left_cgroup": True}
    finally:
        f.close()


def test_a_new_machine_on_a_freed_address_answers_at_once_and_destroy_leaves_no_process(cfleet):
    """A destroyed machine's address goes to the next one: the host still holds the old MAC for it in its ARP
    cache, so the new machine's MAC must be the same (it comes from the address), or it is unreachable for
    seconds. And a process a machine started in a session of its own dies with it."""
    f = cfleet
    assert f.api.post("/v1/apps", json={"app_name": "reuse", "primary_region": "ams"}).status_code == 201
    config = {"image": f"{f.registry}/some/httpd:1"}
    first = f.api.post("/v1/apps/reuse/machines", json={"config": config}).json()
    f.api.get(f"/v1/apps/reuse/machines/{first['id']}/wait", params={"state": "started", "timeout": 60})
    f.wait_for(lambda: _get(f"http://{first['private_ip']}:8080/"), timeout=20, what="the first machine")
    r = f.api.post(f"/v1/apps/reuse/machines/{first['id']}/exec",
                   json={"command": ["sh", "-c", "setsid sleep 4242 >/dev/null 2>&1 < /dev/null &"]})
    assert r.status_code == 200, r.text
    assert _sleepers("4242"), "the escaped process runs"
    assert f.api.delete(f"/v1/apps/reuse/machines/{first['id']}", params={"force": "true"}).status_code == 200
    f.wait_for(lambda: not _sleepers("4242"), timeout=10, what="the escaped process to die with its machine")
    second = f.api.post("/v1/apps/reuse/machines", json={"config": config}).json()
    assert second["private_ip"] == first["private_ip"]
    f.api.get(f"/v1/apps/reuse/machines/{second['id']}/wait", params={"state": "started", "timeout": 60})
    f.wait_for(lambda: _get(f"http://{second['private_ip']}:8080/"), timeout=1.5, interval=0.01,
               what="the new machine on the freed address to answer")


def _sleepers(arg: str) -> list[int]:
    from pathlib import Path

    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", arg.encode()]:
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


def test_roost_image_push_of_a_directory_runs_on_the_container_driver(cfleet):
    """Today's examples, unchanged: `roost image push DIR` makes an OCI image (the directory at /app on a Debian
    base with Python built from Debian packages), pushes it to the fleet's registry and names it; a machine
    that says "hello:v1" runs it in a container."""
    f = cfleet
    pushed = f.roost("image", "push", str(EXAMPLES / "hello"), "--name", "hello:v1", "--cmd", "python3 app.py",
                     "--json", timeout=600)
    image = json.loads(pushed.stdout)
    assert image["source"] == "registry" and image["registry"] == f.registry and image["repository"] == "hello"
    assert image["cmd"] == ["python3", "app.py"]
    assert f.api.post("/v1/apps", json={"app_name": "hello", "primary_region": "ams"}).status_code == 201
    m = f.api.post("/v1/apps/hello/machines", json={"config": {"image": "hello:v1", "services": [service()]}}).json()
    assert m["image_ref"]["digest"] == image["digest"], "the machine runs the digest the name had"
    r = f.api.get(f"/v1/apps/hello/machines/{m['id']}/wait", params={"state": "started", "timeout": 60})
    assert r.status_code == 200, r.text
    body = f.wait_for(lambda: _get(f"http://{m['private_ip']}:8080/"), timeout=20, what="the app to listen")
    assert m["id"] in body
    r = httpx.get(f"{f.edge('ams')['url']}/", headers={"Host": "hello.localhost"}, timeout=20, trust_env=False)
    assert r.status_code == 200 and m["id"] in r.text
    # It is Debian's Python in the machine, not the host's.
    out = f.api.post(f"/v1/apps/hello/machines/{m['id']}/exec",
                     json={"command": ["python3", "-c", "import sys; print(sys.executable, sys.prefix)"]}).json()
    assert out["stdout"] == "/usr/bin/python3 /usr\n"


def test_a_dockerfile_app_is_built_with_buildah_and_deployed(cfleet, tmp_path):
    """`roost launch` in a directory with a Dockerfile: built with buildah (FROM scratch: no internet), pushed to
    the fleet's registry, run in containers, answering through the edge."""
    f = cfleet
    app = tmp_path / "boxed"
    busybox_rootfs(app / "root")
    (app / "root" / "www" / "index.html").write_text("built from a Dockerfile\n")
    (app / "Dockerfile").write_text('FROM scratch\nCOPY root /\nARG GREETING\nENV GREETING=$GREETING\n'
                                    'CMD ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]\n')
    (app / "fly.toml").write_text('app = "boxed"\nprimary_region = "ams"\n[build]\n  [build.args]\n'
                                  '    GREETING = "hello"\n[http_service]\n  internal_port = 8080\n'
                                  '  auto_stop_machines = "off"\n  min_machines_running = 1\n')
    out = f.roost("launch", "-c", str(app / "fly.toml"), timeout=600)
    assert "Building" in out.stdout and "buildah" in out.stdout, out.stdout
    machines = f.api.get("/v1/apps/boxed/machines").json()
    assert machines and all(m["image_ref"]["registry"] == f.registry for m in machines)
    for m in machines:
        f.api.get(f"/v1/apps/boxed/machines/{m['id']}/wait", params={"state": "started", "timeout": 60})
    body = f.wait_for(lambda: _get_edge(f, "boxed"), timeout=20, what="the built app through the edge")
    assert body == "built from a Dockerfile\n"
    env = f.api.post(f"/v1/apps/boxed/machines/{machines[0]['id']}/exec", json={"command": ["env"]}).json()
    assert "GREETING=hello\n" in env["stdout"], "build arguments reach the build"


@pytest.mark.skipif(shutil.which("buildah") is None, reason="needs buildah (./scripts/setup installs it)")
def test_roosts_own_container_image_builds_and_runs_the_control_plane(cfleet, tmp_path):
    """packaging/container/Containerfile, built with buildah as its header says for offline builds (a Debian base
    with python3-venv from Debian's packages, the wheels made here), runs `roost server` as a machine: not as root,
    its API answering through the edge, refusing without the token it made and serving with it."""
    f = cfleet
    context = tmp_path / "context"
    context.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", ".dockerignore"):
        shutil.copy(ROOT / name, context / name)
    for name in ("src", "packaging"):
        shutil.copytree(ROOT / name, context / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(context / "wheels"), str(context),
                    "setuptools", "wheel"], check=True, timeout=600, capture_output=True)
    base, tag = oci_build.base_image(tmp_path / "cache", ["python3-venv"])
    layout, built = oci_build.dockerfile_image(
        context, context / "packaging" / "container" / "Containerfile", tmp_path / "build",
        {"PYTHON": f"oci:{base}:{tag}", "PIP_OPTIONS": "--no-index --find-links /src/wheels"})
    push(layout, built, f"{f.registry}/roost/roost:test")
    assert f.api.post("/v1/apps", json={"app_name": "plane", "primary_region": "ams"}).status_code == 201
    r = f.api.post("/v1/apps/plane/machines", json={"config": {
        "image": f"{f.registry}/roost/roost:test", "services": [service(4280)], "guest": {"memory_mb": 512}}})
    assert r.status_code == 200, r.text
    mid = r.json()["id"]
    assert f.api.get(f"/v1/apps/plane/machines/{mid}/wait", params={"state": "started", "timeout": 60}).is_success

    def through_edge(token: str = "") -> httpx.Response | None:
        headers = {"Host": "plane.localhost", **({"Authorization": f"Bearer {token}"} if token else {})}
        try:
            r = httpx.get(f"{f.edge('ams')['url']}/v1/apps", headers=headers, timeout=5, trust_env=False)
        except httpx.HTTPError:
            return None
        return r if r.status_code in (200, 401) else None

    refused = f.wait_for(through_edge, timeout=60, what="the contained control plane to answer")
    assert refused.status_code == 401 and "error" in refused.json()

    def run(*command: str) -> str:
        done = f.api.post(f"/v1/apps/plane/machines/{mid}/exec", json={"command": list(command)}).json()
        assert done["exit_code"] == 0, done
        return str(done["stdout"])

    assert run("roost", "--version").startswith("roost ")
    # Written by the server itself, as the image's user, for its eyes only.
    assert run("stat", "-c", "%u %a", "/var/lib/roost/admin-token") == "10001 600\n"
    token = run("cat", "/var/lib/roost/admin-token").strip()
    served = through_edge(token)
    assert served is not None and served.status_code == 200 and served.json()["total_apps"] == 0


def _get_edge(f: Fleet, app: str) -> str | None:
    try:
        r = httpx.get(f"{f.edge('ams')['url']}/", headers={"Host": f"{app}.localhost"}, timeout=5, trust_env=False)
    except httpx.HTTPError:
        return None
    return r.text if r.status_code == 200 else None


def test_ssh_console_runs_a_shell_in_the_machine_and_exits_with_its_code(cfleet):
    import subprocess
    import sys

    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect

    f = cfleet
    assert f.api.post("/v1/apps", json={"app_name": "shell", "primary_region": "ams"}).status_code == 201
    m = f.api.post("/v1/apps/shell/machines", json={"config": {"image": f"{f.registry}/some/httpd:1"}}).json()
    f.api.get(f"/v1/apps/shell/machines/{m['id']}/wait", params={"state": "started", "timeout": 60})
    done = subprocess.run([sys.executable, "-m", "roost", "ssh", "console", "-a", "shell", "--machine", m["id"]],
                          input="hostname; ls /proc | grep -c '^[0-9]'\nexit 5\n", env=f.env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 5, done.stderr
    assert m["id"] in done.stdout, done.stdout
    # Nothing without a credential: the socket is refused before a shell starts.
    url = f.url.replace("https://", "wss://") + f"/v1/apps/shell/machines/{m['id']}/console"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, ssl=_ssl(f), additional_headers={"Authorization": "Bearer nope"})
    assert refused.value.response.status_code == 403
    # A stopped machine has no console: the reason comes back.
    stopped = f.api.post("/v1/apps/shell/machines", json={"config": {"image": f"{f.registry}/some/httpd:1"},
                                                          "skip_launch": True}).json()
    with connect(url.replace(m["id"], stopped["id"]), ssl=_ssl(f),
                 additional_headers={"Authorization": f"Bearer {f.token}"}) as ws:
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.protocol.close_code == 4412
        assert "a console opens only in a started machine" in ws.protocol.close_reason
    f.api.delete(f"/v1/apps/shell/machines/{stopped['id']}")


def _ssl(f: Fleet):
    import ssl

    return ssl.create_default_context(cafile=f.info["ca"])


NAMES_QUERY = """
import json, sys
import dns.message, dns.query, dns.rcode
reply = dns.query.udp(dns.message.make_query(sys.argv[2], sys.argv[3]), sys.argv[1], timeout=2)
values = sorted(r.to_text() for rrset in reply.answer for r in rrset)
print(json.dumps([dns.rcode.to_text(reply.rcode()), values]))
"""


def test_machines_find_each_other_by_internal_names(cfleet):
    """Issue 19: the host's resolver answers a machine, from inside its own network namespace, with its org's
    `.internal` names; another org's app does not exist; a stopped machine leaves the name within 2 s."""
    import subprocess
    import sys
    import time

    from roost.agent.netns import HostNetwork

    f = cfleet
    image = f"{f.registry}/some/httpd:1"
    assert f.api.post("/v1/apps", json={"app_name": "named", "primary_region": "ams"}).status_code == 201
    assert f.api.post("/v1/apps", json={"app_name": "theirs", "org_slug": "acme"}).status_code == 201
    mine = [f.api.post("/v1/apps/named/machines", json={"config": {"image": image, "services": [service()]}}).json()
            for _ in range(2)]
    f.api.post("/v1/apps/theirs/machines", json={"config": {"image": image, "services": [service()]}})
    for m in mine:
        assert f.api.get(f"/v1/apps/named/machines/{m['id']}/wait",
                         params={"state": "started", "timeout": 60}).status_code == 200
    host = f.info["hosts"][0]
    subnet = ipaddress.IPv4Network(host["argv"][host["argv"].index("--machine-net") + 1])
    gateway = str(next(subnet.hosts()))
    namespace = HostNetwork(host["id"]).netns_path(mine[0]["id"])

    def ask(name: str, qtype: str = "A") -> tuple[str, list[str]]:
        done = subprocess.run(["nsenter", f"--net={namespace}", sys.executable, "-c", NAMES_QUERY, gateway, name,
                               qtype], capture_output=True, text=True, timeout=10)
        assert done.returncode == 0, done.stderr
        rcode, values = json.loads(done.stdout)
        return rcode, values

    addresses = sorted(m["private_ip"] for m in mine)
    assert f.wait_for(lambda: ask("named.internal") == ("NOERROR", addresses) or None, timeout=10,
                      what="both machines under named.internal")
    assert ask(f"{mine[1]['id']}.vm.named.internal") == ("NOERROR", [mine[1]["private_ip"]])
    assert ask("ams.named.internal") == ("NOERROR", addresses)
    assert ask("top1.nearest.of.named.internal")[1][0] in addresses
    apps = ask("_apps.internal", "TXT")[1][0].strip('"').split(",")
    assert "named" in apps and "theirs" not in apps
    assert ask("theirs.internal")[0] == "NXDOMAIN"  # another org's app: not there at all
    assert ask("example.com")[0] == "REFUSED"
    # The machine's resolver is the host's: its /etc/resolv.conf says so.
    pids = subprocess.run(["ip", "netns", "pids", HostNetwork.machine_ns(mine[0]["id"])], capture_output=True,
                          text=True, timeout=5).stdout.split()
    assert any(f"nameserver {gateway}" in _read_text(f"/proc/{pid}/root/etc/resolv.conf") for pid in pids)
    # Stopped: out of the name within 2 s.
    assert f.api.post(f"/v1/apps/named/machines/{mine[1]['id']}/stop").status_code == 200
    stopped = time.monotonic()
    f.wait_for(lambda: ask("named.internal") == ("NOERROR", [mine[0]["private_ip"]]) or None, timeout=5,
               what="the stopped machine to leave named.internal")
    took = time.monotonic() - stopped
    print(f"a stopped machine left named.internal {took:.2f} s after the stop was accepted")
    assert took <= 2.0
    for app in ("named", "theirs"):
        f.api.delete(f"/v1/apps/{app}", params={"force": "true"})


CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print("open")
except OSError as exc:
    print(type(exc).__name__)
"""


def test_a_machine_reaches_its_orgs_machines_and_not_another_orgs(cfleet):
    """Issue 19: machines of one org talk to each other; another org's machine on the same bridge is not there
    (before, every machine of a host could reach every other on its bridge). The host and its edge reach all."""
    import subprocess
    import sys

    from roost.agent.netns import HostNetwork

    f = cfleet
    image = f"{f.registry}/some/httpd:1"
    assert f.api.post("/v1/apps", json={"app_name": "ours", "primary_region": "ams"}).status_code == 201
    assert f.api.post("/v1/apps", json={"app_name": "others", "org_slug": "acme"}).status_code == 201
    a, b = (f.api.post("/v1/apps/ours/machines", json={"config": {"image": image}}).json() for _ in range(2))
    c = f.api.post("/v1/apps/others/machines", json={"config": {"image": image}}).json()
    for app, m in (("ours", a), ("ours", b), ("others", c)):
        assert f.api.get(f"/v1/apps/{app}/machines/{m['id']}/wait",
                         params={"state": "started", "timeout": 60}).status_code == 200
    host = f.info["hosts"][0]

    def connect(source: dict, target: dict, timeout: float = 1.0) -> str:
        namespace = HostNetwork(host["id"]).netns_path(source["id"])
        done = subprocess.run(["nsenter", f"--net={namespace}", sys.executable, "-c", CONNECT, target["private_ip"],
                               "8080", str(timeout)], capture_output=True, text=True, timeout=10)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    f.wait_for(lambda: connect(a, b) == "open", timeout=10, what="a machine to reach its own org's machine")
    assert connect(b, a) == "open"
    assert connect(a, c) == "TimeoutError" and connect(c, b) == "TimeoutError"
    for m in (a, b, c):  # the host (and so an edge) reaches every machine
        assert _get(f"http://{m['private_ip']}:8080/") is not None
    for app in ("ours", "others"):
        f.api.delete(f"/v1/apps/{app}", params={"force": "true"})


def _read_text(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return ""
