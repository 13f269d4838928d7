"""The web console in a real headless chromium (Debian's, through chromedriver and Selenium),
against control and two enrolled enforcers on their own dockerds. Each page is saved as a
screenshot under the test's temporary directory."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.support.apps import app, container, service
from tests.support.browser import Browser
from tests.support.ci import running
from tests.support.control import ControlProcess
from tests.support.enforcer import EnforcerProc
from tests.support.engines import DockerEngine

SITES = ("store-a", "store-b")
APP = "till"
STRATEGY = {"healthy-time": "1s", "ready-timeout": "30s"}


@dataclass
class Console:
    control: ControlProcess
    browser: Browser
    clients: dict[str, docker.DockerClient]
    image: str

    def open(self, fragment: str) -> None:
        self.browser.driver.get(f"{self.control.url}/ui/#/{fragment}")

    def sign_in(self, token: str) -> None:
        # once, in a CI run with both workers busy, the page's scripts never ran (a file that
        # did not arrive): the page says so and offers a reload (tested below), which an
        # operator would press; any other page still fails here, with the page's console log
        form_or_reload = self.browser.wait(
            "the sign-in form (or the page's reload button)",
            lambda: next((el for css in ("#signin", "#reload")
                          for el in self.browser.driver.find_elements("css selector", css)
                          if el.is_displayed()), None),
        )  # fmt: skip
        if form_or_reload.get_attribute("id") == "reload":
            print(f"the page did not load completely; reloading: {self.browser.console_log()}")
            form_or_reload.click()
        self.browser.wait_text("#signin", "Token")
        self.browser.type("#token", token)
        self.browser.click("#signin-button")

    def sign_out(self) -> None:
        if self.browser.driver.find_element("id", "signout").is_displayed():
            self.browser.click("#signout")

    def signed_in_as_admin(self) -> None:
        """Signed in with the admin token (a test run alone starts signed out)."""
        if not self.browser.driver.execute_script("return sessionStorage.length"):
            self.sign_in(self.control.admin_token)

    def deployed(self) -> None:
        """APP deployed to both sites and running (a test run alone deploys it first)."""
        if all(self.versions().values()):
            return
        self.push("1")
        self.control.deploy({"name": APP, "application": APP, "version": "latest",
                             "placement": {"match-site-labels": "chain = acme"},
                             "strategy": STRATEGY})  # fmt: skip
        wait(lambda: all(self.versions().values()), 60, f"{APP} at both sites")

    def push(self, version: str) -> None:
        spec = app(APP, service("pos", container("main", self.image, "sleep", f"{version}00000")),
                   version=version)  # fmt: skip
        self.control.client().put(f"/v1/applications/{APP}/versions/{version}", spec)

    def versions(self) -> dict[str, set[str]]:
        """The versions of APP whose containers run at each site, from its own engine."""
        return {
            site: {c.labels.get("edgeward.version", "?")
                   for c in client.containers.list(filters={"label": f"edgeward.app={APP}"})}
            for site, client in self.clients.items()
        }  # fmt: skip

    def phase(self) -> str:
        return str(self.control.client().get(f"/v1/deployments/{APP}/status")["phase"])


def unnamed_controls(browser: Browser) -> list[str]:
    """Buttons, links and inputs on the page without an accessible name."""
    return list(
        browser.driver.execute_script("""
        const named = (e) => (e.getAttribute("aria-label") || "").trim() ||
            (e.labels && e.labels.length && e.labels[0].textContent.trim()) ||
            (e.tagName !== "INPUT" && e.textContent.trim());
        return [...document.querySelectorAll("button, a, input, progress")]
            .filter((e) => e.offsetParent !== null && !named(e)).map((e) => e.outerHTML);
    """)
    )


def wait(check: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def console(engine: DockerEngine, test_image: str) -> Iterator[Console]:
    """Control, store-a on the suite's engine and store-b on one of its own, and a browser."""
    root = Path(tempfile.mkdtemp(prefix="console-", dir="/tmp"))
    (root / "control").mkdir()
    control = ControlProcess(root / "control")
    second = DockerEngine(root / "docker-b")
    engines = [engine, second]
    enforcers: list[EnforcerProc] = []
    clients: dict[str, docker.DockerClient] = {}
    try:
        with ThreadPoolExecutor(1) as pool:  # control here: it dies with the thread that started it
            started = pool.submit(second.start)
            control.start()
            started.result()

        def enroll(i: int) -> EnforcerProc:
            bundle = control.bundle(SITES[i], {"chain": "acme", "city": f"city-{i}"})
            enf = EnforcerProc(root / SITES[i], engines[i].url,
                               extra_config=f'[control]\nenrollment = "{bundle}"\n')  # fmt: skip
            enf.start()
            return enf

        with ThreadPoolExecutor(len(SITES)) as pool:
            enforcers.extend(pool.map(enroll, range(len(SITES))))
        clients.update(
            {s: docker.DockerClient(base_url=e.url) for s, e in zip(SITES, engines, strict=True)}
        )
        with running(Browser(root / "browser")) as browser:
            yield Console(control, browser, clients, test_image)
    finally:
        console_cleanup(control, enforcers, clients)
        second.stop()
        control.stop()
        shutil.rmtree(root, ignore_errors=True)


