"""Control's service in the test's own process, on a fresh SQLite store: for unit tests of the
operations that need the whole service but no HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from control.service import ControlService
from control.store.sqlite import SQLiteStore
from control.vaults.envelope import Envelope

Prepare = Callable[[ControlService, SQLiteStore], Awaitable[None]]


def run_service(
    tmp_path: Path,
    body: Callable[[ControlService], Awaitable[Any]],
    *,
    prepare: Prepare | None = None,
    timeout: float | None = None,
    **options: Any,
) -> Any:
    """`body(service)` on a started service whose store is ``tmp_path/control.db`` (the same
    file on every call, so a second call sees what the first one left), after `prepare`; the
    service is stopped and the store closed afterwards. `options` go to `ControlService`."""

    async def main() -> Any:
        store = SQLiteStore(tmp_path / "control.db")
        await store.open()
        service = ControlService(
            store,
            None,  # type: ignore[arg-type]  # no enrollment here
            "https://control",
            envelope=Envelope(b"m" * 32),
            master_key_path=tmp_path / "master.key",
            **options,
        )
        try:
            await service.start()
            if prepare is not None:
                await prepare(service, store)
            return await body(service)
        finally:
            await service.stop()
            await store.close()

    return asyncio.run(main() if timeout is None else asyncio.wait_for(main(), timeout))
