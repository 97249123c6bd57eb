"""What the task-queue plugins share (Celery, RQ, Dramatiq): written once, used by all three.

- the task's payload: a validated message as JSON-safe values (:func:`encode`, :class:`Job`);
- the producer's side: :class:`QueuePlugin` takes ``send="<queue>"`` publishes from the
  ``broadcasting_defer`` hook and enqueues them, on commit when a transaction is open;
- the journal of attempts that keeps a redelivered task from publishing twice
  (:class:`Journal`, :class:`RedisJournal`), and the policy that reads and writes it
  (:func:`begin`, :func:`finish`: pure functions);
- the worker's side: :func:`perform` runs one task and says what the queue is to do next:
  nothing (done), :class:`TaskRetry` (later, with the queue's own backoff) or
  :class:`TaskFailed` (never again: the queue's failed registry or dead letters).

Each queue module adds only how it enqueues and how its task reads its retry count.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, TypeVar
from urllib.parse import parse_qs, urlsplit

from broadcasting import _background
from broadcasting._delivery import may_resend
from broadcasting._errors import BroadcastError, ConfigurationError, InputError, PublishError
from broadcasting._flow import Effect, Flow, drive, run
from broadcasting._retry import Retry
from broadcasting._types import Message, Receipt
from broadcasting._validate import build_message
from broadcasting.hookspecs import hookimpl

if TYPE_CHECKING:
    from broadcasting._background import Transaction
    from broadcasting._broadcast import Broadcast
    from broadcasting._broadcaster import Broadcaster
    from broadcasting._driver import Driver

log = logging.getLogger("broadcasting.queue")

#: The payload's format; a worker refuses one it does not know.
VERSION = 1
#: How long a journal entry is kept, in seconds (longer than any redelivery takes).
JOURNAL_TTL = 86_400.0
#: The longest ``journal_ttl``: a hundred years (Redis takes expiries of up to 292 million).
MAX_JOURNAL_TTL = 100 * 365 * 86_400.0
JOURNAL_PREFIX = "broadcasting:journal:"
#: How long a journal made from a URL waits for Redis (to connect, and for each answer), in s.
REDIS_TIMEOUT = 5.0
#: The wait before trying again when the queue did not say how it retries.
_FALLBACK_RETRY = Retry(retries=1, backoff=1.0, max_backoff=60.0)

P = TypeVar("P", bound="QueuePlugin")


# --- the payload ------------------------------------------------------------------------------


def encode(broadcaster: Broadcaster[Any], message: Message) -> dict[str, Any]:
    """The task's payload for ``message``: JSON-safe values a worker rebuilds it from.

    The worker finds the driver by name, so a ``with_options()`` variant (whose options live
    only in this process) is refused.
    """
    try:
        named = broadcaster._broadcast.driver(broadcaster.name)
    except BroadcastError:  # a Driver class that no installed plugin provides
        named = None
    if named is not broadcaster:
        raise InputError(
            f"send={message.via!r}: a with_options() variant of {broadcaster.name!r} cannot "
            "be sent through a queue: the worker connects the driver by its name, with the "
            "options of the configuration (a subclass of the driver with a name of its "
            "own, registered in every process: docs/background.md#settings)"
        )
    return {
        "v": VERSION,
        "driver": broadcaster.name,
        "channels": list(message.channels),
        "event": message.event,
        "text": message.text,
        "kind": "text" if isinstance(message.data, str) else "json",
        "socket_id": message.socket_id,
        "id": message.id,
    }


@dataclass(frozen=True)
class Job:
    """A task's payload, read back by a worker."""

    driver: str
    channels: tuple[str, ...]
    event: str
    text: str
    kind: str
    socket_id: str | None
    id: str

    @classmethod
    def decode(cls, payload: object) -> Job:
        """Read ``payload``; :class:`TaskFailed` if it is not a payload of this version."""
        try:
            if not isinstance(payload, Mapping) or type(payload.get("v")) is not int:
                raise TypeError("not a version-1 payload")
            if payload["v"] != VERSION:
                raise TypeError("not a version-1 payload")
            channels = payload["channels"]
            if not isinstance(channels, (list, tuple)) or not channels:
                raise TypeError("channels is not a list of names")  # a str would be letters
            job = cls(
                payload["driver"],
                tuple(channels),
                payload["event"],
                payload["text"],
                payload["kind"],
                payload["socket_id"],
                payload["id"],
            )
            strings = (job.driver, job.event, job.text, job.id, *job.channels)
            if not all(isinstance(s, str) for s in strings) or job.kind not in ("text", "json"):
                raise TypeError("a field has the wrong type")
            if job.socket_id is not None and not isinstance(job.socket_id, str):
                raise TypeError("socket_id is not a str")
            if not job.id:  # the journal's key: every empty id would share one entry
                raise TypeError("id is empty")
            if job.kind == "json":
                json.loads(job.text)  # read again by message(): a bad text fails here, typed
        except (KeyError, TypeError, ValueError, RecursionError) as exc:
            raise TaskFailed(
                f"the task's payload is not a broadcasting message ({exc}); was it sent by "
                "another version of broadcasting?",
                message_id=str(payload.get("id")) if isinstance(payload, Mapping) else "",
                outcome="failed",
            ) from None
        return job

    def message(self, driver: Driver, via: str) -> Message:
        """The message again, validated by the worker's driver, with the same id.

        The channel-name rule is not applied again (``reserved``): the producer applied it,
        and ``send_to_user()``'s channel is one the driver named itself, outside that rule
        (Pusher's ``#server-to-user-<id>``)."""
        data = json.loads(self.text) if self.kind == "json" else self.text
        message = build_message(
            driver, list(self.channels), data, self.event, self.socket_id, reserved=True
        )
        message.id = self.id
        message.via = via
        return message


