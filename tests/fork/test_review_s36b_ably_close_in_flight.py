"""The ably driver's ``close()`` from one thread while other threads publish on its sync
path. ``close()`` closed the shared sync httpx client at once, under the requests in flight on
it: their sockets were closed, the fd numbers reused by other threads' new connections, and a
thread still in its request then read or wrote another thread's connection (SSL "bad record
mac", "wrong version number", ``[Errno 9] Bad file descriptor``). Publishes failed though Ably
was fine. Closing a client only once its users were done (ac0ae1e) left one EBADF in 300
closes on CI: the threads still shared one httpcore pool, which closes a connection another
thread has just been handed (test_review_s36b_ably_pool_check_race shows that interleaving on
every run). A sync client is now held by one thread at a time, and closed by that thread once
done if ``close()`` came meanwhile.

Real parts: the HTTPS Ably emulator, the real SDK and httpx. Pass or fail is counted, not timed.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from ably_emulator import AblyEmulator

from broadcasting import Broadcast
from broadcasting_ably import BroadcastAblyDriver
from broadcasting_ably._transport import closed

THREADS = 4
CLOSES = 300


@pytest.fixture
def broadcast(ably_broadcast: Callable[..., Broadcast]) -> Broadcast:
    # no retry: a publish the close broke fails, instead of hiding behind a second attempt
    return ably_broadcast(retries=0, batch=False)


def test_close_under_publishing_threads_fails_no_publish(
    broadcast: Broadcast, emulator: AblyEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver = broadcast.driver(BroadcastAblyDriver).driver
    clients = driver._clients
    made: list[Any] = []
    new = clients._new

    def recorded(hosts: int, aio: bool) -> Any:
        made.append(client := new(hosts, aio))
        return client

    monkeypatch.setattr(clients, "_new", recorded)
    broadcast.channel("warm-up", "x")
    channel = f"stress-{uuid.uuid4().hex}"
    stop = threading.Event()
    published: list[Any] = []
    failed: list[BaseException] = []

    def publish(n: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                published.append(broadcast.channel(channel, {"t": n, "i": i}))
            except Exception as exc:
                failed.append(exc)
            i += 1

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    try:
        closes = 0
        while closes < CLOSES:
            if len(published) + len(failed) > closes // 3:  # closes among publishes, not ahead
                driver.close()
                closes += 1
            else:
                threading.Event().wait(0.001)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert [str(exc) for exc in failed[:5]] == [], f"{len(failed)} publishes failed"
    assert all(receipt.requests == 1 for receipt in published)
    assert len(emulator.messages(channel)) == len(published)
    assert emulator.violations == []
    assert clients._out == {}, "every thread gave its client back"
    # every client a close() let go of was closed, by the thread that held it if not at once
    idle = [client for kept in clients._sync.values() for client in kept]
    assert {id(client) for client in made if not closed(client)} == {id(c) for c in idle}
    # once nothing is in flight, close() closes every client at once
    broadcast.channel("after", "x")
    idle = [client for kept in clients._sync.values() for client in kept]
    assert idle
    driver.close()
    assert all(closed(client) for client in idle)
    assert clients._sync == {}