def console_cleanup(control: ControlProcess, enforcers: list[EnforcerProc],
                    clients: dict[str, docker.DockerClient]) -> None:  # fmt: skip
    """Control removes APP from the sites (the suite's engine is shared), then the enforcers stop."""
    with contextlib.suppress(Exception):
        control.client().delete(f"/v1/deployments/{APP}")
        wait(lambda: not any(c.containers.list(all=True, filters={"label": f"edgeward.app={APP}"})
                             for c in clients.values()), 20, f"{APP} removed")  # fmt: skip
    with ThreadPoolExecutor(len(SITES)) as pool:
        list(pool.map(lambda enf: enf.stop(), enforcers))
    for enf in enforcers:
        enf.remove_firewall()
        enf.unmount_secrets()
    for client in clients.values():
        for c in client.containers.list(all=True, filters={"label": f"edgeward.app={APP}"}):
            c.remove(force=True)
        for net in client.networks.list(filters={"label": "edgeward.managed=true"}):
            with contextlib.suppress(Exception):
                net.remove()
        client.close()


def test_an_operator_signs_in_sees_both_sites_and_rolls_a_deployment_back_from_the_page(
    console: Console, tmp_path: Path
) -> None:
    browser, control = console.browser, console.control
    browser.driver.get(f"{control.url}/ui")  # redirected to /ui/
    console.sign_in("not-a-token")
    assert "401 unauthorized: " in browser.wait_text("#message", "Sign-in refused")
    browser.screenshot(tmp_path / "sign-in-refused.png")

    console.sign_in(control.admin_token)
    sites = browser.wait_text("#page", *SITES, "chain=acme", "city-1")
    assert sites.count("connected") == 2, sites
    browser.screenshot(tmp_path / "sites.png")
    # the page refreshes itself; a keyboard user's focus stays on the link it was on
    browser.driver.execute_script(
        "document.querySelector('#page a[href=\"#/site/store-b\"]').focus()"
    )
    updated = browser.text("#live")
    browser.wait("a refresh", lambda: browser.text("#live") not in ("", updated), 5)
    focused = browser.driver.execute_script("return document.activeElement.getAttribute('href')")
    assert focused == "#/site/store-b"

    console.deployed()
    wait(lambda: console.phase() == "done", 60, "version 1 rolled out")
    console.push("2")
    wait(lambda: console.versions() == {s: {"2"} for s in SITES}, 60, "version 2 at both sites")
    wait(lambda: console.phase() == "done", 60, "version 2 rolled out")

    console.open("applications")
    browser.wait_text("#page", APP, "1, 2")
    browser.screenshot(tmp_path / "applications.png")
    console.open("deployments")
    browser.wait_text("#page", APP, "done", "2 of 2 sites healthy on 2")
    browser.screenshot(tmp_path / "deployments.png")

    console.open(f"deployment/{APP}")
    browser.wait_text("#page", "store-a", "store-b", "healthy")
    assert unnamed_controls(browser) == []
    browser.driver.set_window_size(768, 1024)  # a tablet: nothing wider than the screen
    try:
        browser.wait(
            "the page to fit a tablet's width",
            lambda: browser.driver.execute_script(
                "return document.documentElement.scrollWidth <= window.innerWidth"
            ),
        )
        browser.screenshot(tmp_path / "deployment-tablet.png")
    finally:
        browser.driver.set_window_size(*browser.size)
    browser.type("#reason", "tills freeze on 2")
    browser.click("#rollback")
    assert "Rolling back: " in browser.wait_text(".notice", "Rolling back")
    wait(
        lambda: console.versions() == {s: {"1"} for s in SITES}, 60, "version 1 back at both sites"
    )
    # the page follows without reloading: the phase and each site's version change on it
    page = browser.wait_text("#page", "rolled-back", "tills freeze on 2", timeout=20)
    rows = [r for r in page.splitlines() if r.startswith(SITES)]
    assert all(r.split()[1] == "1" for r in rows) and len(rows) == 2, rows
    browser.screenshot(tmp_path / "deployment-rolled-back.png")

    browser.click("#rollback")  # again: the API refuses, and the page says why
    assert "409 conflict: " in browser.wait_text(".notice", "Rollback refused")


