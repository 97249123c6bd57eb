"""The ``memory`` driver: keeps every message in order; in-process code can subscribe.

A subscriber may give itself a ``socket_id``: it then plays the part of one
browser connection, and a publish with that same ``socket_id`` (Laravel's
``toOthers()``) is not handed to it. The history keeps every message anyway.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from broadcasting import AuthRequest, ConfigurationError, Driver, Message, Receipt, Secret

Callback = Callable[[Message], object]

log = logging.getLogger("broadcasting.memory")


class _Gone(Exception):
    """A subscription whose event loop has closed: it can never receive again."""


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
        self, driver: BroadcastMemoryDriver, channel: str | None, socket_id: str | None = None
    ) -> None:
        self.channel = channel
        self.socket_id = socket_id
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
    supports_socket_id = True

    def __init__(self, max_history: int | None = None) -> None:
        self._signing_key = Secret(os.urandom(32).hex())  # this driver's own; never leaves it
        self._lock = threading.Lock()
        self._history: deque[Message] = deque(maxlen=max_history)
        self._subscribers: list[Callback] = []

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
        self, callback: Callback, channel: str | None = None, *, socket_id: str | None = None
    ) -> Callable[[], None]:
        """Call ``callback(message)`` for every later publish (to ``channel`` if given).

        ``socket_id`` names this subscriber's own connection, as a browser's
        socket id does: publishes made with that same ``socket_id`` are
        skipped (the sender is excluded), all others are delivered.

        Runs in the publishing thread. Returns a function that unsubscribes.
        """

        def deliver(message: Message) -> None:
            if _wanted(message, channel, socket_id):
                callback(message)

        with self._lock:
            self._subscribers.append(deliver)
        return lambda: self._unsubscribe(deliver)

    def listen(self, channel: str | None = None, *, socket_id: str | None = None) -> Subscription:
        """An async iterator of later publishes (to ``channel`` if given).

        ``socket_id`` names this subscription's own connection: publishes made
        with that same ``socket_id`` are skipped, as in :meth:`subscribe`.
        Must be called inside a running event loop.
        """
        subscription = Subscription(self, channel, socket_id)
        with self._lock:
            self._subscribers.append(subscription._deliver)
        return subscription

    def _unsubscribe(self, deliver: Callback) -> None:
        with self._lock:
            if deliver in self._subscribers:
                self._subscribers.remove(deliver)

    # -- authorization: Pusher-shaped answers, signed with this driver's own key --

    def _signature(self, text: str) -> str:
        key = self._signing_key.reveal().encode("ascii")
        return "memory:" + hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()

    def sign_channel(self, request: AuthRequest) -> dict[str, Any]:
        """A Pusher-shaped answer (``auth``, and ``channel_data`` for presence).

        Signed with a key random to this driver, so :meth:`verify` tells an
        answer this driver gave from any other: applications test their channel
        rules with it, no service needed.
        """
        subject = f"{request.socket_id}:{request.channel}"
        if request.kind == "presence":
            data = json.dumps(
                {"user_id": request.member_id, "user_info": request.member},
                separators=(",", ":"),
            )
            return {"auth": self._signature(f"{subject}:{data}"), "channel_data": data}
        return {"auth": self._signature(subject)}

    def sign_user(self, request: AuthRequest) -> dict[str, Any]:
        """A Pusher-shaped sign-in answer (``auth`` and ``user_data``)."""
        data = json.dumps(request.member, separators=(",", ":"))
        return {"auth": self._signature(f"{request.socket_id}::user::{data}"), "user_data": data}

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
            subject = f"{socket_id}::user::{answer.get('user_data', '')}"
        elif "channel_data" in answer:
            subject = f"{socket_id}:{channel}:{answer['channel_data']}"
        else:
            subject = f"{socket_id}:{channel}"
        return hmac.compare_digest(auth, self._signature(subject))

    def publish(self, message: Message) -> Receipt:
        """Keep ``message`` and hand it to every subscriber.

        Each subscriber is isolated: one whose callback raises is logged (on the
        ``broadcasting.memory`` logger) and the others still get the message;
        one whose event loop has closed is dropped. The publish itself succeeds.
        """
        with self._lock:
            self._history.append(message)
            subscribers = tuple(self._subscribers)
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

    async def apublish(self, message: Message) -> Receipt:
        return self.publish(message)
