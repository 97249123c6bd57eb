"""The relay: sends the outbox's rows through the core's publish path (docs/background.md).

One round: claim or renew this relay's leases on partitions, fetch up to ``batch`` rows of
the partitions it holds (each partition's rows up to its first that backs off), then send
each row in its turn and record its outcome. Every state change is fenced by the lease in
the store, so a relay that lost its lease while paused changes nothing. The decisions are
in :mod:`broadcasting.outbox._policy`.

Order: a row goes once the row before it on each of its channels has finished, so a
channel's rows go one at a time in id (commit) order while rows of other channels go at
once, and the core's batcher packs them into shared requests. A row that backs off stops
the rows after it on its channels (they stay pending, unsent) and holds its partition.

Just before a row goes it is marked ``sending`` (unless a repeat is harmless), and its
outcome is recorded as soon as it has one; marks and outcomes of rows going at the same
time share one statement each. So a relay killed at any moment leaves ``sending`` only the
rows it was sending then. While one round's rows are out, :meth:`Relay.arun` already
fetches the next round's (at most four rounds out); they wait for the earlier rows on
their channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
from broadcasting._errors import BroadcastError
from broadcasting._flow import arun
from broadcasting._loop import run_sync
from broadcasting._types import Receipt
from broadcasting.outbox import _policy
from broadcasting.outbox._policy import Backoff, Verdict
from broadcasting.outbox._row import Outcome, Row

if TYPE_CHECKING:
    from broadcasting._broadcast import Broadcast
    from broadcasting._broadcaster import Broadcaster
    from broadcasting.outbox._store import Stats, Store

log = logging.getLogger("broadcasting.outbox")

#: Seconds an outcome waits for others to be recorded with it (not on a row's way out: the
#: rows after it go at once; what a relay killed meanwhile leaves ``sending`` grows by it).
RECORD_LINGER = 0.02


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


def default_owner() -> str:
    """A name unique to this relay: host, process id and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Relay:
    """Delivers the outbox's rows of one :class:`~broadcasting.Broadcast` (docs/background.md).

    ``owner`` names this relay in the lease table (default: host, pid and a random suffix);
    ``store`` is the outbox (default: the one ``OUTBOX`` configures, shared with the write
    path); ``backoff`` paces a row whose publish failed in a retryable way.

    Run it with :meth:`run` (blocking, until SIGTERM/SIGINT or :meth:`stop`), ``await``
    :meth:`arun` in an application's own worker, or a round at a time with
    :meth:`run_once` / :meth:`arun_once`.
    """

    def __init__(
        self,
        broadcast: Broadcast,
        *,
        owner: str | None = None,
        store: Store | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        if store is None:
            from broadcasting.outbox._store import store_for

            store = store_for(broadcast)
        self.broadcast = broadcast
        self.store = store
        self.owner = owner or default_owner()
        #: seconds a lease lasts, delivered rows are kept; rows fetched per round (OUTBOX)
        self.lease: float = store.lease
        self.retention: float = store.retention
        self.batch: int = store.batch
        self.backoff = backoff or Backoff()
        self.partitions: tuple[int, ...] = ()
        self._renewed = float("-inf")  # when the leases were last claimed or renewed
        self._purged = float("-inf")  # when delivered rows past retention were last deleted
        self._stopping = threading.Event()
        self._inflight: dict[int, int] = {}  # rows marked and not finished yet: id -> partition
        self._last: dict[str, asyncio.Future[bool]] = {}  # each channel's latest row: go on?
        self._held: dict[int, float] = {}  # partitions waiting for a row that backs off: until
        self._broadcasters: dict[str, Broadcaster[Any] | BaseException] = {}
        self._rounds = self._delivered = self._retried = self._dead = self._unknown = 0
        self._fetched_new = False
        self._batch_loop: asyncio.AbstractEventLoop | None = None
        self._recording: set[asyncio.Future[None]] = set()  # outcomes being recorded
        self._failed: BaseException | None = None  # an outcome that could not be recorded
        self._marks: _Batched[int, bool]
        self._outcomes: _Batched[Outcome, None]

    def __repr__(self) -> str:
        return f"<Relay {self.owner!r} partitions={list(self.partitions)}>"

    # -- running -----------------------------------------------------------------------------

    def run(self) -> None:
        """Relay until :meth:`stop`, SIGTERM or SIGINT: then the requests in flight finish,
        the leases are released and it returns."""

        async def main() -> None:
            loop = asyncio.get_running_loop()
            handled: list[signal.Signals] = []
            if threading.current_thread() is threading.main_thread():
                for signum in (signal.SIGTERM, signal.SIGINT):
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
        as a crashed relay's."""
        self._stopping.clear()
        idle = failures = 0
        rounds: deque[asyncio.Task[RoundStats]] = deque()
        try:
            while not self._stopping.is_set():
                try:
                    idle = await self._step(rounds, idle)
                    failures = 0
                except Exception as exc:
                    failures += 1
                    pause = min(10.0, 0.5 * 2 ** min(failures - 1, 5))
                    log.warning(  # its message may hold a URL with a password: withheld
                        "relay %s: the outbox's database failed (%s); trying again in %.1f s",
                        self.owner,
                        type(exc).__name__,
                        pause,
                    )
                    for _ in range(max(1, int(pause * 10))):  # a stop() ends the pause
                        if self._stopping.is_set():
                            break
                        await asyncio.sleep(0.1)
        finally:
            if rounds:  # stopping: the requests in flight finish, their rows are recorded
                await asyncio.gather(*rounds, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._recorded()
            await asyncio.to_thread(self._release)

    async def _step(self, rounds: deque[asyncio.Task[RoundStats]], idle: int) -> int:
        """Begin a round (at most three still out); wait if it found nothing new. Returns
        how many looks in a row found nothing."""
        if rounds and self._claim_due(time.time()):
            # the claim gives up partitions beyond this relay's fair share, but not those
            # with rows out: it comes when nothing is out, so another relay gets its share
            while rounds:
                await rounds.popleft()
            await self._recorded()
        rounds.append(await self._begin())
        while rounds and (len(rounds) > 3 or rounds[0].done()):
            await rounds.popleft()  # its failure, if any, is raised here
        if self._failed is not None:
            await self._recorded()  # raises it
        if self._fetched_new:
            return 0
        due = await asyncio.to_thread(self.store.due, self.partitions) if self.partitions else None
        wait = _policy.next_wait(idle, () if due is None else (due,), time.time())
        pause, listen = _policy.pace(idle, wait)
        if pause > 0:  # woken for nothing it can send: not woken again before the pause ends
            await asyncio.sleep(pause)
        if listen > 0 and not self._stopping.is_set():
            await asyncio.to_thread(self.store.wait, listen)
        return idle + 1

    def stop(self) -> None:
        """Ask :meth:`run`/:meth:`arun` to end after the requests in flight (thread-safe)."""
        self._stopping.set()

    def _release(self) -> None:
        try:
            self.store.release(self.owner)
        except Exception:  # the leases expire by themselves
            log.warning("relay %s: could not release its leases", self.owner, exc_info=True)
        self.partitions = ()

    def run_once(self) -> RoundStats:
        """One round, blocking (on the core's background loop)."""
        return run_sync(self.arun_once())

    async def arun_once(self) -> RoundStats:
        """One round: claim, fetch, mark, send, record (module docstring)."""
        stats = await (await self._begin())
        await self._recorded()
        if not stats.busy and self.partitions:
            stats.due = await asyncio.to_thread(self.store.due, self.partitions)
        return stats

    async def _begin(self) -> asyncio.Task[RoundStats]:
        """Claim, fetch and mark a round's rows; the task that sends and records them."""
        store = self.store
        now = time.time()
        if self._claim_due(now):
            keep = sorted(set(self._inflight.values()))
            held = await asyncio.to_thread(store.claim, self.owner, now, self.lease, keep=keep)
            self.partitions = tuple(held)
            self._renewed = now
        if now - self._purged >= max(1.0, min(60.0, self.retention / 10)):
            self._purged = now
            await asyncio.to_thread(store.purge, now - self.retention)
        stats = RoundStats(self.partitions)
        self._rounds += 1
        rows: Sequence[Row] = []
        self._held = {p: until for p, until in self._held.items() if until > now}
        ready = [p for p in self.partitions if p not in self._held]  # not read while held
        if ready:  # a partition's rows up to its first that backs off
            out = set(self._inflight)  # before the fetch: rows out now may end during it
            limit = self.batch + len(out)  # the rows out come first: skipped
            rows = await asyncio.to_thread(store.fetch, self.owner, ready, now, limit, out)
        stats.fetched = len(rows)
        self._fetched_new = bool(rows)
        plan = _policy.plan(rows, now, self._resends)
        self._batches()
        for row in (*plan.rows, *plan.unknown):
            self._inflight[row.id] = row.partition
        chained = [(row, *self._chain(row)) for row in plan.rows]  # in id order, at once
        return asyncio.create_task(self._send_round(chained, plan.unknown, stats))

    def _batches(self) -> None:
        """This loop's batchers of marks and outcomes (a relay may run on several loops in
        turn: ``run_once()`` uses the core's background loop)."""
        loop = asyncio.get_running_loop()
        if self._batch_loop is not loop:
            store, owner = self.store, self.owner

            def mark(ids: list[int]) -> list[bool]:
                marked = set(store.mark_sending(owner, ids, time.time()))
                return [i in marked for i in ids]

            self._marks = _Batched(mark)  # rows going meanwhile share the next statement
            self._outcomes = _Batched(self._finish, RECORD_LINGER)
            self._batch_loop = loop

    def _claim_due(self, now: float) -> bool:
        """Whether the leases are due for renewal (every second, or a quarter lease)."""
        return now - self._renewed >= min(1.0, self.lease / 4)

    def _chain(self, row: Row) -> tuple[list[asyncio.Future[bool]], asyncio.Future[bool]]:
        """The rows ``row`` waits for (the latest on each of its channels) and its own future
        (``True`` once it finished and the rows after it may go; ``False``: they may not)."""
        before = list({id(f): f for c in row.channels if (f := self._last.get(c))}.values())
        mine: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        for channel in row.channels:
            self._last[channel] = mine
        return before, mine

    async def _send_round(
        self,
        chained: list[tuple[Row, list[asyncio.Future[bool]], asyncio.Future[bool]]],
        unknown: list[Row],
        stats: RoundStats,
    ) -> RoundStats:
        """Send a round's rows (each in its turn) and record each outcome as it comes."""
        found = [self._found_sending(row) for row in unknown]
        done = await asyncio.gather(*found, *(self._send(*link) for link in chained))
        verdicts = [item for item in done if item is not None]
        stats.fenced = sum(1 for item in done if item is None)
        self._count(verdicts, stats)
        return stats

    async def _found_sending(self, row: Row) -> tuple[Row, Verdict]:
        verdict = _policy.maybe_sent(row, "an earlier relay's attempt")
        self._record(row, verdict)
        return row, verdict

    def _record(self, row: Row, verdict: Verdict) -> None:
        """Record ``row``'s outcome (with others that come meanwhile), without waiting: the
        row counts as out until it is recorded. :meth:`_recorded` waits for them all."""
        future = self._outcomes.put(_policy.outcome(row, verdict))  # no task per row
        self._recording.add(future)
        row_id = row.id

        def recorded(done: asyncio.Future[None]) -> None:
            self._recording.discard(done)
            self._inflight.pop(row_id, None)
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

    def _finish(self, outcomes: list[Outcome]) -> list[None]:
        """Record ``outcomes`` (fenced; blocking), trying a few times if the database fails:
        if it never answers, the rows stay ``sending`` and are treated as a crashed relay's."""
        for attempt in range(5):
            try:
                self.store.finish(self.owner, outcomes, time.time())
                return [None] * len(outcomes)
            except Exception as exc:
                if attempt == 4:
                    raise
                log.warning(
                    "relay %s: recording %d outcomes failed (%s); trying again",
                    self.owner,
                    len(outcomes),
                    type(exc).__name__,
                )
                time.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(
        self, row: Row, before: list[asyncio.Future[bool]], mine: asyncio.Future[bool]
    ) -> tuple[Row, Verdict] | None:
        """Send ``row`` once the rows before it on its channels finished, then record what
        became of it. It is marked ``sending`` just before it goes (unless a repeat is
        harmless); ``None``: not sent, and nothing recorded (a row before it backs off, the
        relay stops, or its lease was lost: it stays as it is)."""
        go_on = False
        verdict: Verdict | None = None
        try:
            for earlier in before:
                if not await asyncio.shield(earlier):
                    return None
            if self._stopping.is_set():
                return None
            resend = self._resends(row)
            marking = row.state != _policy.SENDING and _policy.must_mark(resend)
            if marking and not await self._marks.submit(row.id):
                return None  # its partition's lease is lost: another relay has it
            result = await self._publish(row)
            verdict = _policy.judge(row, result, time.time(), resend=resend, backoff=self.backoff)
            # a row that backs off holds back the rows after it on its channels (order),
            # and its partition is not read again before it may go
            go_on = verdict.state != _policy.PENDING or verdict.available_at is None
            if not go_on and verdict.available_at is not None:
                until = self._held.get(row.partition, verdict.available_at)
                self._held[row.partition] = min(until, verdict.available_at)
            self._record(row, verdict)
            return row, verdict
        finally:
            if not mine.done():
                mine.set_result(go_on)
            for channel in row.channels:
                if self._last.get(channel) is mine:
                    del self._last[channel]
            if verdict is None:
                self._inflight.pop(row.id, None)  # nothing to record: no longer out

    async def _publish(self, row: Row) -> Receipt | BaseException:
        """Publish one row through the core (its delivery, retries, batching and hooks)."""
        try:
            broadcaster = self._broadcaster(row)
            message = row.message()
            message.via = _background.OUTBOX
            receipt: Receipt = await arun(broadcaster.publish_message(message))
            return receipt
        except Exception as exc:
            if not isinstance(exc, BroadcastError):  # a plugin's bug: its traceback says where
                log.error("relay %s: publishing row %s raised", self.owner, row.id, exc_info=exc)
            return exc

    def _broadcaster(self, row: Row) -> Broadcaster[Any]:
        name = row.driver
        found = self._broadcasters.get(name)
        if found is None:
            try:
                found = self.broadcast.driver(name)
            except BroadcastError as exc:  # not configured here: every row for it is dead
                found = exc
            self._broadcasters[name] = found
        if isinstance(found, BaseException):
            raise found
        return found

    def _resends(self, row: Row) -> bool:
        """Whether sending ``row`` twice is harmless: its driver de-duplicates message ids,
        or its ``at_least_once`` delivery option is on."""
        try:
            broadcaster = self._broadcaster(row)
        except BroadcastError:
            return False
        return bool(
            broadcaster.driver.capabilities.deduplicates or broadcaster.delivery.at_least_once
        )

    def _count(self, verdicts: Sequence[tuple[Row, Verdict]], stats: RoundStats) -> None:
        for row, verdict in verdicts:
            state = verdict.state
            if state == _policy.DELIVERED:
                stats.delivered += 1
            elif state == _policy.PENDING:
                stats.retried += verdict.available_at is not None
            elif state == _policy.DEAD:
                stats.dead += 1
                log.error(
                    "relay %s: outbox row %s (message %s, driver %s, channels %s) is dead: %s",
                    self.owner,
                    row.id,
                    row.message_id,
                    row.driver,
                    ", ".join(verdict.channels_left or row.channels),
                    verdict.error,
                )
            elif state == _policy.UNKNOWN:
                stats.unknown += 1
                log.warning(
                    "relay %s: outbox row %s (message %s, driver %s, channels %s) is unknown: %s",
                    self.owner,
                    row.id,
                    row.message_id,
                    row.driver,
                    ", ".join(verdict.channels_left or row.channels),
                    verdict.error,
                )
        self._delivered += stats.delivered
        self._retried += stats.retried
        self._dead += stats.dead
        self._unknown += stats.unknown

    # -- reporting ---------------------------------------------------------------------------

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


T = TypeVar("T")
R = TypeVar("R")


class _Batched(Generic[T, R]):
    """One blocking call (in a thread) for every item submitted while the previous call ran:
    a call at a time, each taking every item waiting. ``call(items)`` returns one result per
    item; an exception reaches every submitter of that call."""

    def __init__(self, call: Callable[[list[T]], Sequence[R]], linger: float = 0.0) -> None:
        self._call = call
        self._linger = linger
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._running: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """``item``'s result, from the next call."""
        return await self.put(item)

    def put(self, item: T) -> asyncio.Future[R]:
        """The future of ``item``'s result, from the next call (on the running loop)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._running is None:
            self._running = asyncio.create_task(self._drain())
        return future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                if self._linger:
                    await asyncio.sleep(self._linger)  # items coming soon join this call
                taken, self._waiting = self._waiting, []
                try:
                    results = await asyncio.to_thread(self._call, [item for item, _ in taken])
                except Exception as exc:
                    for _, future in taken:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(taken, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._running = None
