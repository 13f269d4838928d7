"""A headless Debian `chromium` driven through `chromedriver` (Debian's `chromium-driver`) with
Selenium: the console's tests see the page as an operator's browser does.

The suite starts chromedriver itself (its pid is ours to stop) and talks to it as a remote
WebDriver, so Selenium Manager never runs and nothing is downloaded. Chromium runs with its
background services off and a fresh profile in the test's directory.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.support.processes import (
    MissingPart,
    die_with_parent,
    free_port,
    installed,
    stop_pid,
    wait_for,
)

T = TypeVar("T")

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # the suite runs as root
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
    "--metrics-recording-only",
)


class Browser:
    """chromedriver on a free loopback port, and one headless chromium session through it."""

    def __init__(self, root: Path, width: int = 1280, height: int = 900) -> None:
        self.root = root
        self.size = (width, height)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.driver: Any = None  # selenium's WebDriver
        self.log = root / "chromedriver.log"

    def start(self) -> None:
        try:
            from selenium import webdriver
        except ImportError as exc:
            raise MissingPart(
                f"selenium is not installed (pip install -e '.[dev]'): {exc}"
            ) from exc
        chromedriver = installed("chromedriver", "chromium-driver")
        chromium = shutil.which("chromium") or installed("chromium", "chromium")
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [chromedriver, f"--port={self.port}", "--allowed-ips=127.0.0.1"],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        try:
            wait_for(self._ready, 20, f"chromedriver on port {self.port}")
            options = webdriver.ChromeOptions()
            options.binary_location = chromium
            options.accept_insecure_certs = True  # control's own CA is not in chromium's store
            for flag in CHROMIUM_FLAGS:
                options.add_argument(flag)
            options.add_argument(f"--user-data-dir={self.root / 'profile'}")
            options.add_argument(f"--window-size={self.size[0]},{self.size[1]}")
            options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # for `wait`'s error
            self.driver = webdriver.Remote(f"http://127.0.0.1:{self.port}", options=options)
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise MissingPart(f"chromedriver exited: {self.log.read_text()[-2000:]}")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/status", timeout=2) as r:
            return bool(r.status == 200)

    def stop(self) -> None:
        if self.driver is not None:
            try:
                self.driver.quit()  # closes chromium
            finally:
                self.driver = None
        if self.proc is not None:
            stop_pid(self.proc, 10)
            self.proc = None

    # -- what the tests use ------------------------------------------------------------------
    def wait(self, what: str, predicate: Callable[[], T | None], timeout: float = 15) -> T:
        """`predicate()`'s first true answer; its exceptions count as "not yet"."""
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            try:
                value = predicate()
                if value:
                    return value
            except Exception as exc:
                last = exc
            time.sleep(0.1)
        raise AssertionError(
            f"timed out waiting for {what} (last error: {last}); page: {self.text()[:3000]}; "
            f"the page's console: {self.console_log()}"
        )

    def console_log(self) -> str:
        """What the page's scripts logged (errors included), one entry a line."""
        try:  # chromedriver's command; Selenium's Remote driver has no method for it
            commands = self.driver.command_executor._commands
            commands.setdefault("getLog", ("POST", "/session/$sessionId/se/log"))
            entries = self.driver.execute("getLog", {"type": "browser"})["value"]
        except Exception as exc:
            return f"(not available: {exc})"
        return "\n".join(f"{e.get('level')} {e.get('message')}" for e in entries)[-3000:]

    def text(self, css: str = "body") -> str:
        from selenium.webdriver.common.by import By

        try:
            return str(self.driver.find_element(By.CSS_SELECTOR, css).text)
        except Exception:
            return ""

    def wait_text(self, css: str, *needles: str, timeout: float = 15) -> str:
        """The text of `css` once it holds every one of `needles`."""
        return self.wait(
            f"{css} to show {needles}",
            lambda: (t := self.text(css)) and all(n in t for n in needles) and t,
            timeout,
        )

    def block(self, *patterns: str) -> None:
        """Requests to URLs matching `patterns` fail as a dropped connection would (none: every
        request goes through again); through Chromium's DevTools protocol."""
        commands = self.driver.command_executor._commands
        commands.setdefault("executeCdpCommand", ("POST", "/session/$sessionId/goog/cdp/execute"))
        for cmd, params in (("Network.enable", {}),
                            ("Network.setBlockedURLs", {"urls": list(patterns)})):  # fmt: skip
            self.driver.execute("executeCdpCommand", {"cmd": cmd, "params": params})

    def click(self, css: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.CSS_SELECTOR, css).click()

    def type(self, css: str, text: str) -> None:
        from selenium.webdriver.common.by import By

        element = self.driver.find_element(By.CSS_SELECTOR, css)
        element.clear()
        element.send_keys(text)

    def screenshot(self, path: Path) -> Path:
        self.driver.save_screenshot(str(path))
        return path
