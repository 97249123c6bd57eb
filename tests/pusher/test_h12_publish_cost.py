"""What the library does per async publish with ``batch_linger`` (issue 21: a quarter of a
core at 2,000 publishes a second), counted where the machine's load cannot blur it.

Real parts: soketi, the pusher driver, aiohttp, an asyncio loop. Counted: the lingering
drains of the batcher (its ``_collecting`` list: each is a future and a timer on the loop).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broadcasting import Broadcast

pytestmark = pytest.mark.soketi

BATCH = 10  #: the pusher driver's max_batch_events default: one full /batch_events request


def _config(soketi: Any, linger: float) -> dict[str, Any]:
    options = soketi.driver_options(batch_linger=linger)
    return {"DRIVER": "pusher", "DRIVERS": {"pusher": options}}


async def test_a_drain_back_from_its_request_does_not_linger_beside_another(
    soketi: Any,
) -> None:
    """A drain whose request came back while another drain lingers for the next publishes
    leaves the queue to it: two lingering drains meant a second future and timer for the
    same request, and one of them found nothing to send."""
    async with Broadcast(_config(soketi, 1.0)) as broadcast:
        first = [
            asyncio.ensure_future(broadcast.achannel(f"orders-{n}", {"n": n}, "shipped"))
            for n in range(BATCH)
        ]
        batcher = broadcast.driver()._batchers.get()  # type: ignore[union-attr]
        deadline = asyncio.get_running_loop().time() + 30
        # the first request filled and on its way: nothing queued, its drain sending it
        while not batcher._tasks or batcher._queue or batcher._collecting:
            assert asyncio.get_running_loop().time() < deadline, batcher
            await asyncio.sleep(0)
        assert not any(task.done() for task in first)
        late = asyncio.ensure_future(broadcast.achannel("orders-late", {"n": BATCH}, "shipped"))
        while not batcher._collecting:  # a second drain lingers for it (up to 1 s)
            assert asyncio.get_running_loop().time() < deadline, (batcher, late.done())
            await asyncio.sleep(0)
        receipts = await asyncio.gather(*first)
        lingering = len(batcher._collecting)
        receipt = await late
    assert [r.requests for r in receipts] == [1] * BATCH
    assert receipt.channels == ("orders-late",) and receipt.requests == 1
    assert lingering == 1, f"{lingering} drains lingered for one request"
