"""An async publish still waiting for a connection when the driver is closed was not sent: it
failed (retryable), it is not unknown.

``aclose()`` closes this loop's aiohttp session. A publish that had taken the session and was
waiting for one of a node's ``max_connections`` slots then called ``session.request`` on a
closed session, which raises RuntimeError ("Session is closed"): the core read that as a
driver bug, every channel *unknown* ("may or may not have the message") and never retried,
though the counting proxy in front of soketi shows nothing was sent. It is now failed and
retryable: with ``retries`` the core sends it again, on the session the driver opens after a
close, as for any request after ``aclose()``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from http_proxy import CountingProxy
from soketi_server import SoketiServer

from broadcasting import Broadcast, PublishError, Receipt

pytestmark = pytest.mark.soketi


async def close_while_waiting(broadcast: Broadcast, proxy: CountingProxy) -> list[Any]:
    """Three publishes on one connection (the first holds it for 1 s), the driver closed while
    the other two wait for it: their outcomes."""
    await broadcast.achannel("warm", "up")  # the session is made
    proxy.delay(1.0, times=None)
    publishes = [asyncio.create_task(broadcast.achannel(f"closed-{n}", "d")) for n in range(3)]
    await asyncio.sleep(0.3)  # the first is sent; the others wait for its connection
    await broadcast.aclose()
    return await asyncio.gather(*publishes, return_exceptions=True)


def sent(proxy: CountingProxy) -> list[str]:
    return sorted(seen.json()["channels"][0] for seen in proxy.posts())


async def test_publishes_waiting_for_a_connection_when_closed_failed(
    soketi: SoketiServer, proxy: CountingProxy
) -> None:
    options = soketi.driver_options(port=proxy.port, max_connections=1, batch=False, retries=0)
    broadcast = Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}})
    first, *waiting = await close_while_waiting(broadcast, proxy)
    assert sent(proxy) == ["closed-0", "warm"]
    assert isinstance(first, PublishError)
    assert first.unknown == ("closed-0",), "sent, and its connection closed: unknown"
    for n, error in enumerate(waiting, start=1):
        assert isinstance(error, PublishError)
        assert (error.failed, error.unknown) == ((f"closed-{n}",), ())
        assert (error.retryable, error.maybe_delivered) == (True, False)
        assert "closed" in str(error) and "not sent" in str(error)
    await broadcast.aclose()


async def test_with_retries_they_go_out_once_after_the_close(
    soketi: SoketiServer, proxy: CountingProxy
) -> None:
    options = soketi.driver_options(
        port=proxy.port, max_connections=1, batch=False, retries=1, retry_backoff=0.01
    )
    broadcast = Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}})
    first, *waiting = await close_while_waiting(broadcast, proxy)
    assert isinstance(first, PublishError) and first.unknown == ("closed-0",)
    assert all(isinstance(receipt, Receipt) for receipt in waiting), waiting
    assert sent(proxy) == ["closed-0", "closed-1", "closed-2", "warm"]
    await broadcast.aclose()
