"""The core's delivery: a publish as requests, retries and one outcome per channel."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, Union

from broadcasting._errors import ConfigurationError, PublishError
from broadcasting._flow import (
    DriverCall,
    Effect,
    Flow,
    Gather,
    Sleep,
    _method,
    arun,
    implements,
    run,
)
from broadcasting._retry import Retry
from broadcasting._types import Message, Options, Receipt

if TYPE_CHECKING:
    from broadcasting._broadcaster import Broadcaster
    from broadcasting._driver import Driver

T = TypeVar("T")
log = logging.getLogger("broadcasting.delivery")
_RETRYING = "%s: retrying message %s to %d channel(s) in %.3f s after: %s"
#: The clock a de-duplication window is measured on (a test may replace it).
_clock = time.monotonic


@dataclass(frozen=True)
class Capabilities:
    """What one request to a driver's service can carry; the core plans around it.

    ``None``: no limit. ``batch_channels`` above 1: several messages may share a request,
    up to ``batch_bytes`` as :meth:`Driver.part_size` counts them. ``deduplicates``: the
    service drops a message id it already has (docs/writing-a-driver.md, section 6), for
    ``dedup_window`` seconds after the message was first sent (``None``: for good).
    """

    channels_per_request: int | None = None
    batch_channels: int = 0
    batch_bytes: int | None = None
    deduplicates: bool = False
    concurrent_requests: bool = True
    dedup_window: float | None = None

    def __post_init__(self) -> None:
        # checked here, where a driver declares them: a wrong one failed each publish in
        # the core's planning (range() arg 3 must not be zero) or was quietly taken as none
        for name, least, optional in (
            ("channels_per_request", 1, True),
            ("batch_channels", 0, False),
            ("batch_bytes", 1, True),
        ):
            value = getattr(self, name)
            if optional and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                allowed = f"an int >= {least}" + (" or None" if optional else "")
                raise ValueError(f"Capabilities: {name} must be {allowed}, not {value!r}")
        window = self.dedup_window
        if window is not None and not (
            isinstance(window, (int, float)) and not isinstance(window, bool) and window > 0
        ):
            raise ValueError(f"Capabilities: dedup_window must be seconds > 0, not {window!r}")

    @property
    def batches(self) -> bool:
        """Whether several messages can share one request."""
        return self.batch_channels > 1


def may_resend(
    capabilities: Capabilities, at_least_once: bool, first_sent: float | None, at: float
) -> bool:
    """Whether a message that may already have reached the service may be sent again at time
    ``at``: the user chose ``at_least_once``, or the service drops the repeat. One that
    de-duplicates only for ``dedup_window`` seconds drops it only while ``at`` is less than
    that after ``first_sent`` (when the message was first sent, on the same clock; ``None``:
    not known, so never)."""
    if at_least_once:
        return True
    if not capabilities.deduplicates:
        return False
    window = capabilities.dedup_window
    return window is None or (first_sent is not None and at - first_sent < window)


#: Options every network driver accepts in its ``DRIVERS`` entry; the core reads them.
DELIVERY_OPTIONS = frozenset(
    {"retries", "retry_backoff", "retry_max_backoff", "at_least_once", "batch", "batch_in_flight"}
    | {"batch_linger"}
)
#: The longest ``batch_linger`` accepted: it delays every async publish by up to that much.
MAX_BATCH_LINGER = 1.0


def drivers_own(options: Mapping[str, Any]) -> Options:
    """``options`` without the delivery options: what the driver is given."""
    return Options({k: v for k, v in options.items() if k not in DELIVERY_OPTIONS})


@dataclass(frozen=True)
class DeliveryOptions:
    """The user's delivery options for one driver (docs/publishing.md#delivery-options):
    ``retry`` holds ``retries``, ``retry_backoff`` and ``retry_max_backoff``."""

    retry: Retry = field(default_factory=Retry)
    at_least_once: bool = False
    batch: bool = True
    batch_in_flight: int = 4
    batch_linger: float = 0.0

    @classmethod
    def from_options(
        cls, driver: str, options: Mapping[str, Any]
    ) -> tuple[DeliveryOptions, Options]:
        """The delivery options in ``options``, and the driver's own options; a
        ConfigurationError names each wrong delivery option (``problems``), never its value."""
        own = drivers_own(options)
        if len(own) == len(options):
            return cls(), own
        found: list[ConfigurationError] = []
        for key in ("at_least_once", "batch"):
            if not isinstance(options.get(key, False), bool):
                found.append(ConfigurationError(driver, key, "must be True or False"))
        in_flight = options.get("batch_in_flight", cls.batch_in_flight)
        if not isinstance(in_flight, int) or isinstance(in_flight, bool) or in_flight < 1:
            found.append(ConfigurationError(driver, "batch_in_flight", "must be an int >= 1"))
        linger = options.get("batch_linger", cls.batch_linger)
        if (
            not isinstance(linger, (int, float))
            or isinstance(linger, bool)
            or not 0 <= linger <= MAX_BATCH_LINGER
        ):
            problem = f"must be a number of seconds from 0 to {MAX_BATCH_LINGER:g}"
            found.append(ConfigurationError(driver, "batch_linger", problem))
        try:
            retry = Retry.from_options(driver, options)
        except ConfigurationError as exc:
            found.append(exc)  # its problems, one each (combine drops its traceback)
        if found:
            # raised after the except block (no __context__), out of reach of the options
            del options, own
            raise ConfigurationError.combine(found)
        at_least_once, batch = options.get("at_least_once", False), options.get("batch", True)
        return cls(retry, at_least_once, batch, in_flight, float(linger)), own


@dataclass(frozen=True, slots=True)
class Part:
    """One message to some of its channels, inside one request."""

    message: Message
    channels: tuple[str, ...]

    def __init__(self, message: Message, channels: tuple[str, ...]) -> None:
        # made for every publish: its slots are set directly (a frozen dataclass's own
        # __init__ goes through object.__setattr__ for each field, at twice the cost)
        _set_message(self, message)
        _set_channels(self, channels)


_set_message = Part.__dict__["message"].__set__
_set_channels = Part.__dict__["channels"].__set__


@dataclass(slots=True, eq=False)
class Batch:
    """What one request carries, as the core hands it to ``Driver.send`` (docs/writing-a-driver.md).

    ``parts``: its messages, each with its channels (several only when micro-batching);
    ``attempt``: 0, or n on the n-th retry; ``budget``: how many requests sending it may
    take; ``requests``: how many it took (a transport that re-sends by itself sets it).
    """

    parts: tuple[Part, ...]
    attempt: int = 0
    budget: int = 1
    requests: int = field(default=1, init=False)

    def _only(self) -> Part:
        if len(self.parts) != 1:
            raise ValueError("this request carries several messages: use .parts")
        return self.parts[0]

    @property
    def message(self) -> Message:
        """The message of a one-part batch (``ValueError`` if the request is shared)."""
        return self._only().message

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels of a one-part batch (``ValueError`` if the request is shared)."""
        return self._only().channels

    def __repr__(self) -> str:
        parts = ", ".join(f"{p.message.id}->{len(p.channels)}ch" for p in self.parts)
        return f"<Batch attempt={self.attempt} [{parts}]>"


