"""Delivery: the core's policy for turning one publish into requests and one outcome.

A driver that implements ``send()`` / ``asend()`` sends *one request* and says
what the service answered. Everything else happens here, the same way for
every driver:

* the channel list is split into requests (:meth:`Driver.plan`, by default
  ``Capabilities.channels_per_request`` channels each); the first goes
  alone, the others at the same time;
* every channel ends as *delivered*, *failed* (certainly not delivered) or
  *unknown* (the service may have it), and a publish that is not delivered
  everywhere raises one :class:`~broadcasting.PublishError` saying which;
* retries: an error is retried (same message id, full-jitter backoff, at most
  ``retries`` times) only if it is ``retryable`` and either certainly not
  delivered, or the service de-duplicates by message id
  (``Capabilities.deduplicates``), or the user opted into ``at_least_once``.
  With the defaults nothing is ever delivered twice by a retry of ours;
* micro-batching (async, see :mod:`broadcasting._batcher`) is only an
  optimisation of a publish's first attempt: a shared request that fails for
  a reason that may belong to one publish is re-sent one publish at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from broadcasting._errors import ConfigurationError, PublishError
from broadcasting._flow import DriverCall, Effect, Flow, Gather, Sleep
from broadcasting._retry import Retry
from broadcasting._types import Message, Options, Receipt

if TYPE_CHECKING:
    from broadcasting._broadcaster import Broadcaster
    from broadcasting._driver import Driver


@dataclass(frozen=True)
class Capabilities:
    """What a driver's service can do with one request; the core plans around it.

    Attributes:
        channels_per_request: channels one message can address in one request
            (``None``: any number). Longer lists are split.
        batch_channels: channels, added up over several messages, that one
            shared request can carry; ``0`` or ``1`` means the service has no
            way to send several messages in one request (no micro-batching).
        batch_bytes: bytes one shared request can carry, as
            :meth:`Driver.part_size` measures each part (``None``: no limit).
        deduplicates: the service drops a message whose id it has already
            accepted, so re-sending after an unknown outcome is safe.
        concurrent_requests: a fan-out's requests may go out at the same time
            (async: as tasks on the loop; sync: the caller's thread and a small
            shared pool of threads); otherwise one after another.
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
DEFAULT_BATCH_IN_FLIGHT = 4


@dataclass(frozen=True)
class DeliveryOptions:
    """How the core delivers through one connected driver (the user's delivery options).

    Attributes:
        retry: retries of a retryable failure (``retries``, ``retry_backoff``,
            ``retry_max_backoff``).
        at_least_once: also retry an *unknown* outcome on a service that does
            not de-duplicate. A subscriber may then receive a publish twice.
        batch: async micro-batching, for drivers whose service can share a
            request between messages.
        batch_in_flight: requests a loop keeps under way before publishes that
            wait share one.
    """

    retry: Retry = field(default_factory=Retry)
    at_least_once: bool = False
    batch: bool = True
    batch_in_flight: int = DEFAULT_BATCH_IN_FLIGHT

    @classmethod
    def from_options(
        cls, driver: str, options: Mapping[str, Any]
    ) -> tuple[DeliveryOptions, Options]:
        """Read the delivery options out of ``options``; return them and the driver's own."""
        own = Options({k: v for k, v in options.items() if k not in DELIVERY_OPTIONS})
        if len(own) == len(options):
            return _DEFAULT_OPTIONS, own
        flags = {}
        for key, default in (("at_least_once", False), ("batch", True)):
            value = options.get(key, default)
            if not isinstance(value, bool):
                raise ConfigurationError(driver, key, "must be True or False")
            flags[key] = value
        in_flight = options.get("batch_in_flight", DEFAULT_BATCH_IN_FLIGHT)
        if not isinstance(in_flight, int) or isinstance(in_flight, bool) or in_flight < 1:
            raise ConfigurationError(driver, "batch_in_flight", "must be an int >= 1")
        return (
            cls(
                Retry.from_options(driver, options),
                flags["at_least_once"],
                flags["batch"],
                in_flight,
            ),
            own,
        )


_DEFAULT_OPTIONS = DeliveryOptions()

log = logging.getLogger("broadcasting.delivery")


@dataclass(frozen=True, slots=True)
class Part:
    """One message to some of its channels, inside one request."""

    message: Message
    channels: tuple[str, ...]