# --- the journal --------------------------------------------------------------------------------


class Journal(Protocol):
    """Where a worker notes each attempt of a message, by message id (an atomic key-value store)."""

    def update(
        self, message_id: str, change: Callable[[str | None], str | None], ttl: float
    ) -> str | None:
        """Atomically read the entry of ``message_id``, write ``change(entry)`` unless it is
        ``None`` (kept ``ttl`` seconds), and return the entry read (``None``: there was none).
        ``change`` is pure: it may be called again if another worker wrote meanwhile."""
        ...

    def put(self, message_id: str, entry: str, ttl: float) -> None:
        """Write the entry of ``message_id``, kept ``ttl`` seconds."""
        ...


class RedisJournal:
    """A :class:`Journal` in Redis: one key per message, ``prefix`` + its id, that expires.

    ``redis``: a ``redis.Redis`` client, or a URL (``"redis://127.0.0.1:6379/0"``). The
    client connects on first use. A client made from a URL waits at most
    :data:`REDIS_TIMEOUT` seconds to connect and for each answer, as redis-py 8 does by
    default (redis-py 4 to 7 wait for ever: a Redis that hangs would hold the task for
    ever), unless the URL's query sets its own (``?socket_timeout=2``); a client passed in
    keeps its own settings.
    """

    def __init__(self, redis: Any, *, prefix: str = JOURNAL_PREFIX) -> None:
        self.prefix = prefix
        if isinstance(redis, str):
            unread = False
            try:
                redis = _redis_client(redis)
            except ValueError:  # "Port could not be cast to integer value as '<password>'"
                unread = True
            if unread:
                # raised out of the except clause, with no local holding the URL: its error
                # quotes what it took for the port, part of a password with a '/', '?' or '#'
                del redis
                raise ConfigurationError(
                    "config",
                    "journal",
                    "RedisJournal: redis-py cannot read the URL (a redis://, rediss:// or "
                    "unix:// URL; percent-encode '@', '/', '?', '#' and '%' in its user name "
                    "and password: %40, %2F...)",
                )
        self.client = redis

    def update(
        self, message_id: str, change: Callable[[str | None], str | None], ttl: float
    ) -> str | None:
        """See :meth:`Journal.update` (WATCH, GET, MULTI, SET, EXEC: retried on a conflict)."""
        key = self.prefix + message_id

        def attempt(pipe: Any) -> str | None:
            found = _text(pipe.get(key))
            entry = change(found)
            if entry is not None:
                pipe.multi()
                pipe.set(key, entry, px=max(1, int(ttl * 1000)))
            return found

        found: str | None = self.client.transaction(attempt, key, value_from_callable=True)
        return found

    def put(self, message_id: str, entry: str, ttl: float) -> None:
        """See :meth:`Journal.put`."""
        self.client.set(self.prefix + message_id, entry, px=max(1, int(ttl * 1000)))

    def read(self, message_id: str) -> str | None:
        """The entry of ``message_id`` as it is (for tests and tools)."""
        return _text(self.client.get(self.prefix + message_id))

    def __repr__(self) -> str:  # the client's repr may show a password in its URL
        return f"<RedisJournal prefix={self.prefix!r}>"


