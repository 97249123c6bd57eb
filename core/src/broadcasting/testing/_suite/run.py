"""What every conformance test uses: the ``conformance`` fixture's bundle, and the probe."""

from __future__ import annotations

import asyncio
import inspect
import json
import secrets as _secrets
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pytest

from broadcasting import Broadcast, Broadcaster, NotSupportedError, Receipt
from broadcasting.plugin import Driver, Message, hookimpl, run_sync
from broadcasting.testing._observe import AsyncObserver, Delivery, Observer
from broadcasting.testing._suite.leaks import error_texts, held_in_frames, leaks, named_secrets
from broadcasting.testing._tap import SendTap, sends

if TYPE_CHECKING:
    from broadcasting.testing._suite import DriverConformance

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)

MODES = ("sync", "async")
DEFAULT_EVENT = "base-event"
EVENT = "conformance-event"


class PublishProbe:
    """A plugin on the publish hook of the kit's Broadcast: what reached the driver."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[tuple[Driver, Message]] = []

    @hookimpl(wrapper=True)
    def broadcasting_publish(
        self, broadcast: Broadcast, driver: Driver, message: Message
    ) -> Generator[None, Receipt, Receipt]:
        """Record the call, then let the publish proceed unchanged."""
        with self._lock:
            self.calls.append((driver, message))
        return (yield)

    @property
    def messages(self) -> list[Message]:
        """The messages that reached the publish hook, in order."""
        with self._lock:
            return [message for _, message in self.calls]


def marker() -> str:
    return _secrets.token_hex(6)


def arrived_intact(delivery: Delivery, data: object) -> bool:
    """Whether ``delivery`` carries ``data`` as sent (wire text, or decoded JSON)."""
    if isinstance(data, str):
        return delivery.data == data
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return delivery.data == text or delivery.data == json.loads(text)


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


def call(mode: str, target: object, method: str, *args: Any, **kwargs: Any) -> Any:
    """``target.<method>(...)``, or ``target.a<method>(...)`` in a fresh event loop."""
    if mode == "sync":
        return getattr(target, method)(*args, **kwargs)
    return asyncio.run(getattr(target, "a" + method)(*args, **kwargs))


def resolve(value: T | Awaitable[T]) -> T:
    """A value, or what an awaitable resolves to (on the core's background loop)."""
    if inspect.isawaitable(value):
        return run_sync(_await(cast("Awaitable[T]", value)))
    return value


class Run:
    """Everything one conformance test needs, bundled (the ``conformance`` fixture)."""

    def __init__(
        self,
        suite: DriverConformance,
        broadcast: Broadcast,
        broadcaster: Broadcaster[Any],
        observer: Observer | AsyncObserver | None,
        probe: PublishProbe,
        secrets: Sequence[str],
    ) -> None:
        self.suite = suite
        self.features = suite.features
        self.broadcast = broadcast
        self.broadcaster = broadcaster
        self.driver: Driver = broadcaster.driver
        #: Whether the core delivers for the driver (it implements send/asend).
        self.sends = sends(self.driver)
        self.observer = observer if suite.features.observe else None
        self.probe = probe
        self.secrets = tuple(secrets)
        self.timeout = suite.receive_timeout

    def channel(self, hint: str) -> str:
        return self.suite.channel_name(hint)

    # -- publishing --------------------------------------------------------------

    def publish(
        self,
        mode: str,
        channels: Any,
        data: Any,
        event: Any = None,
        *,
        socket_id: str | None = None,
        broadcaster: Broadcaster[Any] | None = None,
    ) -> Receipt:
        """Publish through ``channel`` or ``achannel`` (event omitted if None)."""
        kwargs: dict[str, Any] = {} if socket_id is None else {"socket_id": socket_id}
        if event is not None:
            kwargs["event"] = event
        receipt: Receipt = call(
            mode, broadcaster or self.broadcaster, "channel", channels, data, **kwargs
        )
        return receipt

    def ask(self, mode: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """``broadcast.<method>(...)`` or ``broadcast.a<method>(...)``, by ``mode``."""
        return call(mode, self.broadcast, method, *args, **kwargs)

    def delivered(
        self, mode: str, channels: str | Sequence[str], data: object, event: str | None = EVENT
    ) -> Message:
        """Publish to ``channels`` (watched first; the default event if ``event`` is None):
        the receipt says so, and each channel got ``data`` intact, once. The message sent."""
        names = [channels] if isinstance(channels, str) else list(channels)
        self.watch(*names)
        receipt = self.publish(mode, channels, data, event)
        message = self.last_message()
        name = event or DEFAULT_EVENT
        assert message.event == name, f"published as {message.event!r}, not {name!r}"
        self.check_receipt(receipt, name, names, message)
        self.expect_delivered(names, data, name)
        return message

    def refused(
        self,
        error: type[E],
        watched: str,
        mode: str,
        channels: Any,
        data: Any,
        event: Any = EVENT,
        socket_id: str | None = None,
    ) -> E:
        """The publish raises ``error`` before any request; ``watched`` receives nothing."""
        before = len(self.probe.calls)
        with pytest.raises(error) as info:
            self.publish(mode, channels, data, event, socket_id=socket_id)
        self.expect_nothing_sent(watched, before)
        return info.value

    def expect_not_supported(
        self, what: str, function: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> None:
        """``function(...)`` raises the driver's NotSupportedError (501), with no secret."""
        with pytest.raises(NotSupportedError) as refused:
            function(*args, **kwargs)
        error = refused.value
        assert error.driver == self.driver.name and error.http_status == 501, error
        self.assert_error_clean(error, f"the error of {what}")

    def tapped_variant(self, **delivery: Any) -> Broadcaster[Any]:
        """A variant with the core's default retries and short backoffs, ready to be tapped."""
        options: dict[str, Any] = {
            "retries": 2,
            "retry_backoff": 0.01,
            "retry_max_backoff": 0.05,
            "at_least_once": False,
        }
        options.update(delivery)
        return self.broadcaster.with_options(**options)

    def other_broadcast(self, options: Mapping[str, Any]) -> Broadcast:
        name = self.suite.driver_name
        return Broadcast(
            {"DRIVER": name, "DRIVERS": {name: dict(options)}}, plugins=[PublishProbe()]
        )

    # -- observing ----------------------------------------------------------------

    def watch(self, *channels: str) -> None:
        if self.observer is not None:
            resolve(self.observer.watch(list(channels)))

    def seen(self, channel: str, count: int) -> list[Delivery]:
        assert self.observer is not None
        return list(resolve(self.observer.deliveries(channel, count, self.timeout)))

    def own_socket_id(self) -> str | None:
        """The observer's own connection id, if it offers ``socket_id()``; else None."""
        method = getattr(self.observer, "socket_id", None)
        if method is None:
            return None
        assert callable(method), (
            f"{type(self.observer).__name__}.socket_id must be a method returning the "
            "observer's connection id (see broadcasting.testing.SocketIdentity)"
        )
        own: object = resolve(method())
        assert isinstance(own, str) and own, (
            f"{type(self.observer).__name__}.socket_id() returned {own!r}, not a non-empty str"
        )
        return own

    def expect_delivered(
        self, channels: Sequence[str], data: object, event: str, *, copies: int = 1
    ) -> None:
        """Every channel got ``data`` as ``event`` exactly ``copies`` times (if observable)."""
        if self.observer is None:
            return
        for channel in channels:
            # the channel may already hold earlier messages: wait for more deliveries
            # until enough of them are this message, the observer gives up, or time is up
            deadline = time.monotonic() + self.timeout
            want = copies
            while True:
                seen = self.seen(channel, want)
                matching = [d for d in seen if arrived_intact(d, data)]
                if len(matching) >= copies or len(seen) < want or time.monotonic() > deadline:
                    break
                want = len(seen) + copies - len(matching)
            assert len(matching) == copies, (
                f"expected {copies} delivery of the message on {channel!r} within "
                f"{self.timeout}s, the receiving side saw {len(matching)} "
                f"(all deliveries on that channel: {seen!r})"
            )
            assert all(d.event == event for d in matching), (
                f"wrong event name on {channel!r}: {[d.event for d in matching]} != {event!r}"
            )
            assert all(d.channel == channel for d in matching), matching

    def copies_before_sentinel(self, channel: str, data: object) -> int:
        """How many times ``channel`` received ``data``, counted once a later sentinel arrived.

        The sentinel is published through the working driver after the publish
        under test has returned; deliveries on one channel arrive in publish
        order, so every copy of ``data`` the service will ever deliver is in by then.
        """
        sentinel = {"sentinel": marker()}
        self.publish("sync", channel, sentinel, EVENT)
        deadline = time.monotonic() + self.timeout
        want = 1
        while True:
            seen = self.seen(channel, want)
            if any(arrived_intact(d, sentinel) for d in seen):
                return sum(1 for d in seen if arrived_intact(d, data))
            assert len(seen) >= want and time.monotonic() <= deadline, (
                f"the sentinel published to {channel!r} after the publish under test never "
                f"arrived within {self.timeout}s (deliveries on that channel: {seen!r})"
            )
            want = len(seen) + 1

    def expect_nothing_sent(self, channel: str, calls_before: int) -> None:
        """No publish reached the driver, and ``channel`` sees only a later sentinel."""
        assert len(self.probe.calls) == calls_before, (
            "a publish reached the driver although validation should have refused it first"
        )
        if self.observer is None:
            return
        sentinel = {"sentinel": marker()}
        self.publish("sync", channel, sentinel, EVENT)
        seen = self.seen(channel, 1)
        assert seen, f"the sentinel published to {channel!r} never arrived"
        assert arrived_intact(seen[0], sentinel), (
            f"{channel!r} received something before the sentinel: {seen[0]!r}; the refused "
            "publish must not have been sent"
        )

    # -- receipts and secrets ---------------------------------------------------------

    def check_receipt(
        self, receipt: object, event: str, channels: Sequence[str], message: Message | None = None
    ) -> Receipt:
        assert isinstance(receipt, Receipt), f"publish returned {receipt!r}, not a Receipt"
        name = self.suite.driver_name
        assert receipt.driver == name, f"receipt.driver is {receipt.driver!r}, not {name!r}"
        assert receipt.event == event, f"receipt.event is {receipt.event!r}, not {event!r}"
        assert receipt.channels == tuple(channels), (
            f"receipt.channels is {receipt.channels!r}, not {tuple(channels)!r}"
        )
        assert isinstance(receipt.message_id, str), receipt.message_id
        assert receipt.message_id, "receipt.message_id is empty"
        if message is not None:
            assert receipt.message_id == message.id, (
                "receipt.message_id must be the Message.id the driver was given"
            )
        assert isinstance(receipt.ids, tuple), receipt.ids
        assert all(isinstance(i, str) for i in receipt.ids), (
            f"receipt.ids must be str (the ids the service gave): {receipt.ids!r}"
        )
        assert isinstance(receipt.requests, int), receipt.requests
        if self.sends:
            assert receipt.requests >= 1, "a send() driver's receipt must count its requests"
        else:
            assert receipt.requests == 0, (
                "a driver that delivers in process (publish()) makes no requests, yet "
                f"receipt.requests is {receipt.requests}"
            )
        return receipt

    @staticmethod
    def check_budget(tap: SendTap, where: str) -> None:
        """No request re-sent by the driver's own transport beyond ``Batch.budget``."""
        over = tap.over_budget()
        assert not over, (
            f"{where}: send() reports batch.requests={over[0].requests}, over its "
            f"batch.budget={over[0].budget} (the one request plus the retries the user's "
            "delivery options still allow): a transport that re-sends stays within it"
        )

    def last_message(self) -> Message:
        messages = self.probe.messages
        assert messages, "no publish reached the broadcasting_publish hook"
        return messages[-1]

    def secrets_of(self, options: Mapping[str, Any]) -> tuple[str, ...]:
        """The declared secrets, and what ``options`` hold under names that look secret.

        A wrong key in the ``failing_options`` is as secret as the right one: a driver
        that shows the key it was refused with shows it exactly where the kit looks.
        Values under 8 characters are left out (too short to find without false alarms).
        """
        found = [s for s in named_secrets(options) if len(s) >= 8 and s not in self.secrets]
        return (*self.secrets, *found)

    def assert_no_secrets(
        self, texts: Sequence[str], where: str, secrets: Sequence[str] | None = None
    ) -> None:
        found = leaks(texts, self.secrets if secrets is None else secrets)
        assert not found, (
            f"a secret (declared, or an option's named like one) appears in {where}: "
            f"{found[0][:200]!r}"
        )

    def assert_error_clean(
        self, error: BaseException, where: str, secrets: Sequence[str] | None = None
    ) -> None:
        """No declared secret (or one of ``secrets``) in ``error``, its chain, or anything
        their frames hold."""
        secrets = self.secrets if secrets is None else secrets
        self.assert_no_secrets(error_texts(error), where, secrets)
        held = held_in_frames(error, [s for s in secrets if s])
        assert not held, (
            f"a secret (declared, or an option's named like one) is held as text by a frame "
            f"of the traceback of {where}, "
            f"at {held[:3]}: error trackers record every frame's locals"
        )