@dataclass(frozen=True)
class Answer:
    """What the service said about one part of a request: the ``ids`` it gave the message,
    and the channels it ``refused``, each with why (it acknowledged the others)."""

    ids: tuple[str, ...] = ()
    refused: Mapping[str, PublishError] = field(default_factory=dict)


#: What ``send()`` (or ``asend()``) returns: ``None`` (all acknowledged), one Answer (a one-part
#: batch), or one Answer or PublishError per part, in order.
SendResult = Union[None, Answer, Sequence[Union[Answer, PublishError]]]
_Outcome = Union[None, Answer, PublishError]
#: A publish's attempt: its part's outcome, the requests it took, and how many of
#: them count against the retry budget (not a shared one it had to be re-sent after).
Attempt = tuple[_Outcome, int, int]
_Read = tuple[list[_Outcome], Union[PublishError, None]]  # per part, and request-wide


def per_part(driver: Driver, batch: Batch, result: object, called: str = "send") -> list[_Outcome]:
    """``send()``'s (or ``asend()``'s: ``called``) result as one outcome per part; a
    TypeError names a bad one."""
    count = len(batch.parts)
    if result is None or isinstance(result, PublishError):
        return [result] * count
    if isinstance(result, Answer):
        if count != 1:
            raise TypeError(
                f"driver {driver.name!r}: {called}() returned one Answer for a request of "
                f"{count} messages; return one per part"
            )
        _check_answer(driver, result)
        return [result]
    if (
        isinstance(result, (list, tuple))
        and len(result) == count
        and all(isinstance(item, (Answer, PublishError)) for item in result)
    ):
        for item in result:
            if isinstance(item, Answer):
                _check_answer(driver, item)
        return list(result)
    raise TypeError(
        f"driver {driver.name!r}: {called}() must return None, an Answer, or one Answer or "
        f"PublishError per part ({count}), not {type(result).__name__}"
    )


