"""The async answer deadline at its boundary: an answer that is in when the clock runs out.

The deadline (``_transport._AnswerDeadline``) cancels the request's task when its timer
fires. The loop runs the callbacks of one turn in order: the socket's (aiohttp reads the
answer, which wakes the request's task) and then the timers due. When the answer came in the
same turn as the timer, the task was woken but had not run yet, and cancelling it then threw
away an answer that was in: a delivered publish was reported as unknown ("may have been
delivered"). These tests put the timer's callback in exactly that place, without waiting for
a real timeout: a real server, a real aiohttp request, the deadline's own callback.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from broadcasting import Broadcast, PublishError
from broadcasting_pusher._transport import _AnswerDeadline

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class HeldAnswer:
    """An HTTP server on loopback that reads one request and answers ``{}`` (Pusher's
    acknowledgement) only when told to; it counts the requests it read."""

    def __init__(self) -> None:
        self.requests = 0
        self.read = threading.Event()  #: a whole request was read
        self.go = threading.Event()  #: answer it now
        self.answered = threading.Event()  #: the answer was written
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._conn: socket.socket | None = None
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            conn, _ = self._server.accept()
        except OSError:
            return
        self._conn = conn
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            body += conn.recv(65536)
        self.requests += 1
        self.read.set()
        if self.go.wait(30):
            conn.sendall(ANSWER)  # and the connection stays open, as a keep-alive server's
            self.answered.set()

    def close(self) -> None:
        self._server.close()
        if self._conn is not None:
            self._conn.close()


@pytest.fixture
def held() -> Iterator[HeldAnswer]:
    server = HeldAnswer()
    yield server
    server.close()


def _deadline_timer(loop: asyncio.AbstractEventLoop) -> asyncio.TimerHandle:
    """The timer of the one answer deadline running on ``loop``."""
    timers = [
        handle
        for handle in loop._scheduled  # type: ignore[attr-defined]
        if isinstance(getattr(handle._callback, "__self__", None), _AnswerDeadline)
        and not handle.cancelled()
    ]
    assert len(timers) == 1, timers
    return timers[0]


async def _wait(event: threading.Event) -> None:
    for _ in range(1000):
        if event.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the server never got there")


async def test_an_answer_that_is_in_when_the_clock_runs_out_is_taken(held: HeldAnswer) -> None:
    options: dict[str, Any] = {
        "app_id": "1",
        "key": "k",
        "secret": "s",
        "host": "127.0.0.1",
        "port": held.port,
        "ssl": False,
        "timeout": 30,  # the real timer never fires in this test: its callback is driven
    }
    loop = asyncio.get_running_loop()
    async with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}) as broadcast:
        publish = asyncio.ensure_future(broadcast.achannel("orders", {"id": 1}, "placed"))
        await _wait(held.read)  # the request is written in full: its deadline is running
        timer = _deadline_timer(loop)
        held.go.set()
        assert held.answered.wait(10)
        # the loop is held (it must not read the answer yet) until the answer is in this
        # process's socket buffer
        time.sleep(0.2)  # noqa: ASYNC251
        # the clock runs out now: its callback runs in the loop's next turn right after the
        # socket's, which reads the whole answer and wakes the request's task
        expire = timer._callback  # type: ignore[attr-defined]  # (cancel() forgets it)
        timer.cancel()
        loop.call_at(loop.time(), expire)
        try:
            receipt = await asyncio.wait_for(publish, 10)
        except PublishError as exc:  # before the fix: "no answer ... may have been delivered"
            pytest.fail(f"a publish answered in time was reported as {exc!r}")
    assert receipt.channels == ("orders",) and receipt.requests == 1
    assert held.requests == 1


async def test_a_clock_that_runs_out_before_the_answer_still_cancels() -> None:
    # the other side of the boundary: nothing came; the deadline cancels the task, and says
    # the cancellation was its own
    loop = asyncio.get_running_loop()
    never: asyncio.Future[str] = loop.create_future()
    deadlines: list[_AnswerDeadline] = []

    async def request() -> str:
        deadline = _AnswerDeadline(30)
        deadlines.append(deadline)
        deadline.start()
        try:
            return await never
        except asyncio.CancelledError:
            return "timed out" if deadline.stop() else "cancelled by another"
        finally:
            deadline.stop()

    task = loop.create_task(request())
    await asyncio.sleep(0)
    (deadline,) = deadlines
    assert deadline.handle is not None
    deadline.handle.cancel()
    deadline._expire()  # the timer's callback, at once
    assert await asyncio.wait_for(task, 5) == "timed out"
    assert never.cancelled(), "the wait for the answer was given up"


async def test_an_answer_woken_in_the_same_turn_wins_over_the_clock() -> None:
    # the boundary with no network: the awaited answer is set (the task is woken, not yet
    # run), then the timer's callback runs, as the loop orders them within one turn
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()
    deadlines: list[_AnswerDeadline] = []

    async def request() -> str:
        deadline = _AnswerDeadline(30)
        deadlines.append(deadline)
        deadline.start()
        try:
            return await answer
        except asyncio.CancelledError:
            return "timed out" if deadline.stop() else "cancelled by another"
        finally:
            deadline.stop()

    task = loop.create_task(request())
    await asyncio.sleep(0)
    (deadline,) = deadlines
    answer.set_result("answered")
    deadline._expire()
    assert await asyncio.wait_for(task, 5) == "answered"
    assert not deadline.expired
    assert _cancellations(task) == 0


def _cancellations(task: asyncio.Task[Any]) -> int:
    """The task's cancellations still pending (0 before Python 3.11, which does not count)."""
    return task.cancelling() if hasattr(task, "cancelling") else 0


async def test_a_swallowed_cancellation_is_made_again_until_the_request_takes_it() -> None:
    # No timer but this one bounds an async request's answer (aiohttp's total and sock_read
    # are off), so a cancellation something on the way catches and drops (a close that waits)
    # must not leave the request waiting for ever: it is made again after as long.
    loop = asyncio.get_running_loop()
    never: asyncio.Future[str] = loop.create_future()
    deadlines: list[_AnswerDeadline] = []
    swallowed: list[float] = []

    async def request() -> str:
        deadline = _AnswerDeadline(0.2)
        deadlines.append(deadline)
        deadline.start()
        try:
            while True:
                try:
                    return await asyncio.shield(never)
                except asyncio.CancelledError:
                    if swallowed:
                        raise
                    swallowed.append(loop.time())  # the first one, dropped
        except asyncio.CancelledError:
            return "timed out" if deadline.stop() else "cancelled by another"
        finally:
            deadline.stop()

    task = loop.create_task(request())
    assert await asyncio.wait_for(task, 10) == "timed out"
    assert len(swallowed) == 1
    (deadline,) = deadlines
    assert not deadline.expired and deadline.handle is not None and deadline.handle.cancelled()
    assert _cancellations(task) == 0, "both of the clock's cancellations were taken back"
