"""The core's delivery: a publish as requests, retries and one outcome per channel."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from broadcasting._errors import ConfigurationError, PublishError
from broadcasting._flow import DriverCall, Effect, Flow, Gather, Sleep, arun, run
from broadcasting._retry import Retry
from broadcasting._types import Message, Options, Receipt

if TYPE_CHECKING:
    from broadcasting._broadcaster import Broadcaster
    from broadcasting._driver import Driver

log = logging.getLogger("broadcasting.delivery")
_RETRYING = "%s: retrying message %s to %d channel(s) in %.3f s after: %s"


@dataclass(frozen=True)
class Capabilities:
    """What one request to a driver's service can carry; the core plans around it.

    ``None``: no limit. ``batch_channels`` above 1: several messages may share a request,
    up to ``batch_bytes`` as :meth:`Driver.part_size` counts them. ``deduplicates``: the
    service drops a message id it already has (docs/writing-a-driver.md, section 6).
    """

    channels_per_request: int | None = None
    batch_channels: int = 0
    batch_bytes: int | None = None
    deduplicates: bool = False
    concurrent_requests: bool = True

    @property
    def batches(self) -> bool:
        """Whether several messages can share one request."""
        return self.batch_channels > 1


#: Options every network driver accepts in its ``DRIVERS`` entry; the core reads them.
DELIVERY_OPTIONS = frozenset(
    {"retries", "retry_backoff", "retry_max_backoff", "at_least_once", "batch", "batch_in_flight"}
)


@dataclass(frozen=True)
class DeliveryOptions:
    """The user's delivery options for one driver (docs/publishing.md#delivery-options):
    ``retry`` holds ``retries``, ``retry_backoff`` and ``retry_max_backoff``."""

    retry: Retry = field(default_factory=Retry)
    at_least_once: bool = False
    batch: bool = True
    batch_in_flight: int = 4

    @classmethod
    def from_options(
        cls, driver: str, options: Mapping[str, Any]
    ) -> tuple[DeliveryOptions, Options]:
        """The delivery options in ``options``, and the driver's own options."""
        own = Options({k: v for k, v in options.items() if k not in DELIVERY_OPTIONS})
        if len(own) == len(options):
            return cls(), own
        for key in ("at_least_once", "batch"):
            if not isinstance(options.get(key, False), bool):
                raise ConfigurationError(driver, key, "must be True or False")
        in_flight = options.get("batch_in_flight", cls.batch_in_flight)
        if not isinstance(in_flight, int) or isinstance(in_flight, bool) or in_flight < 1:
            raise ConfigurationError(driver, "batch_in_flight", "must be an int >= 1")
        retry = Retry.from_options(driver, options)
        at_least_once, batch = options.get("at_least_once", False), options.get("batch", True)
        return cls(retry, at_least_once, batch, in_flight), own


@dataclass(frozen=True, slots=True)
class Part:
    """One message to some of its channels, inside one request."""

    message: Message
    channels: tuple[str, ...]


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


#: What ``send()`` returns: ``None`` (all acknowledged), one Answer (a one-part
#: batch), or one Answer or PublishError per part, in order.
SendResult = Union[None, Answer, Sequence[Union[Answer, PublishError]]]
_Outcome = Union[None, Answer, PublishError]
#: A publish's attempt: its part's outcome, the requests it took, and how many of
#: them count against the retry budget (not a shared one it had to be re-sent after).
Attempt = tuple[_Outcome, int, int]
_Read = tuple[list[_Outcome], Union[PublishError, None]]  # per part, and request-wide


def per_part(driver: Driver, batch: Batch, result: object) -> list[_Outcome]:
    """``send()``'s result as one outcome per part; a TypeError names a bad one."""
    count = len(batch.parts)
    if result is None or isinstance(result, PublishError):
        return [result] * count
    if isinstance(result, Answer):
        if count != 1:
            raise TypeError(
                f"driver {driver.name!r}: send() returned one Answer for a request of "
                f"{count} messages; return one per part"
            )
        return [result]
    if (
        isinstance(result, (list, tuple))
        and len(result) == count
        and all(isinstance(item, (Answer, PublishError)) for item in result)
    ):
        return list(result)
    raise TypeError(
        f"driver {driver.name!r}: send() must return None, an Answer, or one Answer or "
        f"PublishError per part ({count}), not {type(result).__name__}"
    )