def part_size_failed(driver: Driver) -> None:
    """Log (with its traceback) that ``driver.part_size()`` raised: the publish goes alone."""
    log.warning(
        "driver %r: part_size() raised; the publish goes in a request of its own",
        driver.name,
        exc_info=True,
    )


def _check_answer(driver: Driver, answer: Answer) -> None:
    """A TypeError unless ``answer`` holds ids (text) and PublishErrors: read later, a wrong
    value would escape the outcome as an AttributeError after the request went out."""
    ids, refused = answer.ids, answer.refused
    if not isinstance(ids, tuple) or not all(isinstance(one, str) for one in ids):
        raise TypeError(f"driver {driver.name!r}: Answer.ids must be a tuple of str")
    if not isinstance(refused, Mapping) or not all(
        isinstance(channel, str) and isinstance(error, PublishError)
        for channel, error in refused.items()
    ):
        raise TypeError(
            f"driver {driver.name!r}: Answer.refused must map channel names to PublishErrors"
        )


class _SendCall(DriverCall):
    """The driver's ``send`` or ``asend``, remembering which path ran it: a message about
    what it raised or returned names the method that was called."""

    __slots__ = ("blocking",)

    def __init__(self, driver: Driver, batch: Batch) -> None:
        super().__init__(driver, "send", batch)
        self.blocking = True

    async def arun(self) -> Any:
        self.blocking = False
        return await super().arun()

    @property
    def called(self) -> str:
        """``send`` or ``asend``: the method this path called (the class's own, else its twin)."""
        return _method(type(self.driver), "send", self.blocking)[0]


def request(driver: Driver, batch: Batch) -> Flow[_Read]:
    """Send ``batch`` (one request): each part's outcome, and a request-wide error."""
    call = _SendCall(driver, batch)
    try:
        result = yield call
    except PublishError as exc:
        return [exc] * len(batch.parts), exc
    except Exception as exc:  # a driver bug (an exception its error mapping missed)
        said = (
            f"{driver.name}: {call.called}() raised {type(exc).__name__} instead of a PublishError"
        )
        cause: Exception = exc
    else:
        try:
            return per_part(driver, batch, result, call.called), None
        except TypeError as exc:  # the request went out
            said, cause = str(exc), exc
    error = PublishError(
        f"{said}; the service may or may not have the message",
        driver=driver.name,
        maybe_delivered=True,
    )
    error.__cause__ = cause
    return [error] * len(batch.parts), error


@dataclass(slots=True)
class Send(Effect):
    """A group's request: its part's outcome; with ``shared``, the async path may batch it."""

    driver: Driver
    batch: Batch
    shared: Broadcaster[Any] | None = None

    def run(self) -> Attempt:
        return _first(self.batch, run(request(self.driver, self.batch)))

    async def arun(self) -> Attempt:
        part = self.batch.parts[0]
        batcher = self.shared.batcher(part.channels) if self.shared is not None else None
        if batcher is not None:
            return await batcher.submit(part)
        return _first(self.batch, await arun(request(self.driver, self.batch)))


def _first(batch: Batch, read: _Read) -> Attempt:
    return read[0][0], batch.requests, batch.requests


@dataclass(slots=True)
class _Group:
    """What happened to one group of channels (one request and its retries)."""

    delivered: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    errors: dict[str, PublishError] = field(default_factory=dict)
    requests: int = 0


