"""The ``memory`` driver: keeps every message in order; in-process code can subscribe.

A subscriber may give itself a ``socket_id``: it then plays the part of one
browser connection, and a publish with that same ``socket_id`` (Laravel's
``toOthers()``) is not handed to it. The history keeps every message anyway.

Hearing back works in process too, so applications test that code without a
service: the in-process subscriptions are the channel state
(``Broadcast.occupied_channels()``, ``channel_info()``, and ``members()`` of a
presence channel whose subscribers gave a ``member``), ``listen_channels``
(what ``broadcasting listen`` runs) hears this process's publishes, and
:meth:`BroadcastMemoryDriver.webhook_delivery` makes signed deliveries that
``Broadcast.webhook()`` verifies and hands to the handlers. There are no
signed-in connections: ``terminate_user`` is :class:`NotSupportedError`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from broadcasting import (
    BadRequestError,
    ChannelInfo,
    ConfigurationError,
    InputError,
    InvalidChannelError,
    Member,
    Receipt,
    UnauthorizedError,
    WebhookEvent,
)
from broadcasting._webhooks import MAX_AGE_SECONDS
from broadcasting.plugin import SUBSCRIBED, AuthRequest, Driver, Feature, Heard, Message, Secret

Callback = Callable[[Message], object]

log = logging.getLogger("broadcasting.memory")


class _Gone(Exception):
    """A subscription whose event loop has closed: it can never receive again."""


#: The headers of :meth:`BroadcastMemoryDriver.webhook_delivery`.
KEY_HEADER = "X-Broadcasting-Key"
SIGNATURE_HEADER = "X-Broadcasting-Signature"


@dataclass(frozen=True, eq=False)
class _Entry:
    """One subscriber: how to hand it a message, its channel and its presence member."""

    deliver: Callback
    channel: str | None
    member: Mapping[str, Any] | None = None


def _member(
    driver: Driver, channel: str | None, member: Mapping[str, Any] | None
) -> Mapping[str, Any] | None:
    if member is None:
        return None
    if channel is None or driver.parse_channel(channel)[0] != "presence":
        raise InputError(f"memory: a member joins a presence channel, not {channel!r}")
    if not isinstance(member, Mapping) or member.get("id") in (None, ""):
        raise InputError("memory: a presence member is a mapping with an 'id'")
    return dict(member)


def _wanted(message: Message, channel: str | None, socket_id: str | None) -> bool:
    """Whether a subscriber to ``channel`` with connection id ``socket_id`` gets ``message``."""
    if channel is not None and channel not in message.channels:
        return False
    # the sender's own connection is excluded (toOthers); no id excludes nobody
    return socket_id is None or message.socket_id != socket_id


class Subscription:
    """An async iterator of the messages published after it was created.

    Get one from :meth:`BroadcastMemoryDriver.listen` inside a running event
    loop; publishes from any thread are handed to that loop. Use it as an
    async context manager (or call :meth:`close`) to stop receiving.

    Attributes:
        channel: the channel listened to, or ``None`` for every channel.
        socket_id: this subscription's own connection id, or ``None``; a
            publish made with the same ``socket_id`` is not delivered here.
    """

    def __init__(
        self,
        driver: BroadcastMemoryDriver,
        channel: str | None,
        socket_id: str | None = None,
        member: Mapping[str, Any] | None = None,
    ) -> None:
        self.channel = channel
        self.socket_id = socket_id
        self.member = member
        self._driver = driver
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Message] = asyncio.Queue()

    def _deliver(self, message: Message) -> None:
        if _wanted(message, self.channel, self.socket_id):
            try:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, message)
            except RuntimeError as exc:  # its loop is closed
                raise _Gone from exc

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        return await self._queue.get()

    async def get(self, timeout: float | None = None) -> Message:
        """The next message, waiting at most ``timeout`` seconds."""
        return await asyncio.wait_for(self._queue.get(), timeout)

    def close(self) -> None:
        """Stop receiving messages (idempotent)."""
        self._driver._unsubscribe(self._deliver)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class BroadcastMemoryDriver(Driver):
    """Keeps every published message, in order, and hands them to subscribers.

    Thread-safe. ``max_history`` (option) bounds the kept history; by default
    every message is kept until :meth:`clear`. ``socket_id`` is supported: a
    subscriber that gave the same ``socket_id`` (see :meth:`subscribe` and
    :meth:`listen`) does not receive the message; every other one does.
    """

    name = "memory"
    features = frozenset(
        {
            Feature.EXCLUDE_SENDER,
            Feature.AUTHORIZE,
            Feature.USER_SIGN_IN,
            Feature.WEBHOOKS,
            Feature.STATE,
            Feature.LISTEN,
        }
    )

    def __init__(self, max_history: int | None = None) -> None:
        self._signing_key = Secret(os.urandom(32).hex())  # this driver's own; never leaves it
        self._lock = threading.Lock()
        self._history: deque[Message] = deque(maxlen=max_history)
        self._subscribers: list[_Entry] = []

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> BroadcastMemoryDriver:
        unknown = set(options) - {"max_history"}
        if unknown:
            raise ConfigurationError(cls.name, sorted(unknown)[0], "unknown option")
        max_history = options.get("max_history")
        if max_history is not None and (
            not isinstance(max_history, int) or isinstance(max_history, bool) or max_history < 1
        ):
            raise ConfigurationError(cls.name, "max_history", "must be a positive int or None")
        return cls(max_history)

    @property
    def messages(self) -> list[Message]:
        """Every kept message, oldest first (a copy)."""
        with self._lock:
            return list(self._history)

    def received(self, channel: str) -> list[Message]:
        """The kept messages that were published to ``channel``."""
        return [m for m in self.messages if channel in m.channels]

    def clear(self) -> None:
        """Forget the history (subscribers stay)."""
        with self._lock:
            self._history.clear()

    def subscribe(
        self,
        callback: Callback,
        channel: str | None = None,
        *,
        socket_id: str | None = None,
        member: Mapping[str, Any] | None = None,
    ) -> Callable[[], None]:
        """Call ``callback(message)`` for every later publish (to ``channel`` if given).

        ``socket_id`` names this subscriber's own connection, as a browser's
        socket id does: publishes made with that same ``socket_id`` are
        skipped (the sender is excluded), all others are delivered.
        ``member`` (a mapping with an ``id``) makes the subscriber a member
        of the presence channel ``channel``, as :meth:`members` reports.

        Runs in the publishing thread. Returns a function that unsubscribes.
        """
        joined = _member(self, channel, member)

        def deliver(message: Message) -> None:
            if _wanted(message, channel, socket_id):
                callback(message)

        with self._lock:
            self._subscribers.append(_Entry(deliver, channel, joined))
        return lambda: self._unsubscribe(deliver)

    def listen(
        self,
        channel: str | None = None,
        *,
        socket_id: str | None = None,
        member: Mapping[str, Any] | None = None,
    ) -> Subscription:
        """An async iterator of later publishes (to ``channel`` if given).

        ``socket_id`` names this subscription's own connection: publishes made
        with that same ``socket_id`` are skipped, and ``member`` joins a
        presence channel, as in :meth:`subscribe`. Must be called inside a
        running event loop.
        """
        joined = _member(self, channel, member)
        subscription = Subscription(self, channel, socket_id, joined)
        with self._lock:
            self._subscribers.append(_Entry(subscription._deliver, channel, joined))
        return subscription

    def _unsubscribe(self, deliver: Callback) -> None:
        with self._lock:
            self._subscribers[:] = [e for e in self._subscribers if e.deliver != deliver]

    # -- channel state: the in-process subscriptions -------------------------------

    def _entries(self) -> list[_Entry]:
        with self._lock:
            return list(self._subscribers)

    def _info(self, channel: str, entries: list[_Entry]) -> ChannelInfo:
        mine = [e for e in entries if e.channel == channel]
        users = None
        if self.parse_channel(channel)[0] == "presence":
            users = len({str(e.member["id"]) for e in mine if e.member is not None})
        return ChannelInfo(channel, bool(mine), len(mine), users)

    def occupied_channels(self, prefix: str | None = None) -> list[ChannelInfo]:
        """The channels that in-process subscribers listen to (by name), with their counts.

        A subscriber to every channel (``channel=None``) occupies none.
        """
        entries = self._entries()
        names = sorted({e.channel for e in entries if e.channel is not None})
        return [self._info(n, entries) for n in names if not prefix or n.startswith(prefix)]

    def channel_info(self, channel: str) -> ChannelInfo:
        """Whether in-process subscribers listen to ``channel``, how many, and (presence) users."""
        if not isinstance(channel, str) or not channel:
            raise InvalidChannelError("memory: the channel name must be a non-empty str")
        return self._info(channel, self._entries())

    def members(self, channel: str) -> list[Member]:
        """The members of a presence channel: subscribers that gave a ``member``, once per id."""
        if not isinstance(channel, str) or self.parse_channel(channel)[0] != "presence":
            raise InvalidChannelError(
                f"memory: only presence channels have members, not {channel!r}"
            )
        found: dict[str, Member] = {}
        for entry in self._entries():
            if entry.channel == channel and entry.member is not None:
                user_id = str(entry.member["id"])
                found.setdefault(user_id, Member(user_id, entry.member))
        return list(found.values())

    async def listen_channels(self, channels: Sequence[str]) -> AsyncIterator[Heard]:
        """Yield every later publish of this process to ``channels``, once per channel.

        First one :data:`~broadcasting.SUBSCRIBED` per channel (the
        subscriptions are made by then). What ``broadcasting listen`` runs
        for the memory driver: it hears the publishes of the process it runs
        in (another process has its own memory driver). Closing the generator
        unsubscribes.
        """
        if not channels or not all(isinstance(c, str) and c for c in channels):
            raise InvalidChannelError("memory: listen to one or more non-empty channel names")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Heard] = asyncio.Queue()

        def hand_over(channel: str) -> Callback:
            def deliver(message: Message) -> None:
                heard = Heard(channel, message.event, message.text, time.time())
                loop.call_soon_threadsafe(queue.put_nowait, heard)

            return deliver

        names = list(dict.fromkeys(channels))
        stops = [self.subscribe(hand_over(c), c) for c in names]
        try:
            for name in names:
                yield Heard(name, SUBSCRIBED, "", time.time())
            while True:
                yield await queue.get()
        finally:
            for stop in stops:
                stop()

    # -- webhooks: deliveries this driver signs, for testing handlers ----------------

    def _webhook_signature(self, body: bytes) -> str:
        key = self._signing_key.reveal().encode("ascii")
        return hmac.new(key, body, hashlib.sha256).hexdigest()

    def webhook_delivery(
        self, events: Iterable[Mapping[str, Any]], *, time_ms: int | None = None
    ) -> tuple[dict[str, str], bytes]:
        """A delivery of ``events`` as a service would POST it: ``(headers, body)``.

        Each event is a mapping with a ``name`` (``member_added``...) and the
        fields of a :class:`WebhookEvent` (``channel``, ``user_id``...). The
        body has Pusher's shape (``{"time_ms", "events"}``), signed with this
        driver's own random key, so ``Broadcast.webhook(headers, body)``
        verifies it and runs the hook and handlers: test them with no service.
        """
        now = int(time.time() * 1000) if time_ms is None else time_ms
        body = json.dumps({"time_ms": now, "events": [dict(e) for e in events]}).encode()
        return {KEY_HEADER: self.name, SIGNATURE_HEADER: self._webhook_signature(body)}, body

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        """Verify a :meth:`webhook_delivery` (signature, age) and return its events."""
        signature = headers.get(SIGNATURE_HEADER)
        if headers.get(KEY_HEADER) != self.name or not isinstance(signature, str):
            raise UnauthorizedError(f"memory: webhook refused: no {KEY_HEADER}/{SIGNATURE_HEADER}")
        if not self._signed(body, signature):
            raise UnauthorizedError(f"memory: webhook refused: {SIGNATURE_HEADER} does not match")
        try:
            data = json.loads(body)
            time_ms, items = data["time_ms"], list(data["events"])
            names = [item["name"] for item in items]
        except (ValueError, KeyError, TypeError, RecursionError):
            raise BadRequestError("memory: webhook refused: a malformed body") from None
        if (
            not isinstance(time_ms, int)
            or isinstance(time_ms, bool)
            or not 0 <= time_ms < 2**63
            or not all(isinstance(n, str) for n in names)
        ):
            raise BadRequestError("memory: webhook refused: a malformed body")
        if abs(time.time() - time_ms / 1000) > MAX_AGE_SECONDS:
            raise UnauthorizedError("memory: webhook refused: its time_ms is too old")
        return [_webhook_event(self.name, time_ms, i, item) for i, item in enumerate(items)]

    def _signed(self, body: bytes, signature: str) -> bool:
        return hmac.compare_digest(
            signature.encode("ascii", "replace"), self._webhook_signature(body).encode("ascii")
        )

    # -- authorization: Pusher-shaped answers, signed with this driver's own key --

    def _signature(self, kind: str, *parts: str) -> str:
        """``memory:`` and the HMAC of ``kind`` and ``parts`` as one JSON array.

        Each part is bound on its own: a channel name may contain ``:`` (or any
        other character), and an answer for one channel, socket or kind never
        verifies for another, however its parts are cut and joined.
        """
        key = self._signing_key.reveal().encode("ascii")
        subject = json.dumps([kind, *parts], separators=(",", ":")).encode("ascii")
        return "memory:" + hmac.new(key, subject, hashlib.sha256).hexdigest()

    def sign_channel(self, request: AuthRequest) -> dict[str, Any]:
        """A Pusher-shaped answer (``auth``, and ``channel_data`` for presence).

        Signed with a key random to this driver, so :meth:`verify` tells an
        answer this driver gave from any other: applications test their channel
        rules with it, no service needed.
        """
        socket_id, channel = str(request.socket_id), str(request.channel)
        if request.kind == "presence":
            data = json.dumps(
                {"user_id": request.member_id, "user_info": request.member},
                separators=(",", ":"),
            )
            auth = self._signature("presence", socket_id, channel, data)
            return {"auth": auth, "channel_data": data}
        return {"auth": self._signature("channel", socket_id, channel)}

    def sign_user(self, request: AuthRequest) -> dict[str, Any]:
        """A Pusher-shaped sign-in answer (``auth`` and ``user_data``)."""
        data = json.dumps(request.member, separators=(",", ":"))
        return {"auth": self._signature("user", str(request.socket_id), data), "user_data": data}

    def user_channel(self, user_id: str) -> str:
        """``#server-to-user-<id>``, as on Pusher: subscribe to it to see ``send_to_user``."""
        return f"#server-to-user-{user_id}"

    def verify(self, answer: Mapping[str, Any], *, socket_id: str, channel: str | None) -> bool:
        """Whether ``answer`` is what this driver signed for ``socket_id`` and ``channel``.

        ``channel=None`` checks a sign-in answer. Constant-time.
        """
        auth = answer.get("auth")
        if not isinstance(auth, str):
            return False
        if channel is None:
            data = answer.get("user_data")
            if not isinstance(data, str):
                return False
            expected = self._signature("user", socket_id, data)
        elif "channel_data" in answer:
            data = answer["channel_data"]
            if not isinstance(data, str):
                return False
            expected = self._signature("presence", socket_id, channel, data)
        else:
            expected = self._signature("channel", socket_id, channel)
        # bytes: compare_digest refuses a str that is not ASCII (a forged answer may be)
        return hmac.compare_digest(auth.encode("utf-8", "replace"), expected.encode("ascii"))

    def publish(self, message: Message) -> Receipt:
        """Keep ``message`` and hand it to every subscriber.

        Each subscriber is isolated: one whose callback raises is logged (on the
        ``broadcasting.memory`` logger) and the others still get the message;
        one whose event loop has closed is dropped. The publish itself succeeds.
        """
        with self._lock:
            self._history.append(message)
            subscribers = tuple(e.deliver for e in self._subscribers)
        for deliver in subscribers:
            try:
                deliver(message)
            except _Gone:
                self._unsubscribe(deliver)
                log.info("memory: dropped a subscription whose event loop has closed")
            except Exception:
                log.exception(
                    "memory: a subscriber failed on %r; the others still get it", message.event
                )
        return Receipt(self.name, message.event, message.channels, message.id, (message.id,))


def _webhook_event(driver: str, time_ms: int, index: int, item: Mapping[str, Any]) -> WebhookEvent:
    content = json.dumps(item, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(f"{time_ms}:{index}:{content}".encode()).hexdigest()[:32]

    def text(key: str) -> str | None:
        value = item.get(key)
        return None if value is None else str(value)

    return WebhookEvent(
        name=item["name"],
        channel=text("channel"),
        time_ms=time_ms,
        id=digest,
        user_id=text("user_id"),
        event=text("event"),
        data=item.get("data"),
        socket_id=text("socket_id"),
        driver=driver,
        raw=dict(item),
    )