def _redis_client(url: str) -> Any:
    """A ``redis.Redis`` for ``url``, with :data:`REDIS_TIMEOUT` unless its query sets one."""
    import redis as redis_py

    given = parse_qs(urlsplit(url).query)
    timeouts = {"socket_timeout": REDIS_TIMEOUT}
    if not url.startswith("unix:"):  # redis-py 4 has no connect timeout for a Unix socket
        timeouts["socket_connect_timeout"] = REDIS_TIMEOUT
    return redis_py.Redis.from_url(
        url, **{name: value for name, value in timeouts.items() if name not in given}
    )


def _text(value: object) -> str | None:
    return value.decode("utf-8") if isinstance(value, bytes) else value  # type: ignore[return-value]


# An entry is "<state> <JSON list of channels>[ <since>[ <JSON list of channels>]]": the
# channels the state is about; for "sending" (and a "retry" that re-sends what may have
# arrived) when they were first sent (epoch seconds): a service that drops repeats for a while
# (Ably) drops them only then; and for a "retry" of which only some may have arrived, those
# (the others certainly were not delivered: sent again whatever the time). A "retry" with a
# time and no second list (all an earlier version wrote) is about channels that all may have
# arrived.
SENDING = "sending"  # an attempt is publishing these channels (or died doing so)
RETRY = "retry"  # these channels are to be sent again (certainly not delivered, or resendable)
DONE = "done"  # delivered (every channel)
FAILED = "failed"  # certainly not delivered, and never will be (some channels may have been)
UNKNOWN = "unknown"  # may have been delivered: not sent again, reported

_decode = json.JSONDecoder().raw_decode


def _json(channels: Sequence[str]) -> str:
    return json.dumps(list(channels), separators=(",", ":"))


def entry(
    state: str,
    channels: Sequence[str],
    since: float | None = None,
    maybe: Sequence[str] | None = None,
) -> str:
    """A journal entry (``since``: when the channels were first sent, if it matters;
    ``maybe``: of a "retry" whose channels are not all of one kind, those that may have
    arrived, first sent at ``since``)."""
    text = f"{state} {_json(channels)}"
    if since is None:
        return text
    return f"{text} {since!r}" if maybe is None else f"{text} {since!r} {_json(maybe)}"


def parse(text: str) -> tuple[str, tuple[str, ...]]:
    """An entry's state and channels."""
    state, _, rest = text.partition(" ")
    return state, tuple(_decode(rest)[0]) if rest else ()


def _after(text: str) -> tuple[str, str]:
    """An entry's time and what follows it (empty where it has none)."""
    rest = text.partition(" ")[2]
    if not rest:
        return "", ""
    since, _, more = rest[_decode(rest)[1] :].strip().partition(" ")
    return since, more.strip()


def since_of(text: str | None) -> float | None:
    """When an entry's channels were first sent, if it says (entries of older versions and
    certain failures do not)."""
    since = _after(text)[0] if text else ""
    return float(since) if since else None


def maybe_of(text: str) -> tuple[str, ...]:
    """Of an entry's channels, those that may have arrived at its first send (all of them
    when it has a time but no list of them, none when it has no time)."""
    since, more = _after(text)
    if not since:
        return ()
    return tuple(_decode(more)[0]) if more else parse(text)[1]


