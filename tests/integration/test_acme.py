"""Issue 15: certificates from an ACME CA. A real ACME server (Debian's `pebble`, on loopback, with its mock DNS
answering 127.0.0.1 for every name) issues an app's certificate: the control plane orders it, the edge
answers the CA's http-01 check on its HTTP port, the certificate is stored (its key sealed) and the edge
then presents it for that name, chained to pebble's root."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time

import httpx
import pytest

from roost import pki
from tests.integration.conftest import Fleet, free_port, free_port_block, stop_process
from tests.integration.test_proxy import _try, create_app

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("acme")
    ca = pki.new_ca("pebble's own TLS CA")  # pebble's directory is HTTPS: its certificate, from a CA we trust
    leaf = pki.issue(ca, ["127.0.0.1", "localhost"])
    for name, data in (("ca.pem", ca.cert), ("cert.pem", leaf.cert), ("key.pem", leaf.key)):
        (tmp / name).write_bytes(data)
    edge_port = free_port_block(1)  # the ams edge's HTTP port: where pebble checks http-01 answers
    dns, directory, management = free_port(), free_port(), free_port()
    (tmp / "pebble.json").write_text(json.dumps({"pebble": {
        "listenAddress": f"127.0.0.1:{directory}", "managementListenAddress": f"127.0.0.1:{management}",
        "certificate": str(tmp / "cert.pem"), "privateKey": str(tmp / "key.pem"), "httpPort": edge_port,
        "tlsPort": free_port(), "ocspResponderURL": "", "externalAccountBindingRequired": False}}))
    logs = [open(tmp / "challtestsrv.log", "w"), open(tmp / "pebble.log", "w")]  # noqa: SIM115 (closed below)
    procs = [subprocess.Popen(["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
                               "-dns01", f"127.0.0.1:{dns}", "-http01", "", "-https01", "", "-tlsalpn01", "",
                               "-management", f"127.0.0.1:{free_port()}"], stdout=logs[0], stderr=subprocess.STDOUT),
             subprocess.Popen(["pebble", "-config", str(tmp / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns}"],
                              env={**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"},
                              stdout=logs[1], stderr=subprocess.STDOUT)]
    fleet = None
    try:
        verify = ssl.create_default_context(cafile=str(tmp / "ca.pem"))
        url = f"https://127.0.0.1:{directory}/dir"
        for _ in range(200):
            if _try(lambda: httpx.get(url, verify=verify, trust_env=False, timeout=1)) is not None:
                break
            time.sleep(0.05)
        fleet = Fleet(tmp / "fleet", ["ams"], 1, proxies=True, idle_interval=3600.0, proxy_port=edge_port,
                      server_args=("--acme-directory", url, "--acme-ca", str(tmp / "ca.pem")))
        fleet.push_example("hello:v1")
        root = httpx.get(f"https://127.0.0.1:{management}/roots/0", verify=verify, trust_env=False).text
        yield fleet, root
    finally:
        if fleet is not None:
            fleet.close()
        for proc, log in zip(procs, logs, strict=True):
            stop_process(proc, log)


def test_an_app_gets_a_certificate_from_an_acme_ca_and_the_edge_presents_it(acme):
    fleet, pebble_root = acme
    create_app(fleet, "shop", 1)
    r = fleet.api.post("/v1/apps/shop/certificates/acme", json={"hostname": "www.shop.test"})
    assert r.status_code == 201 and r.json()["acme_requested"] and not r.json()["configured"], r.text
    detail = fleet.wait_for(lambda: (d := fleet.api.get("/v1/apps/shop/certificates/www.shop.test").json())
                            .get("status") in ("Ready", "failed") and d, timeout=60, what="the ACME order")
    assert detail["status"] == "Ready", detail
    assert detail["certificates"][0]["source"] == "fly" and "Pebble" in detail["certificates"][0]["issuer"]
    listed = fleet.api.get("/v1/apps/shop/certificates").json()["certificates"]
    assert [(c["hostname"], c["has_fly_certificate"]) for c in listed] == [("www.shop.test", True)]
    trust = ssl.create_default_context(cadata=pebble_root)

    def fetch() -> dict:
        with httpx.Client(verify=trust, trust_env=False, timeout=10) as c:
            return c.get(f"https://127.0.0.1:{fleet.edge('ams')['tls_port']}/headers",
                         headers={"Host": "www.shop.test"}, extensions={"sni_hostname": "www.shop.test"}).json()

    headers = fleet.wait_for(lambda: _try(fetch), timeout=10, what="the edge to present the ACME certificate")
    assert headers["x-forwarded-proto"] == "https"
    # A wildcard needs dns-01, which Roost does not answer: refused at the door.
    r = fleet.api.post("/v1/apps/shop/certificates/acme", json={"hostname": "*.shop.test"})
    assert r.status_code == 422 and "dns-01" in r.json()["error"]
