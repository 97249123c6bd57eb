"""A fake for tests: every publish of every Broadcast is recorded instead of sent.

It is a plugin on the ``broadcasting_publish`` hook, registered on every
:class:`~broadcasting.Broadcast` of the process (those that exist and those
made later) for as long as it is active. The core validates each message
against the configured driver's real limits first, so a payload that would
raise :class:`~broadcasting.PayloadTooLargeError` in production raises in the test
too; then the fake records it and answers with a :class:`~broadcasting.Receipt`
without calling the driver, so no connection is opened.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Union

from broadcasting._channels import Channel
from broadcasting._errors import BroadcastError
from broadcasting._events import Broadcastable, is_event
from broadcasting._markers import hookimpl
from broadcasting._plugins import register_everywhere, unregister_everywhere
from broadcasting._types import Message, Payload, Receipt

if TYPE_CHECKING:
    from typing_extensions import Self

    from broadcasting._broadcast import Broadcast
    from broadcasting._driver import Driver

#: How much of a message's text a failure message shows.
_SHOWN = 120


@dataclass(frozen=True)
class Sent:
    """One publish the fake recorded.

    Attributes:
        driver: the name of the driver it was for.
        event: the event name, as published.
        channels: the full channel names (``private-orders.1``), de-duplicated.
        data: the payload as given (for an event object, its ``broadcast_with()``).
        socket_id: the connection left out (``to_others``), if any.
        source: the event object it was built from (``channel(event)``), else ``None``.
        text: the payload as it would go over the wire.
        message_id: the message's id (also the receipt's).
    """

    driver: str
    event: str
    channels: tuple[str, ...]
    data: Payload
    socket_id: str | None
    source: object
    text: str
    message_id: str
    _driver: Driver = field(repr=False, compare=False)

    def on(self, channel: str | Channel) -> bool:
        """Whether it was published on ``channel`` (a full name or a :class:`Channel`)."""
        if isinstance(channel, Channel):
            try:
                channel = self._driver.channel_name(channel)
            except BroadcastError:  # this driver has no such kind of channel
                return False
        return channel in self.channels

    def to_user(self, user_id: str | int) -> bool:
        """Whether it was sent with ``send_to_user(user_id, ...)``."""
        try:
            return self._driver.user_channel(str(user_id)) in self.channels
        except BroadcastError:
            return False

    def __str__(self) -> str:
        text = self.text if len(self.text) <= _SHOWN else self.text[:_SHOWN] + "..."
        line = f"{self.driver}: '{self.event}' on {', '.join(self.channels)} {text}"
        if self.socket_id is not None:
            line += f" (socket_id {self.socket_id})"
        return line


#: What ``data=`` of an assertion may be: the payload itself, or a test of it.
DataMatch = Any
#: What ``event=`` of an assertion may be: a name, an event class, or an event object.
EventMatch = Union[str, type, Broadcastable, None]


class BroadcastFake:
    """Records every publish instead of sending it, and asserts on what was sent.

    Use it as a context manager (``with broadcasting.testing.fake() as fake:``),
    through the pytest fixture ``broadcast_fake``, or with :meth:`start` /
    :meth:`stop` (``setUp`` / ``addCleanup`` in unittest). While it is active,
    every ``channel()``, ``achannel()``, ``send_to_user()`` and
    ``asend_to_user()`` of every Broadcast in the process, from any thread or
    event loop, is validated by the core as usual and then recorded in
    :attr:`sent` and answered with a :class:`~broadcasting.Receipt`
    (``requests == 0``) without reaching the driver. Authorization
    (``authorize()``...) is not faked: it signs locally, with no request.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent: list[Sent] = []
        self._active = False

    # -- the hook ------------------------------------------------------------

    @hookimpl(tryfirst=True)
    def broadcasting_publish(
        self, broadcast: Broadcast, driver: Driver, message: Message
    ) -> Receipt:
        """Record ``message`` and answer for the driver, which is never called."""
        sent = Sent(
            driver=driver.name,
            event=message.event,
            channels=message.channels,
            data=message.data,
            socket_id=message.socket_id,
            source=message.source,
            text=message.text,
            message_id=message.id,
            _driver=driver,
        )
        with self._lock:
            self._sent.append(sent)
        return Receipt(driver.name, message.event, message.channels, message.id)

    # -- on and off ----------------------------------------------------------

    @property
    def active(self) -> bool:
        """Whether it is intercepting publishes now."""
        return self._active

    def start(self) -> Self:
        """Start intercepting every publish in the process; returns self."""
        register_everywhere(self)
        self._active = True
        return self

    def stop(self) -> None:
        """Stop intercepting; publishes reach their drivers again. Idempotent."""
        unregister_everywhere(self)
        self._active = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what was sent -------------------------------------------------------

    @property
    def sent(self) -> list[Sent]:
        """Every publish recorded so far, oldest first (a copy)."""
        with self._lock:
            return list(self._sent)

    def clear(self) -> None:
        """Forget what was recorded so far."""
        with self._lock:
            self._sent.clear()

    def find(
        self,
        event: EventMatch = None,
        channel: str | Channel | None = None,
        data: DataMatch = None,
        *,
        user: str | int | None = None,
    ) -> list[Sent]:
        """The recorded publishes that match every criterion given.

        ``event`` is an event name, an event class (matched with
        ``isinstance`` against the event object) or an event object (matched
        with ``==``: a dataclass or pydantic event compares by value); ``channel`` a full channel
        name or a :class:`~broadcasting.Channel`, rendered by the driver the
        publish was for; ``data`` the payload (compared with ``==``) or a
        function that takes the payload and returns whether it matches;
        ``user`` a user id given to ``send_to_user()``.
        """
        test = _matcher(event, channel, data, user)
        return [sent for sent in self.sent if test(sent)]

    def assert_sent(
        self,
        event: EventMatch = None,
        channel: str | Channel | None = None,
        data: DataMatch = None,
        times: int | None = None,
        *,
        user: str | int | None = None,
    ) -> list[Sent]:
        """Assert a matching publish was sent (exactly ``times`` times if given); return them.

        The criteria are those of :meth:`find`. A failure lists what was sent instead.
        """
        __tracebackhide__ = True
        if times is not None and (not isinstance(times, int) or times < 0):
            raise ValueError(f"times must be a non-negative int, not {times!r}")
        everything = self.sent
        test = _matcher(event, channel, data, user)
        found = [sent for sent in everything if test(sent)]
        wanted = _describe(event, channel, data, user)
        if times is None and found:
            return found
        if times is not None and len(found) == times:
            return found
        if not found:
            lines = [f"no publish matched {wanted}"]
            if everything:
                lines.append(f"sent instead ({len(everything)}):")
                lines += [f"  {sent}" for sent in everything]
            else:
                lines[0] += "; nothing was sent"
        else:
            lines = [f"expected {_times(times or 0)} matching {wanted}, got {len(found)}:"]
            lines += [f"  {sent}" for sent in found]
            others = [sent for sent in everything if not test(sent)]
            if others:
                lines.append(f"also sent ({len(others)}):")
                lines += [f"  {sent}" for sent in others]
        raise AssertionError("\n".join(lines))

    def assert_not_sent(
        self,
        event: EventMatch = None,
        channel: str | Channel | None = None,
        data: DataMatch = None,
        *,
        user: str | int | None = None,
    ) -> None:
        """Assert that no publish matching the criteria of :meth:`find` was sent."""
        __tracebackhide__ = True
        found = self.find(event, channel, data, user=user)
        if found:
            wanted = _describe(event, channel, data, user)
            lines = [f"expected no publish matching {wanted}, got {len(found)}:"]
            lines += [f"  {sent}" for sent in found]
            raise AssertionError("\n".join(lines))

    def assert_nothing_sent(self) -> None:
        """Assert that nothing at all was published."""
        __tracebackhide__ = True
        everything = self.sent
        if everything:
            lines = [f"expected nothing sent, got {_times(len(everything))}:"]
            lines += [f"  {sent}" for sent in everything]
            raise AssertionError("\n".join(lines))

    def __repr__(self) -> str:
        state = "active" if self._active else "stopped"
        return f"<BroadcastFake {state}, {_times(len(self._sent))} recorded>"