# --- the policy (pure) ------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """What a worker does with a task, given the journal: ``entry`` to write first (``None``:
    none), ``send`` the channels to publish (first sent at ``since``; ``maybe``: those of
    them an earlier attempt may have delivered), else ``outcome`` (``"done"``: nothing to do;
    ``"unknown"``/``"failed"``: fail the task without retry) and why; ``unknown``: channels
    not sent again although others are (they may have arrived, and the service would no
    longer drop the copy), to report as ``reason`` says."""

    entry: str | None
    send: tuple[str, ...] = ()
    outcome: str = ""
    reason: str = ""
    since: float | None = None
    maybe: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()


_WINDOW_PASSED = (
    "an earlier attempt may have delivered it, and the service drops a repeat only for a "
    "while after the first send, which has passed: it is not sent again"
)


def begin(
    found: str | None,
    channels: Sequence[str],
    resend: bool | Callable[[float | None], bool],
    now: float | None = None,
) -> Start:
    """What to do with a task whose journal entry is ``found``, at time ``now``; ``resend``:
    sending what may have arrived is allowed (the driver de-duplicates, or ``at_least_once``
    is on), or a function of when it was first sent that says so now."""
    if found is None:
        return Start(entry(SENDING, channels, now), tuple(channels), since=now)
    state, noted = parse(found)
    since = since_of(found)
    if state == RETRY:
        maybe = maybe_of(found)
        if since is None or not maybe:  # certainly not delivered: their first send that counts
            return Start(entry(SENDING, noted, now), noted, since=now)
        if resend(since) if callable(resend) else resend:
            return Start(entry(SENDING, noted, since), noted, since=since, maybe=maybe)
        sure = tuple(channel for channel in noted if channel not in maybe)
        if sure:  # certainly not delivered: sent whatever the time; the others are held
            return Start(
                entry(SENDING, sure, now), sure, reason=_WINDOW_PASSED, since=now, unknown=maybe
            )
        return Start(entry(UNKNOWN, noted), outcome=UNKNOWN, reason=_WINDOW_PASSED)
    if state == SENDING:
        if resend(since) if callable(resend) else resend:
            why = "an earlier attempt did not finish: sent again"
            return Start(None, noted, reason=why, since=since, maybe=noted)
        why = (
            "an earlier attempt of this task started publishing and did not finish (its "
            "worker died or lost its connection): the service may have it, so it is not "
            "sent again"
        )
        if resend is not False and since is not None:
            why = f"{why} (the service's de-duplication window has passed)"
        return Start(entry(UNKNOWN, noted), outcome=UNKNOWN, reason=why)
    if state == DONE:
        return Start(None, outcome=DONE, reason="already delivered by an earlier attempt")
    return Start(None, outcome=state, reason=f"an earlier attempt ended {state}")


@dataclass(frozen=True)
class Finish:
    """After a publish: ``entry`` to write, and ``outcome``: ``"done"``, ``"retry"`` (the
    ``retry`` channels later), ``"failed"`` or ``"unknown"``; ``dead`` and ``unknown``: the
    channels that failed for good or may have been delivered (reported now)."""

    entry: str
    outcome: str
    retry: tuple[str, ...] = ()
    dead: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()


def finish(
    sent: Sequence[str],
    error: PublishError | None,
    resend: bool,
    last: bool = False,
    since: float | None = None,
    maybe: Sequence[str] = (),
) -> Finish:
    """The outcome of publishing to ``sent``: ``error`` is what it raised (``None``: a
    receipt). A channel certainly not delivered for a retryable reason is retried (and, with
    ``resend``, one that may have been); ``last``: the queue retries no more; ``since``:
    when ``sent`` were first sent (kept in the entry if a retry re-sends what may have
    arrived); ``maybe``: those of ``sent`` an earlier attempt may have delivered (whatever
    this publish says of them, unless it delivered them)."""
    if error is None:
        return Finish(entry(DONE, sent), DONE)
    delivered = set(error.delivered)
    earlier = set(maybe)
    retry: list[str] = []
    resending: list[str] = []
    dead: list[str] = []
    unknown: list[str] = []
    for channel in sent:
        if channel in delivered:
            continue
        cause = error.causes.get(channel, error)
        may = (
            channel in earlier
            or channel in error.unknown
            or (channel not in error.failed and cause.maybe_delivered)
        )
        if cause.retryable and not last and (resend or not may):
            retry.append(channel)
            if may:
                resending.append(channel)
        elif may:
            unknown.append(channel)
        else:
            dead.append(channel)
    if retry:
        if not resending or since is None:
            text = entry(RETRY, retry)
        else:  # the list only when some of them certainly were not delivered
            text = entry(RETRY, retry, since, resending if len(resending) < len(retry) else None)
        return Finish(text, RETRY, tuple(retry), tuple(dead), tuple(unknown))
    state = FAILED if dead else UNKNOWN
    return Finish(entry(state, dead or unknown), state, (), tuple(dead), tuple(unknown))


# --- what a worker raises -----------------------------------------------------------------------


class TaskFailed(BroadcastError):
    """A queued publish ended without being delivered, for good: the task fails, not retried.

    ``outcome``: ``"failed"`` (certainly not delivered) or ``"unknown"`` (the service may
    have it: not sent again, so never twice); ``channels``: those it is about.
    """

    def __init__(
        self, reason: str, message_id: str, outcome: str, channels: Sequence[str] = ()
    ) -> None:
        self.message_id = message_id
        self.outcome = outcome
        self.channels = tuple(channels)
        super().__init__(reason)
        self._made_of(reason, reason, message_id, outcome, self.channels)

    def __reduce__(self) -> Any:  # queues pickle a task's exception (Celery's result backend)
        return (_failed, (str(self), self.message_id, self.outcome, self.channels))


def _failed(reason: str, message_id: str, outcome: str, channels: Sequence[str]) -> TaskFailed:
    return TaskFailed(reason, message_id=message_id, outcome=outcome, channels=channels)


class TaskRetry(BroadcastError):
    """A queued publish is to be tried again later (its journal says which channels)."""

    def __init__(self, reason: str, message_id: str, delay: float) -> None:
        self.message_id = message_id
        self.delay = delay
        super().__init__(reason)
        self._made_of(reason, reason, message_id, delay)

    def __reduce__(self) -> Any:
        return (_retry, (str(self), self.message_id, self.delay))


def _retry(reason: str, message_id: str, delay: float) -> TaskRetry:
    return TaskRetry(reason, message_id=message_id, delay=delay)


# --- the worker's side --------------------------------------------------------------------------


def perform(
    broadcast: Broadcast,
    payload: object,
    *,
    via: str,
    journal: Journal,
    ttl: float = JOURNAL_TTL,
    attempt: int = 0,
    retry: Retry | None = None,
) -> Receipt | None:
    """Publish a task's message once, as the journal allows: its receipt, or ``None`` if
    there was nothing to send (an earlier attempt delivered it). Raises :class:`TaskRetry`
    or :class:`TaskFailed` for the queue. ``attempt``: 0 for the first run; ``retry``: the
    queue's retries (``attempt == retry.retries`` is the last), ``None``: it does not say."""
    job = Job.decode(payload)
    last = retry is not None and attempt >= retry.retries
    try:
        broadcaster = broadcast.driver(job.driver)
        message = job.message(broadcaster.driver, via)
    except BroadcastError as exc:  # not configured here, or refused by this driver: never sent
        reason = f"the worker cannot publish it: {exc}"
        raise _give_up(job.id, job.channels, FAILED, reason) from exc
    channels = message.channels  # validated: a channel the payload names twice is here once
    capabilities, at_least_once = (
        broadcaster.driver.capabilities,
        broadcaster.delivery.at_least_once,
    )
    now = time.time()

    def resend(since: float | None, at: float = now) -> bool:
        return may_resend(capabilities, at_least_once, since, at)

    unavailable = None
    try:
        found = journal.update(job.id, lambda found: begin(found, channels, resend, now).entry, ttl)
    except Exception as exc:  # nothing was sent: safe to try again
        unavailable = TaskRetry(
            f"message {job.id}: the journal is unavailable ({type(exc).__name__}: {exc}); "
            "nothing was sent",
            message_id=job.id,
            delay=(retry or _FALLBACK_RETRY).delay(attempt),
        )
        if not _of_redis(exc):  # a bug (of the policy, of a journal's code): its traceback
            raise unavailable from exc
    if unavailable is not None:
        # raised out of the except clause, not chained: redis-py's error, raised while its
        # connection connects (AUTH, SELECT), keeps the journal's password in the locals of
        # its frames (the AUTH arguments); its message and type, above, do not hold it
        raise unavailable
    start = begin(found, channels, resend, now)
    if not start.send:
        if start.outcome == DONE:
            log.info("%s: message %s: %s", broadcaster.name, job.id, start.reason)
            return None
        _, noted = parse(found or entry(start.outcome, ()))
        if start.outcome == UNKNOWN:
            _report(job.id, noted, UNKNOWN, start.reason)
        raise TaskFailed(
            f"message {job.id}: {start.reason}",
            message_id=job.id,
            outcome=start.outcome,
            channels=noted,
        )
    if start.unknown:  # held back: reported now, the others are sent
        _report(job.id, start.unknown, UNKNOWN, start.reason)
    elif start.reason:
        log.warning("%s: message %s: %s", broadcaster.name, job.id, start.reason)
    message.channels = start.send
    message.first_sent = start.since  # a re-send: the service's dedup window counts from it
    error: PublishError | None = None
    try:
        receipt = run(broadcaster.publish_message(message))
    except PublishError as exc:
        error = exc
    except Exception as exc:  # a plugin's bug, after the request may have gone out
        _note(journal, job.id, entry(UNKNOWN, start.send), ttl)
        reason = f"publishing raised {type(exc).__name__}: {exc}"
        raise _give_up(job.id, start.send, UNKNOWN, reason) from exc
    except BaseException as exc:  # the worker's time limit or shutdown, raised in the publish
        _note(journal, job.id, entry(UNKNOWN, start.send), ttl)
        _report(job.id, start.send, UNKNOWN, f"interrupted by {type(exc).__name__}")
        raise
    if error is None and not start.unknown:
        _note(journal, job.id, entry(DONE, start.send), ttl)
        return receipt
    if error is None:  # delivered, but what was held back may have arrived: the task fails
        _note(journal, job.id, entry(UNKNOWN, start.unknown), ttl)
        raise TaskFailed(
            f"message {job.id}: {start.reason}",
            message_id=job.id,
            outcome=UNKNOWN,
            channels=start.unknown,
        )
    # a retry re-sends what may have arrived only if it would still be dropped then: at the
    # latest its backoff after now (a backlog can delay it more: begin() looks again then)
    policy = retry or _FALLBACK_RETRY
    latest = time.time() + policy.cap(attempt)
    done = finish(start.send, error, resend(start.since, latest), last, start.since, start.maybe)
    _note(journal, job.id, done.entry, ttl)
    if done.unknown:
        _report(job.id, done.unknown, UNKNOWN, str(error))
    if done.dead:
        why = f"gave up after {attempt + 1} attempts: {error}" if last else str(error)
        _report(job.id, done.dead, FAILED, why)
    if done.outcome == RETRY:
        delay = (retry or _FALLBACK_RETRY).delay(attempt)
        log.info(
            "%s: message %s: %d channel(s) not delivered, retried in %.1f s: %s",
            broadcaster.name,
            job.id,
            len(done.retry),
            delay,
            error,
        )
        raise TaskRetry(
            f"message {job.id}: {len(done.retry)} channel(s) to retry: {error}",
            message_id=job.id,
            delay=delay,
        ) from error
    raise TaskFailed(
        f"message {job.id}: {done.outcome}: {error}",
        message_id=job.id,
        outcome=done.outcome,
        channels=done.dead or done.unknown,
    ) from error


