"""The `pusher` driver against the project's conformance kit (broadcasting.testing).

Everything is real: the driver publishes over HTTP to the session's soketi (a
Pusher-protocol server), and the observer is a WebSocket connection to that
same soketi speaking the Pusher protocol, as a browser's pusher-js would. It
subscribes in ``watch()`` (and waits for ``subscription_succeeded``), so what
it collects is what soketi actually delivered to subscribers. It also offers
its connection's ``socket_id``, so the kit (the driver declares
``Feature.EXCLUDE_SENDER``) checks that a publish with that id is not
delivered to it. The webhook delivery is signed as Pusher signs one.

The stand-ins: two of the ``failing_options`` go through counting proxies in
front of soketi, because soketi cannot be made to fail that way on demand. One
answers every request with 503 (without passing it on: unknown to the driver,
never delivered); the other passes every request on and loses every answer,
so soketi delivers what the driver must report as unknown, and the kit checks
that no retry delivered it twice.

The observer flushes its connection before answering ``deliveries`` because
the kit's ``expect_delivered`` waits for ``copies`` deliveries *on the
channel*, not ``copies`` matching ones: when a channel already got an earlier
message (test_unicode_payload_arrives_intact, test_async_publish_in_two_event_loops,
test_concurrent_threaded_publishes) it returns as soon as that one is there,
which a receiver that is really asynchronous loses to a race.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import hmac
import json
import threading
import time
import warnings
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import pytest
from http_proxy import CountingProxy
from pusher_ws import Event, PusherSubscriber
from soketi_server import APP_KEY, APP_SECRET, SoketiServer, refused_port

from broadcasting import Broadcast
from broadcasting.testing import Delivery, DeliveryRecorder, DriverConformance, SilentServer

pytestmark = pytest.mark.soketi

T = TypeVar("T")

#: the end-to-end encryption master key the driver is configured with (32 bytes)
MASTER_KEY = base64.b64encode(b"conformance-master-key-32-bytes!").decode("ascii")
WRONG_SECRET = "wrong-secret-for-conformance-7d21"


class LoopThread:
    """An event loop running on a daemon thread of its own.

    The observer's WebSocket lives here, apart from the code under test: the
    kit calls the observer from plain sync test code, while the driver runs
    its own loops (``asyncio.run`` per async publish, ``run_sync``'s shared
    loop), and none of them may own or block the subscriber's connection.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="pusher-conformance-observer", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coro`` on the loop and wait (from any other thread) for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        """Stop the loop, join the thread and close the loop."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class PusherObserver:
    """The kit's (sync) Observer: a real Pusher WebSocket subscriber on soketi.

    ``watch`` connects on first use, subscribes to the channels not yet
    subscribed and returns once soketi confirmed every subscription, so a
    publish made afterwards is delivered to this connection. Every user event
    received is recorded per channel; ``deliveries`` waits for them.
    ``socket_id`` gives the connection's own id, so the kit checks the
    sender's exclusion against soketi itself.
    """

    def __init__(self, loop: LoopThread, url: str) -> None:
        self._loop = loop
        self._url = url
        self._recorder = DeliveryRecorder()
        self._subscriber: PusherSubscriber | None = None
        self._subscribed: set[str] = set()

    def _record(self, event: Event) -> None:
        self._recorder.record(Delivery(event.channel, event.event, event.data))

    async def _connect(self) -> PusherSubscriber:
        if self._subscriber is None:
            self._subscriber = await PusherSubscriber(self._url, on_event=self._record).connect()
        return self._subscriber

    async def _watch(self, channels: Sequence[str]) -> None:
        subscriber = await self._connect()
        new = [channel for channel in dict.fromkeys(channels) if channel not in self._subscribed]
        if new:
            await subscriber.subscribe(*new)
            self._subscribed.update(new)

    def watch(self, channels: Sequence[str]) -> None:
        """Subscribe to ``channels`` and wait for soketi's ``subscription_succeeded``."""
        self._loop.run(self._watch(channels), timeout=20)

    def socket_id(self) -> str:
        """This connection's id, from soketi's ``pusher:connection_established``.

        The kit's optional observer capability: with it, test_socket_id
        publishes with this id and checks soketi really leaves this
        connection out, as Laravel's ``toOthers()`` relies on.
        """
        return self._loop.run(self._connect(), timeout=20).socket_id

    def deliveries(self, channel: str, count: int, timeout: float) -> Sequence[Delivery]:
        """What arrived on ``channel``: wait up to ``timeout`` s for ``count``, then flush.

        The flush (a ``pusher:ping`` round trip, see ``PusherSubscriber.flush``)
        makes the answer complete up to now: every event soketi sent before
        this call is included, not only the first ``count``. The kit asks for
        ``count=1`` on channels that already hold an earlier delivery (see the
        module docstring), and without the flush a second message still in
        flight would be reported missing.
        """
        self._recorder.deliveries(channel, count, timeout)
        if self._subscriber is not None:
            self._loop.run(self._subscriber.flush(timeout), timeout=timeout + 5)
        return self._recorder.deliveries(channel, 0, 0)

    def close(self) -> None:
        """Close the WebSocket connection."""
        subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            self._loop.run(subscriber.close(), timeout=10)


@pytest.fixture(scope="module")
def observer_loop() -> Iterator[LoopThread]:
    """The event-loop thread every observer of this module runs its WebSocket on."""
    loop = LoopThread()
    try:
        yield loop
    finally:
        loop.close()


@pytest.fixture(scope="module")
def losing_proxy(soketi: SoketiServer) -> Iterator[CountingProxy]:
    """A proxy in front of soketi that passes every request on and loses every answer."""
    with CountingProxy(soketi.port) as proxy:
        proxy.drop(times=None)
        yield proxy