def _group(
    broadcaster: Broadcaster[Any],
    message: Message,
    channels: tuple[str, ...],
    shared: bool = False,
    first: Attempt | None = None,
    spent: int = 0,
    sent_at: float | None = None,
) -> Flow[_Group]:
    """Deliver ``message`` to one group of channels: its requests, waits and retries.

    ``first``: its first attempt, already made in a request shared with other messages
    (:func:`deliver_each`); ``spent``: requests a shared request took that could not say
    what became of this message, which is then sent alone (they count in the receipt, not
    against the retries); ``sent_at``: when that shared request went (on ``_clock``)."""
    driver = broadcaster.driver
    options = broadcaster.delivery
    # sending again what may have arrived is safe if the service drops a repeat, or allowed;
    # a service that drops repeats only for a while: while the retry is within that while
    capabilities = driver.capabilities
    resend = capabilities.deduplicates or options.at_least_once
    windowed = capabilities.dedup_window is not None and not options.at_least_once
    started = 0.0
    if windowed:  # the earliest send: the first attempt's (now, or the shared request's)
        started = _clock() if sent_at is None else sent_at
        if message.first_sent is not None:  # or an earlier one's, in epoch seconds
            started -= max(0.0, time.time() - message.first_sent)
    group = _Group(requests=spent)
    pending = channels
    attempt = used = 0
    maybe: dict[str, PublishError] = {}  # channels an attempt may already have delivered
    while True:
        if first is not None:
            sent, first = first, None
        else:
            retries = options.retry.retries
            batch = Batch((Part(message, pending),), attempt, 1 + max(0, retries - used))
            sent = yield Send(driver, batch, broadcaster if shared else None)
        shared = False  # only the first attempt rides a shared request
        outcome, requests, attempts = sent
        group.requests += requests
        used += attempts
        if outcome is None:  # every channel acknowledged (what the rest would conclude too)
            group.delivered.extend(pending)
            return group
        if isinstance(outcome, PublishError):
            refused: Mapping[str, PublishError] = dict.fromkeys(pending, outcome)
        else:
            answer = outcome or Answer()  # None: every channel acknowledged
            refused = {c: e for c, e in answer.refused.items() if c in pending}
            group.ids.extend(answer.ids)
        group.delivered.extend(c for c in pending if c not in refused)
        if maybe:  # a later certain failure cannot undo an earlier maybe-delivered attempt
            refused = {
                c: _still_unknown(e, maybe[c]) if c in maybe else e for c, e in refused.items()
            }
        maybe.update((c, e) for c, e in refused.items() if e.maybe_delivered)
        delay = options.retry.delay(attempt)
        if windowed and resend:  # the retry must reach the service inside its window
            resend = may_resend(capabilities, False, started, _clock() + delay)
        again = tuple(
            c for c, e in refused.items() if e.retryable and (resend or not e.maybe_delivered)
        )
        if not again or used > options.retry.retries:
            group.errors.update(refused)
            return group
        group.errors.update({c: e for c, e in refused.items() if c not in again})
        log.debug(_RETRYING, driver.name, message.id, len(again), delay, refused[again[0]])
        yield Sleep(delay)
        pending = again
        attempt += 1


def planned(driver: Driver, message: Message) -> Sequence[tuple[str, ...]]:
    """``driver.plan(message)``; a plan of the driver's own must be a partition of the
    message's channels (each in exactly one group), else a TypeError says what is wrong
    before any request: a channel added would be sent where nobody asked, one in two
    groups delivered twice, and no group at all failed in the core's own code."""
    plan = driver.plan(message)
    if not implements(driver, "plan"):  # the base's: a partition by construction
        return plan
    channels = message.channels
    if isinstance(plan, list) and len(plan) == 1 and plan[0] == channels:
        return plan  # the usual answer: every channel in one request
    problem = _not_a_partition(plan, channels)
    if problem is not None:
        raise TypeError(
            f"driver {driver.name!r}: plan() {problem}; each of the message's channels must "
            "be in exactly one group (nothing was sent)"
        )
    return [tuple(group) for group in plan]


