"""Two threads publishing at once through the ably driver's sync path. They shared one SDK
client, so one httpx client and one httpcore connection pool, and httpcore's pool is not safe
for that: a thread entering the pool asks each idle connection whether the server closed it
(``has_expired()``: the connection's state is IDLE, then a ``poll()`` of its socket) while
another thread, which the pool has just handed that connection, sets it ACTIVE, sends its
request and gets the answer. The state read before the other thread took the connection, the
poll made after its answer arrived: the connection was "closed by the server" and the first
thread closed it under the second, which then read its socket: ``[Errno 9] Bad file
descriptor``, or, its fd number already another connection's, SSL "bad record mac" there
(test_review_s36b_ably_close_in_flight saw it once in 300 closes on CI, after its close() fix).
A sync SDK client is now used by one thread at a time: no other thread is ever in its pool.

Real parts: the HTTPS Ably emulator, the real SDK, httpx and httpcore, two real threads. The
test only orders them, through hooks on httpcore's pool and socket streams, so that the
interleaving a busy machine makes now and then happens on every run: thread 2's check reads
the connection's state before thread 1 sets it ACTIVE, and polls its socket once thread 1's
answer is there. Every wait is on an event or a poll, with a deadline (a safety net).
"""

from __future__ import annotations

import select
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from ably_emulator import AblyEmulator
from httpcore._backends.sync import SyncStream
from httpcore._sync.connection_pool import ConnectionPool, PoolRequest

from broadcasting import Broadcast

LIMIT = 20.0  #: seconds any step may wait for the other thread (only a safety net)


@pytest.fixture
def broadcast(ably_broadcast: Callable[..., Broadcast]) -> Broadcast:
    # no retry: a publish the race broke fails, instead of hiding behind a second attempt
    return ably_broadcast(retries=0, batch=False)


def _until(*events: threading.Event) -> None:
    """Wait until one of ``events`` is set (``LIMIT`` at most)."""
    deadline = time.monotonic() + LIMIT
    while not any(event.is_set() for event in events) and time.monotonic() < deadline:
        events[0].wait(0.01)


def test_a_thread_entering_the_pool_does_not_close_another_threads_connection(
    broadcast: Broadcast, emulator: AblyEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    broadcast.channel("warm-up", "x")  # a connection, idle now, for the first thread to take
    channel = f"pool-{uuid.uuid4().hex}"
    handed = threading.Event()  # the pool handed thread 1 a connection
    checking = threading.Event()  # thread 2 read a connection's state, and polls its socket next
    answered = threading.Event()  # thread 1's answer is in its socket, unread
    closed = threading.Event()  # thread 2 closed what its check found expired
    done = {n: threading.Event() for n in (1, 2)}
    threads: dict[int, threading.Thread] = {}
    outcome: dict[int, Any] = {}

    def of(n: int) -> bool:
        return threads.get(n) is threading.current_thread()

    wait_for_connection = PoolRequest.wait_for_connection

    def handed_one(self: PoolRequest, timeout: float | None = None) -> Any:
        connection = wait_for_connection(self, timeout)
        if of(1) and not handed.is_set():
            handed.set()
            _until(checking, done[2])  # thread 2 reads the state before this one changes it
        return connection

    get_extra_info = SyncStream.get_extra_info

    def extra_info(self: SyncStream, info: str) -> Any:
        if info == "is_readable" and of(2) and not checking.is_set():
            checking.set()
            _until(answered, done[1])  # polled once thread 1's answer has come
        return get_extra_info(self, info)

    read = SyncStream.read

    def reading(self: SyncStream, max_bytes: int, timeout: float | None = None) -> bytes:
        if of(1) and handed.is_set() and not answered.is_set():
            select.select([self._sock], [], [], LIMIT)  # the answer is there, unread
            answered.set()
            _until(closed, done[2])
        return read(self, max_bytes, timeout)

    close_connections = ConnectionPool._close_connections

    def closing(self: ConnectionPool, connections: list[Any]) -> None:
        close_connections(self, connections)
        if of(2) and checking.is_set():
            closed.set()

    monkeypatch.setattr(PoolRequest, "wait_for_connection", handed_one)
    monkeypatch.setattr(SyncStream, "get_extra_info", extra_info)
    monkeypatch.setattr(SyncStream, "read", reading)
    monkeypatch.setattr(ConnectionPool, "_close_connections", closing)

    def publisher(n: int) -> Callable[[], None]:
        def publish() -> None:
            try:
                outcome[n] = broadcast.channel(channel, {"n": n})
            except Exception as exc:
                outcome[n] = exc
            finally:
                done[n].set()

        return publish

    threads[1] = threading.Thread(target=publisher(1))
    threads[2] = threading.Thread(target=publisher(2))
    threads[1].start()
    _until(handed, done[1])
    threads[2].start()
    for thread in threads.values():
        thread.join(3 * LIMIT)
    assert not any(thread.is_alive() for thread in threads.values())
    assert handed.is_set() and checking.is_set(), "the threads did not meet as arranged"
    failed = {n: repr(o) for n, o in outcome.items() if isinstance(o, Exception)}
    assert failed == {}
    assert sorted(m.data["n"] for m in emulator.messages(channel)) == [1, 2]
    assert emulator.violations == []
