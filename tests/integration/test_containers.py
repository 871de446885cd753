"""Issue 16: machines from OCI images in containers, each with a network of its own, on a real fleet (server,
agents on the container driver, edges) with a real registry on loopback."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from roost.agent.drivers.container import runc_available
from roost.agent.oci_images import oci_tools_available
from tests.images import build_oci_image, busybox_rootfs, push
from tests.integration.conftest import Fleet, free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (runc_available() and oci_tools_available()),
                       reason="needs root, runc, tini, skopeo and umoci (./scripts/setup installs them)"),
]
HTTPD = ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]


@pytest.fixture(scope="module")
def cfleet(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("containers")
    f = Fleet(tmp / "fleet", ["ams"], 1, proxies=True, driver="container", registry_port=free_port(),
              server_args=("--allow-registry", "127.0.0.1:*"))
    f.registry = f.info["registry"]["address"]
    rootfs = busybox_rootfs(tmp / "rootfs")
    build_oci_image(tmp / "layout", "httpd", rootfs, HTTPD, ports=["8080/tcp"])
    f.httpd_digest = push(tmp / "layout", "httpd", f"{f.registry}/some/httpd:1")
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
    assert f.api.get("/v1/apps/nothing/machines").json() == []


def _get(url: str) -> str | None:
    try:
        r = httpx.get(url, timeout=2, trust_env=False)
    except httpx.HTTPError:
        return None
    return r.text if r.status_code == 200 else None