def _of_redis(error: BaseException) -> bool:
    """Whether ``error``, or an error chained to it, is redis-py's (a journal in Redis that
    cannot connect, refuses the password, or answers with an error)."""
    exceptions = sys.modules.get("redis.exceptions")  # not imported: no error of it either
    if exceptions is None:
        return False
    kinds = (exceptions.RedisError, exceptions.RedisClusterException)
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        each = todo.pop()
        if each is None or id(each) in seen:
            continue
        if isinstance(each, kinds):
            return True
        seen.add(id(each))
        todo += [each.__cause__, each.__context__]
    return False


#: The packages of the queues' clients: an error of theirs (or an OSError, raised while they
#: connect) may keep the broker's password in its frames.
_BROKER_PACKAGES = frozenset(
    {"redis", "kombu", "amqp", "celery", "rq", "dramatiq", "pika", "librabbitmq", "vine"}
)


def _of_broker(error: BaseException) -> bool:
    """Whether ``error``, or an error chained to it, is a queue client's, or an OSError."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        each = todo.pop()
        if each is None or id(each) in seen:
            continue
        package = type(each).__module__.partition(".")[0]
        if package in _BROKER_PACKAGES or isinstance(each, OSError):
            return True
        seen.add(id(each))
        todo += [each.__cause__, each.__context__]
    return False


def _note(journal: Journal, message_id: str, text: str, ttl: float) -> None:
    """Write the outcome of a publish; if the journal fails now, its entry stays "sending"
    (a redelivery reports the message unknown: never sent twice), and the task goes on."""
    try:
        journal.put(message_id, text, ttl)
    except Exception as exc:
        log.warning(
            "message %s: the journal could not note %r (%s: %s); a redelivery of this task "
            "will report it unknown",
            message_id,
            parse(text)[0],
            type(exc).__name__,
            exc,
        )


def _give_up(message_id: str, channels: Sequence[str], outcome: str, reason: str) -> TaskFailed:
    """Log a queued publish that ends here, and the :class:`TaskFailed` that ends its task."""
    _report(message_id, channels, outcome, reason)
    return TaskFailed(
        f"message {message_id}: {reason}",
        message_id=message_id,
        outcome=outcome,
        channels=channels,
    )


def _report(message_id: str, channels: Sequence[str], outcome: str, reason: str) -> None:
    """Log a queued publish that ended undelivered (or maybe delivered), with its id."""
    log.error(
        "message %s, %s on %d channel(s) %s: %s",
        message_id,
        outcome,
        len(channels),
        ", ".join(channels[:10]) + (" ..." if len(channels) > 10 else ""),
        reason,
    )


def resolve(target: str | Callable[[], Broadcast]) -> Broadcast:
    """The worker's Broadcast: ``"package.module:attribute"`` imported, or a callable called."""
    from broadcasting._broadcast import Broadcast

    if isinstance(target, str):
        module, _, attribute = target.partition(":")
        found: object = importlib.import_module(module)
        for name in attribute.split(".") if attribute else ():
            found = getattr(found, name)
    else:
        found = target()
    if not isinstance(found, Broadcast):
        raise TypeError(f"broadcast={target!r} gave {type(found).__name__}, not a Broadcast")
    return found


