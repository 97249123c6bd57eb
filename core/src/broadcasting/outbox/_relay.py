"""The relay: sends the outbox's rows through the core's publish path (docs/background.md).

One round: claim or renew this relay's leases on partitions, fetch up to ``batch`` rows of
the partitions it holds (each partition's rows up to its first that backs off), and queue
them to be sent. Every state change is fenced by the lease in the store, so a relay that
lost its lease while paused changes nothing. The decisions are in
:mod:`broadcasting.outbox._policy`.

Order: a row is ready once every row before it on each of its channels has finished, so a
channel's rows go one at a time in id (commit) order while rows of other channels go at
once. Ready rows go out in *waves*: a wave's rows are marked ``sending`` in one statement
(unless a repeat is harmless), published together (when only the core implements the
publish hook, through one call into the core's delivery that packs them into shared
requests; else each through the hook, which the core's batcher packs), and their outcomes
recorded in one statement. A row that backs off stops the rows after it on its channels
(they stay pending, unsent) and holds its partition.

So a relay killed at any moment leaves ``sending`` only the rows it was sending then and
those whose outcome it had not recorded yet. While one round's rows are out,
:meth:`Relay.arun` already fetches the next round's (at most four rounds out); they wait
for the earlier rows on their channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from broadcasting import _background
from broadcasting._delivery import Capabilities, deliver_each, may_resend
from broadcasting._errors import BroadcastError, InputError
from broadcasting._flow import arun, implements
from broadcasting._fork import call_after_fork
from broadcasting._loop import run_sync
from broadcasting._plugins import core_alone
from broadcasting._types import Message, Receipt
from broadcasting.outbox import _policy
from broadcasting.outbox._policy import Backoff, Verdict
from broadcasting.outbox._row import Outcome, Row
from broadcasting.outbox._store import (
    SAME_TIME,
    OutboxSchemaMissing,
    OutboxTablesMissing,
    OwnerInUse,
)

if TYPE_CHECKING:
    from typing_extensions import Self

    from broadcasting._broadcast import Broadcast
    from broadcasting._broadcaster import Broadcaster
    from broadcasting.outbox._store import Stats, Store

log = logging.getLogger("broadcasting.outbox")

#: Seconds an outcome waits for others to be recorded with it (not on a row's way out: the
#: rows after it go at once; what a relay killed meanwhile leaves ``sending`` grows by it).
RECORD_LINGER = 0.02
#: Rows a wave sends at most (all are marked ``sending`` before the first goes: a relay
#: killed meanwhile leaves them for the next to find), and waves out at once.
WAVE = 250
WAVES = 1
#: The signals that stop :meth:`Relay.run` (SIGHUP: not on Windows).
_STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)
)
#: Seconds between two WARNING lines saying that publishing through one driver fails.
FAILING_NOTE_EVERY = 60.0
#: The store's errors for tables not made yet: their schema too, on PostgreSQL and MariaDB.
_NOT_MADE = (OutboxTablesMissing, OutboxSchemaMissing)
#: Seconds after the ERROR saying the outbox's tables are missing before a WARNING says the
#: relay still waits for them; each next one comes twice as late, up to
#: :data:`TABLES_NOTE_MAX` apart.
TABLES_NOTE_FIRST = 60.0
TABLES_NOTE_MAX = 3600.0


@dataclass
class RoundStats:
    """What one round did: the partitions held after claiming, the rows fetched, and how
    many were delivered, put back to wait (``retried``), made ``dead`` or ``unknown``, or
    left alone because the lease on their partition was lost (``fenced``)."""

    partitions: tuple[int, ...] = ()
    fetched: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    unknown: int = 0
    fenced: int = 0
    #: after a round with nothing to send: when the first row that backs off may go
    #: (epoch seconds; ``None``: no row waits)
    due: float | None = None

    @property
    def busy(self) -> bool:
        """Whether the round found work (an idle relay waits before the next)."""
        return bool(self.delivered or self.retried or self.dead or self.unknown or self.fenced)


@dataclass(frozen=True)
class RelayStats:
    """A relay's view: the outbox's ``store`` stats (backlog per state, lag, relays and their
    partitions) and this relay's counters since it started."""

    owner: str
    partitions: tuple[int, ...]
    store: Stats
    rounds: int
    delivered: int
    retried: int
    dead: int
    unknown: int


#: The longest owner name a relay may be given: the lease and relay tables' ``owner`` column
#: holds 200 characters, and a relay forked from it adds ``:`` and the child's process id.
OWNER_LIMIT = 200 - len(":4194304")


def _checked_owner(owner: object) -> str | None:
    """``owner`` if the lease table can hold it (``None``, ``""``: the default), else
    :class:`InputError`: a name the database refuses would fail every round, for ever, and
    one it takes for another relay's would share that relay's leases."""
    if owner is None or owner == "":
        return None
    if not isinstance(owner, str):
        raise InputError(f"owner must be a str, not {type(owner).__name__}")
    if len(owner) > OWNER_LIMIT:
        raise InputError(
            f"owner is {len(owner)} characters; a relay's name holds at most {OWNER_LIMIT} "
            "(the lease table's column, with room for a forked child's ':<pid>')"
        )
    if owner != owner.strip(" "):  # MySQL compares names as if padded: "r " would be "r"
        raise InputError("owner must not begin or end with a space")
    return owner


