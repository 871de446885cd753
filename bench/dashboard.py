"""The web dashboard in a real browser (issue 20): first paint of the fleet page, and how long after a machine
is stopped the page shows it.

    .venv/bin/python bench/dashboard.py [--trials 20]

One fleet (two regions, one host each, TLS), two machines; Debian's headless Chromium driven by Selenium, logged
in with a read-only token. Per trial: the fleet page is loaded afresh (first contentful paint, from the browser's
own paint timing), then one machine is stopped through the API while a thread polls the API every 5 ms; the
figures are from the call to the row showing "stopped", and from the API first answering "stopped" to the row
showing it (the watch feed's and the page's share). The machine is started again between trials.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time

import httpx
from common import BenchFleet, summary_ms, table
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

SERVICE = {"protocol": "tcp", "internal_port": 8080, "ports": [{"port": 80, "handlers": ["http"]}]}


def browser(profile: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--ignore-certificate-errors", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=options)


def state_of(driver: webdriver.Chrome, machine: str) -> str:
    cells = driver.find_elements(By.CSS_SELECTOR, f'tr[data-machine="{machine}"] .state')
    return cells[0].text if cells else ""


def poll_until_stopped(f: BenchFleet, machine: str, stored: list[float]) -> None:
    """Note when the API first answers that the machine is stopped (polled every 5 ms, for 20 s at most)."""
    with httpx.Client(base_url=f.url, headers=f.headers, verify=f.verify, trust_env=False, timeout=5) as c:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if c.get(f"/v1/apps/seen/machines/{machine}").json()["state"] == "stopped":
                stored.append(time.monotonic())
                return
            time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    paints, after_call, after_api = [], [], []
    with BenchFleet(["ams", "ewr"], 1) as f, tempfile.TemporaryDirectory() as profile:
        f.push("hello:v1", "hello", ["python3", "app.py"])
        f.api.post("/v1/apps", json={"app_name": "seen", "primary_region": "ams"}).raise_for_status()
        machines = []
        for region in ("ams", "ewr"):
            m = f.api.post("/v1/apps/seen/machines", json={"region": region, "config": {
                "image": "hello:v1", "services": [SERVICE]}}).json()
            f.api.get(f"/v1/apps/seen/machines/{m['id']}/wait", params={"state": "started", "timeout": 30})
            machines.append(m)
        token = f.api.post("/v1/tokens", json={"kind": "readonly", "name": "bench"}).json()["token"]
        driver = browser(profile)
        try:
            driver.get(f"{f.url}/ui/login")
            driver.find_element(By.ID, "token").send_keys(token)
            driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "section.region"))
            target = machines[0]["id"]
            for _ in range(args.trials):
                driver.get(f"{f.url}/ui")
                WebDriverWait(driver, 20).until(lambda d: state_of(d, target) == "started")
                paints.append(driver.execute_script(
                    "const p = performance.getEntriesByName('first-contentful-paint')[0];"
                    "return p ? p.startTime : performance.getEntriesByType('navigation')[0]"
                    ".domContentLoadedEventEnd") / 1000)
                time.sleep(0.3)  # the page's watch stream is open
                stored: list[float] = []
                poller = threading.Thread(target=poll_until_stopped, args=(f, target, stored))
                began = time.monotonic()
                poller.start()
                f.api.post(f"/v1/apps/seen/machines/{target}/stop").raise_for_status()
                WebDriverWait(driver, 20, poll_frequency=0.005).until(lambda d: state_of(d, target) == "stopped")
                shown = time.monotonic()
                poller.join()
                after_call.append(shown - began)
                after_api.append(max(0.0, shown - stored[0]))
                f.api.post(f"/v1/apps/seen/machines/{target}/start").raise_for_status()
                f.api.get(f"/v1/apps/seen/machines/{target}/wait", params={"state": "started", "timeout": 30})
        finally:
            driver.quit()
    rows = []
    for name, values in (("first contentful paint of the fleet page", paints),
                         ("stop call → row shows stopped (the machine's own stop included)", after_call),
                         ("API says stopped → row shows it (watch feed + page)", after_api)):
        s = summary_ms(values)
        rows.append([name, s["n"], s["p50"], s["p99"], s["max"]])
    print(table("The dashboard in headless Chromium (ms)", ["measure", "n", "p50", "p99", "max"], rows))


if __name__ == "__main__":
    main()