def check_target(target: object, where: str) -> None:
    """A clear error now for a ``broadcast=`` that cannot name a Broadcast."""
    if isinstance(target, str):
        module, colon, attribute = target.partition(":")
        if not module or not colon or not attribute:
            raise ConfigurationError(
                "config", where, f"broadcast={target!r} must be 'package.module:attribute'"
            )
    elif not callable(target):
        raise ConfigurationError(
            "config", where, "broadcast= must be 'package.module:attribute' or a callable"
        )


# --- the producer's side ------------------------------------------------------------------------


class QueueOptions(TypedDict, total=False):
    """The keywords every queue plugin takes (:class:`QueuePlugin`, whose arguments they are).

    - ``name``: the ``send=`` value it takes (default: the queue's, ``"celery"``, ``"rq"``,
      ``"dramatiq"``); two plugins of one queue need two names, and none is one the core
      sends itself (``"now"``, ``"after_commit"``, ``"outbox"``).
    - ``journal``: where attempts are noted (a :class:`RedisJournal`); by default the
      queue's own Redis where it has one, else it is required.
    - ``retries``, ``backoff``, ``max_backoff``: retries of a publish that certainly failed
      for a retryable reason (the service down, a 429, a 5xx before forwarding), with the
      queue's own retry: up to ``retries`` (default 10), the n-th after up to
      ``min(max_backoff, backoff * 2**n)`` seconds (defaults 1.0 and 300.0).
    - ``journal_ttl``: how long a journal entry is kept, in seconds (default a day): longer
      than any redelivery of the task can take, at most :data:`MAX_JOURNAL_TTL`.
    """

    name: str | None
    journal: Journal | None
    retries: int
    backoff: float
    max_backoff: float
    journal_ttl: float


