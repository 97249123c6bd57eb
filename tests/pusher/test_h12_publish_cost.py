"""What the library does per async publish with ``batch_linger`` (issue 21: a quarter of a
core at 2,000 publishes a second), counted where the machine's load cannot blur it.

Real parts: soketi, the pusher driver, aiohttp, an asyncio loop. Counted: the Python calls
made in the core and the driver (``sys.setprofile``), the lingering drains of the batcher
(its ``_collecting`` list: each is a future and a timer on the loop), and the timers a
request puts on the loop.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import broadcasting
import broadcasting_pusher
from broadcasting import Broadcast, Receipt

pytestmark = pytest.mark.soketi

CORE = str(Path(broadcasting.__file__ or "").parent)
DRIVER = str(Path(broadcasting_pusher.__file__ or "").parent)
#: Python calls (a generator's or coroutine's resumption counts as one) in the core and the
#: driver per publish of a full shared request: 67.3 before issue 21's work, 57.3 before the
#: commit that set this, 52.3 after. The margin is for a request that waits more often on a
#: loaded machine (each wait resumes its chain of coroutines again: under 1 call a publish).
CALL_BUDGET = 55
BATCH = 10  #: the pusher driver's max_batch_events default: one full /batch_events request


def _config(soketi: Any, linger: float) -> dict[str, Any]:
    options = soketi.driver_options(batch_linger=linger)
    return {"DRIVER": "pusher", "DRIVERS": {"pusher": options}}


def _counting(counts: Counter[str]) -> Callable[[FrameType, str, Any], None]:
    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            filename = frame.f_code.co_filename
            if filename.startswith((CORE, DRIVER)):
                counts[f"{Path(filename).name}:{frame.f_code.co_name}"] += 1

    return profile


async def _counted(publish: Callable[[], Awaitable[list[Receipt]]]) -> tuple[int, list[Receipt]]:
    counts: Counter[str] = Counter()
    sys.setprofile(_counting(counts))
    try:
        receipts = await publish()
    finally:
        sys.setprofile(None)
    return sum(counts.values()), receipts


async def test_a_full_shared_request_costs_few_calls_per_publish(soketi: Any) -> None:
    async with Broadcast(_config(soketi, 0.2)) as broadcast:

        async def full_request() -> list[Receipt]:
            return list(
                await asyncio.gather(
                    *(broadcast.achannel(f"orders-{n}", {"n": n}, "shipped") for n in range(BATCH))
                )
            )

        await full_request()  # the connection made, every import done
        calls, receipts = await _counted(full_request)
    assert [r.channels for r in receipts] == [(f"orders-{n}",) for n in range(BATCH)]
    assert all(r.requests == 1 for r in receipts)
    per_publish = calls / BATCH
    assert per_publish <= CALL_BUDGET, (
        f"{per_publish:.1f} Python calls per publish in the core and the pusher driver "
        f"(budget {CALL_BUDGET}: issue 21)"
    )


async def test_a_request_puts_no_timer_on_the_loop_beyond_its_deadlines(soketi: Any) -> None:
    """A request's timers: the connection's (soketi closes it after every answer, so each
    request connects anew) and the answer's deadline. aiohttp's ``sock_read`` (one per read)
    and ``total`` timeouts repeated that deadline with two to three more, each cancelled but
    left in the loop's heap for seconds (total's for 15), where every later timer, the
    application's own included, paid for it in comparisons (a paced publish made 229 Python
    calls in all with total, 176 without: benchmarks/publish_calls.py)."""
    async with Broadcast(_config(soketi, 0.2)) as broadcast:

        async def full_request() -> list[Receipt]:
            return list(
                await asyncio.gather(
                    *(broadcast.achannel(f"orders-{n}", {"n": n}, "shipped") for n in range(BATCH))
                )
            )

        await full_request()  # the session made, every import done
        loop = asyncio.get_running_loop()
        scheduled: list[float] = []
        call_at = loop.call_at

        def counting_call_at(when: float, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
            scheduled.append(when - loop.time())
            return call_at(when, *args, **kwargs)

        loop.call_at = counting_call_at  # type: ignore[method-assign]
        try:
            receipts = await full_request()
        finally:
            del loop.call_at  # the class's own again
    assert all(r.requests == 1 for r in receipts)
    # (a full batch goes at once: no linger timer is needed for it)
    deadlines = [delay for delay in scheduled if delay > 0.2]
    # the connection's and the answer's (5 s: the driver's default timeout)
    assert len(deadlines) == 2 and all(d < 6 for d in deadlines), scheduled


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