def default_owner() -> str:
    """A name unique to this relay: host, process id and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Relay:
    """Delivers the outbox's rows of one :class:`~broadcasting.Broadcast` (docs/background.md).

    ``owner`` names this relay in the lease table (default: host, pid and a random suffix;
    at most :data:`OWNER_LIMIT` characters, else :class:`~broadcasting.InputError`); no two
    processes may share one, so in a child forked from this process the relay takes
    a new default, or ``owner`` followed by ``:`` and the child's pid;
    ``store`` is the outbox (default: the one ``OUTBOX`` configures, shared with the write
    path); ``backoff`` paces a row whose publish failed in a retryable way.

    Run it with :meth:`run` (blocking, until SIGTERM/SIGINT/SIGHUP or :meth:`stop`), ``await``
    :meth:`arun` in an application's own worker, ``async with relay:`` beside an application
    on its loop (a lifespan), or a round at a time with :meth:`run_once` / :meth:`arun_once`.
    """

    def __init__(
        self,
        broadcast: Broadcast,
        *,
        owner: str | None = None,
        store: Store | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        owner = _checked_owner(owner)
        if store is None:
            from broadcasting.outbox._store import store_for

            store = store_for(broadcast)
        self.broadcast = broadcast
        self.store = store
        #: the owner as given (``None``: the default, made again in a forked child)
        self._given_owner = owner
        self.owner = owner or default_owner()
        #: seconds a lease lasts, delivered rows are kept; rows fetched per round (OUTBOX)
        self.lease: float = store.lease
        self.retention: float = store.retention
        self.batch: int = store.batch
        self.backoff = backoff or Backoff()
        self._reset()
        call_after_fork(self)  # made again in a forked child (_after_fork)

    def __repr__(self) -> str:
        return f"<Relay {self.owner!r} partitions={list(self.partitions)}>"

    def _reset(self) -> None:
        """The state of one process's relaying: none of it is a forked child's (its rows in
        flight, its loop's futures and its leases are the parent's)."""
        self.partitions: tuple[int, ...] = ()
        self._renewed = float("-inf")  # when the leases were last claimed or renewed
        # the name: taken (a claim under it went through), and the times this relay wrote in
        # its row (the last one committed, and those of claims whose end it did not hear of)
        self._named = False
        self._mine: list[float] = []
        self._extended = float("-inf")  # when they were last extended (renewed while waiting too)
        self._purged = float("-inf")  # when delivered rows past retention were last deleted
        self._stopping = threading.Event()
        self._inflight: dict[int, int] = {}  # rows fetched and not recorded: id -> partition
        self._held: dict[int, float] = {}  # partitions waiting for a row that backs off: until
        self._backing: dict[int, int] = {}  # rows that back off, not recorded yet: partition
        self._routes: dict[str, _Route] = {}  # per driver name
        self._rounds = self._delivered = self._retried = self._dead = self._unknown = 0
        self._failing: set[str] = set()  # drivers said to fail, not yet said to deliver again
        self._said_failing: dict[str, float] = {}  # per driver: when that was last said
        self._fetched_new = False
        # the rows queued to go, a channel's one at a time (module docstring)
        self._tail: dict[str, int] = {}  # each channel's latest row not finished: its id
        self._after: dict[int, list[Row]] = {}  # the rows waiting for a row (by its id)
        self._waiting: dict[int, int] = {}  # a waiting row's id: how many it waits for
        self._blocked: set[int] = set()  # waiting rows that will not go (one before backs off)
        self._ready: list[Row] = []  # rows whose earlier rows all finished: to go
        self._round_of: dict[int, _Round] = {}  # each queued row's round
        self._waves: set[asyncio.Task[None]] = set()
        self._batch_loop: asyncio.AbstractEventLoop | None = None
        self._recording: set[asyncio.Future[None]] = set()  # outcomes being recorded
        self._failed: BaseException | None = None  # an outcome that could not be recorded
        self._outcomes: _Batched[Outcome]
        self._task: asyncio.Task[None] | None = None  # arun() under ``async with``

    def _after_fork(self) -> None:
        """In a forked child: a relay of its own. Two processes under one owner would both
        hold every lease the owner holds and send the same rows, so the child takes a new
        default owner, or the one given with its own process id after it."""
        given = self._given_owner
        self.owner = default_owner() if given is None else f"{given}:{os.getpid()}"
        self._reset()

    # -- running -----------------------------------------------------------------------------

    def run(self) -> None:
        """Relay until :meth:`stop`, SIGTERM, SIGINT or SIGHUP: then the requests in flight
        finish, the leases are released and it returns. (SIGHUP, which a closed terminal or
        SSH session sends, would otherwise kill it at once: its rows out left ``sending``,
        to be reported unknown, and its leases held until they run out.)"""

        async def main() -> None:
            loop = asyncio.get_running_loop()
            handled: list[signal.Signals] = []
            if threading.current_thread() is threading.main_thread():
                for signum in _STOP_SIGNALS:
                    loop.add_signal_handler(signum, self.stop)
                    handled.append(signum)
            try:
                await self.arun()
            finally:
                for signum in handled:
                    loop.remove_signal_handler(signum)

        asyncio.run(main())

    async def arun(self) -> None:
        """Relay until :meth:`stop` (or until cancelled); then release the leases.

        A failure of the outbox's database (unreachable, restarting) is logged at WARNING
        and retried after a pause that grows to 10 s; rows it left ``sending`` are handled
        as a crashed relay's. Tables that do not exist (nobody ran ``broadcasting outbox
        init`` or the migrations yet) are waited for the same way, said once at ERROR (which
        table, what makes it), then at WARNING ever more rarely (:data:`TABLES_NOTE_FIRST`),
        and at INFO once they are there. A :meth:`stop` made before it began ends it at
        once: a stop is spent by the run it ends, so the relay may run again after."""
        idle = failures = 0
        rounds: deque[asyncio.Future[RoundStats]] = deque()
        await asyncio.to_thread(self._warn_if_stranded)
        tables = _TablesNote(self.owner)
        try:
            while not self._stopping.is_set():
                try:
                    idle = await self._step(rounds, idle)
                    failures = 0
                    tables.found()
                except OwnerInUse:
                    raise  # another relay runs under this name: this one does not
                except Exception as exc:
                    failures += 1
                    pause = min(10.0, 0.5 * 2 ** min(failures - 1, 5))
                    if isinstance(exc, _NOT_MADE):  # the store says so
                        tables.missing(exc, pause)
                    else:
                        log.warning(
                            "relay %s: the outbox's database failed (%s); trying again in %.1f s",
                            self.owner,
                            self.store.describe(exc),
                            pause,
                        )
                    for _ in range(max(1, int(pause * 10))):  # a stop() ends the pause
                        if self._stopping.is_set():
                            break
                        await asyncio.sleep(0.1)
        finally:
            # stopped, or cancelled: the rows not gone yet stay as they are; the requests in
            # flight finish and their rows are recorded before the leases go (released first,
            # their outcomes would be fenced off: delivered rows left ``sending``)
            self._stopping.set()
            self._kick()
            try:
                while self._waves:
                    await asyncio.wait(list(self._waves))
                if rounds:
                    await asyncio.gather(*rounds, return_exceptions=True)
                with contextlib.suppress(Exception):
                    await self._recorded()
            finally:
                await asyncio.to_thread(self._release)
                self._stopping.clear()  # spent: the relay may run again (run_once, say)

    async def _step(self, rounds: deque[asyncio.Future[RoundStats]], idle: int) -> int:
        """Begin a round (at most three still out); wait if it found nothing new. Returns
        how many looks in a row found nothing."""
        if rounds and self._claim_due(time.time()):
            # the claim gives up partitions beyond this relay's fair share, but not those
            # with rows out: it comes when nothing is out, so another relay gets its share
            while rounds:
                await self._renewing(rounds.popleft())
            await self._recorded()
        rounds.append(await self._begin())
        while rounds and (len(rounds) > 3 or rounds[0].done()):
            await self._renewing(rounds.popleft())  # its failure, if any, is raised here
        if self._failed is not None:
            await self._recorded()  # raises it
        if self._fetched_new:
            return 0
        # the partitions a round reads, as _begin picks them: a held one is not read before
        # its row may go, whatever its first row's time in the table (a row put back by
        # `outbox retry`, say), so it is waited for until then, not asked about again at once
        now = time.time()
        held = {p: until for p, until in self._held.items() if until > now}
        waits = {*held, *self._backing.values()}
        ready = [p for p in self.partitions if p not in waits]
        due = await asyncio.to_thread(self.store.due, ready) if ready else None
        untils = [until for p, until in held.items() if p in self.partitions]
        # not past the leases' renewal either: a wait of 1 s with the least lease (1 s)
        # would have them lapse before the next round claimed them again
        untils.append(self._renewed + self._renew_every())
        wait = _policy.next_wait(idle, [*untils, *(() if due is None else (due,))], time.time())
        pause, listen = _policy.pace(idle, wait)
        if pause > 0:  # woken for nothing it can send: not woken again before the pause ends
            await asyncio.sleep(pause)
        if listen > 0 and not self._stopping.is_set():
            await asyncio.to_thread(self.store.wait, listen)
        return idle + 1

    def _warn_if_stranded(self) -> None:
        """Log at WARNING rows that no relay with this relay's ``partitions`` reads (a writer
        given more partitions): once, as it starts; ``broadcasting check`` reports them too."""
        try:
            stats = self.store.stats(time.time())
        except Exception:  # the database is down: the loop reports it
            return
        if stats.stranded:
            log.warning("relay %s: %s", self.owner, stats.stranded_note())

    async def __aenter__(self) -> Self:
        """Start :meth:`arun` as a task on the running loop, for the body of ``async with``
        (a FastAPI or Starlette lifespan). Should it end by itself (a bug, another relay
        under this ``owner``), that is logged at ERROR at once, as the application goes on
        without it, and raised at the end of the block."""
        if self._task is not None:
            raise RuntimeError(f"relay {self.owner!r} is already running (async with)")
        self._task = asyncio.create_task(self.arun(), name=f"broadcasting relay {self.owner}")
        self._task.add_done_callback(self._ended)
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        """:meth:`stop`, and wait for the requests in flight and the leases' release. A
        failure of the relay is raised here, unless the block is raising its own."""
        task, self._task = self._task, None
        if task is None:
            return
        self.stop()
        if kind is None:
            await task
            return
        with contextlib.suppress(Exception):  # said at ERROR when it happened (_ended)
            await task

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        log.error(
            "relay %s stopped: the outbox is not being delivered",
            self.owner,
            exc_info=task.exception(),
        )

    def stop(self) -> None:
        """Ask :meth:`run`/:meth:`arun` to end after the requests in flight (thread-safe);
        made before the run begins, the run returns at once."""
        self._stopping.set()

    def release(self) -> None:
        """Give up this relay's leases and its name now (blocking), as :meth:`run` does when
        it ends; not those of another relay that took the name (this one paused past its
        lease). The next round claims them again."""
        if self._mine:  # else it never wrote its name: nothing is this relay's
            self.store.release(self.owner, written=self._mine)
        self._mine = []
        self._named = False
        self.partitions = ()
        self._renewed = self._extended = float("-inf")  # the next round claims at once

    def _release(self) -> None:
        try:
            self.release()
        except Exception as exc:  # the database is down, say: the leases expire by themselves
            if isinstance(exc, _NOT_MADE):  # no table: no lease to release
                log.debug("relay %s: no leases to release (no tables)", self.owner)
            else:
                log.warning(
                    "relay %s: could not release its leases (%s); they run out within %g s",
                    self.owner,
                    self.store.describe(exc),
                    self.lease,
                )
        self.partitions = ()
        self._renewed = self._extended = float("-inf")  # the next round claims at once

    def run_once(self) -> RoundStats:
        """One round, blocking (on the core's background loop)."""
        return run_sync(self.arun_once())

    async def arun_once(self) -> RoundStats:
        """One round: claim, fetch, mark, send, record (module docstring)."""
        stats = await self._renewing(await self._begin())
        await self._recorded()
        if not stats.busy and self.partitions:
            stats.due = await asyncio.to_thread(self.store.due, self.partitions)
        return stats

    async def _begin(self) -> asyncio.Future[RoundStats]:
        """Claim and fetch a round's rows and queue them: the future of its stats, once every
        row of it went (or will not go)."""
        store = self.store
        now = time.time()
        if self._claim_due(now):
            keep = sorted(set(self._inflight.values()))
            if self._named:
                held = await asyncio.to_thread(self._claim, now, keep)
            else:  # this relay's first claim: the name is taken first
                held, now = await self._take_name(keep)
            self.partitions = tuple(held)
            self._renewed = self._extended = now
        if now - self._purged >= max(1.0, min(60.0, self.retention / 10)):
            self._purged = now
            await asyncio.to_thread(store.purge, now - self.retention)
        stats = RoundStats(self.partitions)
        self._rounds += 1
        rows: Sequence[Row] = []
        self._held = {p: until for p, until in self._held.items() if until > now}
        # a partition is not read while it waits, nor before the row it waits for is
        # recorded as backing off (until then the table would let the rows after it go)
        waits = {*self._held, *self._backing.values()}
        ready = [p for p in self.partitions if p not in waits]
        if ready:  # a partition's rows up to its first that backs off
            out = set(self._inflight)  # before the fetch: rows out now may end during it
            limit = self.batch + len(out)  # the rows out come first: skipped
            rows = await asyncio.to_thread(store.fetch, self.owner, ready, now, limit, out)
            # a row out during the fetch may have backed off meanwhile: its partition's rows
            # read then must wait for it (they would find no row before them on its channels)
            waits = {*self._held, *self._backing.values()}
            if waits:
                rows = [row for row in rows if row.partition not in waits]
        stats.fetched = len(rows)
        self._fetched_new = bool(rows)
        plan = _policy.plan(rows, now, self._resends)
        self._batches()
        loop = asyncio.get_running_loop()
        round_ = _Round(stats, len(plan.rows) + len(plan.unknown), loop.create_future())
        if not round_.left:
            round_.future.set_result(stats)
        for row in (*plan.rows, *plan.unknown):
            self._inflight[row.id] = row.partition
            self._round_of[row.id] = round_
        if plan.unknown:  # found in sending: an earlier relay's attempt may have delivered them
            note = "an earlier relay's attempt"
            found = [
                (row, _policy.maybe_sent(row, note, self._route(row.driver).window is not None))
                for row in plan.unknown
            ]
            self._record(found)
            for row, verdict in found:
                self._count(row, verdict)
        for row in plan.rows:  # in id order
            self._queue(row)
        self._kick()
        return round_.future

    def _batches(self) -> None:
        """This loop's batcher of outcomes (a relay may run on several loops in turn:
        ``run_once()`` uses the core's background loop)."""
        loop = asyncio.get_running_loop()
        if self._batch_loop is not loop:
            self._outcomes = _Batched(self._finish, RECORD_LINGER)
            self._batch_loop = loop

    async def _renewing(self, round_: asyncio.Future[RoundStats]) -> RoundStats:
        """``round_``'s stats once all its rows went, the leases renewed meanwhile as often
        as a claim is due: a channel's rows go one at a time, so a round of a busy channel
        may take longer than a lease, and a relay that let its leases run out while still
        sending would have another relay send its rows too, and its own outcomes dropped."""
        while not round_.done():
            left = self._extended + self._renew_every() - time.time()
            if left > 0:
                await asyncio.wait((round_,), timeout=left)
                continue
            now = self._extended = time.time()
            keep = sorted(set(self._inflight.values()))  # the rows out keep their partitions
            try:
                held = await asyncio.to_thread(self._claim, now, keep)
            except OwnerInUse:
                raise
            except Exception as exc:  # the leases last until they run out; tried again soon
                log.warning(
                    "relay %s: could not renew its leases (%s)",
                    self.owner,
                    self.store.describe(exc),
                )
            else:
                self.partitions = tuple(held)
        return round_.result()

    def _claim(self, now: float, keep: Sequence[int]) -> list[int]:
        """Claim and renew the leases under this relay's name (blocking): see
        :meth:`Store.claim`. :class:`OwnerInUse` if another relay holds the name: one that
        took it while this one could not renew it (paused, or cut off from the database,
        past its lease), or, before this relay took it, one alive under it."""
        until = now + self.lease
        # remembered first: a claim that commits but whose answer is lost is still this one's
        self._mine = [*self._mine[-7:], until]
        try:
            held = self.store.claim(self.owner, now, self.lease, keep=keep, written=self._mine)
        except OwnerInUse as exc:
            if not self._named:
                raise
            self._named = False  # the leases are the other relay's now: not released
            self._mine = []
            raise OwnerInUse(
                self.owner,
                exc.until,
                f"relay {self.owner!r}: another relay took this name while this one could not "
                f"renew its lease ({self.lease:g} s); two relays under one name would each "
                "send the other's rows, so this one stops",
            ) from None
        self._mine = [until]
        self._named = True
        return held

    async def _take_name(self, keep: Sequence[int]) -> tuple[list[int], float]:
        """The first claim: the partitions held and when they were claimed. While another
        relay holds this name it waits: until that one's lease runs out (a relay of this
        name that died, ``kill -9``, and is started again), or, if that relay renews it
        meanwhile (it is running), :class:`OwnerInUse` (an :class:`InputError`). A
        :meth:`stop` ends the wait (no partition held)."""
        seen: float | None = None
        while True:
            now = time.time()
            try:
                return await asyncio.to_thread(self._claim, now, keep), now
            except OwnerInUse as exc:
                if seen is None:
                    seen = exc.until
                    log.warning(
                        "relay %s: a relay of this name said it is alive for %.1f s more; "
                        "waiting for that to run out (a relay of this name that died), or "
                        "stopping if it is renewed (one running)",
                        self.owner,
                        max(0.0, exc.until - now),
                    )
                elif abs(exc.until - seen) > SAME_TIME:
                    raise OwnerInUse(
                        self.owner,
                        exc.until,
                        f"relay name {self.owner!r} is in use by a running relay (it renewed "
                        "its lease); two relays under one name would each send the other's "
                        "rows: give each its own --owner (owner=), or leave it out",
                    ) from None
            # looked at again each renewal period: a running relay renews within one
            pause = min(self._renew_every(), max(0.01, seen - time.time()))
            for _ in range(max(1, math.ceil(pause / 0.1))):
                if self._stopping.is_set():
                    return [], time.time()
                await asyncio.sleep(min(0.1, pause))

    def _renew_every(self) -> float:
        """How often the leases are renewed: every second, or a quarter lease if shorter."""
        return min(1.0, self.lease / 4)

    def _claim_due(self, now: float) -> bool:
        """Whether the leases are due for renewal (:meth:`_renew_every`)."""
        return now - self._renewed >= self._renew_every()

    # -- the queue of rows to send -----------------------------------------------------------

    def _queue(self, row: Row) -> None:
        """Queue ``row`` (rows come in id order): ready at once, or once the latest row
        queued before it on each of its channels has finished."""
        tail, channels = self._tail, row.channels
        before: tuple[int, ...]
        if len(channels) == 1:  # the usual row
            earlier = tail.get(channels[0])
            tail[channels[0]] = row.id
            before = () if earlier is None else (earlier,)
        else:
            before = tuple({i for c in channels if (i := tail.get(c)) is not None})
            for channel in channels:
                tail[channel] = row.id
        if not before:
            self._ready.append(row)
            return
        self._waiting[row.id] = len(before)
        after = self._after
        for earlier in before:
            waiting = after.get(earlier)
            if waiting is None:
                after[earlier] = [row]
            else:
                waiting.append(row)

    def _finished(self, row: Row, go_on: bool) -> None:
        """``row`` finished (``go_on``: the rows after it may go) or will not go (``False``):
        the rows waiting for it are ready once nothing else holds them; those that may not
        go (a row before them backs off, or did not go) are let go of, each once every row
        it waits for has finished, so a channel never has two rows out."""
        tail, after, waiting, blocked = self._tail, self._after, self._waiting, self._blocked
        done = [(row, go_on)]
        while done:
            row, go_on = done.pop()
            for channel in row.channels:
                if tail.get(channel) == row.id:
                    del tail[channel]
            for later in after.pop(row.id, ()):
                if not go_on:
                    blocked.add(later.id)
                left = waiting[later.id] - 1
                if left:
                    waiting[later.id] = left
                    continue
                del waiting[later.id]
                if later.id in blocked:
                    blocked.discard(later.id)
                    self._unsent(later)
                    done.append((later, False))
                else:
                    self._ready.append(later)

    def _unsent(self, row: Row) -> None:
        """``row`` does not go now: it stays as it is (fetched again later) and counts as
        left alone."""
        self._inflight.pop(row.id, None)
        round_ = self._round_of.pop(row.id)
        round_.stats.fenced += 1
        round_.settle()

    def _kick(self, send: bool = True) -> None:
        """Send the rows that are ready, a wave at a time (:data:`WAVES` at once); once
        stopping (or not ``send``: the loop is going away), they do not go."""
        if self._stopping.is_set() or not send:
            while self._ready:
                ready, self._ready = self._ready, []
                for row in ready:
                    self._unsent(row)
                    self._finished(row, False)
            return
        while self._ready and len(self._waves) < WAVES:
            wave, self._ready = self._ready[:WAVE], self._ready[WAVE:]
            task = asyncio.get_running_loop().create_task(self._send_wave(wave))
            self._waves.add(task)
            task.add_done_callback(self._wave_done)

    def _wave_done(self, task: asyncio.Task[None]) -> None:
        self._waves.discard(task)
        self._kick(send=not task.cancelled())

    async def _send_wave(self, rows: list[Row]) -> None:
        """Send ``rows`` (ready: no two share a channel) and record what became of each. The
        rows that must be are marked ``sending`` first (one statement); a row whose
        partition's lease is lost does not go."""
        judged: list[tuple[Row, Verdict]] = []
        failure: Exception | None = None
        try:
            if self._stopping.is_set():
                return
            routes = [(row, self._route(row.driver)) for row in rows]
            marking = [
                row.id
                for row, route in routes
                if row.state != _policy.SENDING and _policy.must_mark(route.resend)
            ]
            marked: set[int] = set()
            if marking:
                marked = set(
                    await asyncio.to_thread(
                        self.store.mark_sending, self.owner, marking, time.time()
                    )
                )
            unmarked = set(marking) - marked  # their partition's lease is lost: another has it
            going = [(row, route) for row, route in routes if row.id not in unmarked]
            results = await self._publish_all([row for row, _ in going])
            now = time.time()
            latest = now + self.backoff.cap  # when a retry goes, at the latest (if on time)
            for (row, route), result in zip(going, results, strict=True):
                resend, window = route.resend, route.window
                if window is not None:  # while the retry still falls inside the window
                    resend = may_resend(route.capabilities, False, row.created, latest)
                verdict = _policy.judge(
                    row,
                    result,
                    now,
                    resend=resend,
                    backoff=self.backoff,
                    keep_sending=window is not None,
                )
                judged.append((row, verdict))
        except Exception as exc:  # the database, while marking
            failure = exc
        finally:  # cancelled too: the rows not judged did not go (those marked stay sending)
            self._settle_wave(rows, judged, failure)

    def _settle_wave(
        self, rows: list[Row], judged: list[tuple[Row, Verdict]], failure: Exception | None
    ) -> None:
        """Record and count the wave's judged rows; the others did not go. A ``failure``
        (the database, while marking) reaches every round the wave's rows belong to."""
        if judged:
            self._record(judged)
        sent = {row.id for row, _ in judged}
        for row in rows:
            if row.id not in sent:
                if failure is not None:
                    self._round_of[row.id].fail(failure)
                self._unsent(row)
                self._finished(row, False)
        for row, verdict in judged:
            # a row that backs off holds back the rows after it on its channels (order),
            # and its partition is not read again before it may go
            backing = verdict.state in (_policy.PENDING, _policy.SENDING)
            go_on = not backing or verdict.available_at is None
            if not go_on and verdict.available_at is not None:
                until = self._held.get(row.partition, verdict.available_at)
                self._held[row.partition] = min(until, verdict.available_at)
                self._backing[row.id] = row.partition
            self._count(row, verdict)
            self._finished(row, go_on)

    def _record(self, verdicts: list[tuple[Row, Verdict]]) -> None:
        """Record the rows' outcomes (with others that come meanwhile), without waiting: the
        rows count as out until recorded. :meth:`_recorded` waits for them all."""
        future = self._outcomes.put([_policy.outcome(row, verdict) for row, verdict in verdicts])
        self._recording.add(future)
        ids = [row.id for row, _ in verdicts]
        inflight, backing = self._inflight, self._backing

        def recorded(done: asyncio.Future[None]) -> None:
            self._recording.discard(done)
            for row_id in ids:
                inflight.pop(row_id, None)
                backing.pop(row_id, None)
            if not done.cancelled() and done.exception() is not None:
                self._failed = done.exception()

        future.add_done_callback(recorded)

    async def _recorded(self) -> None:
        """Wait until every outcome is recorded; raise the failure of one that could not be
        (its row stays ``sending``, as a crashed relay's would)."""
        while self._recording:
            await asyncio.wait(list(self._recording))
        failed, self._failed = self._failed, None
        if failed is not None:
            raise failed

    def _finish(self, outcomes: list[Outcome]) -> None:
        """Record ``outcomes`` (fenced; blocking), trying a few times if the database fails:
        if it never answers, the rows stay ``sending`` and are treated as a crashed relay's."""
        for attempt in range(5):
            try:
                self.store.finish(self.owner, outcomes, time.time())
                return
            except Exception as exc:
                if attempt == 4:
                    raise
                log.warning(
                    "relay %s: recording %d outcomes failed (%s); trying again",
                    self.owner,
                    len(outcomes),
                    self.store.describe(exc),
                )
                time.sleep(0.2 * 2**attempt)

    # -- publishing --------------------------------------------------------------------------

    async def _publish_all(self, rows: list[Row]) -> list[Receipt | BaseException]:
        """Publish ``rows`` at once: each one's receipt or error.

        Through the ``broadcasting_publish`` hook, each on its own, if a plugin implements
        it or watches hook calls; else (only the core delivers) the rows of each driver that
        sends requests go through one call into the core's delivery, which plans all their
        requests at once (:func:`~broadcasting._delivery.deliver_each`): what the hook would
        do for each, without a task, a greenlet switch and futures per row."""
        results: list[Receipt | BaseException | None] = [None] * len(rows)
        each: list[int] = []  # through the hook
        by_driver: dict[str, tuple[Broadcaster[Any], list[int], list[Message]]] = {}
        plain = core_alone(self.broadcast.plugin_manager, "broadcasting_publish")
        for index, row in enumerate(rows):
            route = self._route(row.driver)
            broadcaster = route.broadcaster
            if not (plain and route.sends) or broadcaster is None:
                each.append(index)  # (a driver not configured: the hook path says so)
                continue
            try:
                message = row.message()
            except Exception as exc:  # a body that is not JSON, say
                self._log_bug(row, exc)
                results[index] = exc
                continue
            group = by_driver.get(row.driver)
            if group is None:
                group = by_driver[row.driver] = (broadcaster, [], [])
            group[1].append(index)
            group[2].append(message)
        calls: list[Any] = [self._publish(rows[i]) for i in each]
        calls += [arun(deliver_each(b, messages)) for b, _, messages in by_driver.values()]
        done = await asyncio.gather(*calls) if len(calls) > 1 else [await c for c in calls]
        for index, result in zip(each, done, strict=False):
            results[index] = result
        for (_, indexes, _), outcomes in zip(by_driver.values(), done[len(each) :], strict=True):
            for index, outcome in zip(indexes, outcomes, strict=True):
                if not isinstance(outcome, Receipt):
                    self._log_bug(rows[index], outcome)
                results[index] = outcome
        return [r if r is not None else AssertionError("no result") for r in results]

    async def _publish(self, row: Row) -> Receipt | BaseException:
        """Publish one row through the hook (the core's delivery, retries, batching)."""
        try:
            broadcaster = self._broadcaster(row)
            message = row.message()
            message.via = _background.OUTBOX
            receipt: Receipt = await arun(broadcaster.publish_message(message))
            return receipt
        except Exception as exc:
            self._log_bug(row, exc)
            return exc

    def _log_bug(self, row: Row, result: object) -> None:
        """Log ``result`` with its traceback if it is an exception but not the library's own
        error (a plugin's bug: its traceback says where)."""
        if isinstance(result, Exception) and not isinstance(result, BroadcastError):
            log.error("relay %s: publishing row %s raised", self.owner, row.id, exc_info=result)

    def _route(self, name: str) -> _Route:
        """How rows for driver ``name`` go (found once, kept)."""
        route = self._routes.get(name)
        if route is None:
            try:
                broadcaster = self.broadcast.driver(name)
            except BroadcastError as exc:  # not configured here: every row for it is dead
                route = _Route(None, exc, False, False)
            else:
                caps, delivery = broadcaster.driver.capabilities, broadcaster.delivery
                # a service that drops repeats only for a while: rows are marked, and what
                # may have gone out goes again only inside that while (see _resends)
                window = caps.dedup_window if caps.deduplicates else None
                if delivery.at_least_once:
                    window = None
                resend = delivery.at_least_once or (caps.deduplicates and window is None)
                route = _Route(broadcaster, None, resend, _sends(broadcaster), window, caps)
            self._routes[name] = route
        return route

    def _broadcaster(self, row: Row) -> Broadcaster[Any]:
        route = self._route(row.driver)
        if route.broadcaster is None:
            raise route.error or BroadcastError(f"no driver {row.driver!r}")
        return route.broadcaster

    def _resends(self, row: Row) -> bool:
        """Whether sending ``row`` twice is harmless: its driver de-duplicates message ids
        (for a while: if ``row`` was written less than that ago, so first sent since), or
        its ``at_least_once`` delivery option is on."""
        route = self._route(row.driver)
        if route.window is not None:
            return may_resend(route.capabilities, False, row.created, time.time())
        return route.resend

    def _count(self, row: Row, verdict: Verdict) -> None:
        """Count ``row``'s verdict in its round and this relay's totals, log a dead or unknown
        row, and settle the row in its round."""
        round_ = self._round_of.pop(row.id)
        stats = round_.stats
        state = verdict.state
        if state == _policy.DELIVERED:
            stats.delivered += 1
            self._delivered += 1
            if self._failing and row.driver in self._failing:
                self._failing.discard(row.driver)
                log.info("relay %s: publishing through %s works again", self.owner, row.driver)
        elif state in (_policy.PENDING, _policy.SENDING):  # sending: may be out there
            retried = verdict.available_at is not None
            stats.retried += retried
            self._retried += retried
            if retried:
                self._note_failing(row, verdict)
        elif state == _policy.DEAD:
            stats.dead += 1
            self._dead += 1
            self._report(logging.ERROR, "dead", row, verdict)
        elif state == _policy.UNKNOWN:
            stats.unknown += 1
            self._unknown += 1
            self._report(logging.WARNING, "unknown", row, verdict)
        round_.settle()

    # -- reporting ---------------------------------------------------------------------------

    def _note_failing(self, row: Row, verdict: Verdict) -> None:
        """Log at WARNING that publishing through ``row``'s driver fails in a way worth
        retrying (the service is down): once as it begins, not for each row or attempt, and
        at most every :data:`FAILING_NOTE_EVERY` seconds per driver; the first delivery
        after it is logged at INFO."""
        driver = row.driver
        if driver in self._failing:
            return
        now = time.monotonic()
        if now - self._said_failing.get(driver, -math.inf) < FAILING_NOTE_EVERY:
            return
        self._failing.add(driver)
        self._said_failing[driver] = now
        log.warning(
            "relay %s: publishing through %s failed (%s); its rows wait and are sent again "
            "with back-off (up to %g s apart) until it works",
            self.owner,
            driver,
            verdict.error,
            self.backoff.cap,
        )

    def _report(self, level: int, state: str, row: Row, verdict: Verdict) -> None:
        """Log a row that ended dead (ERROR) or unknown (WARNING), with why."""
        log.log(
            level,
            "relay %s: outbox row %s (message %s, driver %s, channels %s) is %s: %s",
            self.owner,
            row.id,
            row.message_id,
            row.driver,
            ", ".join(verdict.channels_left or row.channels),
            state,
            verdict.error,
        )

    def stats(self) -> RelayStats:
        """The outbox's backlog, lag and relays, and this relay's counters (blocking)."""
        return RelayStats(
            self.owner,
            self.partitions,
            self.store.stats(time.time()),
            self._rounds,
            self._delivered,
            self._retried,
            self._dead,
            self._unknown,
        )

    async def astats(self) -> RelayStats:
        """Async twin of :meth:`stats` (the store is read in a thread)."""
        return await asyncio.to_thread(self.stats)


class _TablesNote:
    """What a relay says while the outbox's tables do not exist: once at ERROR (which table,
    what makes it), then a WARNING after :data:`TABLES_NOTE_FIRST` seconds, each next one
    twice as late (up to :data:`TABLES_NOTE_MAX`), each try in between at DEBUG; at INFO
    when they are there."""

    __slots__ = ("gap", "next_note", "owner", "since")

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.since: float | None = None  # when they were first found missing (monotonic)
        self.next_note = 0.0
        self.gap = TABLES_NOTE_FIRST

    def missing(self, error: BaseException, pause: float) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since = now
            self.gap = TABLES_NOTE_FIRST
            self.next_note = now + self.gap
            log.error(
                "relay %s: %s; the relay waits for them (it tries again every 10 s, and says so "
                "again in %.0f s)",
                self.owner,
                error,
                self.gap,
            )
        elif now >= self.next_note:
            self.gap = min(self.gap * 2, TABLES_NOTE_MAX)
            self.next_note = now + self.gap
            log.warning(
                "relay %s: still waiting for the outbox's tables (missing for %.0f s; "
                "next reminder in %.0f s): %s",
                self.owner,
                now - self.since,
                self.gap,
                error,
            )
        else:
            log.debug(
                "relay %s: the outbox's tables are still missing; trying again in %.1f s",
                self.owner,
                pause,
            )

    def found(self) -> None:
        if self.since is not None:
            log.info(
                "relay %s: the outbox's tables exist now (after %.0f s of waiting); relaying",
                self.owner,
                time.monotonic() - self.since,
            )
            self.since = None


_NO_CAPABILITIES = Capabilities()


@dataclass(frozen=True, slots=True)
class _Route:
    """How rows for one driver name go: its broadcaster (or the error that says why there is
    none), whether sending a row twice is harmless (the driver de-duplicates message ids,
    or ``at_least_once`` is on), and whether the core delivers for it (its driver sends
    requests) rather than the driver publishing in process."""

    broadcaster: Broadcaster[Any] | None
    error: BroadcastError | None
    resend: bool  #: for good (a window is checked per row)
    sends: bool
    #: Seconds the service drops a repeat, if only for a while (``Capabilities.dedup_window``).
    window: float | None = None
    capabilities: Capabilities = _NO_CAPABILITIES


def _sends(broadcaster: Broadcaster[Any]) -> bool:
    """Whether the core delivers for ``broadcaster`` (its driver sends requests), rather than
    the driver publishing in process."""
    driver = broadcaster.driver
    return implements(driver, "send") or implements(driver, "asend")


class _Round:
    """A round's rows on their way: its stats, how many rows are still to settle, the future
    of its stats (or of the first failure of the database while sending them)."""

    __slots__ = ("error", "future", "left", "stats")

    def __init__(self, stats: RoundStats, left: int, future: asyncio.Future[RoundStats]) -> None:
        self.stats = stats
        self.left = left
        self.future = future
        self.error: BaseException | None = None

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error

    def settle(self) -> None:
        """One more row settled (sent and judged, or not going)."""
        self.left -= 1
        if self.left == 0 and not self.future.done():
            if self.error is not None:
                self.future.set_exception(self.error)
            else:
                self.future.set_result(self.stats)


T = TypeVar("T")


class _Batched(Generic[T]):
    """One blocking call (in a thread) for every item put while the previous call ran: a
    call at a time, each taking every item waiting, after ``linger`` seconds for more to
    come. An exception of a call reaches the future of every list of items it took."""

    def __init__(self, call: Callable[[list[T]], None], linger: float = 0.0) -> None:
        self._call = call
        self._linger = linger
        self._waiting: list[tuple[list[T], asyncio.Future[None]]] = []
        self._running: asyncio.Task[None] | None = None

    def put(self, items: list[T]) -> asyncio.Future[None]:
        """The future of ``items``' call (on the running loop)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiting.append((items, future))
        if self._running is None:
            self._running = loop.create_task(self._drain())
        return future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                if self._linger:
                    await asyncio.sleep(self._linger)  # items coming soon join this call
                taken, self._waiting = self._waiting, []
                try:
                    await asyncio.to_thread(self._call, [i for items, _ in taken for i in items])
                except Exception as exc:
                    for _, future in taken:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for _, future in taken:
                    if not future.done():
                        future.set_result(None)
        finally:
            self._running = None
