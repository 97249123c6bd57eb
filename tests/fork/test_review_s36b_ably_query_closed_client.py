"""A state query (``channel_info()``, ``members()``) whose SDK client the driver's ``close()`` /
``aclose()`` closed under it: the first host answered a 5xx, and the SDK's request to the
fallback host met httpx's refusal to send on a closed client, a ``RuntimeError`` ("Cannot
send a request, as the client has been closed.") that escaped the query as it was, no
``QueryError``. A query is asked again, once, on the driver's new client (reading twice is
harmless); the sync client is not closed under a query at all now (the thread holding it
is the one that closes it, once done).

Real parts: the Ably emulator (``localhost`` and ``127.0.0.1`` are a host and its fallback), the
real SDK and httpx. The close runs from an httpx request hook of the test, to happen while the
query's first request is under way, at the same point every run.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from ably_emulator import AblyEmulator

from broadcasting import Broadcast, ChannelInfo
from broadcasting.plugin import QueryError
from broadcasting_ably import BroadcastAblyDriver, _deadline, _transport


@pytest.fixture
def broadcast(ably_broadcast: Callable[..., Broadcast]) -> Broadcast:
    return ably_broadcast(endpoint="localhost", fallback_hosts=["127.0.0.1"], batch=False)


@pytest.fixture
def driver(broadcast: Broadcast) -> BroadcastAblyDriver:
    return broadcast.driver(BroadcastAblyDriver).driver


def _close_at_first_request(
    monkeypatch: pytest.MonkeyPatch, driver: BroadcastAblyDriver, clients: int
) -> list[int]:
    """Has the first request of each of the next ``clients`` SDK clients the driver makes close
    the driver (as another task or thread would while the request is under way); the list of
    closes made."""
    made = _transport._new_client
    closes: list[int] = []

    def new_client(settings: Any, hosts: int, aio: bool, **auth: Any) -> Any:
        client = made(settings, hosts, aio, **auth)
        if len(closes) >= clients:
            return client
        inner, first = _transport._httpx_client(client), [True]

        def close(request: Any) -> None:
            if first.pop() if first else False:
                closes.append(1)
                driver.close()

        async def aclose(request: Any) -> None:
            if first.pop() if first else False:
                closes.append(1)
                await driver.aclose()

        hooks = inner.event_hooks
        inner.event_hooks = {**hooks, "request": [*hooks["request"], aclose if aio else close]}
        return client

    monkeypatch.setattr(_transport, "_new_client", new_client)
    return closes


async def _ask(driver: BroadcastAblyDriver, query: str, channel: str, aio: bool) -> Any:
    if query == "channel_info":
        return await driver.achannel_info(channel) if aio else driver.channel_info(channel)
    return await driver.amembers(channel) if aio else driver.members(channel)


@pytest.mark.parametrize("query", ["channel_info", "members"])
@pytest.mark.parametrize("aio", [False, True], ids=["sync", "async"])
def test_a_query_whose_client_was_closed_under_it_is_asked_again(
    driver: BroadcastAblyDriver,
    emulator: AblyEmulator,
    monkeypatch: pytest.MonkeyPatch,
    aio: bool,
    query: str,
) -> None:
    channel = "presence:closed" if query == "members" else "closed"
    closes = _close_at_first_request(monkeypatch, driver, clients=1)
    emulator.fail_next(500, 50000)  # the SDK goes on to the fallback host
    answer = asyncio.run(_ask(driver, query, channel, aio))
    assert closes == [1]
    if query == "channel_info":
        assert isinstance(answer, ChannelInfo) and answer.name == channel
    else:
        assert answer == []
    assert emulator.violations == []


@pytest.mark.parametrize("query", ["channel_info", "members"])
def test_a_query_closed_under_it_twice_is_a_query_error(
    driver: BroadcastAblyDriver,
    emulator: AblyEmulator,
    monkeypatch: pytest.MonkeyPatch,
    query: str,
) -> None:
    """Closed under it on the new client too: a retryable QueryError, not the RuntimeError."""
    closes = _close_at_first_request(monkeypatch, driver, clients=2)
    emulator.fail_next(500, 50000, times=2)
    with pytest.raises(QueryError) as raised:
        asyncio.run(_ask(driver, query, "presence:closed", aio=True))
    assert closes == [1, 1]
    error = raised.value
    assert error.retryable
    assert "closed" in str(error)
    assert error.__cause__ is None and error.__context__ is None
    assert error.__traceback__ is not None  # raised by _query, in a frame holding no SDK object


# -- what a close under a request leaves open ------------------------------------------------
# httpcore's pool takes requests after its aclose(), and what they open outlives it: a
# connection made for a request that passed httpx's check before the close, and one still
# being made when the close ran (the pool forgets it). The driver's transport closes both once
# the last request under way is done; before, the collector did, with a ResourceWarning.


def _left_open(work: Callable[[], object]) -> list[str]:
    """The ``ResourceWarning``s (unclosed sockets and transports) once ``work`` is done and
    everything it dropped is collected."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        work()
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.mark.parametrize("query", ["channel_info", "members"])
def test_a_connection_opened_after_the_close_is_closed_once_the_query_is_done(
    driver: BroadcastAblyDriver,
    emulator: AblyEmulator,
    monkeypatch: pytest.MonkeyPatch,
    query: str,
) -> None:
    closes = _close_at_first_request(monkeypatch, driver, clients=1)
    emulator.fail_next(500, 50000)  # answered on a connection made after the close
    answers: list[Any] = []

    def ask() -> None:
        answers.append(asyncio.run(_ask(driver, query, "presence:closed", aio=True)))

    assert _left_open(ask) == []
    assert closes == [1]
    [answer] = answers
    if query == "members":
        assert answer == []
    else:
        assert isinstance(answer, ChannelInfo) and answer.name == "presence:closed"


def test_a_connection_being_made_when_the_driver_closed_is_closed_once_its_query_is_done(
    driver: BroadcastAblyDriver, emulator: AblyEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect = _deadline._ABackend.connect_tcp
    closes: list[int] = []

    async def connect_then_close(self: Any, *args: Any, **kwargs: Any) -> Any:
        stream = await connect(self, *args, **kwargs)
        if not closes:  # the TCP connection is made, its TLS handshake not yet
            closes.append(1)
            await driver.aclose()
        return stream

    monkeypatch.setattr(_deadline._ABackend, "connect_tcp", connect_then_close)
    answers: list[Any] = []

    def ask() -> None:
        answers.append(asyncio.run(_ask(driver, "members", "presence:closed", aio=True)))

    assert _left_open(ask) == []
    assert closes == [1]
    assert answers == [[]]  # the request went on, and was answered, on that connection
    assert len(emulator.requests) == 1


def test_a_publish_whose_client_was_closed_under_it_leaves_no_connection_open(
    broadcast: Broadcast,
    driver: BroadcastAblyDriver,
    emulator: AblyEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closes = _close_at_first_request(monkeypatch, driver, clients=1)
    results: list[Any] = []

    def publish() -> None:
        results.append(asyncio.run(broadcast.achannel("orders", {"id": 42}, "shipped")))

    assert _left_open(publish) == []
    assert closes == [1]
    [receipt] = results  # it went out on a connection made after the close, and was answered
    assert receipt.ids and receipt.requests == 1
    assert [r.path for r in emulator.requests] == ["/channels/orders/messages"]
