"""Micro-batching for the async path: publishes that wait share one ``POST /messages``.

While fewer than ``in_flight`` requests are under way, a publish starts a
request on the loop's next iteration, so an idle driver adds no waiting (and
publishes made in the same iteration already share it). Publishes that arrive
while every slot is busy queue up; whichever request finishes first takes the
queue's head, as many publishes as fit in one request (100 channels and about
2 MiB of body in total), and sends them together, one spec per publish.

The batcher only makes each publish's *first* attempt. What the shared request
says about a publish goes back to that publish, which carries on (retries,
errors, receipt) on its own; see ``_driver.BroadcastAblyDriver.apublish``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from broadcasting_ably._wire import MAX_BATCH_BODY_BYTES, MAX_CHANNELS_PER_REQUEST

T = TypeVar("T")
R = TypeVar("R")

#: Sends the items in one request; returns one outcome per item, in order.
Sender = Callable[[list[T]], Awaitable[list[R]]]


@dataclass
class Pending(Generic[T, R]):
    """A publish waiting for its shared request."""

    item: T
    channels: int
    size: int
    future: asyncio.Future[R] = field(repr=False)


class Batcher(Generic[T, R]):
    """Coalesces the first attempts of concurrent publishes on one event loop."""

    def __init__(
        self,
        send: Sender[T, R],
        in_flight: int,
        *,
        max_channels: int = MAX_CHANNELS_PER_REQUEST,
        max_bytes: int = MAX_BATCH_BODY_BYTES,
    ) -> None:
        self._send = send
        self._in_flight = in_flight
        self._max_channels = max_channels
        self._max_bytes = max_bytes
        self._queue: deque[Pending[T, R]] = deque()
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()
        #: Requests sent and publishes they carried (for tests and debugging).
        self.batches = 0
        self.publishes = 0

    async def submit(self, item: T, channels: int, size: int) -> R:
        """Queue ``item`` (``channels`` channels, ``size`` body bytes); return its outcome."""
        loop = asyncio.get_running_loop()
        pending: Pending[T, R] = Pending(item, channels, size, loop.create_future())
        self._queue.append(pending)
        if self._running < self._in_flight:
            self._running += 1
            task = loop.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await pending.future

    def _take(self) -> list[Pending[T, R]]:
        taken: list[Pending[T, R]] = []
        channels = size = 0
        while self._queue:
            head = self._queue[0]
            if head.future.done():  # its publisher was cancelled before it was sent
                self._queue.popleft()
                continue
            if taken and (
                channels + head.channels > self._max_channels or size + head.size > self._max_bytes
            ):
                break
            taken.append(self._queue.popleft())
            channels += head.channels
            size += head.size
        return taken

    async def _drain(self) -> None:
        try:
            while True:
                batch = self._take()
                if not batch:
                    return
                await self._deliver(batch)
        except asyncio.CancelledError:
            if self._running == 1:  # no other drain will take the queue: nothing may hang
                while self._queue:
                    self._queue.popleft().future.cancel()
            raise
        finally:
            self._running -= 1

    async def _deliver(self, batch: list[Pending[T, R]]) -> None:
        self.batches += 1
        self.publishes += len(batch)
        try:
            outcomes = await self._send([pending.item for pending in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{len(outcomes)} outcomes for {len(batch)} publishes")
        except asyncio.CancelledError:
            for pending in batch:
                pending.future.cancel()
            raise
        except BaseException as exc:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for pending, outcome in zip(batch, outcomes, strict=True):
            if not pending.future.done():
                pending.future.set_result(outcome)

    async def wait_idle(self) -> None:
        """Wait until every queued publish has had its request (for ``aclose``)."""
        while self._tasks:  # asyncio.wait: cancelling the caller does not cancel the drains
            await asyncio.wait(list(self._tasks))

    def __repr__(self) -> str:
        return f"<Batcher queued={len(self._queue)} running={self._running}>"
