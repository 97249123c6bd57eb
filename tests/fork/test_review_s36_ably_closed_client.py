"""The ably driver's ``close()`` from another thread while a publish is under way on the client
it closes. With fallback hosts, the request to the first host is cut off ("may have arrived")
and the SDK goes on to the next host on the same client, which httpx refuses before sending
anything ("Cannot send a request, as the client has been closed"). That RuntimeError was
taken for a driver's bug: the publish ended unknown and was never retried, though Ably
de-duplicates a re-sent message id. It is retried now, on the driver's new client.

Real parts: the Ably emulator (``localhost`` and ``127.0.0.1`` are two names of it, a host and
its fallback), the real SDK and httpx; the emulator stores the publish and holds its answer
until the test has closed the driver.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from ably_emulator import AblyEmulator

from broadcasting import Broadcast

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")


@pytest.fixture
def broadcast(ably_broadcast: Callable[..., Broadcast]) -> Broadcast:
    return ably_broadcast(
        endpoint="localhost",
        fallback_hosts=["127.0.0.1"],
        retries=2,
        retry_backoff=0.01,
        retry_max_backoff=0.05,
        batch=False,
    )


def _publish(broadcast: Broadcast, channel: str, aio: bool) -> Any:
    if aio:  # on a loop of this thread's own (an ASGI app's, say)
        return asyncio.run(broadcast.achannel(channel, {"n": 1}, "shipped"))
    return broadcast.channel(channel, {"n": 1}, "shipped")


@pytest.mark.parametrize("aio", [False, True], ids=["sync", "async"])
def test_a_publish_whose_client_another_thread_closed_is_retried(
    broadcast: Broadcast, emulator: AblyEmulator, aio: bool
) -> None:
    _publish(broadcast, "warm-up", aio=False)  # the sync client exists (the async one per loop)
    channel = f"closed-{uuid.uuid4().hex}"
    answer = emulator.hold_next()
    outcome: list[Any] = []

    def publish() -> None:
        try:
            outcome.append(_publish(broadcast, channel, aio))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=publish)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not emulator.messages(channel) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert emulator.messages(channel), "the publish never reached the emulator"
        broadcast.close()  # from this thread, under the publish whose answer is held
    finally:
        answer.set()
        thread.join(30)
    assert not thread.is_alive()
    (receipt,) = outcome
    assert not isinstance(receipt, Exception), f"not retried: {receipt!r}"
    if aio:
        assert receipt.requests >= 2
    else:  # the sync client is closed by the publish once done with it, not under it (s36b)
        assert receipt.requests == 1
    assert [m.data for m in emulator.messages(channel)] == [{"n": 1}]  # once: the id is kept