def fake() -> BroadcastFake:
    """A :class:`BroadcastFake` to use as a context manager.

    ``with broadcasting.testing.fake() as fake:`` records every publish of
    every Broadcast in the process until the block ends, even when it fails.
    """
    return BroadcastFake()


def _times(n: int) -> str:
    return f"{n} publish{'es' if n != 1 else ''}"


def _matcher(
    event: EventMatch, channel: str | Channel | None, data: DataMatch, user: str | int | None
) -> Callable[[Sent], bool]:
    if event is not None and not isinstance(event, (str, type)) and not is_event(event):
        raise TypeError(
            f"event must be an event name, an event class or an event object, not {event!r}"
        )
    if channel is not None and not isinstance(channel, (str, Channel)):
        raise TypeError(f"channel must be a channel name or a Channel, not {channel!r}")

    def test(sent: Sent) -> bool:
        if isinstance(event, str) and sent.event != event:
            return False
        if isinstance(event, type) and not isinstance(sent.source, event):
            return False
        if event is not None and not isinstance(event, (str, type)) and sent.source != event:
            return False
        if channel is not None and not sent.on(channel):
            return False
        if user is not None and not sent.to_user(user):
            return False
        if data is not None:
            return bool(data(sent.data)) if callable(data) else bool(sent.data == data)
        return True

    return test


def _describe(
    event: EventMatch, channel: str | Channel | None, data: DataMatch, user: str | int | None
) -> str:
    parts = []
    if isinstance(event, type):
        parts.append(f"event={event.__qualname__}")
    elif isinstance(event, str):
        parts.append(f"event='{event}'")
    elif event is not None:
        parts.append(f"event={event!r}")
    if channel is not None:
        parts.append(f"channel={channel!r}")
    if data is not None:
        parts.append(f"data={getattr(data, '__qualname__', None) or repr(data)}")
    if user is not None:
        parts.append(f"user={user!r}")
    return ", ".join(parts) if parts else "anything"