def request(driver: Driver, batch: Batch) -> Flow[_Read]:
    """Send ``batch`` (one request): each part's outcome, and a request-wide error."""
    try:
        result = yield DriverCall(driver, "send", batch)
    except PublishError as exc:
        return [exc] * len(batch.parts), exc
    except Exception as exc:  # a driver bug (an exception its error mapping missed)
        said = f"{driver.name}: send() raised {type(exc).__name__} instead of a PublishError"
        cause: Exception = exc
    else:
        try:
            return per_part(driver, batch, result), None
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


@dataclass
class _Group:
    """What happened to one group of channels (one request and its retries)."""

    delivered: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    errors: dict[str, PublishError] = field(default_factory=dict)
    requests: int = 0


def _group(
    broadcaster: Broadcaster[Any], message: Message, channels: tuple[str, ...], shared: bool = False
) -> Flow[_Group]:
    """Deliver ``message`` to one group of channels: its requests, waits and retries."""
    driver = broadcaster.driver
    options = broadcaster.delivery
    # sending again what may have arrived is safe if the service drops a repeat, or allowed
    resend = driver.capabilities.deduplicates or options.at_least_once
    group = _Group()
    pending = channels
    attempt = used = 0
    maybe: dict[str, PublishError] = {}  # channels an attempt may already have delivered
    while True:
        batch = Batch((Part(message, pending),), attempt, 1 + max(0, options.retry.retries - used))
        sent: Attempt = yield Send(driver, batch, broadcaster if shared else None)
        shared = False  # only the first attempt rides a shared request
        outcome, requests, attempts = sent
        group.requests += requests
        used += attempts
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
        again = tuple(
            c for c, e in refused.items() if e.retryable and (resend or not e.maybe_delivered)
        )
        if not again or used > options.retry.retries:
            group.errors.update(refused)
            return group
        group.errors.update({c: e for c, e in refused.items() if c not in again})
        delay = options.retry.delay(attempt)
        log.debug(_RETRYING, driver.name, message.id, len(again), delay, refused[again[0]])
        yield Sleep(delay)
        pending = again
        attempt += 1


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
    """An auth failure of a whole group: later groups would fail the same way."""
    if group.delivered or len(group.errors) != len(channels):
        return None
    error = next(iter(group.errors.values()))
    return error if error.kind in ("auth", "permission") and not error.maybe_delivered else None


def deliver(broadcaster: Broadcaster[Any], message: Message) -> Flow[Receipt]:
    """Deliver ``message`` through the driver's ``send``: every channel's outcome, one receipt.

    The first group goes alone (it may share a request with other publishes), the rest
    at once or in turn, and not at all after an auth failure of a whole group.
    """
    driver = broadcaster.driver
    plan = driver.plan(message)
    first = yield from _group(broadcaster, message, plan[0], shared=len(plan) == 1)
    groups = [first]
    stop = _stops_the_rest(first, plan[0])
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


def finish(driver: Driver, message: Message, groups: Sequence[_Group]) -> Receipt:
    """The receipt of a publish whose every channel was acknowledged; else raise one error for
    it, with each failed channel's error in its ``causes`` (the first is its ``__cause__``)."""
    requests = sum(group.requests for group in groups)
    errors: dict[str, PublishError] = {}
    acknowledged: set[str] = set()
    ids: list[str] = []
    for group in groups:
        errors.update(group.errors)
        acknowledged.update(group.delivered)
        ids.extend(group.ids)
    channels = message.channels
    missing = [c for c in channels if c not in errors and c not in acknowledged]
    if missing:
        never = PublishError(
            f"{driver.name}: the driver's plan() did not send these channels", driver=driver.name
        )
        errors.update(dict.fromkeys(missing, never))
    if not errors:
        return Receipt(driver.name, message.event, channels, message.id, tuple(ids), requests)
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
