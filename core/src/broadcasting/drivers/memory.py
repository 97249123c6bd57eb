"""The ``memory`` driver: keeps every message and stands in for a service in tests
(subscribers, channel state, signed authorizations, webhooks; docs/configuration.md)."""

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
from functools import partial
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


#: The headers of :meth:`BroadcastMemoryDriver.webhook_delivery`.
KEY_HEADER = "X-Broadcasting-Key"
SIGNATURE_HEADER = "X-Broadcasting-Signature"


@dataclass(frozen=True, eq=False)
class _Entry:
    callback: Callback
    channel: str | None
    socket_id: str | None
    member: Mapping[str, Any] | None

    def wants(self, message: Message) -> bool:
        if self.channel is not None and self.channel not in message.channels:
            return False
        # the sender's own connection is left out (toOthers); no socket id leaves out nobody
        return self.socket_id is None or message.socket_id != self.socket_id


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


class Subscription:
    """An async iterator of the messages published (from any thread) after it was made.

    From :meth:`BroadcastMemoryDriver.listen`; leave it as an async context manager, or
    :meth:`close` it, to stop receiving. ``channel`` and ``socket_id``: what it listens to, as.
    """

    def __init__(
        self, channel: str | None, socket_id: str | None, member: Mapping[str, Any] | None
    ) -> None:
        self.channel = channel
        self.socket_id = socket_id
        self.member = member
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self._stop: Callable[[], None] = lambda: None

    def _put(self, message: Message) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, message)
        except RuntimeError:  # its loop is closed: it can never receive again
            self.close()
            log.info("memory: dropped a subscription whose event loop has closed")

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        return await self._queue.get()

    async def get(self, timeout: float | None = None) -> Message:
        """The next message, waiting at most ``timeout`` seconds."""
        return await asyncio.wait_for(self._queue.get(), timeout)

    def close(self) -> None:
        """Stop receiving messages (idempotent)."""
        self._stop()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