def _not_a_partition(plan: object, channels: tuple[str, ...]) -> str | None:
    """What keeps ``plan`` from being a partition of ``channels`` into groups, or None."""
    if not isinstance(plan, (list, tuple)):
        return f"returned {type(plan).__name__}, not a list of channel groups"
    if not plan:
        return "returned no groups"
    wanted = set(channels)
    seen: set[str] = set()
    for group in plan:
        if not isinstance(group, (list, tuple)):
            return f"returned a group of type {type(group).__name__}, not a tuple of channels"
        if not group:
            return "returned an empty group"
        for channel in group:
            if not isinstance(channel, str):
                return f"returned a group holding {type(channel).__name__}"
            if channel in seen:
                return f"put channel {channel!r} in two groups"
            if channel not in wanted:
                return f"added channel {channel!r}, which the message does not have"
            seen.add(channel)
    missing = [channel for channel in channels if channel not in seen]
    return f"left out channel {missing[0]!r}" if missing else None


def _said(error: BaseException) -> str:
    return str(error.args[0]) if error.args else ""


def _still_unknown(last: PublishError, earlier: PublishError) -> PublishError:
    """``last`` for a channel an earlier attempt may have delivered: its outcome is unknown."""
    if last.maybe_delivered:
        return last
    error = PublishError(
        f"{_said(last)} (an earlier attempt may have delivered it: {_said(earlier)})",
        driver=last.driver,
        kind=last.kind,
        status=last.status,
        code=last.code,
        retryable=last.retryable,
        maybe_delivered=True,
        requests=last.requests,
    )
    error.__cause__ = last
    return error


def _stops_the_rest(group: _Group, channels: tuple[str, ...]) -> PublishError | None:
    """An auth failure of a whole group, none of it maybe delivered: later groups would fail
    the same way (docs/writing-a-driver.md, "Fan-outs and the early stop")."""
    if group.delivered or len(group.errors) != len(channels):
        return None
    errors = group.errors.values()
    if all(e.kind in ("auth", "permission") and not e.maybe_delivered for e in errors):
        return next(iter(errors))
    return None


def deliver(
    broadcaster: Broadcaster[Any],
    message: Message,
    *,
    plan: Sequence[tuple[str, ...]] | None = None,
    first: Attempt | None = None,
    spent: int = 0,
    sent_at: float | None = None,
) -> Flow[Receipt]:
    """Deliver ``message`` through the driver's ``send``: every channel's outcome, one receipt.

    The first group goes alone (it may share a request with other publishes), the rest
    at once or in turn, and not at all after an auth failure of a whole group. ``plan``:
    the driver's plan of it, if made already; ``first``, ``spent`` and ``sent_at``: the
    first group's first attempt made in a shared request (see :func:`_group`).
    """
    driver = broadcaster.driver
    if plan is None:
        plan = planned(driver, message)
    shared = len(plan) == 1 and first is None and not spent
    if shared:
        # the usual publish: its first attempt (which may share a request) made here, as
        # _group() would make it; acknowledged for every channel, that is the receipt, with
        # no _group() flow or state. Anything else goes on in _group() from that attempt.
        channels, options = plan[0], broadcaster.delivery
        windowed = driver.capabilities.dedup_window is not None and not options.at_least_once
        if windowed and sent_at is None:
            sent_at = _clock()  # the first send, read where _group() would read it
        budget = 1 + max(0, options.retry.retries)
        first = yield Send(driver, Batch((Part(message, channels),), 0, budget), broadcaster)
        if first[0] is None and channels == message.channels:  # (a plan may leave some out)
            return _receipt(driver, message, (), first[1])
        shared = False
    head = yield from _group(broadcaster, message, plan[0], shared, first, spent, sent_at)
    if len(plan) == 1:  # the usual case: one group, nothing after it
        return finish(driver, message, (head,))
    groups = [head]
    stop = _stops_the_rest(head, plan[0])
    rest = plan[1:]
    if stop is None and len(rest) > 1 and driver.capabilities.concurrent_requests:
        done: list[_Group] = yield Gather([_group(broadcaster, message, c) for c in rest])
        groups.extend(done)
        rest = []
    for channels in rest:
        if stop is not None:  # never sent: certainly not delivered
            groups.append(_Group(errors=dict.fromkeys(channels, stop)))
            continue
        group = yield from _group(broadcaster, message, channels)
        groups.append(group)
        stop = _stops_the_rest(group, channels)
    return finish(driver, message, groups)


