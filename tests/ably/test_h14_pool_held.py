"""What the sync client pool (one SDK client per thread at a time, 8c5788b) was checked for,
and holds: a publish interrupted in the middle of its request gives its client back, in a
state the next publish can use; more threads than the pool keeps idle leave no more than
that many clients open; a child forked while a parent thread is in a request starts with
clients of its own, and the parent's request completes.

Real parts: the HTTPS Ably emulator, the real SDK and httpx, real threads, a real signal,
a real ``os.fork()``. Nothing is timed: the emulator holds an answer until the test opens
its gate, and threads meet at a barrier.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from ably_emulator import AblyEmulator

from broadcasting import Broadcast
from broadcasting_ably import BroadcastAblyDriver
from broadcasting_ably._transport import IDLE_CLIENTS, closed

pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)


def _until(done: Callable[[], object], what: str) -> None:
    """Wait for ``done()`` (a safety net of 30 s, not a timing)."""
    deadline = time.monotonic() + 30
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


class Interrupted(BaseException):
    """What the test's signal handler raises: a BaseException, as KeyboardInterrupt is (one
    raised outside the test's own ``pytest.raises`` must not end the test session)."""


def test_a_publish_interrupted_mid_request_gives_a_usable_client_back(
    make_broadcast: Callable[..., Broadcast], emulator: AblyEmulator
) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.fail("signal handlers run in the main thread only; this test must run there")
    broadcast = make_broadcast(retries=0, batch=False)
    clients = broadcast.driver(BroadcastAblyDriver).driver._clients
    broadcast.channel("warm-up", "x")
    ((client,),) = clients._sync.values()
    channel = f"interrupted-{uuid.uuid4().hex}"
    gate = emulator.hold_next()  # stored, answered once the gate opens
    main = threading.main_thread().ident
    assert main is not None

    def interrupt() -> None:  # once the request is in: the publish waits for its answer
        _until(lambda: emulator.messages(channel), "the publish never reached the emulator")
        signal.pthread_kill(main, signal.SIGUSR1)

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGUSR1, handler)
    interrupter = threading.Thread(target=interrupt)
    interrupter.start()
    try:
        with pytest.raises(Interrupted):
            broadcast.channel(channel, "cut")
    finally:
        interrupter.join(30)
        signal.signal(signal.SIGUSR1, previous)
        gate.set()
    assert clients._out == {}, "the interrupted publish gave its client back"
    assert clients._sync == {1: [client]} and not closed(client)
    # the connection the interruption left mid-answer was closed, not kept for the next call
    pool = client.http._HttpSync__client._transport.transport._pool
    assert pool.connections == []

    receipt = broadcast.channel(channel, "next")
    assert receipt.requests == 1
    assert [m.data for m in emulator.messages(channel)] == ["cut", "next"]
    assert clients._sync == {1: [client]}
    assert emulator.violations == []


def test_more_threads_than_idle_clients_leave_at_most_that_many_open(
    make_broadcast: Callable[..., Broadcast],
    emulator: AblyEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broadcast = make_broadcast(retries=0, batch=False)
    clients = broadcast.driver(BroadcastAblyDriver).driver._clients
    threads = IDLE_CLIENTS + 6
    made: list[Any] = []
    new, take = clients._new, clients._take_one
    # every thread holds a client at once: none can take another's
    together = threading.Barrier(threads, timeout=60)

    def recorded(hosts: int, aio: bool) -> Any:
        made.append(client := new(hosts, aio))
        return client

    def taken(budget: int) -> Any:
        client = take(budget)
        together.wait()
        return client

    monkeypatch.setattr(clients, "_new", recorded)
    monkeypatch.setattr(clients, "_take_one", taken)
    channel = f"many-{uuid.uuid4().hex}"
    failed: list[BaseException] = []

    def publish(n: int) -> None:
        try:
            broadcast.channel(channel, str(n))
        except BaseException as exc:
            failed.append(exc)

    started = [threading.Thread(target=publish, args=(n,)) for n in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join(60)
    assert not any(thread.is_alive() for thread in started)
    assert failed == []
    assert len(made) == threads
    assert clients._out == {}
    ((idle),) = clients._sync.values()
    assert len(idle) == IDLE_CLIENTS
    assert {id(c) for c in made if not closed(c)} == {id(c) for c in idle}
    assert len(emulator.messages(channel)) == threads


def test_the_idle_clients_are_capped_in_all_whatever_their_host_count(
    make_broadcast: Callable[..., Broadcast],
) -> None:
    """A request's host count follows the retries it may still take, so with ``retries`` N
    the idle clients fall into N + 1 groups: the cap is on them all, not on each group (it
    kept up to (N + 1) x IDLE_CLIENTS open). Clients are taken and given back directly, as
    IDLE_CLIENTS + 64 threads at once would; none sends anything."""
    broadcast = make_broadcast(retries=3, batch=False, fallback_hosts=["fallback.invalid"])
    clients = broadcast.driver(BroadcastAblyDriver).driver._clients
    budgets = (1, 2, 3, 4)
    assert sorted({clients._settings.hosts(b) for b in budgets}) == [1, 2, 3, 4]
    held = [clients._take_one(budget) for budget in budgets for _ in range(IDLE_CLIENTS // 2)]
    for client in held:
        clients.release(client)
    idle = [client for group in clients._sync.values() for client in group]
    assert len(idle) == IDLE_CLIENTS
    assert {id(c) for c in held if not closed(c)} == {id(c) for c in idle}
    assert clients._out == {}


def test_a_child_forked_while_a_parent_thread_is_in_a_request(
    make_broadcast: Callable[..., Broadcast], emulator: AblyEmulator
) -> None:
    if not hasattr(os, "fork"):
        pytest.fail("os.fork() is needed (not Windows)")
    broadcast = make_broadcast(retries=0, batch=False)
    clients = broadcast.driver(BroadcastAblyDriver).driver._clients
    broadcast.channel("warm-up", "x")
    channel = f"forked-{uuid.uuid4().hex}"
    gate = emulator.hold_next()
    receipts: list[Any] = []
    parent = threading.Thread(target=lambda: receipts.append(broadcast.channel(channel, "p")))
    parent.start()
    try:
        _until(lambda: emulator.messages(channel), "the parent's publish never arrived")
        assert len(clients._out) == 1  # the parent thread holds its client in the request
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: one publish on a client of its own
            report: dict[str, Any]
            try:
                receipt = broadcast.channel(channel, "c")
                report = {"requests": receipt.requests, "inherited": clients.inherited}
                report["held"] = len(clients._out)
            except BaseException as exc:
                report = {"error": repr(exc)}
            finally:
                os.write(write, json.dumps(report).encode())
                os._exit(0)
        os.close(write)
        answer = b""
        while chunk := os.read(read, 4096):
            answer += chunk
        os.close(read)
        os.waitpid(pid, 0)
    finally:
        gate.set()
        parent.join(30)
    assert json.loads(answer) == {"requests": 1, "inherited": 1, "held": 0}
    assert [receipt.requests for receipt in receipts] == [1]
    assert clients._out == {}
    assert sorted(m.data for m in emulator.messages(channel)) == ["c", "p"]
    assert emulator.violations == []