class BroadcastMemoryDriver(Driver):
    """Keeps every published message, in order, and hands them to subscribers (thread-safe);
    ``max_history`` bounds the kept history (default: everything until :meth:`clear`)."""

    name = "memory"
    features = frozenset(Feature) - {Feature.CONNECTION_TOKENS, Feature.TERMINATE_USER}

    def __init__(self, max_history: int | None = None) -> None:
        self._signing_key = Secret(os.urandom(32).hex())  # this driver's own; never leaves it
        self._lock = threading.Lock()
        self._history: deque[Message] = deque(maxlen=max_history)
        self._subscribers: list[_Entry] = []

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> BroadcastMemoryDriver:
        # every problem at once, in the order of the options (ConfigurationError.combine)
        found = [
            ConfigurationError(cls.name, str(key), "unknown option")
            for key in options
            if key != "max_history"
        ]
        max_history = options.get("max_history")
        if max_history is not None and (
            not isinstance(max_history, int) or isinstance(max_history, bool) or max_history < 1
        ):
            found.append(
                ConfigurationError(cls.name, "max_history", "must be a positive int or None")
            )
        if found:
            raise ConfigurationError.combine(found)
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
        """Call ``callback(message)`` in the publishing thread for every later publish to
        ``channel`` (default: all) but those sent ``toOthers`` from ``socket_id``; ``member`` (a
        mapping with an ``id``) joins the presence channel. Returns a function that unsubscribes.
        """
        return self._add(_Entry(callback, channel, socket_id, _member(self, channel, member)))

    def listen(
        self,
        channel: str | None = None,
        *,
        socket_id: str | None = None,
        member: Mapping[str, Any] | None = None,
    ) -> Subscription:
        """A :class:`Subscription` to later publishes, as :meth:`subscribe`; in a running loop."""
        joined = _member(self, channel, member)
        subscription = Subscription(channel, socket_id, joined)
        subscription._stop = self._add(_Entry(subscription._put, channel, socket_id, joined))
        return subscription

    def _add(self, entry: _Entry) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(entry)
        return lambda: self._unsubscribe(entry)

    def _unsubscribe(self, entry: _Entry) -> None:
        with self._lock:
            self._subscribers[:] = [e for e in self._subscribers if e is not entry]

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
        """The channels in-process subscribers name, with counts (``channel=None`` names none)."""
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
        """Yield this process's later publishes to ``channels``, after one ``SUBSCRIBED`` each."""
        if not channels or not all(isinstance(c, str) and c for c in channels):
            raise InvalidChannelError("memory: listen to one or more non-empty channel names")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Heard] = asyncio.Queue()

        def deliver(channel: str, message: Message) -> None:
            heard = Heard(channel, message.event, message.text, time.time())
            loop.call_soon_threadsafe(queue.put_nowait, heard)

        names = list(dict.fromkeys(channels))
        stops = [self.subscribe(partial(deliver, c), c) for c in names]
        try:
            for name in names:
                yield Heard(name, SUBSCRIBED, "", time.time())
            while True:
                yield await queue.get()
        finally:
            for stop in stops:
                stop()

    def _hmac(self, data: bytes) -> str:
        key = self._signing_key.reveal().encode("ascii")
        return hmac.new(key, data, hashlib.sha256).hexdigest()

    def webhook_delivery(
        self, events: Iterable[Mapping[str, Any]], *, time_ms: int | None = None
    ) -> tuple[dict[str, str], bytes]:
        """``(headers, body)`` of a delivery of ``events`` signed by this driver, for ``webhook()``:
        each a mapping with a ``name`` and :class:`WebhookEvent` fields; Pusher's body shape."""
        now = int(time.time() * 1000) if time_ms is None else time_ms
        body = json.dumps({"time_ms": now, "events": [dict(e) for e in events]}).encode()
        return {KEY_HEADER: self.name, SIGNATURE_HEADER: self._hmac(body)}, body

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        """Verify a :meth:`webhook_delivery` (signature, age) and return its events."""
        signature = headers.get(SIGNATURE_HEADER)
        if headers.get(KEY_HEADER) != self.name or not isinstance(signature, str):
            raise UnauthorizedError(f"memory: webhook refused: no {KEY_HEADER}/{SIGNATURE_HEADER}")
        expected = self._hmac(body).encode("ascii")
        if not hmac.compare_digest(signature.encode("ascii", "replace"), expected):
            raise UnauthorizedError(f"memory: webhook refused: {SIGNATURE_HEADER} does not match")
        try:
            data = json.loads(body)
            time_ms, items = data["time_ms"], list(data["events"])
            if type(time_ms) is not int or not 0 <= time_ms < 2**63:  # bool is not a time
                raise ValueError
            if not all(isinstance(item["name"], str) for item in items):
                raise ValueError
        except (ValueError, KeyError, TypeError, RecursionError):
            raise BadRequestError("memory: webhook refused: a malformed body") from None
        if abs(time.time() - time_ms / 1000) > MAX_AGE_SECONDS:
            raise UnauthorizedError("memory: webhook refused: its time_ms is too old")
        return [_webhook_event(self.name, time_ms, i, item) for i, item in enumerate(items)]

    def _signature(self, kind: str, *parts: object) -> str:
        # a JSON array binds each part on its own, whatever characters a channel name holds
        return "memory:" + self._hmac(json.dumps([kind, *parts], separators=(",", ":")).encode())

    def sign_channel(self, request: AuthRequest) -> dict[str, Any]:
        """A Pusher-shaped answer (``auth``, ``channel_data`` for presence) that :meth:`verify`
        tells from any other: this driver's key is its own, random."""
        socket_id, channel = str(request.socket_id), str(request.channel)
        if request.kind == "presence":
            data = json.dumps(
                {"user_id": request.member_id, "user_info": request.member}, separators=(",", ":")
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
        """Whether ``answer`` is what this driver signed for ``socket_id`` and ``channel``
        (``None``: a sign-in answer). Constant-time."""
        auth = answer.get("auth")
        if channel is None:
            kind, parts = "user", [socket_id, answer.get("user_data")]
        elif "channel_data" in answer:
            kind, parts = "presence", [socket_id, channel, answer["channel_data"]]
        else:
            kind, parts = "channel", [socket_id, channel]
        if not isinstance(auth, str) or not all(isinstance(part, str) for part in parts):
            return False
        expected = self._signature(kind, *parts).encode("ascii")
        # bytes: compare_digest refuses a str that is not ASCII (a forged answer may be)
        return hmac.compare_digest(auth.encode("utf-8", "replace"), expected)

    def publish(self, message: Message) -> Receipt:
        """Keep ``message`` and hand it to every subscriber (one that raises is logged)."""
        with self._lock:
            self._history.append(message)
            entries = tuple(self._subscribers)
        for entry in entries:
            if not entry.wants(message):
                continue
            try:
                entry.callback(message)
            except Exception:
                log.exception(
                    "memory: a subscriber failed on %r; the others still get it", message.event
                )
        return Receipt(self.name, message.event, message.channels, message.id, (message.id,))


_TEXT_FIELDS = ("channel", "user_id", "event", "socket_id")  # a WebhookEvent's str | None fields


def _webhook_event(driver: str, time_ms: int, index: int, item: Mapping[str, Any]) -> WebhookEvent:
    content = json.dumps(item, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(f"{time_ms}:{index}:{content}".encode()).hexdigest()[:32]
    texts = {key: None if item.get(key) is None else str(item[key]) for key in _TEXT_FIELDS}
    return WebhookEvent(
        item["name"],
        time_ms=time_ms,
        id=digest,
        data=item.get("data"),
        driver=driver,
        raw=dict(item),
        **texts,
    )
