"""The web console with a large fleet, measured in a real headless chromium.

One real control and `--sites` simulated sites (the fleet bench's worker processes: each
enrolled with the enforcer's own `enroll`, long-polling over mutual TLS and reporting one
running instance). Then Debian's chromium, through chromedriver and Selenium, opens the
console. Printed:

- sign-in to the sites table showing every site (the first page load, token checked);
- a cold load of ``/ui/#/sites`` in the signed-in tab (HTML, CSS, modules, ``GET /v1/sites``
  and rendering every row), median and worst of `--loads`;
- ``GET /v1/sites``: its size and the time control takes to answer it;
- control's CPU while the page stays open and refreshes every 2 s.

    .venv/bin/python -m bench.console_load --sites 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/console_load.py`: the repository's packages
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fleet_clients import raise_nofile
from bench.fleet_sites import enrolled_fleet, running_fleet
from tests.support.browser import Browser

OPEN_SECONDS = 10.0  # the page stays open this long for the CPU figure


def rows(browser: Browser) -> int:
    script = "return document.querySelectorAll('#page tbody tr').length"
    return int(browser.driver.execute_script(script))


def load_times(browser: Browser, url: str, token: str, n: int, loads: int) -> dict[str, Any]:
    """Sign-in to every row, then `loads` cold loads of the sites page (seconds)."""
    browser.driver.get(url + "/ui/")
    browser.wait_text("#signin", "Token")
    browser.type("#token", token)
    started = time.monotonic()
    browser.click("#signin-button")
    browser.wait(f"{n} rows", lambda: rows(browser) == n, 120)
    sign_in = time.monotonic() - started
    cold = []
    for _ in range(loads):
        browser.driver.get("about:blank")
        started = time.monotonic()
        browser.driver.get(url + "/ui/#/sites")
        browser.wait(f"{n} rows", lambda: rows(browser) == n, 120)
        cold.append(time.monotonic() - started)
    return {"sign_in": sign_in, "cold": cold}


async def run(n: int, workers: int, loads: int) -> dict[str, Any]:
    result: dict[str, Any] = {"sites": n}
    async with running_fleet("edgeward-console-", keep=False) as fleet:
        control, pool = fleet.control, fleet.pool
        names = await enrolled_fleet(fleet, n, workers, result)
        await asyncio.gather(
            *(w.ask({"cmd": "sync", "sites": ns}) for w, ns in zip(pool, names, strict=True))
        )
        api = []
        for _ in range(5):
            started = time.monotonic()
            answer = await control.call("GET", "/v1/sites")
            api.append(time.monotonic() - started)
        result["api_seconds"] = statistics.median(api)
        result["api_bytes"] = len(json.dumps(answer, separators=(",", ":")).encode())
        browser = Browser(fleet.root / "browser")
        await asyncio.to_thread(browser.start)
        try:
            times = await asyncio.to_thread(
                load_times, browser, control.url, control.admin_token, n, loads
            )
            result.update(times)
            cpu0 = control.cpu_seconds()
            await asyncio.sleep(OPEN_SECONDS)
            result["open_cpu"] = (control.cpu_seconds() - cpu0) / OPEN_SECONDS
        finally:
            await asyncio.to_thread(browser.stop)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    raise_nofile()
    r = asyncio.run(run(args.sites, args.workers, args.loads))
    print()
    print(f"sites                                   {r['sites']}")
    print(f"sign-in to every site shown             {r['sign_in'] * 1000:.0f} ms")
    print(f"cold load of the sites page, median     {statistics.median(r['cold']) * 1000:.0f} ms"
          f" (worst {max(r['cold']) * 1000:.0f} ms of {len(r['cold'])})")  # fmt: skip
    print(f"GET /v1/sites at control, median        {r['api_seconds'] * 1000:.0f} ms"
          f" ({r['api_bytes'] / 1024:.0f} KiB)")  # fmt: skip
    print(f"control CPU with the page open          {r['open_cpu'] * 100:.1f} % of a core"
          f" (refresh every 2 s)")  # fmt: skip


if __name__ == "__main__":
    main()
