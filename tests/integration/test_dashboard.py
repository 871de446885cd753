"""Issue 20, the web dashboard in a real browser: Debian's headless Chromium, driven by Selenium, against a real
fleet. Nothing but the login form is served without a token; after logging in, a person sees the fleet's regions,
hosts and machines, and a machine stopped through the API turns "stopped" on the page without a reload; an app's
page shows its machines by process group and region, its cost and its logs as they are written; an unknown app
is a 404 page. Screenshots go to the test's output directory (and to $ROOST_SCREENSHOTS when set)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Fleet

pytestmark = pytest.mark.integration

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if CHROMIUM is None or DRIVER is None:  # ./scripts/test installs both as root; without them, say so
    pytest.skip("needs Debian's chromium and chromium-driver (./scripts/setup installs them as root)",
                allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

SERVICE = {"protocol": "tcp", "internal_port": 8080, "ports": [{"port": 80, "handlers": ["http"]}],
           "autostop": "off", "autostart": False}


@pytest.fixture(scope="module")
def dfleet(tmp_path_factory):
    f = Fleet(tmp_path_factory.mktemp("dashboard"), ["ams", "ewr"], 1, proxies=True, idle_interval=3600.0)
    f.push_example("hello:v1")
    f.api.post("/v1/apps", json={"app_name": "shown", "primary_region": "ams"})
    f.machines = []
    for region in ("ams", "ewr"):
        m = f.api.post("/v1/apps/shown/machines", json={"region": region, "config": {
            "image": "hello:v1", "services": [SERVICE]}}).json()
        f.api.get(f"/v1/apps/shown/machines/{m['id']}/wait", params={"state": "started", "timeout": 30})
        f.machines.append(m)
    yield f
    f.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # --ignore-certificate-errors: the fleet's API speaks TLS under the fleet's own CA, which this throwaway
    # browser profile does not hold; everything stays on loopback.
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--ignore-certificate-errors", "--no-first-run",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def snap(driver, shots: Path, name: str) -> None:
    path = shots / f"{name}.png"
    driver.save_screenshot(str(path))
    extra = os.environ.get("ROOST_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / path.name)


def row_state(driver, machine_id: str) -> str:
    rows = driver.find_elements(By.CSS_SELECTOR, f'tr[data-machine="{machine_id}"] .state')
    return rows[0].text if rows else ""


def test_nothing_but_the_login_form_is_served_without_a_token(dfleet):
    f = dfleet
    with httpx.Client(base_url=f.url, verify=f.verify, trust_env=False, timeout=10) as anonymous:
        for path in ("/ui", "/ui/apps/shown", "/ui/static/ui.js"):
            r = anonymous.get(path)
            assert r.status_code == 303 and r.headers["location"] == "/ui/login", (path, r.status_code)
        form = anonymous.get("/ui/login")
        assert form.status_code == 200 and 'name="token"' in form.text
        assert "frame-ancestors 'none'" in form.headers["content-security-policy"]
        refused = anonymous.post("/ui/login", data={"token": "rt1_not-a-token"})
        assert refused.status_code == 401 and "Unknown or revoked token" in refused.text
        deploy = f.api.post("/v1/tokens", json={"kind": "deploy", "app": "shown", "name": "d"}).json()["token"]
        assert anonymous.post("/ui/login", data={"token": deploy}).status_code == 403
        readonly = f.api.post("/v1/tokens", json={"kind": "readonly", "name": "viewer"}).json()["token"]
        ok = anonymous.post("/ui/login", data={"token": readonly})
        assert ok.status_code == 303 and "HttpOnly" in ok.headers["set-cookie"] and \
            "SameSite=strict" in ok.headers["set-cookie"].replace("Strict", "strict")
    # the cookie reads the API; it never writes through it
    with httpx.Client(base_url=f.url, verify=f.verify, trust_env=False, timeout=10,
                      cookies={"roost_session": readonly}) as session:
        assert session.get("/v1/apps").status_code == 200
        assert session.post("/v1/apps", json={"app_name": "x"}).status_code == 401
    with httpx.Client(base_url=f.url, verify=f.verify, trust_env=False, timeout=10,
                      cookies={"roost_session": "nonsense"}) as forged:
        assert forged.get("/v1/apps").status_code == 401 and forged.get("/ui").status_code == 303


def test_a_person_sees_the_fleet_and_a_stopped_machine_turn_stopped_live(dfleet, browser, shots):
    f, driver = dfleet, browser
    driver.get(f"{f.url}/ui")
    WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "token"))
    assert "/ui/login" in driver.current_url
    readonly = f.api.post("/v1/tokens", json={"kind": "readonly", "name": "browser"}).json()["token"]
    driver.find_element(By.ID, "token").send_keys(readonly)
    snap(driver, shots, "login")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "section.region"))
    paint = driver.execute_script(  # first contentful paint, or (where headless reports none) the page loaded
        "const p = performance.getEntriesByName('first-contentful-paint')[0];"
        "return p ? p.startTime : performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
    regions = [s.get_attribute("data-region") for s in driver.find_elements(By.CSS_SELECTOR, "section.region")]
    assert regions == ["ams", "ewr"]
    hosts = {a.get_attribute("data-host") for a in driver.find_elements(By.CSS_SELECTOR, "article.host")}
    assert hosts == {m["host_id"] for m in f.machines}
    for m in f.machines:
        assert row_state(driver, m["id"]) == "started"
    time.sleep(0.5)  # the page's watch stream is open
    target = f.machines[0]
    stored: list[float] = []  # when the API first says "stopped" (polled every 10 ms beside the browser)

    def watch_api() -> None:
        with httpx.Client(base_url=f.url, headers={"Authorization": f"Bearer {f.token}"}, verify=f.verify,
                          trust_env=False, timeout=5) as c:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if c.get(f"/v1/apps/shown/machines/{target['id']}").json()["state"] == "stopped":
                    stored.append(time.monotonic())
                    return
                time.sleep(0.01)

    poller = threading.Thread(target=watch_api)
    began = time.monotonic()
    poller.start()
    f.api.post(f"/v1/apps/shown/machines/{target['id']}/stop")
    WebDriverWait(driver, 20, poll_frequency=0.01).until(lambda d: row_state(d, target["id"]) == "stopped")
    shown = time.monotonic()
    poller.join()
    snap(driver, shots, "fleet")
    print(f"dashboard: first paint {paint:.0f} ms; a stop shown {(shown - began) * 1000:.0f} ms after the call "
          f"(the machine's own stop included), {(shown - stored[0]) * 1000:.0f} ms after the API said stopped")
    assert driver.execute_script("return performance.getEntriesByType('navigation')[0].type") == "navigate", \
        "changed in place, not by a reload"
    f.api.post(f"/v1/apps/shown/machines/{target['id']}/start")
    WebDriverWait(driver, 20, poll_frequency=0.02).until(lambda d: row_state(d, target["id"]) == "started")


def test_an_apps_page_shows_its_machines_cost_and_live_logs(dfleet, browser, shots):
    f, driver = dfleet, browser
    driver.get(f"{f.url}/ui/apps/shown")
    WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "table.machines"))
    tables = {(t.get_attribute("data-group"), t.get_attribute("data-region"))
              for t in driver.find_elements(By.CSS_SELECTOR, "table.machines")}
    assert tables == {("app", "ams"), ("app", "ewr")} or tables == {("-", "ams"), ("-", "ewr")}, tables
    for m in f.machines:
        assert row_state(driver, m["id"]) == "started"
    assert "autostop saved" in driver.find_element(By.ID, "cost").text
    m = f.machines[1]
    marker = f"/seen-{uuid.uuid4().hex[:8]}"
    time.sleep(0.5)  # the page follows the logs
    port = m["roost"]["ports"]["8080"]
    httpx.get(f"http://{m['private_ip']}:{port}{marker}", timeout=5, trust_env=False)
    WebDriverWait(driver, 20, poll_frequency=0.05).until(
        lambda d: marker in d.find_element(By.CSS_SELECTOR, "pre.logs").text)
    snap(driver, shots, "app")
    driver.get(f"{f.url}/ui/apps/nope")
    assert "no app 'nope'" in driver.find_element(By.TAG_NAME, "main").text
    with httpx.Client(base_url=f.url, verify=f.verify, trust_env=False, timeout=10,
                      cookies={"roost_session": f.token}) as session:
        assert session.get("/ui/apps/nope").status_code == 404


def test_a_drill_is_drawn_live_and_its_chart_shows_the_shift(dfleet, browser, shots):
    """`roost drill stop-machine` under load: its page follows it while it runs and, once finished, draws its
    timeline: the stopped machine's traffic goes to the other one between the fault and the heal."""
    f, driver = dfleet, browser
    for m in f.machines:  # both machines started, and known to every edge
        if f.api.get(f"/v1/apps/shown/machines/{m['id']}").json()["state"] != "started":
            f.api.post(f"/v1/apps/shown/machines/{m['id']}/start")
        f.api.get(f"/v1/apps/shown/machines/{m['id']}/wait", params={"state": "started", "timeout": 30})
    target = f.machines[0]
    drill = subprocess.Popen([sys.executable, "-m", "roost", "drill", "stop-machine", "-a", "shown", "--target",
                              target["id"], "--rps", "30", "--duration", "8s", "--at", "2s", "--heal-after", "3s",
                              "--client-region", target["region"], "--json"],
                             env=f.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        listed = f.wait_for(lambda: f.api.get("/v1/apps/shown/drills").json(), what="the drill to announce itself")
        drill_id = listed[0]["drill"]
        driver.get(f"{f.url}/ui/apps/shown/drills/{drill_id}")
        state = driver.find_element(By.ID, "drill-state").get_attribute("data-state")
        assert state == "running", "the page of a drill in progress"
        WebDriverWait(driver, 15, poll_frequency=0.1).until(
            lambda d: int(d.find_element(By.ID, "traffic").get_attribute("data-points") or 0) > 0)
        snap(driver, shots, "drill-running")
        out, err = drill.communicate(timeout=60)
    finally:
        if drill.poll() is None:
            drill.kill()
            drill.wait()
    assert drill.returncode in (0, 1), err
    report = json.loads(out)
    # the page notices the end and draws the report
    WebDriverWait(driver, 20, poll_frequency=0.1).until(lambda d: d.find_elements(By.ID, "chart-drill"))
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "chart-drill").get_attribute("data-series"))
    series = json.loads(driver.find_element(By.ID, "chart-drill").get_attribute("data-series"))
    assert set(series) == {m["id"] for m in f.machines}
    drawn = json.loads(driver.find_element(By.ID, "drill-data").get_attribute("textContent"))
    assert drawn["buckets"] == report["timeline"]["buckets"] and drawn["fault_at_s"] == report["fault_at_s"]
    other = f.machines[1]["id"]
    during = [b for b in drawn["buckets"]
              if drawn["fault_at_s"] + 0.5 <= b["start"] and b["start"] + drawn["width_s"] <= drawn["heal_at_s"]]
    assert during and sum(b["ok"].get(target["id"], 0) for b in during) == 0, "nothing to the stopped machine"
    assert sum(b["ok"].get(other, 0) for b in during) > 0, "the chart shows its traffic shifted to the other"
    assert driver.find_element(By.CSS_SELECTOR, "p.verdict").get_attribute("data-passed") in ("True", "False")
    snap(driver, shots, "drill")
    driver.get(f"{f.url}/ui/apps/shown")
    assert drill_id in driver.find_element(By.ID, "drills").text
    WebDriverWait(driver, 10, poll_frequency=0.1).until(
        lambda d: int(d.find_element(By.ID, "traffic").get_attribute("data-points") or 0) > 0)
    served = json.loads(driver.find_element(By.ID, "traffic").get_attribute("data-served"))
    assert set(served) == {m["id"] for m in f.machines}, "requests/s per machine, from the edges"