def test_an_error_and_a_warning_from_a_site_appear_on_its_page_without_reloading_with_its_logs(
    console: Console, tmp_path: Path
) -> None:
    browser = console.browser
    console.deployed()
    console.open("site/store-a")
    console.signed_in_as_admin()
    browser.wait_text("#page", "Instances", f"{APP}.pos.0", "running", "Recent logs")
    browser.driver.execute_script("window.stillTheSamePage = true")
    victim = console.clients["store-a"].containers.list(filters={"label": f"edgeward.app={APP}"})[0]
    # the container writes an error line on its stderr: forwarded, it shows on the page
    line = f"ERROR till drawer jammed {time.time():.0f}"
    written = victim.exec_run(["sh", "-c", f"echo '{line}' > /proc/1/fd/2"])
    assert written.exit_code == 0, written.output
    events = browser.wait_text("#page", "log-error", line, timeout=20)
    assert f"{APP}.pos.0" in events
    browser.screenshot(tmp_path / "site-error.png")
    # the site's logs, fetched through its long-poll on demand
    browser.type("#log-instance", f"{APP}.pos.0")
    browser.click("#fetch-logs")
    assert line in browser.wait_text("#log-lines", line, timeout=25)
    assert f"of {APP}.pos.0 from store-a" in browser.text("#log-notice")
    assert unnamed_controls(browser) == []
    browser.screenshot(tmp_path / "site-logs.png")
    # a warning (the container killed) follows, still without reloading
    victim.kill()
    events = browser.wait_text("#page", "container.exited", "exited with code 137", timeout=20)
    assert browser.driver.execute_script("return window.stillTheSamePage") is True
    browser.screenshot(tmp_path / "site.png")
    # an instance the site does not run: the API's message, not a blank page
    browser.type("#log-instance", f"{APP}.nothing.9")
    browser.click("#fetch-logs")
    notice = browser.wait_text("#log-notice", "Logs not fetched", timeout=10)
    assert f"404 not-found: instance '{APP}.nothing.9' does not exist" in notice, notice


def test_another_tenants_token_sees_nothing_of_the_fleet_and_is_refused_with_the_apis_message(
    console: Console, tmp_path: Path
) -> None:
    browser, client = console.browser, console.control.client()
    client.post("/v1/tenants", {"name": "bakery"})
    token = client.post("/v1/tokens", {"tenant": "bakery", "description": "console test"})["token"]
    console.open("sites")
    console.sign_out()
    console.sign_in(token)
    assert "No sites are enrolled" in browser.wait_text("#page", "Sites", "No sites")
    console.open(f"deployment/{APP}")
    message = browser.wait_text("#message", "404")
    assert message == f"404 not-found: deployment {APP} does not exist", message
    browser.screenshot(tmp_path / "deployment-refused.png")
    console.open("site/store-a")
    assert "404 not-found: " in browser.wait_text("#message", "store-a")
    browser.screenshot(tmp_path / "site-refused.png")


def test_a_file_of_the_page_that_does_not_arrive_is_told_with_a_reload_not_a_blank_page(
    console: Console, tmp_path: Path
) -> None:
    browser = console.browser
    browser.block("*/ui/pages.js")  # as if the connection dropped while the page loaded
    try:
        browser.driver.get(f"{console.control.url}/ui/")
        told = browser.wait_text("#message", "did not load")
        assert told.startswith("The console did not load completely"), told
        assert not browser.driver.find_element("id", "signin").is_displayed()
        browser.screenshot(tmp_path / "not-loaded.png")
    finally:
        browser.block()
    browser.click("#reload")  # the whole page this time: signed in (or not) as before
    browser.wait("the page to load", lambda: "Sites" in browser.text("#page")
                 or browser.driver.find_element("id", "signin").is_displayed())  # fmt: skip
    assert not browser.driver.find_element("id", "message").is_displayed()


def test_a_scrape_of_control_shows_each_sites_link_and_the_fleets_counts(console: Console) -> None:
    console.deployed()
    text = str(console.control.client().get("/v1/metrics"))
    checked = subprocess.run([shutil.which("promtool") or "promtool", "check", "metrics"],
                             input=text, capture_output=True, text=True, timeout=30)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for site in SITES:
        assert f'edgeward_control_site_connected{{site="{site}"}} 1' in text
        assert f'edgeward_control_site_last_contact_timestamp_seconds{{site="{site}"}} ' in text
    assert 'edgeward_control_sites_by_state{state="enrolled"} 2' in text
    running = [line for line in text.splitlines()
               if line.startswith('edgeward_control_instances_by_state{state="running"} ')]  # fmt: skip
    assert running and int(running[0].split()[1]) >= 2, running
    phases = [
        line
        for line in text.splitlines()
        if line.startswith("edgeward_control_deployments_by_phase")
    ]
    assert sum(int(line.split()[1]) for line in phases) == 1, phases
