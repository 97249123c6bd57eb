"""The driver conformance suite: a base class whose tests every driver inherits."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import os
import secrets as _secrets
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import Any, ClassVar, TypeVar, cast

import pytest

from broadcasting import (
    BadRequestError,
    Broadcast,
    BroadcastError,
    ConfigurationError,
    EncryptedPrivateChannel,
    ForbiddenError,
    InputError,
    InvalidChannelError,
    InvalidEventError,
    InvalidPayloadError,
    NotSupportedError,
    PayloadTooLargeError,
    PresenceChannel,
    PrivateChannel,
    PublishError,
    Receipt,
)
from broadcasting._types import SECRET_OPTION
from broadcasting.plugin import Driver, Message, Secret, hookimpl, installed_drivers, run_sync
from broadcasting.testing._features import Features
from broadcasting.testing._observe import AsyncObserver, Delivery, Observer
from broadcasting.testing._tap import SendTap, delivers_in_process

T = TypeVar("T")

MODES = ("sync", "async")
_DEFAULT = "base-event"
_EVENT = "conformance-event"
#: Option names that look secret (the names the core wraps in a Secret when it
#: loads a config): the safety net of ``test_secrets_never_shown``.
_SECRET_KEY = SECRET_OPTION


class PublishProbe:
    """A ``wrapper=True`` plugin that records every publish reaching the hook.

    The kit registers it on the :class:`~broadcasting.Broadcast` it builds, so
    a test can tell whether a publish got as far as the driver at all.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[tuple[Driver, Message]] = []

    @hookimpl(wrapper=True)
    def broadcasting_publish(
        self, driver: Driver, message: Message
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


class _LogCapture(logging.Handler):
    """Collects every log line (any logger, DEBUG and up) while active."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(record.getMessage())
        except Exception:  # a broken log call is not the kit's business
            self.lines.append(str(record.msg))


@contextmanager
def _capture_logs() -> Iterator[_LogCapture]:
    root = logging.getLogger()
    handler = _LogCapture()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


_KIT_DIR = os.path.dirname(os.path.abspath(__file__))


def _error_texts(exc: BaseException) -> list[str]:
    """str and repr of an exception and of everything chained to it, and its frames' locals.

    Error trackers (Sentry and the like) record the local variables of every
    frame of a traceback, chained exceptions included: a revealed key in one
    of them leaks as surely as one in the message. The kit's own frames,
    which hold the test's raw options on purpose, are left out.
    """
    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current)]
        tb = current.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if not os.path.abspath(frame.f_code.co_filename).startswith(_KIT_DIR):
                for name, value in frame.f_locals.items():
                    texts.append(f"local {name!r} of {frame.f_code.co_name}(): {_shown(value)}")
            tb = tb.tb_next
        current = current.__cause__ or current.__context__
    return texts


def _reachable(root: object, limit: int = 50_000) -> Iterator[tuple[str, object]]:
    """``(path, value)`` for everything reachable from ``root`` through data, not code.

    Attributes, slots, mapping keys and values, sequence items: what a debugger
    or an error tracker that records an object shows, recursively. A
    :class:`~broadcasting.Secret` is not opened: it holds its value on purpose.
    """
    seen: set[int] = set()
    stack: list[tuple[str, object]] = [("driver", root)]
    skip = (type, type(os), type(_reachable), Secret)
    while stack and len(seen) < limit:
        path, value = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        yield path, value
        if isinstance(value, skip):
            continue
        if isinstance(value, Mapping):
            try:
                items = list(value.items())
            except Exception:  # a mapping that cannot be listed shows nothing more
                items = []
            stack.extend((f"{path}[{k!r}]", v) for k, v in items)
            stack.extend((f"{path} key", k) for k, _ in items)
        elif isinstance(value, (list, tuple, set, frozenset)):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(value))
        attributes = getattr(value, "__dict__", None)
        if isinstance(attributes, dict):
            stack.extend((f"{path}.{name}", v) for name, v in attributes.items())
        for cls in type(value).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if isinstance(name, str) and hasattr(value, name):
                    stack.append((f"{path}.{name}", getattr(value, name)))


def holders(root: object, secrets: Sequence[str | bytes]) -> list[str]:
    """Where, in what is reachable from ``root``, one of ``secrets`` is held as text."""
    texts = [s for s in secrets if isinstance(s, str) and s]
    raw = [s for s in secrets if isinstance(s, bytes) and s]
    found = []
    for path, value in _reachable(root):
        if (isinstance(value, str) and any(s in value for s in texts)) or (
            isinstance(value, bytes) and any(s in value for s in raw)
        ):
            found.append(path)
    return found


def _shown(value: object) -> str:
    """A value as a debugger or error tracker shows it."""
    if isinstance(value, str):
        return value
    try:
        return repr(value)
    except Exception as exc:  # a broken repr shows nothing
        return f"<repr failed: {type(exc).__name__}>"


def _leaks(texts: Sequence[str], secrets: Sequence[str]) -> list[str]:
    return [text for text in texts for secret in secrets if secret and secret in text]


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _text_of(data: object) -> str:
    if isinstance(data, str):
        return data
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _arrived_intact(delivery: Delivery, data: object) -> bool:
    """Whether ``delivery`` carries ``data`` as sent (wire text, or decoded JSON)."""
    if isinstance(data, str):
        return delivery.data == data
    text = _text_of(data)
    return delivery.data == text or delivery.data == json.loads(text)


class _Run:
    """Everything one conformance test needs, bundled (the ``conformance`` fixture)."""

    def __init__(
        self,
        suite: DriverConformance,
        broadcast: Broadcast,
        driver: Driver,
        observer: Observer | AsyncObserver | None,
        probe: PublishProbe,
        secrets: Sequence[str],
    ) -> None:
        self.suite = suite
        self.features = suite.features
        self.broadcast = broadcast
        self.driver = driver
        self.observer = observer if suite.features.observe else None
        self.probe = probe
        self.secrets = tuple(secrets)
        self.timeout = suite.receive_timeout

    # -- names and payloads ----------------------------------------------------

    def channel(self, hint: str) -> str:
        return self.suite.channel_name(hint)

    @staticmethod
    def marker() -> str:
        return _secrets.token_hex(6)

    # -- publishing --------------------------------------------------------------

    def publish(
        self,
        mode: str,
        channels: Any,
        data: Any,
        event: Any = None,
        *,
        socket_id: str | None = None,
        driver: Driver | None = None,
    ) -> Receipt:
        """Publish through ``driver.channel`` or ``achannel`` (event omitted if None)."""
        target = driver or self.driver
        kwargs: dict[str, Any] = {} if socket_id is None else {"socket_id": socket_id}
        if event is not None:
            kwargs["event"] = event
        if mode == "sync":
            return target.channel(channels, data, **kwargs)
        return asyncio.run(target.achannel(channels, data, **kwargs))

    def publish_or_refused(
        self, mode: str, channels: Any, data: Any, event: Any = None
    ) -> Receipt | None:
        """Publish; when async is declared unsupported, check it is refused and return None."""
        if mode == "async" and not self.features.async_publish:
            with pytest.raises(BroadcastError):
                self.publish(mode, channels, data, event)
            return None
        return self.publish(mode, channels, data, event)

    # -- observing ----------------------------------------------------------------

    def watch(self, *channels: str) -> None:
        if self.observer is not None:
            self.resolve(self.observer.watch(list(channels)))

    def seen(self, channel: str, count: int) -> list[Delivery]:
        assert self.observer is not None
        found = self.resolve(self.observer.deliveries(channel, count, self.timeout))
        return list(found)

    def own_socket_id(self) -> str | None:
        """The observer's own connection id, if it offers ``socket_id()``; else None."""
        if self.observer is None:
            return None
        method = getattr(self.observer, "socket_id", None)
        if method is None:
            return None
        assert callable(method), (
            f"{type(self.observer).__name__}.socket_id must be a method returning the "
            "observer's connection id (see broadcasting.testing.SocketIdentity)"
        )
        own: object = self.resolve(method())
        assert isinstance(own, str) and own, (
            f"{type(self.observer).__name__}.socket_id() returned {own!r}, not a non-empty str"
        )
        return own

    @staticmethod
    def resolve(value: T | Awaitable[T]) -> T:
        if inspect.isawaitable(value):
            return run_sync(_await(cast("Awaitable[T]", value)))
        return value

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
                matching = [d for d in seen if _arrived_intact(d, data)]
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
        sentinel = {"sentinel": self.marker()}
        self.publish("sync", channel, sentinel, _EVENT)
        deadline = time.monotonic() + self.timeout
        want = 1
        while True:
            seen = self.seen(channel, want)
            if any(_arrived_intact(d, sentinel) for d in seen):
                return sum(1 for d in seen if _arrived_intact(d, data))
            assert len(seen) >= want and time.monotonic() <= deadline, (
                f"the sentinel published to {channel!r} after the publish under test never "
                f"arrived within {self.timeout}s (deliveries on that channel: {seen!r})"
            )
            want = len(seen) + 1

    def tapped_variant(self, **delivery: Any) -> Driver:
        """A variant of the driver with the core's default retries, ready to be tapped.

        ``retries`` is the core's default (2) whatever ``driver_options`` say,
        with short backoffs; ``at_least_once`` is off unless given.
        """
        options: dict[str, Any] = {
            "retries": 2,
            "retry_backoff": 0.01,
            "retry_max_backoff": 0.05,
            "at_least_once": False,
        }
        options.update(delivery)
        return self.driver.with_options(**options)

    def check_in_process(self, mode: str) -> None:
        """The declared alternative for a driver that delivers in process (no send())."""
        name = type(self.driver).__name__
        assert not self.features.network, (
            f"{name} overrides publish()/apublish(), so the core's retry and outcome rules "
            "never run for it: a network driver implements send()/asend() and leaves "
            "publish() to the core (an in-process driver declares Features(network=False))"
        )
        channel = self.channel("inproc")
        data = {"marker": self.marker()}
        self.watch(channel)
        receipt = self.publish_or_refused(mode, channel, data, _EVENT)
        if receipt is not None:
            self.check_receipt(receipt, _EVENT, [channel], self.last_message())
            self.expect_delivered([channel], data, _EVENT)

    def check_sends(self) -> None:
        """A driver that delivers through send()/asend() talks to a service: network=True."""
        assert self.features.network, (
            f"{type(self.driver).__name__} delivers through send()/asend(), so every publish "
            "makes requests: declare Features(network=True)"
        )

    def expect_nothing_sent(self, channel: str, calls_before: int) -> None:
        """No publish reached the driver, and ``channel`` sees only a later sentinel."""
        assert len(self.probe.calls) == calls_before, (
            "a publish reached the driver although validation should have refused it first"
        )
        if self.observer is None:
            return
        sentinel = {"sentinel": self.marker()}
        self.publish("sync", channel, sentinel, _EVENT)
        seen = self.seen(channel, 1)
        assert seen, f"the sentinel published to {channel!r} never arrived"
        assert _arrived_intact(seen[0], sentinel), (
            f"{channel!r} received something before the sentinel: {seen[0]!r}; the refused "
            "publish must not have been sent"
        )

    # -- receipts -------------------------------------------------------------------

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
        if self.features.network:
            assert receipt.requests >= 1, "a network driver's receipt must count its requests"
        else:
            assert receipt.requests == 0, "Features(network=False) but receipt.requests > 0"
        return receipt

    def last_message(self) -> Message:
        messages = self.probe.messages
        assert messages, "no publish reached the broadcasting_publish hook"
        return messages[-1]

    # -- building other Broadcasts ------------------------------------------------

    def other_broadcast(self, options: Mapping[str, Any]) -> Broadcast:
        name = self.suite.driver_name
        return Broadcast(
            {"DRIVER": name, "DRIVERS": {name: dict(options)}}, plugins=[PublishProbe()]
        )

    def assert_no_secrets(self, texts: Sequence[str], where: str) -> None:
        leaks = _leaks(texts, self.secrets)
        assert not leaks, f"a declared secret appears in {where}: {leaks[0][:200]!r}"


_INVALID_INPUT: list[tuple[str, Callable[[str], tuple[Any, Any, Any]], type[InputError]]] = [
    ("empty-channel", lambda ch: ("", {"k": 1}, _EVENT), InvalidChannelError),
    ("empty-channel-in-list", lambda ch: ([ch, ""], {"k": 1}, _EVENT), InvalidChannelError),
    ("no-channels", lambda ch: ([], {"k": 1}, _EVENT), InvalidChannelError),
    ("non-str-channel", lambda ch: (42, {"k": 1}, _EVENT), InvalidChannelError),
    ("non-str-channel-in-list", lambda ch: ([ch, 42], {"k": 1}, _EVENT), InvalidChannelError),
    ("channels-as-set", lambda ch: ({ch}, {"k": 1}, _EVENT), InvalidChannelError),
    ("empty-event", lambda ch: (ch, {"k": 1}, ""), InvalidEventError),
    ("non-str-event", lambda ch: (ch, {"k": 1}, 42), InvalidEventError),
    ("payload-object", lambda ch: (ch, object(), _EVENT), InvalidPayloadError),
    ("payload-nested-object", lambda ch: (ch, {"k": object()}, _EVENT), InvalidPayloadError),
    ("payload-nan", lambda ch: (ch, {"k": float("nan")}, _EVENT), InvalidPayloadError),
    ("payload-int", lambda ch: (ch, 42, _EVENT), InvalidPayloadError),
    ("payload-bytes", lambda ch: (ch, b"bytes", _EVENT), InvalidPayloadError),
    ("payload-none", lambda ch: (ch, None, _EVENT), InvalidPayloadError),
]

# channel names that break most naming rules; the first one a declared
# ``channel_pattern`` refuses is used to check the pattern is enforced
_PATTERN_BREAKERS = ("has space", "line\nbreak", "slash/name", "ünïcödé", "#hash", "[bracket", "")


class DriverConformance:
    """Behavioural tests every driver should pass; subclass it in your test suite.

    Name the subclass ``Test...`` so pytest collects it, and provide:

    Class attributes
        ``driver_name`` (required): the name the driver is found by.
        ``features``: a :class:`Features` saying what the driver supports.
        ``secrets``: strings (keys, secrets, tokens in URLs) that must never
        appear in a repr, a log line or an error message. Or override the
        ``declared_secrets`` fixture to compute them.
        ``invalid_channel_names``: names your ``Driver.validate`` or
        ``Limits.channel_pattern`` must refuse with ``InvalidChannelError``.
        ``receive_timeout`` (5 s): how long to wait for a delivery.
        ``socket_id_sample``: a well-formed ``socket_id`` for your service
        that is not the observer's own connection.
        Override :meth:`channel_name` if your service needs a channel prefix.

    Fixtures (override them with ``@pytest.fixture`` methods of the same name;
    they may request any other fixture, e.g. a server you start). The kit's
    own ``broadcast``, ``driver``, ``probe`` and ``conformance`` fixtures are
    available to yours; override ``broadcast`` only if the Broadcast must be
    built differently, and then pass ``plugins=[probe]`` to it.
        ``driver_options`` -> ``Mapping``: the driver's ``DRIVERS`` entry. The
        kit builds ``Broadcast({"DRIVER": name, "DRIVERS": {name: options}})``
        itself (with a probe plugin on the publish hook), connects the driver
        through it, and closes it after each test.
        ``observer`` -> :class:`Observer` | :class:`AsyncObserver` | ``None``:
        the receiving side. It may request the ``driver`` fixture (the
        connected driver under test). Required unless
        ``Features(observe=False)``. If it is one connection of the service,
        give it a ``socket_id()`` method (:class:`SocketIdentity`) returning
        that connection's id: with ``Features(socket_id=True)`` the kit then
        checks that the sender's own connection is really excluded.
        ``failing_options`` -> ``Sequence[Mapping]``: configurations that build
        but whose publishes fail (unreachable host, wrong credentials...).
        Required when ``Features(network=True)``. The kit publishes with each
        (to two channels, if the driver takes several) and checks the
        PublishError's three outcomes against the receiving side: a
        ``failed`` channel got nothing, an ``unknown`` one at most one copy.
        Include one where the service gets the request but the answer is
        lost (a proxy that forwards, then drops the connection, say): that is
        how the kit catches an SDK that retries by itself.
        ``invalid_options`` -> ``Sequence[tuple[Mapping, str]]``: configurations
        that ``from_config`` must refuse, each with the option key the
        ``ConfigurationError`` must name.

    A network driver (``Features(network=True)``) delivers through ``send()`` /
    ``asend()``: the kit wraps those two methods on the connected driver (an
    instance attribute; the class is untouched) to count requests, lose the
    first answer after the service got it, or refuse the first request
    unsent, and checks the core's retries and the receiving side's deliveries
    that follow. Those checks use a ``with_options`` variant with the core's
    default ``retries`` and short backoffs; the observer must see the service,
    not one driver instance.

    Every test runs without pytest-asyncio: async publishes run in
    ``asyncio.run``, a fresh event loop per test, as a script would; the
    driver must also cope with being closed from sync code afterwards.
    Switching a feature off in :class:`Features` changes what a test checks;
    it never removes the test.
    """

    driver_name: ClassVar[str] = ""
    features: ClassVar[Features] = Features()
    secrets: ClassVar[Sequence[str]] = ()
    invalid_channel_names: ClassVar[Sequence[str]] = ()
    receive_timeout: ClassVar[float] = 5.0
    socket_id_sample: ClassVar[str] = "1234.5678"
    #: sizes tried when the driver declares no limit: they must work
    unlimited_payload_bytes: ClassVar[int] = 64 * 1024
    unlimited_name_length: ClassVar[int] = 300
    unlimited_channels: ClassVar[int] = 20

    def channel_name(self, hint: str) -> str:
        """A fresh channel name for one test (unique, so tests never see each other)."""
        return f"conformance-{hint}-{_secrets.token_hex(4)}"

    # -- fixtures the driver's test suite overrides ------------------------------

    @pytest.fixture
    def driver_options(self) -> Mapping[str, Any]:
        """The driver's ``DRIVERS`` entry (override it)."""
        return {}

    @pytest.fixture
    def observer(self, driver: Driver) -> Observer | AsyncObserver | None:
        """The receiving side (override it, or declare ``Features(observe=False)``)."""
        return None

    @pytest.fixture
    def failing_options(self) -> Sequence[Mapping[str, Any]]:
        """Configurations whose publishes fail with a PublishError (network drivers)."""
        return ()

    @pytest.fixture
    def invalid_options(self) -> Sequence[tuple[Mapping[str, Any], str]]:
        """Configurations ``from_config`` refuses, with the key the error must name."""
        return ()

    @pytest.fixture
    def declared_secrets(self) -> Sequence[str]:
        """The secret strings; by default the ``secrets`` class attribute."""
        return tuple(self.secrets)

    # -- fixtures the kit provides ---------------------------------------------------

    @pytest.fixture
    def probe(self) -> PublishProbe:
        """The plugin that records every publish reaching the hook."""
        return PublishProbe()

    @pytest.fixture
    def broadcast(
        self, driver_options: Mapping[str, Any], probe: PublishProbe
    ) -> Iterator[Broadcast]:
        """A Broadcast configured with ``driver_options``, closed after the test."""
        if not self.driver_name:
            pytest.fail(f"{type(self).__name__} must set driver_name")
        name = self.driver_name
        broadcast = Broadcast(
            {"DRIVER": name, "DRIVERS": {name: dict(driver_options)}}, plugins=[probe]
        )
        yield broadcast
        broadcast.close()

    @pytest.fixture
    def driver(self, broadcast: Broadcast) -> Driver:
        """The connected driver under test."""
        return broadcast.driver(self.driver_name)

    @pytest.fixture
    def conformance(
        self,
        broadcast: Broadcast,
        driver: Driver,
        observer: Observer | AsyncObserver | None,
        probe: PublishProbe,
        declared_secrets: Sequence[str],
    ) -> _Run:
        """The bundle each test uses."""
        if self.features.observe and observer is None:
            pytest.fail(
                f"{type(self).__name__}: provide an `observer` fixture, "
                "or declare features = Features(observe=False)"
            )
        return _Run(self, broadcast, driver, observer, probe, declared_secrets)

    # -- payloads, channels, events ----------------------------------------------------

    @pytest.mark.parametrize("mode", MODES)
    def test_str_payload_arrives_intact(self, conformance: _Run, mode: str) -> None:
        """A str message is delivered as the identical str."""
        run = conformance
        channel = run.channel("str")
        data = f'plain text {run.marker()} with "quotes" and {{braces}}'
        run.watch(channel)
        receipt = run.publish_or_refused(mode, channel, data, _EVENT)
        if receipt is None:
            return
        run.check_receipt(receipt, _EVENT, [channel], run.last_message())
        run.expect_delivered([channel], data, _EVENT)

    @pytest.mark.parametrize("mode", MODES)
    def test_json_looking_str_stays_a_str(self, conformance: _Run, mode: str) -> None:
        """A str that happens to be JSON is sent as given, not re-encoded."""
        run = conformance
        channel = run.channel("jsonstr")
        data = '{"marker": "' + run.marker() + '", "n": 1}'
        run.watch(channel)
        receipt = run.publish_or_refused(mode, channel, data, _EVENT)
        if receipt is None:
            return
        assert run.last_message().text == data
        run.check_receipt(receipt, _EVENT, [channel])
        run.expect_delivered([channel], data, _EVENT)

    @pytest.mark.parametrize("mode", MODES)
    def test_dict_payload_arrives_intact(self, conformance: _Run, mode: str) -> None:
        """A dict is delivered as its JSON, nested values and types unchanged."""
        run = conformance
        channel = run.channel("dict")
        data = {
            "marker": run.marker(),
            "n": 42,
            "pi": 3.5,
            "ok": True,
            "none": None,
            "nested": {"list": [1, "two", {"three": 3}]},
        }
        run.watch(channel)
        receipt = run.publish_or_refused(mode, channel, data, _EVENT)
        if receipt is None:
            return
        run.check_receipt(receipt, _EVENT, [channel], run.last_message())
        run.expect_delivered([channel], data, _EVENT)

    @pytest.mark.parametrize("mode", MODES)
    def test_list_payload_arrives_intact(self, conformance: _Run, mode: str) -> None:
        """A list is delivered as its JSON."""
        run = conformance
        channel = run.channel("list")
        data = [run.marker(), 1, {"a": [True, None]}]
        run.watch(channel)
        receipt = run.publish_or_refused(mode, channel, data, _EVENT)
        if receipt is None:
            return
        run.check_receipt(receipt, _EVENT, [channel])
        run.expect_delivered([channel], data, _EVENT)

    @pytest.mark.parametrize("mode", MODES)
    def test_unicode_payload_arrives_intact(self, conformance: _Run, mode: str) -> None:
        """Non-ASCII text (accents, CJK, emoji) survives in str and dict payloads."""
        run = conformance
        channel = run.channel("unicode")
        text = f"héllo wörld — 日本語 — \U0001f389 {run.marker()}"
        data = {"text": text, "ключ": "значение"}
        run.watch(channel)
        first = run.publish_or_refused(mode, channel, text, _EVENT)
        if first is None:
            return
        second = run.publish(mode, channel, data, _EVENT)
        run.check_receipt(first, _EVENT, [channel])
        run.check_receipt(second, _EVENT, [channel])
        run.expect_delivered([channel], text, _EVENT)
        run.expect_delivered([channel], data, _EVENT)

    @pytest.mark.parametrize("mode", MODES)
    def test_default_event_name_is_base_event(self, conformance: _Run, mode: str) -> None:
        """Leaving out the event publishes as 'base-event', the seed's default."""
        run = conformance
        channel = run.channel("default")
        data = {"marker": run.marker()}
        run.watch(channel)
        receipt = run.publish_or_refused(mode, channel, data)
        if receipt is None:
            return
        assert run.last_message().event == _DEFAULT
        run.check_receipt(receipt, _DEFAULT, [channel])
        run.expect_delivered([channel], data, _DEFAULT)

    @pytest.mark.parametrize("mode", MODES)
    def test_custom_event_name(self, conformance: _Run, mode: str) -> None:
        """A custom event name arrives unchanged (dots, colons and dashes included)."""
        run = conformance
        channel = run.channel("event")
        event = "order.shipped:v2-final"
        data = {"marker": run.marker()}
        run.watch(channel)
        receipt = run.publish_or_refused(mode, channel, data, event)
        if receipt is None:
            return
        run.check_receipt(receipt, event, [channel])
        run.expect_delivered([channel], data, event)

    @pytest.mark.parametrize("mode", MODES)
    def test_multiple_channels(self, conformance: _Run, mode: str) -> None:
        """A list of channels delivers to each of them (or is refused, if unsupported)."""
        run = conformance
        channels = [run.channel("multi-a"), run.channel("multi-b"), run.channel("multi-c")]
        data = {"marker": run.marker()}
        run.watch(*channels)
        if not run.features.multiple_channels:
            before = len(run.probe.calls)
            with pytest.raises(InputError):
                run.publish(mode, channels, data, _EVENT)
            run.expect_nothing_sent(channels[0], before)
            return
        receipt = run.publish_or_refused(mode, tuple(channels), data, _EVENT)
        if receipt is None:
            return
        run.check_receipt(receipt, _EVENT, channels, run.last_message())
        run.expect_delivered(channels, data, _EVENT)

    @pytest.mark.parametrize("mode", MODES)
    def test_duplicate_channels_are_delivered_once(self, conformance: _Run, mode: str) -> None:
        """A channel listed twice receives the message once; the receipt lists it once."""
        run = conformance
        channel = run.channel("dup")
        data = {"marker": run.marker()}
        run.watch(channel)
        receipt = run.publish_or_refused(mode, [channel, channel], data, _EVENT)
        if receipt is None:
            return
        assert run.last_message().channels == (channel,)
        run.check_receipt(receipt, _EVENT, [channel])
        if run.observer is not None:
            sentinel = {"sentinel": run.marker()}
            run.publish("sync", channel, sentinel, _EVENT)
            seen = run.seen(channel, 2)
            copies = [d for d in seen if _arrived_intact(d, data)]
            assert len(copies) == 1, f"{channel!r} received the message {len(copies)} times"

    # -- async and concurrency --------------------------------------------------------------

    def test_concurrent_async_publishes(self, conformance: _Run) -> None:
        """Ten achannel() calls gathered on one loop all arrive, each once."""
        run = conformance
        channel = run.channel("gather")
        payloads = [{"marker": run.marker(), "n": n} for n in range(10)]
        run.watch(channel)

        async def main() -> list[Receipt]:
            return list(
                await asyncio.gather(*(run.driver.achannel(channel, p, _EVENT) for p in payloads))
            )

        if not run.features.async_publish:
            with pytest.raises(BroadcastError):
                asyncio.run(main())
            return
        receipts = asyncio.run(main())
        ids = {m.id for m in run.probe.messages}
        for receipt in receipts:
            run.check_receipt(receipt, _EVENT, [channel])
            assert receipt.message_id in ids
        assert len({r.message_id for r in receipts}) == len(payloads), "message ids must differ"
        if run.observer is not None:
            seen = run.seen(channel, len(payloads))
            for payload in payloads:
                copies = [d for d in seen if _arrived_intact(d, payload)]
                assert len(copies) == 1, f"{payload} arrived {len(copies)} times"

    def test_concurrent_threaded_publishes(self, conformance: _Run) -> None:
        """One driver shared by eight threads (as in a web server) delivers every publish."""
        run = conformance
        channels = [run.channel(f"thread{n}") for n in range(8)]
        run.watch(*channels)
        barrier = threading.Barrier(len(channels))

        def work(channel: str) -> list[tuple[Receipt, dict[str, str]]]:
            barrier.wait(timeout=10)
            out = []
            for _ in range(2):
                data = {"marker": run.marker()}
                out.append((run.driver.channel(channel, data, _EVENT), data))
            return out

        with ThreadPoolExecutor(len(channels)) as pool:
            results = list(pool.map(work, channels))
        for channel, sent in zip(channels, results, strict=True):
            for receipt, data in sent:
                run.check_receipt(receipt, _EVENT, [channel])
                run.expect_delivered([channel], data, _EVENT)

    def test_sync_publish_inside_a_running_event_loop(self, conformance: _Run) -> None:
        """channel() works from sync code running in an event loop's thread."""
        run = conformance
        channel = run.channel("inloop")
        data = {"marker": run.marker()}
        run.watch(channel)

        async def main() -> Receipt:
            return run.driver.channel(channel, data, _EVENT)

        receipt = asyncio.run(main())
        run.check_receipt(receipt, _EVENT, [channel])
        run.expect_delivered([channel], data, _EVENT)

    def test_async_publish_in_two_event_loops(self, conformance: _Run) -> None:
        """Two asyncio.run() calls in a row both publish, then a sync close() works."""
        run = conformance
        channel = run.channel("twoloops")
        first, second = {"marker": run.marker()}, {"marker": run.marker()}
        run.watch(channel)
        if not run.features.async_publish:
            with pytest.raises(BroadcastError):
                asyncio.run(run.driver.achannel(channel, first, _EVENT))
            return
        run.check_receipt(
            asyncio.run(run.driver.achannel(channel, first, _EVENT)), _EVENT, [channel]
        )
        run.check_receipt(
            asyncio.run(run.driver.achannel(channel, second, _EVENT)), _EVENT, [channel]
        )
        run.expect_delivered([channel], first, _EVENT)
        run.expect_delivered([channel], second, _EVENT)
        run.driver.close()

    # -- hooks, receipts, socket_id -----------------------------------------------------

    def test_every_publish_goes_through_the_publish_hook(self, conformance: _Run) -> None:
        """Sync and async publishes reach broadcasting_publish with this driver and message."""
        run = conformance
        channel = run.channel("hook")
        run.watch(channel)
        sync_receipt = run.publish("sync", channel, {"via": "sync"}, _EVENT)
        assert len(run.probe.calls) == 1
        driver, message = run.probe.calls[0]
        assert driver is run.driver
        assert message.channels == (channel,)
        assert message.event == _EVENT
        assert message.data == {"via": "sync"}
        assert message.text == '{"via":"sync"}'
        run.check_receipt(sync_receipt, _EVENT, [channel], message)
        if not run.features.async_publish:
            return
        async_receipt = run.publish("async", channel, {"via": "async"}, _EVENT)
        assert len(run.probe.calls) == 2
        assert run.probe.calls[1][0] is run.driver
        run.check_receipt(async_receipt, _EVENT, [channel], run.probe.calls[1][1])
        assert sync_receipt.message_id != async_receipt.message_id

    @pytest.mark.parametrize("mode", MODES)
    def test_socket_id(self, conformance: _Run, mode: str) -> None:
        """socket_id excludes the sender's connection when supported, else is refused.

        Supported: a publish with ``socket_id_sample`` (not the observer's
        connection) carries the id to the driver and still reaches the
        observer. If the observer offers ``socket_id()`` (``SocketIdentity``),
        a publish with the observer's own id must not reach it, while a marker
        published next, without ``socket_id``, does.
        """
        run = conformance
        assert run.driver.supports_socket_id == run.features.socket_id, (
            "Features(socket_id=...) must match the driver's supports_socket_id"
        )
        channel = run.channel("socket")
        data = {"marker": run.marker()}
        run.watch(channel)
        if not run.features.socket_id:
            before = len(run.probe.calls)
            with pytest.raises(InputError):
                run.publish(mode, channel, data, _EVENT, socket_id=run.suite.socket_id_sample)
            run.expect_nothing_sent(channel, before)
            return
        if mode == "async" and not run.features.async_publish:
            with pytest.raises(BroadcastError):
                run.publish(mode, channel, data, _EVENT, socket_id=run.suite.socket_id_sample)
            return
        own = run.own_socket_id()
        sample = run.suite.socket_id_sample
        assert own != sample, (
            f"the observer's socket_id() is {own!r}, the same as socket_id_sample: "
            "set socket_id_sample to an id that is not the observer's connection"
        )
        receipt = run.publish(mode, channel, data, _EVENT, socket_id=sample)
        message = run.last_message()
        assert message.socket_id == sample
        run.check_receipt(receipt, _EVENT, [channel], message)
        # the observer is not the excluded connection, so it still receives it
        run.expect_delivered([channel], data, _EVENT)
        if own is None:
            return  # the observer has no connection of its own: pass-through is all we can see
        # the observer's own connection is the sender: it must not get the message,
        # while a marker published afterwards (no socket_id) does arrive
        excluded = {"excluded": run.marker()}
        receipt = run.publish(mode, channel, excluded, _EVENT, socket_id=own)
        message = run.last_message()
        assert message.socket_id == own
        run.check_receipt(receipt, _EVENT, [channel], message)
        marker = {"after-excluded": run.marker()}
        run.check_receipt(run.publish(mode, channel, marker, _EVENT), _EVENT, [channel])
        run.expect_delivered([channel], marker, _EVENT)
        # deliveries arrive in publish order: had the sender got it, it is here by now
        seen = run.seen(channel, 2)
        leaked = [d for d in seen if _arrived_intact(d, excluded)]
        assert not leaked, (
            f"published with socket_id={own!r} (the observer's own connection), yet the "
            f"observer received it on {channel!r}: the sender's connection must be excluded "
            f"(all deliveries on that channel: {seen!r})"
        )

    # -- validation before any request ------------------------------------------------

    @pytest.mark.parametrize("mode", MODES)
    @pytest.mark.parametrize(
        ("build", "error"),
        [pytest.param(build, error, id=name) for name, build, error in _INVALID_INPUT],
    )
    def test_invalid_input_is_refused_before_any_request(
        self,
        conformance: _Run,
        mode: str,
        build: Callable[[str], tuple[Any, Any, Any]],
        error: type[InputError],
    ) -> None:
        """Bad channels, events and payloads raise a typed InputError; nothing is sent."""
        run = conformance
        channel = run.channel("invalid")
        channels, data, event = build(channel)
        run.watch(channel)
        before = len(run.probe.calls)
        with pytest.raises(error) as info:
            run.publish(mode, channels, data, event)
        assert isinstance(info.value, BroadcastError)
        run.assert_no_secrets(_error_texts(info.value), "a validation error")
        run.expect_nothing_sent(channel, before)

    def test_driver_specific_channel_rules(self, conformance: _Run) -> None:
        """Names the driver declares invalid (and its channel_pattern) are refused."""
        run = conformance
        names = list(run.suite.invalid_channel_names)
        pattern = run.driver.limits.channel_pattern
        if pattern is not None:
            assert pattern.fullmatch(run.channel("pattern")), (
                "channel_name() must produce names that the driver's channel_pattern accepts"
            )
            names += [n for n in _PATTERN_BREAKERS if n and pattern.fullmatch(n) is None][:1]
        channel = run.channel("rules")
        run.watch(channel)
        before = len(run.probe.calls)
        for name in names:
            with pytest.raises(InvalidChannelError):
                run.publish("sync", [channel, name], {"k": 1}, _EVENT)
        run.expect_nothing_sent(channel, before)
        if not names:  # no rules declared: awkward but legal names must work
            odd = run.channel("odd") + "_=@,.;"
            run.watch(odd)
            data = {"marker": run.marker()}
            run.check_receipt(run.publish("sync", odd, data, _EVENT), _EVENT, [odd])
            run.expect_delivered([odd], data, _EVENT)

    # -- declared limits ------------------------------------------------------------------

    def test_event_name_limit(self, conformance: _Run) -> None:
        """An event name at the declared limit works; one character more is refused."""
        run = conformance
        limit = run.driver.limits.max_event_name_length
        channel = run.channel("evlimit")
        run.watch(channel)
        length = limit if limit is not None else run.suite.unlimited_name_length
        event = "e" * length
        data = {"marker": run.marker()}
        run.check_receipt(run.publish("sync", channel, data, event), event, [channel])
        run.expect_delivered([channel], data, event)
        if limit is None:
            return
        other = run.channel("evlimit2")
        run.watch(other)
        before = len(run.probe.calls)
        with pytest.raises(InvalidEventError):
            run.publish("sync", other, data, event + "e")
        run.expect_nothing_sent(other, before)

    def test_channel_name_limit(self, conformance: _Run) -> None:
        """A channel name at the declared length limit works; one character more is refused."""
        run = conformance
        limit = run.driver.limits.max_channel_name_length
        length = limit if limit is not None else run.suite.unlimited_name_length
        base = run.channel("chlimit")[:length]
        channel = base + "a" * (length - len(base))
        run.watch(channel)
        data = {"marker": run.marker()}
        run.check_receipt(run.publish("sync", channel, data, _EVENT), _EVENT, [channel])
        run.expect_delivered([channel], data, _EVENT)
        if limit is None:
            return
        other = run.channel("chlimit2")
        run.watch(other)
        before = len(run.probe.calls)
        with pytest.raises(InvalidChannelError):
            run.publish("sync", [other, channel + "a"], data, _EVENT)
        run.expect_nothing_sent(other, before)

    def _size(self, run: _Run, channel: str, text: str) -> int:
        message = Message((channel,), _EVENT, text, text, "0123456789abcdef")
        return run.driver.payload_size(message)

    def _fill_to(self, run: _Run, channel: str, limit: int) -> int:
        """How many ASCII characters make a message of ``limit`` bytes (or just under)."""
        base = self._size(run, channel, "")
        assert base <= limit, f"an empty message is already {base} bytes, over the {limit} limit"
        n = limit - base
        while n > 0 and self._size(run, channel, "x" * n) > limit:
            n -= 1
        return n

    def test_payload_limit(self, conformance: _Run) -> None:
        """A message at the declared size limit is delivered; one byte more is refused."""
        run = conformance
        limit = run.driver.limits.max_payload_bytes
        channel = run.channel("size")
        run.watch(channel)
        if limit is None:
            data = "x" * run.suite.unlimited_payload_bytes
            run.check_receipt(run.publish("sync", channel, data, _EVENT), _EVENT, [channel])
            run.expect_delivered([channel], data, _EVENT)
            return
        n = self._fill_to(run, channel, limit)
        data = "x" * n
        assert self._size(run, channel, data) == limit, (
            "payload_size() should grow by one byte per ASCII character"
        )
        run.check_receipt(run.publish("sync", channel, data, _EVENT), _EVENT, [channel])
        run.expect_delivered([channel], data, _EVENT)
        other = run.channel("size2")
        run.watch(other)
        before = len(run.probe.calls)
        with pytest.raises(PayloadTooLargeError) as info:
            run.publish("sync", other, data + "x", _EVENT)
        assert info.value.limit == limit
        assert info.value.size > limit
        run.expect_nothing_sent(other, before)

    def test_payload_limit_counts_bytes_not_characters(self, conformance: _Run) -> None:
        """Non-ASCII text is measured in encoded bytes (two per 'é'), not characters."""
        run = conformance
        limit = run.driver.limits.max_payload_bytes
        channel = run.channel("bytes")
        run.watch(channel)
        if limit is None:
            data = "é" * (run.suite.unlimited_payload_bytes // 2)
            run.check_receipt(run.publish("sync", channel, data, _EVENT), _EVENT, [channel])
            run.expect_delivered([channel], data, _EVENT)
            return
        n = self._fill_to(run, channel, limit)
        data = "é" * (n // 2 + 1)  # fewer characters than the limit, more bytes
        assert len(data) <= max(n, 1)
        before = len(run.probe.calls)
        with pytest.raises(PayloadTooLargeError):
            run.publish("sync", channel, data, _EVENT)
        run.expect_nothing_sent(channel, before)

    def test_large_channel_lists_are_delivered(self, conformance: _Run) -> None:
        """More channels than one request takes are split by the driver; all receive it."""
        run = conformance
        per_request = run.driver.capabilities.channels_per_request
        if not run.features.multiple_channels:
            assert per_request in (None, 1), (
                "channels_per_request > 1 contradicts Features(multiple_channels=False)"
            )
            return
        count = per_request + 1 if per_request is not None else run.suite.unlimited_channels
        channels = [run.channel(f"fan{n}") for n in range(count)]
        run.watch(channels[0], channels[-1])
        data = {"marker": run.marker()}
        receipt = run.publish("sync", channels, data, _EVENT)
        run.check_receipt(receipt, _EVENT, channels)
        if per_request is not None and run.features.network:
            assert receipt.requests >= 2, "a list over channels_per_request needs >1 request"
        run.expect_delivered([channels[0], channels[-1]], data, _EVENT)

    # -- configuration, failures, secrets ------------------------------------------------

    def test_configuration_errors_name_the_key(
        self,
        conformance: _Run,
        driver_options: Mapping[str, Any],
        invalid_options: Sequence[tuple[Mapping[str, Any], str]],
    ) -> None:
        """Bad options raise ConfigurationError naming the key, never showing a value."""
        run = conformance
        cases = list(invalid_options)
        unknown = {**driver_options, "no_such_option_xyz": "value-xyz"}
        if run.features.strict_options:
            cases.append((unknown, "no_such_option_xyz"))
        else:
            with run.other_broadcast(unknown) as other:
                other.driver(self.driver_name)
        assert cases, "declare invalid_options, or keep Features(strict_options=True)"
        for options, key in cases:
            with run.other_broadcast(options) as other, pytest.raises(ConfigurationError) as info:
                other.driver(self.driver_name)
            error = info.value
            assert isinstance(error, BroadcastError)
            assert error.driver == self.driver_name, error.driver
            assert error.key == key, f"the error names {error.key!r}, expected {key!r}"
            assert repr(key) in str(error), str(error)
            run.assert_no_secrets(_error_texts(error), "a ConfigurationError")
            assert "value-xyz" not in str(error), "a ConfigurationError shows an option's value"

    def _fail(
        self,
        run: _Run,
        where: str,
        options: Mapping[str, Any],
        mode: str,
        channels: Sequence[str],
        data: Any,
    ) -> tuple[BaseException, Driver, SendTap | None, list[str]]:
        """Publish through a driver built from failing ``options``; return what it raised.

        A driver that delivers through send()/asend() is tapped (nothing is
        injected) so the kit sees what each of its requests raised.
        """
        expected: type[BroadcastError] = PublishError
        if mode == "async" and not run.features.async_publish:
            expected = BroadcastError  # refused, as declared
        target = list(channels) if len(channels) > 1 else channels[0]
        with run.other_broadcast(options) as other, _capture_logs() as logs:
            driver = other.driver(self.driver_name)
            tap = None if delivers_in_process(driver) else SendTap(driver)
            with tap or nullcontext():
                try:
                    receipt = run.publish(mode, target, data, _EVENT, driver=driver)
                except expected as exc:
                    error: BaseException = exc
                else:
                    pytest.fail(
                        f"the publish with {where} returned {receipt!r}: the driver reported "
                        "success for a publish that configuration makes fail (did it read "
                        "the service's refusal as an acknowledgement?)"
                    )
        return error, driver, tap, logs.lines

    @pytest.mark.parametrize("mode", MODES)
    def test_publish_failures_are_publish_errors(
        self, conformance: _Run, failing_options: Sequence[Mapping[str, Any]], mode: str
    ) -> None:
        """A publish the service does not acknowledge raises PublishError; nothing leaks.

        The driver's ``send()`` must map every failure to a PublishError itself:
        an SDK exception escaping it is a bug, even though the core turns it
        into an unknown outcome rather than letting it reach the caller.
        """
        run = conformance
        if not run.features.network:
            assert not failing_options, "failing_options given but Features(network=False)"
            channel = run.channel("inproc")
            receipt = run.publish_or_refused(mode, channel, {"k": 1}, _EVENT)
            if receipt is not None:
                run.check_receipt(receipt, _EVENT, [channel])
            return
        assert failing_options, (
            "a network driver must give `failing_options`: configurations whose publishes fail"
        )
        for index, options in enumerate(failing_options):
            where = f"failing_options[{index}]"
            channels = [run.channel("fail")]
            error, _, tap, logs = self._fail(run, where, options, mode, channels, {"k": 1})
            run.assert_no_secrets(_error_texts(error), "an error (or its cause)")
            run.assert_no_secrets(logs, "a log line")
            if isinstance(error, PublishError):
                assert error.driver == self.driver_name, error.driver
                assert isinstance(error.retryable, bool)
                assert error.status is None or isinstance(error.status, int)
            if tap is not None:
                raw = [exc for exc in tap.raised if not isinstance(exc, PublishError)]
                assert not raw, (
                    f"with {where}, {type(tap.driver).__name__}.send()/asend() raised "
                    f"{raw[0]!r} instead of a PublishError: map every failure of a request to "
                    "PublishError(..., retryable=..., maybe_delivered=...) so the core can "
                    "apply its retry rule"
                )

    @pytest.mark.parametrize("mode", MODES)
    def test_failed_publish_has_three_outcomes(
        self, conformance: _Run, failing_options: Sequence[Mapping[str, Any]], mode: str
    ) -> None:
        """A failed publish says, channel by channel, delivered / failed / unknown, truthfully.

        For every ``failing_options`` configuration, the PublishError's
        ``delivered``, ``failed`` and ``unknown`` partition the published
        channels exactly; ``maybe_delivered`` is true exactly when ``unknown``
        is not empty; a failure that was certainly not delivered leaves its
        channels in ``failed``; ``requests`` counts at least every request the
        driver made. Then the receiving side is checked against those claims:
        a ``delivered`` channel got the message once, a ``failed`` one never,
        an ``unknown`` one at most once, unless that configuration sets
        ``at_least_once`` (a driver or SDK that re-sends behind the core's
        back, or a false ``deduplicates`` claim, shows up here when a
        configuration loses answers).
        """
        run = conformance
        if not run.features.network:
            assert not failing_options, "failing_options given but Features(network=False)"
            run.check_in_process(mode)
            return
        assert failing_options, (
            "a network driver must give `failing_options`: configurations whose publishes fail"
        )
        for index, options in enumerate(failing_options):
            where = f"failing_options[{index}]"
            count = 2 if run.features.multiple_channels else 1
            channels = [run.channel(f"outcome{n}") for n in range(count)]
            data = {"marker": run.marker()}
            run.watch(*channels)
            error, failing, tap, _ = self._fail(run, where, options, mode, channels, data)
            if not isinstance(error, PublishError):
                continue  # async publishing is declared unsupported: refused, as checked above
            outcomes = {
                "delivered": error.delivered,
                "failed": error.failed,
                "unknown": error.unknown,
            }
            for outcome, listed in outcomes.items():
                assert isinstance(listed, tuple), f"PublishError.{outcome} is not a tuple"
                assert len(set(listed)) == len(listed), f"{outcome} lists a channel twice: {listed}"
            together = [c for listed in outcomes.values() for c in listed]
            assert sorted(together) == sorted(channels), (
                f"{where}: delivered {error.delivered}, failed {error.failed} and unknown "
                f"{error.unknown} must partition the published channels {channels} "
                "(each channel in exactly one of them)"
            )
            assert error.failed or error.unknown, (
                f"{where}: a PublishError whose channels were all delivered"
            )
            assert error.maybe_delivered == bool(error.unknown), (
                f"{where}: maybe_delivered={error.maybe_delivered} but unknown={error.unknown}"
            )
            assert set(error.causes) == set(error.failed) | set(error.unknown), (
                f"{where}: causes must name every channel that was not delivered, and only "
                f"those: {sorted(error.causes)}"
            )
            for channel, cause in error.causes.items():
                assert isinstance(cause, PublishError), f"causes[{channel!r}] is {cause!r}"
                assert cause.maybe_delivered == (channel in error.unknown), (
                    f"{where}: {channel!r} is {'unknown' if channel in error.unknown else 'failed'}"
                    f" but its cause says maybe_delivered={cause.maybe_delivered}"
                )
            assert isinstance(error.requests, int) and error.requests >= 1, (
                f"{where}: a network driver's PublishError must count its requests "
                f"(requests={error.requests!r})"
            )
            if tap is not None:
                assert error.requests >= tap.requests, (
                    f"{where}: the publish made {tap.requests} requests but reports "
                    f"requests={error.requests}"
                )
                assert isinstance(error.__cause__, PublishError), (
                    f"{where}: the first driver error must be the PublishError's __cause__"
                )
            if run.observer is None:
                continue
            resent = bool(options.get("at_least_once"))
            if failing.capabilities.deduplicates:
                who = (
                    f"{type(failing).__name__} declares deduplicates=True, so the core re-sent "
                    "it, but the service delivered the copies: the claim is false"
                )
            else:
                who = (
                    "the driver (or its SDK) re-sent it by itself; only the core may retry, "
                    "by its rules"
                )
            for channel in channels:
                copies = run.copies_before_sentinel(channel, data)
                if channel in error.delivered:
                    assert copies == 1, (
                        f"{where}: {channel!r} is reported delivered, yet the receiving side "
                        f"got the message {copies} times"
                    )
                elif channel in error.failed:
                    assert copies == 0, (
                        f"{where}: {channel!r} is reported failed (certainly not delivered), "
                        f"yet the receiving side got the message {copies} times"
                    )
                elif not resent:
                    assert copies <= 1, (
                        f"{where}: {channel!r} is unknown, and the receiving side got the "
                        f"message {copies} times: {who}"
                    )

    # -- lost answers and retries, at the driver boundary -----------------------------------

    def _tapped_publish(
        self, run: _Run, mode: str, fault: str, **delivery: Any
    ) -> tuple[Receipt | PublishError, SendTap, str, dict[str, str]] | None:
        """Publish once through a tapped variant whose first request meets ``fault``.

        Returns the receipt or PublishError, the tap, the channel and the data;
        ``None`` when async publishing is declared unsupported (checked refused).
        """
        variant = run.tapped_variant(**delivery)
        channel = run.channel(fault)
        data = {"marker": run.marker()}
        run.watch(channel)
        if mode == "async" and not run.features.async_publish:
            with pytest.raises(BroadcastError):
                run.publish(mode, channel, data, _EVENT, driver=variant)
            return None
        with SendTap(variant, fault) as tap:
            try:
                outcome: Receipt | PublishError = run.publish(
                    mode, channel, data, _EVENT, driver=variant
                )
            except PublishError as exc:
                outcome = exc
        assert not tap.raised, (
            f"the driver's own send()/asend() failed ({tap.raised[0]!r}), so the kit could not "
            "check what happens after an injected failure"
        )
        message = run.last_message()
        ids = {part.message.id for batch in tap.sent + tap.refused for part in batch.parts}
        assert ids == {message.id}, (
            f"every request of one publish must carry its Message.id {message.id!r}: {ids}"
        )
        if isinstance(outcome, Receipt):
            run.check_receipt(outcome, _EVENT, [channel], message)
        return outcome, tap, channel, data

    @staticmethod
    def _check_counted(outcome: Receipt | PublishError, tap: SendTap) -> None:
        """The publish counts at least every request the tap saw."""
        assert outcome.requests >= tap.requests, (
            f"the publish made {tap.requests} requests but reports requests="
            f"{outcome.requests}: a driver whose transport re-sends a request sets "
            "batch.requests (and leaves retries to the core)"
        )

    @pytest.mark.parametrize("mode", MODES)
    def test_lost_answer_is_unknown_unless_the_service_deduplicates(
        self, conformance: _Run, mode: str
    ) -> None:
        """An answer lost after the service got the request never becomes a duplicate.

        The kit lets the driver's first request really reach the service, then
        raises a lost-answer PublishError (retryable, maybe delivered) in its
        place. With the default options, a driver whose service does not
        de-duplicate must leave the channel ``unknown``, its request made once;
        a driver declaring ``Capabilities(deduplicates=True)`` gets the request
        re-sent with the same message id and a Receipt, and its service must
        drop the copy. Either way the receiving side sees exactly one delivery,
        which is what proves the ``deduplicates`` claim. A driver that delivers
        in process must declare ``Features(network=False)`` instead.
        """
        run = conformance
        if delivers_in_process(run.driver):
            run.check_in_process(mode)
            return
        run.check_sends()
        done = self._tapped_publish(run, mode, "lose")
        if done is None:
            return
        outcome, tap, channel, data = done
        assert tap.lost is not None, "the kit's lost answer was never injected"
        name = type(run.driver).__name__
        if run.driver.capabilities.deduplicates:
            assert isinstance(outcome, Receipt), (
                f"{name} declares deduplicates=True, so a lost answer is re-sent with the same "
                f"id and must end in a Receipt; got {outcome!r}"
            )
            assert len(tap.sent) == 2, (
                f"the lost request and one retry should have reached the service, "
                f"{len(tap.sent)} did"
            )
            why = (
                f"{name} declares deduplicates=True, but its service delivered the re-sent "
                "message id again: the claim is false"
            )
        else:
            assert isinstance(outcome, PublishError), (
                f"{name}'s service does not de-duplicate, so a lost answer must raise a "
                f"PublishError (the message may or may not be there); got {outcome!r}"
            )
            assert outcome.unknown == (channel,), (
                f"a lost answer leaves the channel unknown: delivered={outcome.delivered}, "
                f"failed={outcome.failed}, unknown={outcome.unknown}"
            )
            assert outcome.maybe_delivered
            assert len(tap.sent) == 1, (
                f"the request reached the service {len(tap.sent)} times: without "
                "de-duplication nothing may re-send a request whose answer was lost"
            )
            why = "something re-sent it behind the core's back"
        self._check_counted(outcome, tap)
        if run.observer is not None:
            copies = run.copies_before_sentinel(channel, data)
            assert copies > 0, (
                f"the request whose answer was lost never reached the receiving side of "
                f"{channel!r} (the kit let it run before losing its answer)"
            )
            assert copies == 1, (
                f"after one lost answer the receiving side got the message {copies} times "
                f"on {channel!r}: {why}"
            )

    @pytest.mark.parametrize("mode", MODES)
    def test_lost_answer_is_resent_with_at_least_once(self, conformance: _Run, mode: str) -> None:
        """With ``at_least_once: True`` the core re-sends a lost answer, same id, once.

        The caller gets a Receipt after exactly two requests. The receiving side
        sees the message once if the driver declares ``deduplicates``, and at
        most twice otherwise (once per request: nothing else re-sent it). A
        driver that delivers in process must refuse ``at_least_once`` as an
        option that does not apply, naming it.
        """
        run = conformance
        if delivers_in_process(run.driver):
            run.check_in_process(mode)
            with pytest.raises(ConfigurationError) as info:
                run.driver.with_options(at_least_once=True)
            assert info.value.key == "at_least_once", info.value
            return
        run.check_sends()
        done = self._tapped_publish(run, mode, "lose", at_least_once=True)
        if done is None:
            return
        outcome, tap, channel, data = done
        assert isinstance(outcome, Receipt), (
            f"with at_least_once the core re-sends a lost answer; got {outcome!r}"
        )
        assert len(tap.sent) == 2, (
            f"the lost request and one retry should have reached the service, {len(tap.sent)} did"
        )
        self._check_counted(outcome, tap)
        if run.observer is not None:
            copies = run.copies_before_sentinel(channel, data)
            most = 1 if run.driver.capabilities.deduplicates else 2
            expected = "once (it declares deduplicates=True)" if most == 1 else "once or twice"
            assert 1 <= copies <= most, (
                f"two requests carried the message and the receiving side got it {copies} "
                f"times on {channel!r}, expected {expected}"
            )

    @pytest.mark.parametrize("mode", MODES)
    def test_refused_request_is_retried(self, conformance: _Run, mode: str) -> None:
        """A request refused before it was sent is retried, and delivered once.

        The kit makes the first request fail as a refused connection would
        (retryable, certainly not delivered) without running it. The core
        retries it with the same message id whatever the service, the caller
        gets a Receipt, and the receiving side sees exactly one delivery.
        """
        run = conformance
        if delivers_in_process(run.driver):
            run.check_in_process(mode)
            return
        run.check_sends()
        done = self._tapped_publish(run, mode, "refuse")
        if done is None:
            return
        outcome, tap, channel, data = done
        assert len(tap.refused) == 1, "the kit's refused request was never injected"
        assert isinstance(outcome, Receipt), (
            f"a refused request (certainly not delivered) is retried; got {outcome!r}"
        )
        assert len(tap.sent) == 1, (
            f"one request should have reached the service after the refused one, "
            f"{len(tap.sent)} did"
        )
        self._check_counted(outcome, tap)
        if run.observer is not None:
            copies = run.copies_before_sentinel(channel, data)
            assert copies == 1, (
                f"the retried request was delivered {copies} times on {channel!r}, not once"
            )

    def test_secrets_never_shown(
        self, conformance: _Run, driver_options: Mapping[str, Any]
    ) -> None:
        """Declared secrets never appear in reprs, str(), attributes (private ones too),
        receipts or log lines."""
        run = conformance
        undeclared = [
            key
            for key, value in driver_options.items()
            if _SECRET_KEY.search(str(key)) and isinstance(value, str) and value
            if value not in run.secrets
        ]
        assert not undeclared, (
            f"options {undeclared} look secret: list their values in `secrets` "
            "so the kit can check they never leak"
        )
        driver = run.driver
        texts = [repr(driver), str(driver), f"{driver}", repr(run.broadcast), str(run.broadcast)]
        # private attributes too: debuggers and error trackers show them all
        texts += [f"{name}={_shown(value)}" for name, value in vars(driver).items()]
        channel = run.channel("secret")
        run.watch(channel)
        with _capture_logs() as logs:
            receipt = run.publish("sync", channel, {"k": 1}, _EVENT)
            run.driver.close()
        texts += [repr(receipt), str(receipt), *logs.lines]
        run.assert_no_secrets(texts, "a repr, attribute, receipt or log line")
        # and nothing the driver keeps, however deep (its SDK clients included),
        # holds one as text: debuggers and error trackers show all of it
        secrets = [s for s in run.secrets if s]
        held = holders(driver, [*secrets, *(s.encode() for s in secrets)])
        assert not held, f"a declared secret is held as text at {held[:5]}"

    def test_driver_is_found_by_name(self, conformance: _Run) -> None:
        """The driver is installed (or registered) under its name and says so."""
        run = conformance
        names = [info.name for info in installed_drivers()]
        assert self.driver_name in names, f"{self.driver_name!r} not in {names}"
        assert isinstance(run.driver, Driver)
        assert type(run.driver).name == self.driver_name
        assert run.broadcast.driver(self.driver_name) is run.driver, "drivers are cached"

    # -- lifecycle -------------------------------------------------------------------------

    def _after_close(self, run: _Run, mode: str) -> None:
        channel = run.channel("reopen")
        data = {"marker": run.marker()}
        run.watch(channel)
        if not run.features.reconnect_after_close:
            with pytest.raises(BroadcastError):
                run.publish(mode, channel, data, _EVENT)
            return
        receipt = run.publish_or_refused(mode, channel, data, _EVENT)
        if receipt is not None:
            run.check_receipt(receipt, _EVENT, [channel])
            run.expect_delivered([channel], data, _EVENT)

    def test_close_is_idempotent(self, conformance: _Run) -> None:
        """close() twice is fine; the next publish reconnects (or fails clearly)."""
        run = conformance
        channel = run.channel("close")
        run.check_receipt(run.publish("sync", channel, {"k": 1}, _EVENT), _EVENT, [channel])
        run.driver.close()
        run.driver.close()
        self._after_close(run, "sync")

    def test_aclose_is_idempotent(self, conformance: _Run) -> None:
        """aclose() twice is fine; the next async publish reconnects (or fails clearly)."""
        run = conformance
        channel = run.channel("aclose")

        async def main() -> Receipt | None:
            receipt = None
            if run.features.async_publish:
                receipt = await run.driver.achannel(channel, {"k": 1}, _EVENT)
            await run.driver.aclose()
            await run.driver.aclose()
            return receipt

        receipt = asyncio.run(main())
        if receipt is not None:
            run.check_receipt(receipt, _EVENT, [channel])
        self._after_close(run, "async")

    def test_close_before_first_publish(self, conformance: _Run) -> None:
        """A driver that never published closes cleanly, sync and async."""
        run = conformance
        run.driver.close()
        asyncio.run(run.driver.aclose())
        run.driver.close()
        self._after_close(run, "sync")

    def test_broadcast_close_and_reuse(self, conformance: _Run) -> None:
        """Broadcast.close() closes the driver it keeps; that driver reconnects (or refuses)."""
        run = conformance
        channel = run.channel("bclose")
        run.check_receipt(run.publish("sync", channel, {"k": 1}, _EVENT), _EVENT, [channel])
        run.broadcast.close()
        run.broadcast.close()
        same = run.broadcast.driver(self.driver_name)
        assert same is run.driver, "after Broadcast.close() the Broadcast keeps its driver"
        self._after_close(run, "sync")

    def test_context_managers(self, conformance: _Run, driver_options: Mapping[str, Any]) -> None:
        """``with Broadcast(...)`` and ``async with`` publish, then close the driver."""
        run = conformance
        channel = run.channel("ctx")
        with run.other_broadcast(driver_options) as other:
            run.check_receipt(other.driver().channel(channel, "sync", _EVENT), _EVENT, [channel])

        async def main() -> Receipt:
            async with run.other_broadcast(driver_options) as other:
                return await other.achannel(channel, "async", _EVENT)

        if run.features.async_publish:
            run.check_receipt(asyncio.run(main()), _EVENT, [channel])

    def test_with_options_variant_publishes(self, conformance: _Run) -> None:
        """driver.with_options() gives a cached, working driver of the same class."""
        run = conformance
        variant = run.driver.with_options()
        assert type(variant) is type(run.driver)
        assert run.driver.with_options() is variant, "variants are cached"
        channel = run.channel("variant")
        run.check_receipt(variant.channel(channel, {"k": 1}, _EVENT), _EVENT, [channel])

    # -- authorizing subscriptions -------------------------------------------------------

    def _authenticate(self, run: _Run, mode: str, user: Any, socket_id: str, channel: str) -> Any:
        if mode == "sync":
            return run.broadcast.authorize(user, socket_id=socket_id, channel_name=channel)
        return asyncio.run(
            run.broadcast.aauthorize(user, socket_id=socket_id, channel_name=channel)
        )

    @staticmethod
    def _signed(call: Callable[[], Any]) -> tuple[Any, BroadcastError | None]:
        """The signed body, or the NotSupportedError/ConfigurationError signing raised."""
        try:
            return call(), None
        except (NotSupportedError, ConfigurationError) as exc:
            return None, exc

    @pytest.mark.parametrize("mode", MODES)
    def test_subscriptions_are_signed_or_not_supported(self, conformance: _Run, mode: str) -> None:
        """Each kind of channel the driver names is signed into a JSON-ready dict bound to
        the channel, or refused with NotSupportedError naming the driver.

        (Whether an answer is bound to the socket too depends on the service: Pusher's
        are, Ably's tokens are bound to a client id instead. Prove that with the
        service's own client.)"""
        run = conformance
        driver = run.driver
        run.broadcast.rule("{name}")(
            lambda user, name: {"id": "kit-user", "name": "Kit"} if user == "kit" else False
        )
        kinds = {"private": PrivateChannel, "presence": PresenceChannel}
        kinds["encrypted"] = EncryptedPrivateChannel
        for kind, helper in kinds.items():
            if kind not in driver.channel_prefixes:
                continue
            channel = driver.channel_name(helper(run.channel(f"auth-{kind}")))
            assert driver.parse_channel(channel)[0] == kind, (
                f"{channel!r} does not parse back as a {kind} channel"
            )
            with pytest.raises(ForbiddenError):
                self._authenticate(run, mode, "not-kit", "1234.5678", channel)
            body, error = self._signed(
                functools.partial(self._authenticate, run, mode, "kit", "1234.5678", channel)
            )
            if error is not None:
                # NotSupportedError by name; or a ConfigurationError for encrypted channels when
                # no encryption key is configured
                assert isinstance(error, NotSupportedError) or kind == "encrypted", (
                    f"signing a {kind} channel failed: {error!r}"
                )
                if isinstance(error, NotSupportedError):
                    assert error.driver == driver.name and error.http_status == 501, error
                run.assert_no_secrets(_error_texts(error), f"the error signing a {kind} channel")
                continue
            assert isinstance(body, dict), f"sign_channel returned {type(body).__name__}"
            text = json.dumps(body)  # JSON-ready: what the endpoint sends as it is
            run.assert_no_secrets([text, repr(body)], f"the signed answer for a {kind} channel")
            twin = driver.channel_name(helper(run.channel(f"auth-{kind}-2")))
            other_channel = self._authenticate(run, mode, "kit", "1234.5678", twin)
            assert json.dumps(other_channel) != text, "the answer does not depend on the channel"

    def test_user_sign_in_is_signed_or_not_supported(self, conformance: _Run) -> None:
        """A sign-in gives a JSON-ready dict bound to the socket, or NotSupportedError by name."""
        run = conformance
        body, error = self._signed(
            lambda: run.broadcast.authenticate_user("1234.5678", {"id": "kit-user"})
        )
        if error is not None:
            assert isinstance(error, NotSupportedError), f"signing a sign-in failed: {error!r}"
            assert error.driver == run.driver.name and error.http_status == 501, error
            return
        assert isinstance(body, dict), f"sign_user returned {type(body).__name__}"
        text = json.dumps(body)
        run.assert_no_secrets([text, repr(body)], "a signed sign-in")
        other = run.broadcast.authenticate_user("1234.5679", {"id": "kit-user"})
        assert json.dumps(other) != text, "the sign-in answer does not depend on socket_id"

    def test_malformed_authorization_requests_are_refused_first(self, conformance: _Run) -> None:
        """A bad socket_id, a public channel or a channel name the driver would refuse is
        an BadRequestError (400) before any rule runs; its text holds no secret."""
        run = conformance
        ran: list[str] = []

        def rule(user: object, name: str) -> bool:
            ran.append(name)
            return True

        run.broadcast.rule("{name}")(rule)
        good = run.driver.channel_name(PrivateChannel(run.channel("auth-bad")))
        for socket_id, channel in (
            ("not a socket id", good),
            ("1234.5678", run.channel("public")),
            ("1234.5678", good + "\n"),
        ):
            with pytest.raises(BadRequestError) as info:
                run.broadcast.authorize("kit", socket_id=socket_id, channel_name=channel)
            assert info.value.http_status == 400
            run.assert_no_secrets(_error_texts(info.value), "an BadRequestError")
        assert ran == [], f"a rule ran for a malformed request: {ran}"


__all__ = ["MODES", "DriverConformance", "PublishProbe"]
