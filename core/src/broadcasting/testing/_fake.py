"""A fake for tests: every publish of every Broadcast is recorded instead of sent.

A ``tryfirst`` plugin on the ``broadcasting_publish`` hook of every Broadcast
(see docs/testing.md): the core still validates each message against the
configured driver's limits, and the driver is never called.

Publishes sent later are recorded when they would be sent: an after-commit one when
its transaction commits (the fake publishes it in the commit, through ``broadcasting_publish``,
even where the core would start a task of the event loop the commit runs on),
an outbox one, or a queue's (``send="celery"``), when its transaction commits (the fake's
``broadcasting_defer`` takes it instead of writing the row or enqueueing the task). None is
recorded if its transaction rolls back. Each is recorded as it was at the call, when its text
was made (what goes out at the commit, or into the outbox's row), and a failing assertion lists
those still waiting for their commit.
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from broadcasting._background import AFTER_COMMIT, NOW, OUTBOX, pending, send_committed
from broadcasting._background import _report as report
from broadcasting._channels import Channel
from broadcasting._errors import BroadcastError, InputError
from broadcasting._events import Broadcastable, is_event
from broadcasting._flow import run
from broadcasting._plugins import register_everywhere, unregister_everywhere
from broadcasting._types import Message, Payload, Receipt
from broadcasting.hookspecs import hookimpl
from broadcasting.testing._observe import Recording

if TYPE_CHECKING:
    from collections.abc import Callable

    from typing_extensions import Self

    from broadcasting._background import Transaction
    from broadcasting._broadcast import Broadcast
    from broadcasting._driver import Driver

#: How much of a message's text a failure message shows.
_SHOWN = 120


@dataclass(frozen=True)
class Sent:
    """One publish the fake recorded: the driver's name and the message's parts.

    ``channels`` are full names (``private-orders.1``); ``data`` is the payload as
    given (an event object's ``broadcast_with()``); ``source`` the event object, if
    any; ``text`` the payload as it would go over the wire; ``via`` how it was sent:
    ``"now"``, ``"after_commit"``, ``"outbox"`` or a queue's name.
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
    via: str = "now"
    #: ``source`` as it was when sent (a copy), which an event object matches against: the
    #: object itself may have changed since
    _as_sent: object = field(default=None, repr=False, compare=False)

    def on(self, channel: str | Channel) -> bool:
        """Whether it was published on ``channel`` (a full name or a :class:`Channel`)."""
        if isinstance(channel, Channel):
            try:
                channel = self._driver.channel_name(channel)
            except BroadcastError:  # this driver has no such kind of channel
                return False
        return channel in self.channels

    def _received(self) -> object:
        """The payload as subscribers receive it: ``text`` parsed back (a tuple is a list, a
        key is text), or ``text`` itself for a text payload."""
        if isinstance(self.data, str):
            return self.text
        return json.loads(self.text)

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
        if self.via != NOW:
            line += f" (via {self.via})"
        return line


#: What an assertion's criteria may be (see :meth:`BroadcastFake.find`).
EventMatch = Union[str, type, Broadcastable, None]
ChannelMatch = Union[str, Channel, None]
DataMatch = Any
UserMatch = Union[str, int, None]


class BroadcastFake(Recording[Sent]):
    """Records every publish of every Broadcast, from any thread or event loop, instead
    of sending it, and asserts on what was sent.

    Use it as a context manager (:func:`fake`), through the pytest fixture
    ``broadcast_fake``, or with :meth:`start` / :meth:`stop` (unittest).
    """

    def __init__(self) -> None:
        super().__init__()
        self._active = False
        #: publishes taken for a commit that has not come (or never will: rolled back),
        #: as they were at the call, by message id
        self._waiting: dict[str, Sent] = {}

    @hookimpl(tryfirst=True)
    def broadcasting_publish(
        self, broadcast: Broadcast, driver: Driver, message: Message
    ) -> Receipt:
        """Record ``message`` and answer for the driver, which is never called."""
        self._record(driver, message)
        return Receipt(driver.name, message.event, message.channels, message.id, via=message.via)

    @hookimpl(tryfirst=True)
    def broadcasting_defer(
        self,
        broadcast: Broadcast,
        driver: Driver,
        message: Message,
        transaction: Transaction | None,
    ) -> Receipt | None:
        """Take an outbox publish instead of writing its row: record it once its transaction
        commits (at once outside a transaction, or in one that cannot report its commit: a
        SQLAlchemy ``Connection``, a ``sqlite3.Connection``). A SQLAlchemy session not begun
        yet begins its transaction, as the row's write would. An after-commit publish is
        published in its transaction's commit (:meth:`_after_commit`). A queue's
        (``send="celery"``) is recorded when its plugin would enqueue it (on commit, at once
        outside a transaction), never enqueued. Other ways go on to their plugins."""
        if message.via == AFTER_COMMIT:
            return self._after_commit(broadcast, driver, message, transaction)
        if message.via != OUTBOX:
            if not _queued(broadcast, driver, message):
                return None
            # as the queue's plugin: enqueued on commit, at once outside a transaction, and
            # refused by a transaction that cannot say when it commits
            if transaction is not None and transaction.active():
                self._on_commit(transaction, driver, message)
            else:
                self._record(driver, message)
            return pending(broadcast.broadcaster_of(driver), message)
        from broadcasting.outbox._write import check

        check(broadcast.broadcaster_of(driver), transaction, message)  # refused as the write is
        if transaction is not None and not transaction.active():
            # the write would begin a SQLAlchemy session's transaction, and go with it
            from broadcasting.contrib.sqlalchemy import SessionTransaction

            if isinstance(transaction, SessionTransaction):
                transaction.autobegin()
        if transaction is not None and transaction.active():
            try:
                self._on_commit(transaction, driver, message)
            except InputError:  # it cannot say when it commits (a SQLAlchemy Connection, a
                self._record(driver, message)  # sqlite3.Connection): recorded as written
        else:
            self._record(driver, message)
        return pending(broadcast.broadcaster_of(driver), message)

    def _after_commit(
        self,
        broadcast: Broadcast,
        driver: Driver,
        message: Message,
        transaction: Transaction | None,
    ) -> Receipt | None:
        """An after-commit publish: published (so recorded) in the commit itself, where the
        core would start a task when the commit runs on an event loop; outside a transaction
        the core sends it at once."""
        if transaction is None or not transaction.active():
            return None
        broadcaster = broadcast.broadcaster_of(driver)

        def committed() -> None:
            if not self._active:  # stopped meanwhile: sent as the core sends it
                send_committed(broadcaster, message)
                return
            try:  # through the publish hook (wrappers see it), which the fake answers at once
                run(broadcaster.publish_message(message))
            except Exception as exc:  # a plugin's: logged, as after a real commit
                report(broadcaster, message, exc)

        self._on_commit(transaction, driver, message, committed)
        return pending(broadcaster, message)

    def _on_commit(
        self,
        transaction: Transaction,
        driver: Driver,
        message: Message,
        committed: Callable[[], None] | None = None,
    ) -> None:
        """Record ``message`` when ``transaction`` commits (``committed`` publishes it, else it
        is recorded directly), as it is now: its text, made at the call, is what goes out
        then. Until then, a failing assertion lists it as waiting."""
        with self._cond:
            self._waiting[message.id] = _snapshot(driver, message)
        try:
            transaction.on_commit(committed or (lambda: self._record(driver, message)))
        except BaseException:  # refused: never waits
            with self._cond:
                self._waiting.pop(message.id, None)
            raise

    def _waits(self) -> list[Sent]:
        """The publishes taken for a transaction's commit that has not come (or never will:
        rolled back), as they were at the call, oldest first; not recorded."""
        with self._cond:
            return list(self._waiting.values())

    def _record(self, driver: Driver, m: Message) -> None:
        with self._cond:
            sent = self._waiting.pop(m.id, None)
        self._add(sent or _snapshot(driver, m))

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

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def sent(self) -> list[Sent]:
        """Every publish recorded so far, oldest first (a copy)."""
        return self._copy()

    def find(
        self,
        event: EventMatch = None,
        channel: ChannelMatch = None,
        data: DataMatch = None,
        *,
        user: UserMatch = None,
        via: str | None = None,
    ) -> list[Sent]:
        """The recorded publishes that match every criterion given.

        ``event`` is an event name, an event class (matched with ``isinstance``) or an
        event object (matched with ``==``); ``channel`` a full channel name or a
        :class:`~broadcasting.Channel`, rendered by the publish's driver; ``data`` the
        payload (matched with ``==``) or a function that says whether a payload
        matches; ``user`` a user id given to ``send_to_user()``; ``via`` how it was sent
        (``"now"``, ``"after_commit"``, ``"outbox"``, a queue's name): by default, any way.
        """
        return _Criteria(event, channel, data, user, via).select(self.sent)

    def assert_sent(
        self,
        event: EventMatch = None,
        channel: ChannelMatch = None,
        data: DataMatch = None,
        times: int | None = None,
        *,
        user: UserMatch = None,
        via: str | None = None,
    ) -> list[Sent]:
        """Assert a publish matching the criteria of :meth:`find` was sent (exactly
        ``times`` times if given); return them. A failure lists what was sent."""
        __tracebackhide__ = True
        if times is not None and (
            not isinstance(times, int) or isinstance(times, bool) or times < 0
        ):
            raise ValueError(f"times must be a non-negative int, not {times!r}")
        return self._expect(_Criteria(event, channel, data, user, via), times)

    def assert_not_sent(
        self,
        event: EventMatch = None,
        channel: ChannelMatch = None,
        data: DataMatch = None,
        *,
        user: UserMatch = None,
        via: str | None = None,
    ) -> None:
        """Assert that no publish matching the criteria of :meth:`find` was sent."""
        __tracebackhide__ = True
        self._expect(_Criteria(event, channel, data, user, via), 0)

    def assert_nothing_sent(self) -> None:
        """Assert that nothing at all was published."""
        __tracebackhide__ = True
        everything = self.sent
        if everything:
            raise AssertionError(
                _listed(f"expected nothing sent, got {_times(len(everything))}:", everything)
            )

    def _expect(self, criteria: _Criteria, times: int | None) -> list[Sent]:
        __tracebackhide__ = True
        everything = self.sent
        found = criteria.select(everything)
        if (times is None and found) or len(found) == times:
            return found
        waiting = self._waits()
        lookalikes = criteria.lookalikes(everything + waiting)

        def line(sent: Sent) -> str:
            return criteria.describe(sent, lookalikes)

        if not everything:
            text = f"no publish matched {criteria}; nothing was sent"
        elif not found:
            text = _listed(
                f"no publish matched {criteria}\nsent instead ({len(everything)}):",
                everything,
                line,
            )
        else:
            wanted = "no publish" if times == 0 else _times(times or 0)
            text = _listed(f"expected {wanted} matching {criteria}, got {len(found)}:", found, line)
            others = [sent for sent in everything if not criteria.matches(sent)]
            if others:
                text += "\n" + _listed(f"also sent ({len(others)}):", others, line)
        if waiting and (times is None or len(found) < times):  # what may yet be missing
            text += "\n" + _listed(
                f"not sent: waiting for a commit ({len(waiting)}) that has not come, or rolled"
                " back (Django's TestCase never commits: use"
                " captureOnCommitCallbacks(execute=True)):",
                waiting,
                line,
            )
        raise AssertionError(text)

    def __repr__(self) -> str:
        state = "active" if self._active else "stopped"
        return f"<BroadcastFake {state}, {_times(len(self._items))} recorded>"


def _queued(broadcast: Broadcast, driver: Driver, message: Message) -> bool:
    """Whether ``message`` is sent through a queue plugin registered on ``broadcast``
    (``send=`` its name): its task payload is made as the plugin would, for the same errors
    (a way no plugin takes is left to the core, which refuses it)."""
    queue = sys.modules.get("broadcasting.contrib._queue")
    if queue is None:  # no queue plugin was ever made in this process
        return False
    # list_name_plugin(), not get_plugins(): pluggy makes a set of those, and a plugin
    # object may be unhashable
    for _, plugin in broadcast.plugin_manager.list_name_plugin():
        if isinstance(plugin, queue.QueuePlugin) and plugin.name == message.via:
            queue.encode(broadcast.broadcaster_of(driver), message)
            plugin.journal()  # a missing journal is refused at the call, as the plugin does
            return True
    return False


def _snapshot(driver: Driver, m: Message) -> Sent:
    """What ``m`` sends, as it is now: the caller may change its payload or event object after."""
    return Sent(
        driver.name,
        m.event,
        m.channels,
        m.data if isinstance(m.data, str) else _as_it_is(m.data),
        m.socket_id,
        m.source,
        m.text,
        m.id,
        driver,
        via=m.via,
        _as_sent=None if m.source is None else _as_it_is(m.source),
    )


def _as_it_is(value: Any) -> Any:
    """A copy of ``value`` as it is now (deep; else shallow, for an object that cannot be
    copied deeply; else the object itself)."""
    try:
        return copy.deepcopy(value)
    except Exception:
        try:
            return copy.copy(value)
        except Exception:
            return value


def fake() -> BroadcastFake:
    """A :class:`BroadcastFake` to use as a context manager (``with fake() as recorded:``)."""
    return BroadcastFake()


def _listed(header: str, sent: list[Sent], line: Callable[[Sent], str] = str) -> str:
    return "\n".join([header, *(f"  {line(one)}" for one in sent)])


def _times(n: int) -> str:
    return f"{n} publish{'es' if n != 1 else ''}"


class _Criteria:
    """What :meth:`BroadcastFake.find` and the assertions look for."""

    def __init__(
        self,
        event: EventMatch,
        channel: ChannelMatch,
        data: DataMatch,
        user: UserMatch,
        via: str | None = None,
    ) -> None:
        if event is not None and not isinstance(event, (str, type)) and not is_event(event):
            raise TypeError(
                f"event must be an event name, an event class or an event object, not {event!r}"
            )
        if channel is not None and not isinstance(channel, (str, Channel)):
            raise TypeError(f"channel must be a channel name or a Channel, not {channel!r}")
        if via is not None and not isinstance(via, str):
            raise TypeError(f"via must name how it was sent ('now', 'outbox', ...), not {via!r}")
        if isinstance(data, type):  # callable, but no predicate: data=dict matched anything
            raise TypeError(
                f"data must be the payload or a function of it, not the class {data.__name__}"
                " (data=lambda d: isinstance(d, ...) checks a type)"
            )
        if isinstance(user, bool):  # an int to Python, never a user id to production
            raise TypeError(f"user must be a user id (str or int), not {user!r}")
        self.event, self.channel, self.data, self.user = event, channel, data, user
        self.via = via

    def matches(self, sent: Sent) -> bool:
        event, data = self.event, self.data
        if isinstance(event, str) and sent.event != event:
            return False
        if isinstance(event, type) and not isinstance(sent.source, event):
            return False
        if event is not None and not isinstance(event, (str, type)):
            as_sent = sent.source if sent._as_sent is None else sent._as_sent
            # an object that compares by identity is only ever equal to itself, never to
            # the copy kept of it: the object sent is compared, not its copy
            by_identity = type(event).__eq__ is object.__eq__
            if (sent.source is not event) if by_identity else (as_sent != event):
                return False
        if self.channel is not None and not sent.on(self.channel):
            return False
        if self.user is not None and not sent.to_user(self.user):
            return False
        if self.via is not None and sent.via != self.via:
            return False
        if data is not None:
            if callable(data):
                return bool(data(sent.data))
            # as given, or as subscribers receive it: the JSON a failure shows
            if sent.data == data:
                return True
            try:
                return bool(sent._received() == data)
            except ValueError:  # not JSON: a driver's own text
                return False
        return True

    def lookalikes(self, sent: list[Sent]) -> set[str]:
        """The event names that look like the event class or object asked for: its class's
        name, and the names its class's events were published under."""
        event = self.event
        if event is None or isinstance(event, str):
            return set()
        kind = event if isinstance(event, type) else type(event)
        return {kind.__name__, *(one.event for one in sent if isinstance(one.source, kind))}

    def describe(self, sent: Sent, lookalikes: set[str]) -> str:
        """``sent`` as a failure lists it, with what its line leaves out that these criteria
        ask about: for an event class or object asked for, the event object of a publish
        whose name looks alike (none, another class's, other fields), and ``via`` if
        asked."""
        line = str(sent)
        event = self.event
        if event is not None and not isinstance(event, str) and sent.event in lookalikes:
            as_sent = sent.source if sent._as_sent is None else sent._as_sent
            if sent.source is None:
                line += " (no event object)"
            elif not (isinstance(event, type) and isinstance(sent.source, event)):
                shown = repr(as_sent)
                line += (
                    f" (event object {shown if len(shown) <= _SHOWN else shown[:_SHOWN] + '...'})"
                )
        if self.via is not None and sent.via == NOW:
            line += f" (via {NOW})"
        return line

    def select(self, sent: list[Sent]) -> list[Sent]:
        return [one for one in sent if self.matches(one)]

    def __str__(self) -> str:
        event = self.event
        parts = []
        if isinstance(event, type):
            parts.append(f"event={event.__qualname__}")
        elif isinstance(event, str):
            parts.append(f"event='{event}'")
        elif event is not None:
            parts.append(f"event={event!r}")
        if self.channel is not None:
            parts.append(f"channel={self.channel!r}")
        if self.data is not None:
            parts.append(f"data={getattr(self.data, '__qualname__', None) or repr(self.data)}")
        if self.user is not None:
            parts.append(f"user={self.user!r}")
        if self.via is not None:
            parts.append(f"via={self.via!r}")
        return ", ".join(parts) if parts else "anything"
