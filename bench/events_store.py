"""The fleet's events at control: how fast the store takes them and answers `GET /v1/events`.

A fresh SQLite store (or PostgreSQL with ``--database postgresql://...``) gets `--sites` sites,
each sending status batches of error events (``log-error``, spread over `--apps`
applications of `--tenants` tenants) until `--events` are stored (at most 1,000 per site are
kept). Printed: events stored per second (group commit, as control writes them), then the time
of the pages operators ask for — the newest 100 of the fleet, of one site, of one application,
of one tenant, a follower's page after the last id — and of trimming a tenth of them by age.

    .venv/bin/python -m bench.events_store --sites 1000 --events 500000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/events_store.py`: the repository's packages
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from control.fleet.events import EventQuery, OwnedEvent
from control.model import Site
from control.store.base import Store
from control.store.sqlite import SQLiteStore

BATCH = 50  # events per status batch


def event(n: int, site: int, apps: int, tenants: int) -> OwnedEvent:
    app = f"app-{n % apps}"
    fields = {"container": "main", "host": "h1", "stream": "stderr", "level": "error"}
    body = {
        "kind": "log-error",
        "time": float(n),
        "message": f"ERROR request {n} failed: timeout",
        "app": app,
        "instance": f"{app}.main.{site % 3}",
        "tenant": "",
        "fields": fields,
    }
    return OwnedEvent(body, f"tenant-{n % apps % tenants}")


async def timed(what: str, call: Callable[[], Awaitable[Any]], runs: int = 20) -> None:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    print(f"  {what:<44} median {statistics.median(times) * 1000:7.2f} ms, "
          f"worst {max(times) * 1000:7.2f} ms")  # fmt: skip


async def main(args: argparse.Namespace) -> None:
    store: Store
    if args.database:
        from control.store.pg import PgStore

        store = PgStore(args.database)
    else:
        store = SQLiteStore(Path(tempfile.mkdtemp(prefix="bench-events-")) / "control.db")
    await store.open()
    try:
        sites = [Site(f"site-{i:05d}", {}, 1.0, enrolled=1.0) for i in range(args.sites)]
        for site in sites:
            await store.sites.save(site)
        seqs = [0] * args.sites
        started = time.perf_counter()
        written = 0
        while written < args.events:
            pending = []
            for i, site in enumerate(sites):
                if written >= args.events:
                    break
                seqs[i] += 1
                batch = [event(written + k, i, args.apps, args.tenants) for k in range(BATCH)]
                pending.append(store.sites.apply_status(site, seqs[i], batch, float(written)))
                written += BATCH
            await asyncio.gather(*pending)
        elapsed = time.perf_counter() - started
        print(f"{written} events from {args.sites} sites stored in {elapsed:.1f} s: "
              f"{written / elapsed:,.0f} events/s")  # fmt: skip
        newest = await store.events.page(EventQuery(limit=1))
        print(f"kept: ids up to {newest.last} (at most 1,000 per site)")
        await timed("newest 100 of the fleet", lambda: store.events.page(EventQuery()))
        await timed("newest 100 of one site",
                    lambda: store.events.page(EventQuery(site="site-00007")))  # fmt: skip
        await timed("newest 100 of one application",
                    lambda: store.events.page(EventQuery(app="app-3")))  # fmt: skip
        common, rare = frozenset({"tenant-1"}), frozenset({"tenant-without-events"})
        await timed("newest 100 of one tenant",
                    lambda: store.events.page(EventQuery(tenants=common)))  # fmt: skip
        subtree = frozenset({"tenant-1", "tenant-2"})
        await timed("newest 100 of a tenant and its sub-tenant",
                    lambda: store.events.page(EventQuery(tenants=subtree)))  # fmt: skip
        await timed("a tenant with no events",
                    lambda: store.events.page(EventQuery(tenants=rare)), runs=5)  # fmt: skip
        await timed("an application with no events",
                    lambda: store.events.page(EventQuery(app="app-none")), runs=5)  # fmt: skip
        await timed("a follower's page after the last id",
                    lambda: store.events.page(EventQuery(after=newest.last)))  # fmt: skip
        started = time.perf_counter()
        gone = await store.events.trim(written / 10)
        print(f"trim of the oldest tenth: {gone} events in "
              f"{(time.perf_counter() - started) * 1000:.0f} ms")  # fmt: skip
    finally:
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--tenants", type=int, default=5)
    parser.add_argument("--database", default="", help="a postgresql:// URL (default SQLite)")
    asyncio.run(main(parser.parse_args()))