class TestPusherConformance(DriverConformance):
    """The pusher driver, publishing to soketi and observed over soketi's WebSocket."""

    driver_name = "pusher"
    secrets: ClassVar[Sequence[str]] = (APP_SECRET, MASTER_KEY, WRONG_SECRET)
    invalid_channel_names: ClassVar[Sequence[str]] = (
        "has space",
        "tab\tname",
        "slash/name",
        "colon:name",
        "star*name",
        "ünïcödé",
        "#server-to-user-x",  # reserved prefix ('#' is outside the allowed characters too)
        "c" * 165,  # Pusher allows 164 characters
        "private-encrypted-",  # the prefix with no name (a master key is configured)
    )

    @pytest.fixture
    def driver_options(self, soketi: SoketiServer) -> Mapping[str, Any]:
        return soketi.driver_options(
            encryption_master_key_base64=MASTER_KEY,
            retry_backoff=0.01,
            retry_max_backoff=0.05,
        )

    @pytest.fixture
    def observer(self, soketi: SoketiServer, observer_loop: LoopThread) -> Iterator[PusherObserver]:
        observer = PusherObserver(observer_loop, soketi.ws_url())
        try:
            yield observer
        finally:
            observer.close()

    @pytest.fixture
    def failing_options(
        self, soketi: SoketiServer, proxy: CountingProxy, losing_proxy: CountingProxy
    ) -> Sequence[Mapping[str, Any]]:
        proxy.fail(503, {"error": "unavailable"}, times=None)  # a server error: unknown
        return [
            soketi.driver_options(secret=WRONG_SECRET),  # soketi answers 401
            soketi.driver_options(port=refused_port(), timeout=0.5, retry_backoff=0.01),  # refused
            soketi.driver_options(port=proxy.port, retry_backoff=0.01),
            soketi.driver_options(port=losing_proxy.port, retry_backoff=0.01),
        ]

    @pytest.fixture
    def unanswered_options(
        self, soketi: SoketiServer, silent_server: SilentServer
    ) -> Mapping[str, Any]:
        return soketi.driver_options(port=silent_server.port, timeout=0.5, retry_backoff=0.01)

    @pytest.fixture
    def webhook_delivery(self) -> tuple[Mapping[str, str], bytes]:
        event = {"name": "channel_occupied", "channel": "orders"}
        body = json.dumps({"time_ms": int(time.time() * 1000), "events": [event]}).encode()
        signature = hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
        return {"X-Pusher-Key": APP_KEY, "X-Pusher-Signature": signature}, body

    @pytest.fixture
    def invalid_options(self, soketi: SoketiServer) -> Sequence[tuple[Mapping[str, Any], str]]:
        base = soketi.driver_options(encryption_master_key_base64=MASTER_KEY)

        def without(key: str) -> dict[str, Any]:
            return {k: v for k, v in base.items() if k != key}

        return [
            ({**base, "app_id": "my-app"}, "app_id"),
            ({**base, "app_id": 12.5}, "app_id"),
            (without("app_id"), "app_id"),
            (without("client"), "key"),
            ({**base, "key": "another-key"}, "client"),
            (without("secret"), "secret"),
            ({**base, "secret": ""}, "secret"),
            ({**base, "secret": APP_SECRET + " "}, "secret"),
            ({**base, "sll": False}, "sll"),
            ({**base, "ssl": "false"}, "ssl"),
            ({**base, "host": "http://127.0.0.1"}, "host"),
            ({**base, "cluster": "EU west"}, "cluster"),
            ({**base, "port": 0}, "port"),
            ({**base, "port": "6001"}, "port"),
            ({**base, "timeout": 0}, "timeout"),
            ({**base, "max_payload_bytes": -1}, "max_payload_bytes"),
            ({**base, "max_payload_bytes": "10k"}, "max_payload_bytes"),
            ({**base, "max_connections": 0}, "max_connections"),
            ({**base, "retries": -1}, "retries"),
            ({**base, "retry_backoff": -0.5}, "retry_backoff"),
            ({**base, "batch_events": False}, "batch_events"),  # replaced by the core's batch
            ({**base, "batch": "yes"}, "batch"),
            ({**base, "at_least_once": "no"}, "at_least_once"),
            ({**base, "batch_in_flight": 0}, "batch_in_flight"),
            (
                {**base, "encryption_master_key_base64": "not base64!"},
                "encryption_master_key_base64",
            ),
            (
                {**base, "encryption_master_key_base64": base64.b64encode(b"short").decode()},
                "encryption_master_key_base64",
            ),
        ]


def test_asyncio_run_leaves_no_connection_open(soketi: SoketiServer, proxy: CountingProxy) -> None:
    """Each ``asyncio.run`` that publishes closes its connections when its loop ends.

    Found by running the kit (which publishes in ``asyncio.run``) under
    ``python -X dev``: the per-loop session outlived its loop, and a closed
    loop cannot close transports, so every such publish left a keep-alive
    socket open until the garbage collector found it (a ResourceWarning each).
    The counting proxy keeps connections alive, as Pusher does; soketi itself
    closes each one after answering, which would hide the leak.
    """
    gc.collect()  # earlier tests' garbage is not this test's business
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        broadcast = Broadcast(
            {"DRIVER": "pusher", "DRIVERS": {"pusher": soketi.driver_options(port=proxy.port)}}
        )
        driver = broadcast.driver()
        for n in range(3):
            assert asyncio.run(driver.achannel("leak", {"n": n})).requests == 1
        broadcast.close()
        del broadcast, driver
        gc.collect()
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not unclosed, unclosed
    assert len(proxy.posts()) == 3
