"""The relay's decisions, without I/O: which rows a round sends, whether a row is marked
``sending`` before it goes, what each row's publish outcome makes of it, the back-off of a
row that failed, and how long an idle relay waits.

Every function here is plain and deterministic but :func:`Backoff.delay` (which draws its
jitter from the ``random`` it is given). The relay (:mod:`broadcasting.outbox._relay`)
does the I/O around them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from broadcasting._errors import BroadcastError, PublishError
from broadcasting._types import Receipt
from broadcasting.outbox._row import DEAD, DELIVERED, PENDING, SENDING, UNKNOWN, Outcome

__all__ = ["DEAD", "DELIVERED", "PENDING", "SENDING", "UNKNOWN"]  # the states, re-exported


class RowLike(Protocol):
    """What the policy reads of a row (:class:`broadcasting.outbox._row.Row` has it)."""

    @property
    def id(self) -> int: ...
    @property
    def partition(self) -> int: ...
    @property
    def channels(self) -> Sequence[str]: ...
    @property
    def state(self) -> int: ...
    @property
    def attempts(self) -> int: ...
    @property
    def available_at(self) -> float: ...


@dataclass(frozen=True)
class Backoff:
    """The wait before a row that failed in a retryable way is sent again: ``base * 2**(n-1)``
    seconds after its n-th failed attempt, at most ``cap``, the upper half of it drawn at
    random ("equal jitter": never a wait of almost nothing, so no hot loop)."""

    base: float = 0.5
    cap: float = 10.0

    def __post_init__(self) -> None:
        if not (self.base > 0 and self.cap >= self.base):
            raise ValueError("Backoff needs base > 0 and cap >= base (seconds)")

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """The wait after ``attempts`` failed attempts (1 for the first failure)."""
        ceiling = min(self.cap, self.base * 2.0 ** max(0, min(attempts - 1, 60)))
        draw = (rng or random).random()
        return ceiling / 2 + draw * ceiling / 2


R = TypeVar("R", bound=RowLike)


@dataclass(frozen=True)
class Plan(Generic[R]):
    """What a round does with the rows it fetched.

    ``rows``: the rows to send, in (partition, id) order (a channel's rows go one at a
    time, in that order). ``unknown``: rows found in ``sending`` from an earlier attempt,
    which the driver may have delivered and may not send again: they become ``unknown``.
    ``held``: per partition, when its first row that backs off may go (the partition
    waits for it, so its channels keep their order).
    """

    rows: list[R] = field(default_factory=list)
    unknown: list[R] = field(default_factory=list)
    held: Mapping[int, float] = field(default_factory=dict)


def plan(rows: Iterable[R], now: float, resend: Callable[[R], bool]) -> Plan[R]:
    """Plan a round over ``rows`` (in (partition, id) order).

    Per partition the rows are taken in id order up to the first one not yet available
    (the partition is held until then); a row in ``sending`` becomes unknown unless
    ``resend(row)`` (its driver de-duplicates, or ``at_least_once``).
    """
    send: list[R] = []
    unknown: list[R] = []
    held: dict[int, float] = {}
    for row in rows:
        part = row.partition
        if part in held:
            continue
        if row.available_at > now:
            held[part] = row.available_at
        elif row.state == SENDING and not resend(row):
            unknown.append(row)
        else:
            send.append(row)
    return Plan(send, unknown, held)


def must_mark(resend: bool) -> bool:
    """Whether rows are marked ``sending`` (committed) before they go out: unless a repeat
    is harmless (the driver de-duplicates, or the user chose ``at_least_once``), a relay that
    dies mid-send must leave a trace, so the next one knows not to send them again."""
    return not resend


@dataclass(frozen=True)
class Verdict:
    """What one row's publish came to: its new ``state``, the channels still to send
    (``None``: unchanged), when it may go again, the reason (``None`` when delivered)."""

    state: int
    channels_left: tuple[str, ...] | None
    available_at: float | None
    error: str | None
    attempts: int


def judge(
    row: RowLike,
    result: Receipt | BaseException,
    now: float,
    *,
    resend: bool,
    backoff: Backoff,
    rng: random.Random | None = None,
    keep_sending: bool = False,
) -> Verdict:
    """The verdict on ``row`` from its publish's ``result`` (a Receipt or the exception).

    A Receipt: delivered. A :class:`PublishError`: the delivered channels leave the row; if
    every channel left failed in a way worth retrying (certainly not delivered and
    retryable, or maybe delivered and ``resend``), the row waits ``backoff`` and goes
    again; else if one may have been delivered, the row is unknown; else it is dead.
    Any other error (a driver that is not configured, a plugin's bug) is dead.
    ``keep_sending``: a row that goes again with a channel that may have been delivered
    stays ``sending`` (its service drops a repeat only for a while: the round that takes it
    again must know it may be out there, :func:`plan`).
    """
    if isinstance(result, Receipt):  # verdicts are immutable: the usual ones are shared
        attempts = row.attempts
        shared = _DELIVERED[attempts] if 0 <= attempts < len(_DELIVERED) else None
        return shared or Verdict(DELIVERED, None, None, None, attempts)
    attempts = row.attempts + 1
    if not isinstance(result, PublishError):
        return Verdict(DEAD, None, None, describe(result), attempts)
    channels = tuple(row.channels)
    done = set(result.delivered)
    left = tuple(c for c in channels if c not in done) or channels
    causes = {c: result.causes.get(c, result) for c in left}
    maybe = [c for c in left if c in result.unknown or causes[c].maybe_delivered]
    if not (result.delivered or result.failed or result.unknown):
        maybe = list(left) if result.maybe_delivered else []
    kept = left if len(left) < len(channels) else None
    again = all(causes[c].retryable and (resend or c not in maybe) for c in left)
    if again:
        wait = backoff.delay(attempts, rng)
        state = SENDING if keep_sending and maybe else PENDING
        return Verdict(state, kept, now + wait, describe(result), attempts)
    state = UNKNOWN if maybe and not resend else DEAD
    return Verdict(state, kept, None, describe(result), attempts)


_DELIVERED = [Verdict(DELIVERED, None, None, None, attempts) for attempts in range(8)]


def describe(error: BaseException) -> str:
    """A reason to store and log: the library's own errors say what happened and hold no
    secret; another exception (a plugin's bug) is named, its message withheld."""
    if isinstance(error, BroadcastError):
        return f"{type(error).__name__}: {error}"[:2000]
    return f"{type(error).__name__} raised (message withheld; see the relay's log)"


def outcome(row: RowLike, verdict: Verdict) -> Outcome:
    """The store's :class:`Outcome` for ``row``."""
    return Outcome(
        row.id,
        verdict.state,
        verdict.channels_left,
        verdict.available_at,
        verdict.error,
        verdict.attempts,
    )


def maybe_sent(row: RowLike, owner_note: str, window: bool = False) -> Verdict:
    """The verdict on a row found in ``sending``: an earlier relay may have delivered it
    (``window``: its driver's service drops a repeat only for a while, which has passed)."""
    why = (
        "its service drops a repeat only for a while after the first send, which has passed"
        if window
        else "the driver does not de-duplicate and at_least_once is off"
    )
    return Verdict(
        UNKNOWN,
        None,
        None,
        f"found in 'sending' ({owner_note}): it may have been delivered; not sent again "
        f"because {why}",
        row.attempts,
    )


def next_wait(
    idle_rounds: int, held: Iterable[float], now: float, *, first: float = 0.01, most: float = 1.0
) -> float:
    """How long an idle relay waits before its next look: ``first`` doubling with each empty
    round up to ``most``, and not past the moment a held partition may go again."""
    wait = min(most, first * 2.0 ** min(idle_rounds, 30))
    until = min(held, default=None)
    if until is not None:
        wait = min(wait, max(0.0, until - now))
    return wait


#: The least time between two looks that both found nothing (20 a second at most).
EMPTY_GAP = 0.05


def pace(idle: int, wait: float) -> tuple[float, float]:
    """Split an idle relay's ``wait`` into a plain pause, then a wait a new row may cut
    short (PostgreSQL's NOTIFY). After ``idle`` looks in a row that found nothing (writes
    woke it that it cannot send: another relay's partitions, or a partition backing off
    while the service is down) it pauses up to :data:`EMPTY_GAP` first, so a stream of
    writes cannot drive it into a busy loop; after work it listens at once."""
    pause = min(wait, EMPTY_GAP) if idle else 0.0
    return pause, wait - pause