class QueuePlugin:
    """A plugin that sends ``send=<name>`` publishes as tasks of a queue (one subclass per queue).

    A subclass sets :attr:`name`, takes its queue's own arguments and passes the others
    (:class:`QueueOptions`) on to this constructor, and implements :meth:`enqueue`
    (blocking). The worker's task calls :meth:`run_task`.

    Args:
        broadcast: the worker's Broadcast: ``"package.module:attribute"``, or a callable
            that returns it (resolved on the worker's first task).
        name, journal, retries, backoff, max_backoff, journal_ttl: see :class:`QueueOptions`.
    """

    #: The way of sending it takes (``send="celery"``), unless given another at construction.
    name = ""

    def __init__(
        self,
        broadcast: str | Callable[[], Broadcast],
        *,
        name: str | None = None,
        journal: Journal | None = None,
        retries: int = 10,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
        journal_ttl: float = JOURNAL_TTL,
    ) -> None:
        if name is not None:
            self.name = name
        if not isinstance(self.name, str) or not self.name or self.name in _background.BUILT_IN:
            # a built-in name would take the core's publishes (its hook runs before the core's)
            raise ConfigurationError(
                "config",
                "name",
                "must be the name send= gives the queue, other than "
                f"{', '.join(map(repr, _background.BUILT_IN))}",
            )
        check_target(broadcast, "broadcast")
        given = {"retries": retries, "retry_backoff": backoff, "retry_max_backoff": max_backoff}
        wrong: list[ConfigurationError] = []
        try:
            self.retry = Retry.from_options(self.name, given)
        except ConfigurationError as exc:  # named as the driver options name them: each one
            names = {"retry_backoff": "backoff", "retry_max_backoff": "max_backoff"}
            wrong = [
                ConfigurationError("config", names.get(p.key or "", p.key), p.problem)
                for p in exc.problems
            ]
        if wrong:
            raise ConfigurationError.combine(wrong)  # outside the except: no __context__
        if (
            isinstance(journal_ttl, bool)
            or not isinstance(journal_ttl, (int, float))
            or not 0 < journal_ttl <= MAX_JOURNAL_TTL  # NaN and inf too: Redis takes neither
        ):
            raise ConfigurationError(
                "config",
                "journal_ttl",
                f"must be a number of seconds > 0 and at most {MAX_JOURNAL_TTL:,.0f}",
            )
        retry = self.retry
        # the longest the retries wait, twice over (a queue may add its own jitter: Dramatiq's
        # backoff runs up to twice the cap)
        waits = 2 * sum(retry.cap(n) for n in range(retry.retries))
        if journal_ttl <= waits:
            # an entry gone before the last retry runs reads as a first attempt: the channels
            # an earlier attempt delivered would be sent again
            raise ConfigurationError(
                "config",
                "journal_ttl",
                f"must be longer than twice what the task's retries may wait ({waits:g} s with "
                f"retries={retry.retries}, backoff and max_backoff as given), or an entry may "
                "expire before the last retry reads it",
            )
        self.target = broadcast
        self.journal_ttl = float(journal_ttl)
        self._journal = journal
        self._broadcast: Broadcast | None = None
        self._lock = threading.Lock()

    # the producer

    @hookimpl
    def broadcasting_defer(
        self,
        broadcast: Broadcast,
        driver: Driver,
        message: Message,
        transaction: Transaction | None,
    ) -> Receipt | None:
        """Enqueue a ``send=<name>`` publish (on commit, inside a transaction): pending receipt."""
        if message.via != self.name:
            return None
        broadcaster = broadcast.broadcaster_of(driver)
        payload = encode(broadcaster, message)
        self.journal()  # a missing journal is a clear error here, before anything is queued
        if transaction is not None and transaction.active():
            transaction.on_commit(lambda: self._enqueue_committed(payload))
        else:
            drive(_enqueued(self, payload))
        return _background.pending(broadcaster, message)

    def enqueue(self, payload: dict[str, Any]) -> None:
        """Put one task on the queue (blocking)."""
        raise NotImplementedError(f"{type(self).__qualname__} must say how it enqueues")

    def _put(self, payload: dict[str, Any]) -> None:
        """:meth:`enqueue`, whose failure is a :class:`PublishError`: every channel unknown
        (the broker may have taken the task before it failed)."""
        failure = None
        try:
            self.enqueue(payload)
        except Exception as exc:
            failure = PublishError(
                f"message {payload['id']}: its task could not be queued on {self.name}, or "
                f"may have been ({type(exc).__name__}: {exc})",
                driver=payload["driver"],
                kind="unavailable",
                unknown=payload["channels"],
            )
            if not _of_broker(exc):  # a bug (of a plugin, of its options): its traceback
                raise failure from exc
        if failure is not None:
            # raised out of the except clause, not chained: the broker's client, raised while
            # it connects, keeps the broker's password in the locals of its frames (redis-py's
            # AUTH arguments, kombu's connection, Celery's conf); its message does not hold it
            raise failure

    def _enqueue_committed(self, payload: dict[str, Any]) -> None:
        """Enqueue after a commit: in a thread if an event loop runs here; a failure is logged
        (the committing code's data is committed already)."""
        _background.call_committed(
            lambda: self._put(payload),
            lambda: asyncio.to_thread(self._put, payload),
            lambda exc: self._lost(payload, exc),
        )

    def _lost(self, payload: Mapping[str, Any], exc: Exception) -> None:
        if isinstance(exc, PublishError):  # from _put: it names the message and the queue
            log.error(
                "%r to %d channel(s), committed: %s",
                payload["event"],
                len(payload["channels"]),
                exc,
                exc_info=exc if exc.__cause__ is not None else None,  # a bug's traceback
            )
            return
        log.error(
            "message %s (%r to %d channel(s)) was committed; its task may not have been queued "
            "on %s: %s",
            payload["id"],
            payload["event"],
            len(payload["channels"]),
            self.name,
            exc,
        )

    # the worker

    def broadcast(self) -> Broadcast:
        """The Broadcast the worker publishes through (``broadcast=``, resolved once)."""
        found = self._broadcast
        if found is None:
            with self._lock:
                if self._broadcast is None:
                    self._broadcast = resolve(self.target)
                found = self._broadcast
        return found

    def journal(self) -> Journal:
        """The journal of attempts (``journal=``, or the queue's own Redis)."""
        if self._journal is None:
            self._journal = self.default_journal()
        return self._journal

    def default_journal(self) -> Journal:
        """The journal when none is given: a subclass finds its queue's Redis, else refuses."""
        raise ConfigurationError(
            "config",
            "journal",
            f"the {self.name} plugin needs journal=RedisJournal(url): a redelivered task "
            "must know whether an earlier attempt published (docs/background.md)",
        )

    def run_task(self, payload: object, attempt: int = 0) -> Receipt | None:
        """Perform one task (the worker's side): see :func:`perform`."""
        return perform(
            self.broadcast(),
            payload,
            via=self.name,
            journal=self.journal(),
            ttl=self.journal_ttl,
            attempt=attempt,
            retry=self.retry,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


# a task's only reference is the loop's weak one: kept here until it ends


@dataclass(slots=True)
class _Enqueue(Effect):
    """Enqueue a task: blocking, or in a thread from async code."""

    plugin: QueuePlugin
    payload: dict[str, Any]

    def run(self) -> None:
        self.plugin._put(self.payload)

    async def arun(self) -> None:
        await asyncio.to_thread(self.plugin._put, self.payload)


def _enqueued(plugin: QueuePlugin, payload: dict[str, Any]) -> Flow[None]:
    yield _Enqueue(plugin, payload)