class Batch:
    """What one request carries, as the core hands it to ``Driver.send``.

    Attributes:
        parts: the messages of the request, each with the channels it goes to
            in this request. Usually one; several when micro-batching.
        attempt: ``0`` for a first attempt, ``n`` for the n-th retry.
        budget: how many requests sending it may take: 1, plus the retries
            the user's delivery options still allow this publish.
        requests: how many requests sending it took. A driver whose transport
            already re-sends by itself (to fallback hosts, say) sets it, so
            the core counts those against the retry budget and the receipt;
            such a transport makes at most ``budget`` requests.
    """

    __slots__ = ("attempt", "budget", "parts", "requests")

    def __init__(self, parts: tuple[Part, ...], attempt: int = 0, budget: int = 1) -> None:
        self.parts = parts
        self.attempt = attempt
        self.budget = budget
        self.requests = 1

    @property
    def message(self) -> Message:
        """The message of a one-part batch (``ValueError`` if the request is shared)."""
        if len(self.parts) != 1:
            raise ValueError("this request carries several messages: use .parts")
        return self.parts[0].message

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels of a one-part batch (``ValueError`` if the request is shared)."""
        if len(self.parts) != 1:
            raise ValueError("this request carries several messages: use .parts")
        return self.parts[0].channels

    def __repr__(self) -> str:
        parts = ", ".join(f"{p.message.id}->{len(p.channels)}ch" for p in self.parts)
        return f"<Batch attempt={self.attempt} [{parts}]>"


@dataclass(frozen=True)
class Answer:
    """What the service said about one part of a request.

    Channels not in ``refused`` were acknowledged.

    Attributes:
        ids: ids the service gave the message (event ids, serials), if any.
        refused: channels the service did not acknowledge, each with why.
    """

    ids: tuple[str, ...] = ()
    refused: Mapping[str, PublishError] = field(default_factory=dict)


#: What ``send()`` returns: ``None`` (all acknowledged), one Answer (a one-part
#: batch), or one Answer or PublishError per part, in order.
SendResult = Union[None, Answer, Sequence[Union[Answer, PublishError]]]
_Outcome = Union[None, Answer, PublishError]
#: A publish's attempt as a flow sees it: the part's outcome, the requests it took,
#: and how many of them count against the retry budget (a shared first attempt whose
#: publish had to be re-sent alone does not).
Attempt = tuple[_Outcome, int, int]


# -- one request --------------------------------------------------------------------


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


class Send(Effect):
    """One request: ``driver.send(batch)`` (or ``asend``), as each part's outcome.

    With ``shared`` (a publish's first attempt), the request may be shared on
    the async path with other publishes waiting on the same loop (the
    broadcaster's batcher decides; see :mod:`broadcasting._batcher`).
    """

    __slots__ = ("batch", "driver", "shared")

    def __init__(
        self, driver: Driver, batch: Batch, shared: Broadcaster[Any] | None = None
    ) -> None:
        self.driver = driver
        self.batch = batch
        self.shared = shared

    def run(self) -> Attempt:
        try:
            result = DriverCall(self.driver, "send", self.batch).run()
        except Exception as exc:
            return _first(self.batch, _failed(self.driver, self.batch, exc))
        return _first(self.batch, _read(self.driver, self.batch, result))

    async def arun(self) -> Attempt:
        part = self.batch.parts[0]
        batcher = self.shared.batcher(part.channels) if self.shared is not None else None
        if batcher is not None:
            return await batcher.submit(part)
        outcomes, _ = await send_async(self.driver, self.batch)
        return _first(self.batch, (outcomes, None))


async def send_async(driver: Driver, batch: Batch) -> tuple[list[_Outcome], PublishError | None]:
    """Send ``batch`` from async code: each part's outcome and a request-wide error."""
    try:
        result = await DriverCall(driver, "send", batch).arun()
    except Exception as exc:
        return _failed(driver, batch, exc)
    return _read(driver, batch, result)


def _first(batch: Batch, read: tuple[list[_Outcome], PublishError | None]) -> Attempt:
    return read[0][0], batch.requests, batch.requests


def _failed(
    driver: Driver, batch: Batch, exc: Exception
) -> tuple[list[_Outcome], PublishError | None]:
    error = exc if isinstance(exc, PublishError) else _unexpected(driver, exc)
    return [error] * len(batch.parts), error


def _read(
    driver: Driver, batch: Batch, result: object
) -> tuple[list[_Outcome], PublishError | None]:
    """Each part's outcome from what ``send()`` returned; an unreadable result is a bug."""
    try:
        return per_part(driver, batch, result), None
    except TypeError as exc:  # the request went out: its outcome is unknown
        error = PublishError(
            f"{exc}; the service may or may not have the message",
            driver=driver.name,
            maybe_delivered=True,
        )
        error.__cause__ = exc
        return [error] * len(batch.parts), error


def _unexpected(driver: Driver, exc: Exception) -> PublishError:
    """A driver bug (an exception its error mapping missed), as an unknown outcome."""
    error = PublishError(
        f"{driver.name}: send() raised {type(exc).__name__} instead of a PublishError; "
        "the service may or may not have the message",
        driver=driver.name,
        maybe_delivered=True,
    )
    error.__cause__ = exc
    return error


# -- one group of channels, with its retries ------------------------------------------


@dataclass
class _Group:
    """What happened to one group of channels (one request and its retries)."""

    delivered: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    errors: dict[str, PublishError] = field(default_factory=dict)
    requests: int = 0


def may_retry(error: PublishError, capabilities: Capabilities, options: DeliveryOptions) -> bool:
    """Whether the core may send again what ``error`` answered, by the rules above."""
    if not error.retryable:
        return False
    return not error.maybe_delivered or capabilities.deduplicates or options.at_least_once


def _group(
    broadcaster: Broadcaster[Any],
    message: Message,
    channels: tuple[str, ...],
    shared: bool = False,
) -> Flow[_Group]:
    """Deliver ``message`` to one group of channels: its requests, waits and retries."""
    driver = broadcaster.driver
    options = broadcaster.delivery
    capabilities = driver.capabilities
    group = _Group()
    pending = channels
    attempt = used = 0
    maybe: dict[str, PublishError] = {}  # channels an attempt may already have delivered
    while True:
        budget = 1 + max(0, options.retry.retries - used)
        batch = Batch((Part(message, pending),), attempt, budget)
        sent: Attempt = yield Send(driver, batch, broadcaster if shared else None)
        shared = False  # only the first attempt rides a shared request
        outcome, requests, attempts = sent
        group.requests += requests
        used += attempts
        if outcome is None:
            group.delivered.extend(pending)
            return group
        if isinstance(outcome, PublishError):
            refused: Mapping[str, PublishError] = dict.fromkeys(pending, outcome)
        else:
            refused = {c: e for c, e in outcome.refused.items() if c in pending}
            group.ids.extend(outcome.ids)
            group.delivered.extend(c for c in pending if c not in refused)
        if maybe:  # a later certain failure cannot undo an earlier maybe-delivered attempt
            refused = {
                c: _still_unknown(e, maybe[c]) if c in maybe else e for c, e in refused.items()
            }
        maybe.update((c, e) for c, e in refused.items() if e.maybe_delivered)
        again = tuple(c for c, e in refused.items() if may_retry(e, capabilities, options))
        if not again or used > options.retry.retries:
            group.errors.update(refused)
            return group
        group.errors.update({c: e for c, e in refused.items() if c not in again})
        delay = options.retry.delay(attempt)
        log.debug(
            "%s: retrying message %s to %d channel(s) in %.3f s after: %s",
            driver.name,
            message.id,
            len(again),
            delay,
            refused[again[0]],
        )
        yield Sleep(delay)
        pending = again
        attempt += 1


def _still_unknown(last: PublishError, earlier: PublishError) -> PublishError:
    """``last`` for a channel an earlier attempt may have delivered: its outcome is unknown."""
    if last.maybe_delivered:
        return last
    text = str(last.args[0]) if last.args else ""
    before = str(earlier.args[0]) if earlier.args else ""
    error = PublishError(
        f"{text} (an earlier attempt may have delivered it: {before})",
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


# -- a whole publish ----------------------------------------------------------------


def _stops_the_rest(group: _Group, channels: tuple[str, ...]) -> PublishError | None:
    """An authentication failure of a whole group: later groups would fail the same way."""
    if group.delivered or len(group.errors) != len(channels):
        return None
    error = next(iter(group.errors.values()))
    if error.kind in ("auth", "permission") and not error.maybe_delivered:
        return error
    return None


def deliver(broadcaster: Broadcaster[Any], message: Message) -> Flow[Receipt]:
    """Deliver ``message`` through the driver's ``send``: every channel's outcome, one receipt.

    The first group of channels goes first (alone, it may share a request
    with other publishes: see :mod:`broadcasting._batcher`). If an
    authentication failure ends it, the others are not sent: they would fail
    the same way. Otherwise they go out at the same time when the driver
    allows concurrent requests, else one after another.
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
    """The receipt of a publish whose every channel was acknowledged; else raise."""
    requests = sum(group.requests for group in groups)
    if len(groups) == 1 and not groups[0].errors:
        return Receipt(
            driver.name, message.event, message.channels, message.id, tuple(groups[0].ids), requests
        )
    errors: dict[str, PublishError] = {}
    delivered: set[str] = set()
    ids = []
    for group in groups:
        errors.update(group.errors)
        delivered.update(group.delivered)
        ids.extend(group.ids)
    missing = [c for c in message.channels if c not in errors and c not in delivered]
    if missing:
        never = PublishError(
            f"{driver.name}: the driver's plan() did not send these channels",
            driver=driver.name,
        )
        errors.update(dict.fromkeys(missing, never))
    if not errors:
        return Receipt(
            driver.name, message.event, message.channels, message.id, tuple(ids), requests
        )
    raise publish_error(driver.name, message.channels, errors, requests)


def publish_error(
    driver: str, channels: Sequence[str], errors: Mapping[str, PublishError], requests: int
) -> PublishError:
    """One error for a publish from each failed channel's error (the first is the cause)."""
    failed = [c for c in channels if c in errors and not errors[c].maybe_delivered]
    unknown = [c for c in channels if c in errors and errors[c].maybe_delivered]
    delivered = [c for c in channels if c not in errors]
    causes = list({id(errors[c]): errors[c] for c in channels if c in errors}.values())
    first = causes[0]
    if len(causes) == 1 and not delivered:
        text = str(first.args[0]) if first.args else ""
    else:
        said = [str(cause.args[0]) if cause.args else "" for cause in causes[:3]]
        if len(causes) > 3:
            said.append(f"and {len(causes) - 3} more errors")
        text = (
            f"{len(failed) + len(unknown)} of {len(channels)} channels not delivered: "
            + " | ".join(said)
        )
    error = PublishError(
        text,
        driver=driver,
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
    return error
