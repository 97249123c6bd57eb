"""Micro-batching (docs/publishing.md): concurrent async publishes share a first attempt.

With ``batch_linger`` a request also waits up to that long after its first publish for others
to fill it (as a Kafka producer's ``linger.ms``): fewer, fuller requests for a bounded delay."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

from broadcasting._delivery import (
    Attempt,
    Batch,
    Part,
    fits,
    may_be_ones_fault,
    part_size_failed,
    request,
)
from broadcasting._flow import arun

if TYPE_CHECKING:
    from broadcasting._driver import Driver


@dataclass
class _Alone:
    """The shared request cannot say what happened to this publish: it is sent alone."""

    requests: int


@dataclass(slots=True)
class _Pending:
    part: Part
    size: int
    future: asyncio.Future[Union[Attempt, _Alone]] = field(repr=False)
    since: float = 0.0  #: the loop's time when it was queued


class Batcher:
    """Coalesces the first attempts of concurrent publishes of one driver on one loop: up to
    ``in_flight`` requests at once, each taking as many queued publishes as fit in one."""

    def __init__(
        self, driver: Driver, in_flight: int, budget: int = 1, linger: float = 0.0
    ) -> None:
        self._driver = driver
        self._in_flight = in_flight
        self._linger = linger  # seconds a request waits after its first publish for others
        # drains waiting (up to linger) for their request to fill: each one's future, set
        # True once the queue fills a request, False when its wait is over
        self._collecting: list[asyncio.Future[bool]] = []
        self._budget = budget  # requests a first attempt may take (see Batch.budget)
        self._max_bytes = driver.capabilities.batch_bytes
        self._queue: deque[_Pending] = deque()
        # what the queue adds up to from its head (channels, bytes, whether it fills a
        # request), kept up to date as publishes join it; None: to be counted again (after a
        # publish left the queue's head)
        self._tally: tuple[int, int, bool] | None = (0, 0, False)
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._unstarted: set[asyncio.Task[None]] = set()  # drains not yet run (see _done)

    async def submit(self, part: Part) -> Attempt:
        """Make ``part``'s first attempt, shared if others wait; return its outcome."""
        loop = asyncio.get_running_loop()
        try:
            size = self._driver.part_size(part) if self._max_bytes is not None else 0
        except Exception:  # a driver's bug: it goes alone, as the sync path sends every publish
            part_size_failed(self._driver)
            return await self._alone(part, 0)
        since = loop.time() if self._linger else 0.0  # only a lingering drain reads it
        pending = _Pending(part, size, loop.create_future(), since)
        self._queue.append(pending)
        tally = self._tally  # read only by a lingering drain (_collect) and what it wakes
        if self._linger and tally is not None and not tally[2]:  # filled stays filled
            self._tally = self._counted(tally, pending)
        if self._collecting:  # a drain is filling a request: this joins it
            if self._full():
                for waiting in self._collecting:
                    _settle(waiting, True)
        elif self._running < self._in_flight:
            self._spawn(loop)
        verdict = await pending.future
        if isinstance(verdict, _Alone):
            return await self._alone(part, verdict.requests)
        return verdict

    async def _alone(self, part: Part, spent: int) -> Attempt:
        """``part``'s first attempt in a request of its own (after ``spent`` shared ones)."""
        batch = Batch((part,), budget=self._budget)
        outcomes, _ = await arun(request(self._driver, batch))
        return outcomes[0], spent + batch.requests, batch.requests

    def _spawn(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start a drain: it sends what is queued, a request at a time, until nothing is."""
        self._running += 1
        task = loop.create_task(self._drain())
        self._tasks.add(task)
        self._unstarted.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        """A drain ended. One cancelled before its first step (every task cancelled, as at a
        loop's shutdown) never ran its own clean-up: it is done here, else it would count as
        running for good and the queue could wait for a drain that never comes."""
        self._tasks.discard(task)
        if task in self._unstarted:
            self._unstarted.discard(task)
            self._running -= 1
            if not self._running:
                self._cancel_queued()

    def _cancel_queued(self) -> None:
        """No drain is left to take the queue: nothing in it may wait for good."""
        self._tally = None
        while self._queue:
            self._queue.popleft().future.cancel()

    def _take(self) -> list[_Pending]:
        taken: list[_Pending] = []
        channels = size = 0
        queue, capabilities = self._queue, self._driver.capabilities
        self._tally = None
        while queue:
            head = queue[0]
            if head.future.done():  # its publisher was cancelled before it was sent
                queue.popleft()
                continue
            if not fits(capabilities, channels, size, head.part, head.size):
                break
            taken.append(queue.popleft())
            channels += len(head.part.channels)
            size += head.size
        return taken

    def _full(self) -> bool:
        """Whether the queued publishes fill one request (or more)."""
        tally = self._tally
        if tally is None:  # counted from the head again, once (not at every publish)
            tally = (0, 0, False)
            for pending in self._queue:
                tally = self._counted(tally, pending)
                if tally[2]:
                    break
            self._tally = tally
        return tally[2]

    def _counted(self, tally: tuple[int, int, bool], pending: _Pending) -> tuple[int, int, bool]:
        """``tally`` (of a queue that does not fill a request yet) with ``pending`` joined."""
        capabilities, (channels, size, _) = self._driver.capabilities, tally
        if not fits(capabilities, channels, size, pending.part, pending.size):
            return channels, size, True
        channels += len(pending.part.channels)
        size += pending.size
        limit = capabilities.batch_bytes  # filled to the byte: nothing more can join
        filled = channels >= capabilities.batch_channels or (limit is not None and size >= limit)
        return channels, size, filled

    async def _collect(self) -> None:
        """Wait until the queue fills a request or its oldest publish has waited ``linger``."""
        loop = asyncio.get_running_loop()
        while self._queue and not self._full():
            wait = self._queue[0].since + self._linger - loop.time()
            if wait <= 0:
                return
            waiting: asyncio.Future[bool] = loop.create_future()
            timer = loop.call_later(wait, _settle, waiting, False)
            self._collecting.append(waiting)
            try:
                filled = await waiting
            finally:
                timer.cancel()
                self._collecting.remove(waiting)
            if not filled:
                return

    async def _drain(self) -> None:
        self._unstarted.discard(asyncio.current_task())
        try:
            while True:
                if self._linger:
                    if self._collecting:
                        # another drain lingers for the queue and takes it once filled or
                        # due: a second one waiting beside it (a timer and a future each
                        # request) would only find what that one left
                        return
                    await self._collect()
                taken = self._take()
                if not taken:
                    return
                if self._queue and self._running < self._in_flight:
                    # what this request left (publishes that joined while it lingered and
                    # overfilled it) need not wait for its answer: a request may be free
                    self._spawn(asyncio.get_running_loop())
                await self._deliver(taken)
        except asyncio.CancelledError:
            if self._running == 1:  # no other drain will take the queue: nothing may hang
                self._cancel_queued()
            raise
        finally:
            self._running -= 1

    async def _deliver(self, taken: list[_Pending]) -> None:
        batch = Batch(tuple(pending.part for pending in taken), budget=self._budget)
        try:
            outcomes, whole = await arun(request(self._driver, batch))
        except asyncio.CancelledError:
            for pending in taken:
                pending.future.cancel()
            raise
        except BaseException as exc:
            for pending in taken:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            if not isinstance(exc, Exception):
                # not a driver's mapped error: it ends this drain, but the queued publishes
                # were never sent and no submit may come to start another for them
                if self._queue:
                    self._spawn(asyncio.get_running_loop())
                raise
            return
        alone = whole is not None and len(taken) > 1 and may_be_ones_fault(whole)
        for pending, outcome in zip(taken, outcomes, strict=True):
            if not pending.future.done():
                pending.future.set_result(
                    _Alone(batch.requests) if alone else (outcome, batch.requests, batch.requests)
                )

    async def wait_idle(self) -> None:
        """Wait until every queued publish has had its request (for ``aclose``)."""
        while self._tasks:  # asyncio.wait: cancelling the caller does not cancel the drains
            await asyncio.wait(list(self._tasks))

    def __repr__(self) -> str:
        return f"<Batcher queued={len(self._queue)} running={self._running}>"


def _settle(waiting: asyncio.Future[bool], filled: bool) -> None:
    """End a lingering drain's wait: the queue ``filled`` a request, or its time is up."""
    if not waiting.done():
        waiting.set_result(filled)
