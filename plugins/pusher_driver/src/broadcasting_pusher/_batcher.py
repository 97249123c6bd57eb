"""Micro-batching for the async path: publishes that wait share ``/batch_events`` requests.

While fewer than ``in_flight`` requests are under way a publish starts a
request on the loop's next iteration, so an idle driver adds no waiting (and
publishes made in the same iteration already share it). Publishes that arrive
while all slots are busy queue up; whichever request finishes first takes the
queue's head, up to 10 events (Pusher's per-request limit), in one request.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from broadcasting import Message, PublishError
from broadcasting_pusher._rules import MAX_BATCH_EVENTS


@dataclass
class Pending:
    """A publish waiting for its request; its future gets the request count."""

    message: Message
    future: asyncio.Future[int] = field(repr=False)


#: Sends the messages in one request (with retries); returns the requests made.
Sender = Callable[[list[Message]], Awaitable[int]]


class Batcher:
    """Coalesces concurrent publishes on one event loop (see the module docstring)."""

    def __init__(self, send: Sender, in_flight: int, max_events: int = MAX_BATCH_EVENTS) -> None:
        self._send = send
        self._in_flight = in_flight
        self._max_events = max_events
        self._queue: deque[Pending] = deque()
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()
        #: Requests sent (not counting retries) and messages they carried.
        self.batches = 0
        self.messages = 0

    async def submit(self, message: Message) -> int:
        """Queue ``message``; return the number of requests its delivery took."""
        if len(message.channels) > self._max_events:
            raise ValueError("a batched message has at most 10 channels")
        loop = asyncio.get_running_loop()
        pending = Pending(message, loop.create_future())
        self._queue.append(pending)
        if self._running < self._in_flight:
            self._running += 1
            task = loop.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await pending.future

    def _take(self) -> list[Pending]:
        taken: list[Pending] = []
        events = 0
        while self._queue:
            head = self._queue[0]
            if head.future.done():  # its publisher was cancelled before it was sent
                self._queue.popleft()
                continue
            size = len(head.message.channels)
            if taken and events + size > self._max_events:
                break
            taken.append(self._queue.popleft())
            events += size
        return taken

    async def _drain(self) -> None:
        try:
            while True:
                batch = self._take()
                if not batch:
                    return
                await self._deliver(batch)
        finally:
            self._running -= 1

    async def _deliver(self, batch: list[Pending]) -> None:
        self.batches += 1
        self.messages += len(batch)
        try:
            requests = await self._send([pending.message for pending in batch])
        except PublishError as exc:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(_for_message(exc, pending.message))
            return
        except BaseException as exc:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for pending in batch:
            if not pending.future.done():
                pending.future.set_result(requests)

    def __repr__(self) -> str:
        return f"<Batcher queued={len(self._queue)} running={self._running}>"


def _for_message(exc: PublishError, message: Message) -> PublishError:
    """The batch's error, as seen by one of the messages that rode in it."""
    error = PublishError(
        str(exc.args[0]) if exc.args else "",
        driver=exc.driver,
        status=exc.status,
        code=exc.code,
        retryable=exc.retryable,
        failed=message.channels,
    )
    error.__cause__ = exc
    return error
