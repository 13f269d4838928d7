"""Status batches in one group: each applied once and in order, whichever store commits them."""

from __future__ import annotations

import asyncio
from typing import Any

from control.model import NotFound, OutOfOrder, Site, StatusResult
from control.store.group_commit import plan_group


def test_a_group_applies_each_batch_once_in_order_and_says_why_it_did_not() -> None:
    async def body() -> list[Any]:
        loop = asyncio.get_running_loop()
        a, b, ghost = Site("a", {}, 0.0), Site("b", {}, 0.0), Site("ghost", {}, 0.0)
        a.status = {"instances": []}
        batch = [(a, 4, [{"kind": "x"}], 9.0, loop.create_future()),
                 (a, 4, [], 9.0, loop.create_future()),  # the same batch again
                 (b, 7, [], 9.0, loop.create_future()),  # a gap: b is at 5
                 (ghost, 1, [], 9.0, loop.create_future())]  # fmt: skip
        writes = plan_group(batch, {"a": 3, "b": 5})
        assert list(writes.updates) == ["a"] and writes.updates["a"][0] == 4
        # the event and its searchable columns: tenant, app, instance, kind, time
        assert writes.inserts == [("a", 4, 9.0, '{"kind":"x"}', "", "", "", "x", 9.0)]
        writes.settle()
        return list(await asyncio.gather(*(f for *_, f in batch), return_exceptions=True))

    outcomes = asyncio.run(body())
    assert outcomes[0] == StatusResult(applied=True, last_seq=4)
    assert outcomes[1] == StatusResult(applied=False, last_seq=4)
    assert isinstance(outcomes[2], OutOfOrder) and "expected seq 6" in str(outcomes[2])
    assert isinstance(outcomes[3], NotFound)