def _receipt(driver: Driver, message: Message, ids: tuple[str, ...], requests: int) -> Receipt:
    """The receipt of ``message``, every channel acknowledged."""
    return Receipt(driver.name, message.event, message.channels, message.id, ids, requests)


def finish(driver: Driver, message: Message, groups: Sequence[_Group]) -> Receipt:
    """The receipt of a publish whose every channel was acknowledged; else raise one error for
    it, with each failed channel's error in its ``causes`` (the first is its ``__cause__``)."""
    channels = message.channels
    if len(groups) == 1 and not groups[0].errors:  # one group, every channel acknowledged
        (group,) = groups
        delivered = group.delivered
        if delivered == list(channels) or set(delivered).issuperset(channels):
            return _receipt(driver, message, tuple(group.ids), group.requests)
    requests = sum(group.requests for group in groups)
    errors: dict[str, PublishError] = {}
    acknowledged: set[str] = set()
    ids: list[str] = []
    for group in groups:
        errors.update(group.errors)
        acknowledged.update(group.delivered)
        ids.extend(group.ids)
    missing = [c for c in channels if c not in errors and c not in acknowledged]
    if missing:
        never = PublishError(
            f"{driver.name}: the driver's plan() did not send these channels", driver=driver.name
        )
        errors.update(dict.fromkeys(missing, never))
    if not errors:
        return _receipt(driver, message, tuple(ids), requests)
    failed = [c for c in channels if c in errors and not errors[c].maybe_delivered]
    unknown = [c for c in channels if c in errors and errors[c].maybe_delivered]
    delivered = [c for c in channels if c not in errors]
    causes = list({id(errors[c]): errors[c] for c in channels if c in errors}.values())
    first = causes[0]
    if len(causes) == 1 and not delivered:
        text = _said(first)
    else:
        said = [_said(cause) for cause in causes[:3]]
        if len(causes) > 3:
            said.append(f"and {len(causes) - 3} more errors")
        text = (
            f"{len(failed) + len(unknown)} of {len(channels)} channels not delivered: "
            + " | ".join(said)
        )
    error = PublishError(
        text,
        driver=driver.name,
        kind=first.kind,
        status=first.status,
        code=first.code,
        retryable=all(cause.retryable for cause in causes),
        delivered=delivered,
        failed=failed,
        unknown=unknown,
        requests=requests,
        causes=errors,
    )
    error.__cause__ = first
    raise error


def may_be_ones_fault(error: PublishError) -> bool:
    """Whether a shared request's error may come from only one of its messages (each is
    then sent alone, so one bad message fails alone)."""
    return not (error.maybe_delivered or error.retryable or error.kind in ("auth", "permission"))


def fits(capabilities: Capabilities, channels: int, size: int, part: Part, part_size: int) -> bool:
    """Whether ``part`` (of ``part_size`` bytes) joins a request that carries ``channels``
    channels and ``size`` bytes so far (a first part always does)."""
    if not channels:
        return True
    if channels + len(part.channels) > capabilities.batch_channels:
        return False
    limit = capabilities.batch_bytes
    return limit is None or size + part_size <= limit


def _lane(driver: Driver, batches: Sequence[Batch]) -> Flow[list[_Read]]:
    """Send ``batches`` one after the other: each one's outcomes."""
    reads = []
    for batch in batches:
        read = yield from request(driver, batch)
        reads.append(read)
    return reads


def _resumed(flow: Flow[T], effect: Effect) -> Flow[T]:
    """The rest of ``flow``, which has just yielded ``effect``."""
    while True:
        reply: Any = None
        error: Exception | None = None
        try:
            reply = yield effect
        except Exception as exc:  # thrown into the flow at its yield, as arun() does
            error = exc
        try:
            effect = flow.send(reply) if error is None else flow.throw(error)
        except StopIteration as stop:
            result: T = stop.value
            return result


def _settled(flow: Flow[T]) -> Flow[T | Exception]:
    """``flow``'s result, or the exception it raised."""
    try:
        return (yield from flow)
    except Exception as exc:
        return exc


def deliver_each(
    broadcaster: Broadcaster[Any], messages: Sequence[Message]
) -> Flow[list[Receipt | Exception]]:
    """Deliver ``messages`` as that many concurrent :func:`deliver` flows would, planned at
    once: the first attempts of the messages that fit one request share requests (packed
    as the async batcher packs concurrent publishes), at most ``batch_in_flight`` requests
    at a time; the rest (retries, fan-out, a message sent alone after its shared request
    was refused) goes on as in :func:`deliver`, concurrently. No task or future per
    message: only what needs more than its shared request runs as a flow of its own.

    Returns one result per message, in order: its Receipt, or the exception
    :func:`deliver` would raise. Calls no hook: that is the caller's business (the
    outbox relay uses it when only the core implements ``broadcasting_publish``).
    """
    driver = broadcaster.driver
    capabilities = driver.capabilities
    options = broadcaster.delivery
    results: list[Receipt | Exception | None] = [None] * len(messages)
    flows: list[tuple[int, Flow[Receipt]]] = []
    batches: list[Batch] = []
    owners: list[list[int]] = []  # each batch's messages (their index)
    share = capabilities.batches and options.batch
    budget = 1 + options.retry.retries
    parts: list[Part] = []
    taken: list[int] = []
    channels = size = 0
    for index, message in enumerate(messages):
        try:
            plan = planned(driver, message)
        except Exception as exc:  # a driver's plan() failed on this one
            results[index] = exc
            continue
        if not (share and len(plan) == 1 and len(plan[0]) <= capabilities.batch_channels):
            flows.append((index, deliver(broadcaster, message, plan=plan)))
            continue
        part = Part(message, plan[0])
        try:
            part_size = driver.part_size(part) if capabilities.batch_bytes is not None else 0
        except Exception:  # a driver's bug: it goes alone, as deliver() would send it
            part_size_failed(driver)
            flows.append((index, deliver(broadcaster, message, plan=plan)))
            continue
        if not fits(capabilities, channels, size, part, part_size):
            batches.append(Batch(tuple(parts), budget=budget))
            owners.append(taken)
            parts, taken, channels, size = [], [], 0, 0
        parts.append(part)
        taken.append(index)
        channels += len(part.channels)
        size += part_size
    if parts:
        batches.append(Batch(tuple(parts), budget=budget))
        owners.append(taken)
    sent_at = _clock()  # the shared requests go: a retry's dedup window counts from here
    if batches:
        lanes = min(options.batch_in_flight, len(batches))
        if lanes == 1:
            reads = yield from _lane(driver, batches)
        else:
            by_lane: list[list[_Read]] = yield Gather(
                [_lane(driver, batches[lane::lanes]) for lane in range(lanes)]
            )
            reads = [by_lane[n % lanes][n // lanes] for n in range(len(batches))]
        for batch, taken, (outcomes, whole) in zip(batches, owners, reads, strict=True):
            alone = whole is not None and len(taken) > 1 and may_be_ones_fault(whole)
            for index, part, outcome in zip(taken, batch.parts, outcomes, strict=True):
                message = part.message
                if outcome is None and not alone and part.channels == message.channels:
                    # every channel acknowledged at once (the usual case): what deliver()
                    # would conclude, without running it
                    results[index] = _receipt(driver, message, (), batch.requests)
                    continue
                plan = [part.channels]
                if alone:  # the shared request cannot say: this one goes alone
                    flow = deliver(
                        broadcaster, message, plan=plan, spent=batch.requests, sent_at=sent_at
                    )
                else:
                    attempt = (outcome, batch.requests, batch.requests)
                    flow = deliver(broadcaster, message, plan=plan, first=attempt, sent_at=sent_at)
                flows.append((index, flow))
    going: list[tuple[int, Flow[Receipt | Exception]]] = []
    for index, flow in flows:  # most end here, with no more requests
        try:
            effect = flow.send(None)
        except StopIteration as stop:
            results[index] = stop.value
        except Exception as exc:
            results[index] = exc
        else:
            going.append((index, _settled(_resumed(flow, effect))))
    if going:
        done: list[Receipt | Exception] = yield Gather([flow for _, flow in going])
        for (index, _), result in zip(going, done, strict=True):
            results[index] = result
    each = [result for result in results if result is not None]
    if len(each) != len(messages):  # pragma: no cover - every message has its result
        raise AssertionError("deliver_each lost a message's result")
    return each
