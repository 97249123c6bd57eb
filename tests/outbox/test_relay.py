"""The relay's logic over an in-memory stand-in for the store (a fake: the same contract as
broadcasting.outbox._store.Store, no database), with the real memory driver. The relay
against the real SQLite and PostgreSQL stores and soketi: test_relay_stores.py."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest

from broadcasting import Broadcast
from broadcasting.drivers.memory import BroadcastMemoryDriver
from broadcasting.outbox._relay import Relay
from broadcasting.outbox._row import (
    DEAD,
    DELIVERED,
    PENDING,
    SENDING,
    UNKNOWN,
    NewRow,
    Outcome,
    Row,
    partition_of,
)
from broadcasting.plugin import hookimpl, wait_for

PARTITIONS = 4


@dataclass
class FakeStats:
    backlog: dict[int, int]
    lag: float | None
    stranded: int = 0  # rows in partitions past PARTITIONS: this store has none


class FakeStore:
    """An outbox in a dict, with the Store's contract: leases fence every change."""

    dialect = "fake"
    table = "broadcasting_outbox"
    partitions = PARTITIONS
    lease = 30.0
    retention = 3600.0
    batch = 50

    def __init__(self) -> None:
        self.rows: dict[int, Row] = {}
        self.leases: dict[int, tuple[str, float]] = {}
        self.lock = threading.Lock()
        self.next_id = 1

    def create_tables(self) -> None:
        pass

    def describe(self, error: BaseException) -> str:
        return type(error).__name__  # no database driver here: every error by its type

    def insert(self, rows: Sequence[NewRow]) -> None:
        with self.lock:
            for new in rows:
                self.rows[self.next_id] = Row(
                    self.next_id, *vars_of(new), state=PENDING, attempts=0, error=None, done_at=None
                )
                self.next_id += 1

    def claim(
        self,
        owner: str,
        now: float,
        lease: float,
        *,
        keep: Sequence[int] = (),
        written: Sequence[float] | None = None,  # the name's check: Store's (real databases)
    ) -> list[int]:
        with self.lock:
            for part in range(self.partitions):
                holder = self.leases.get(part)
                if holder is None or holder[0] == owner or holder[1] <= now:
                    self.leases[part] = (owner, now + lease)
            return [p for p, (o, _) in sorted(self.leases.items()) if o == owner]

    def _mine(self, owner: str, part: int, now: float) -> bool:
        holder = self.leases.get(part)
        return holder is not None and holder[0] == owner and holder[1] > now

    def fetch(
        self,
        owner: str,
        partitions: Sequence[int],
        now: float,
        limit: int,
        skip: Collection[int] = (),
    ) -> list[Row]:
        with self.lock:
            found = [
                r
                for r in self.rows.values()
                if r.partition in partitions and r.state in (PENDING, SENDING)
            ]
            rows, held = [], set()
            for row in sorted(found, key=lambda r: (r.partition, r.id)):
                if row.available_at > now:
                    held.add(row.partition)
                if row.partition not in held:
                    rows.append(row)
            return [row for row in rows[:limit] if row.id not in skip]

    def due(self, partitions: Sequence[int]) -> float | None:
        heads: dict[int, Row] = {}
        for row in sorted(self.rows.values(), key=lambda r: r.id):
            if row.partition in partitions and row.state in (PENDING, SENDING):
                heads.setdefault(row.partition, row)
        return min((r.available_at for r in heads.values()), default=None)

    def mark_sending(self, owner: str, ids: Sequence[int], now: float) -> list[int]:
        with self.lock:
            done = []
            for i in ids:
                row = self.rows[i]
                if self._mine(owner, row.partition, now):
                    self.rows[i] = replace(row, state=SENDING)
                    done.append(i)
            return done

    def finish(self, owner: str, outcomes: Sequence[Outcome], now: float) -> None:
        with self.lock:
            for o in outcomes:
                row = self.rows[o.id]
                if not self._mine(owner, row.partition, now):
                    continue
                self.rows[o.id] = replace(
                    row,
                    state=o.state,
                    channels=o.channels_left or row.channels,
                    available_at=row.available_at if o.available_at is None else o.available_at,
                    error=o.error,
                    attempts=o.attempts,
                    done_at=now if o.state in (DELIVERED, DEAD, UNKNOWN) else None,
                )

    def release(self, owner: str, written: Sequence[float] | None = None) -> None:
        with self.lock:
            for part, (o, _) in list(self.leases.items()):
                if o == owner:
                    del self.leases[part]

    def wait(self, timeout: float) -> None:
        threading.Event().wait(timeout)

    def stats(self, now: float) -> FakeStats:
        backlog: dict[int, int] = {}
        for row in self.rows.values():
            backlog[row.state] = backlog.get(row.state, 0) + 1
        return FakeStats(backlog, None)

    def purge(self, before: float) -> int:
        with self.lock:
            old = [
                i
                for i, r in self.rows.items()
                if r.state == DELIVERED and (r.done_at or 0) < before
            ]
            for i in old:
                del self.rows[i]
            return len(old)

    def close(self) -> None:
        pass

    def states(self) -> dict[int, int]:
        return {i: r.state for i, r in self.rows.items()}


def vars_of(new: NewRow) -> tuple[object, ...]:
    return (
        new.partition,
        new.created,
        new.available_at,
        new.driver,
        new.event,
        new.channels,
        new.body,
        new.data_kind,
        new.socket_id,
        new.message_id,
    )


@pytest.fixture
def broadcast() -> Iterator[Broadcast]:
    config = {"DRIVER": "memory", "DRIVERS": {"memory": {}}, "OUTBOX": {"batch": 50}}
    with Broadcast(config) as broadcast:
        yield broadcast


def write(store: FakeStore, channel: str, n: int, *, driver: str = "memory") -> list[str]:
    ids = [f"m-{channel}-{i}" for i in range(n)]
    store.insert(
        [
            NewRow(
                partition_of(channel, PARTITIONS),
                0.0,
                0.0,
                driver,
                "e",
                (channel,),
                f'{{"n":{i}}}',
                "json",
                None,
                mid,
            )
            for i, mid in enumerate(ids)
        ]
    )
    return ids


def test_rows_are_delivered_in_order_per_channel(broadcast: Broadcast) -> None:
    store = FakeStore()
    for channel in ("a", "b", "c", "d", "e"):
        write(store, channel, 30)
    relay = Relay(broadcast, owner="r1", store=store)
    while relay.run_once().busy:
        pass
    memory = broadcast.driver(BroadcastMemoryDriver).driver
    sent = list(memory.messages) if hasattr(memory, "messages") else list(memory.history())
    assert len(sent) == 150
    for channel in ("a", "b", "c", "d", "e"):
        got = [m.data["n"] for m in sent if m.channels == (channel,)]
        assert got == list(range(30))
    assert set(store.states().values()) == {DELIVERED}
    assert all(m.via == "outbox" for m in sent)


def test_rows_for_a_driver_that_is_not_configured_are_dead_and_logged(
    broadcast: Broadcast, caplog: pytest.LogCaptureFixture
) -> None:
    store = FakeStore()
    write(store, "a", 2, driver="nowhere")
    write(store, "b", 1)
    relay = Relay(broadcast, owner="r1", store=store)
    with caplog.at_level(logging.WARNING, "broadcasting.outbox"):
        stats = relay.run_once()
    assert (stats.delivered, stats.dead) == (1, 2)
    dead = [r for r in store.rows.values() if r.state == DEAD]
    assert [r.message_id for r in dead] == ["m-a-0", "m-a-1"]
    assert all(r.error and "DriverNotFoundError" in r.error for r in dead)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert "m-a-0" in errors[0].getMessage() and "nowhere" in errors[0].getMessage()


def test_a_row_found_sending_becomes_unknown_for_a_driver_that_does_not_deduplicate(
    broadcast: Broadcast, caplog: pytest.LogCaptureFixture
) -> None:
    store = FakeStore()
    write(store, "a", 2)
    store.claim("dead-relay", 0.0, 1.0)  # long expired
    first = min(store.rows)
    store.rows[first] = replace(store.rows[first], state=SENDING)
    relay = Relay(broadcast, owner="r1", store=store)
    with caplog.at_level(logging.WARNING, "broadcasting.outbox"):
        stats = relay.run_once()
    assert (stats.unknown, stats.delivered) == (1, 1)
    assert store.rows[first].state == UNKNOWN
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "m-a-0" in warned[0] and "unknown" in warned[0]
    memory = broadcast.driver(BroadcastMemoryDriver).driver
    assert [m.id for m in memory.messages] == ["m-a-1"]


def test_with_at_least_once_a_row_found_sending_is_sent_again() -> None:
    config = {"DRIVER": "memory", "DRIVERS": {"memory": {}}}
    store = FakeStore()
    write(store, "a", 1)
    first = min(store.rows)
    store.rows[first] = replace(store.rows[first], state=SENDING)
    with Broadcast(config) as broadcast:
        relay = Relay(broadcast, owner="r1", store=store)
        relay._resends = lambda row: True  # type: ignore[method-assign]
        assert relay.run_once().delivered == 1
        assert [m.id for m in broadcast.driver("memory").driver.messages] == ["m-a-0"]


class LosingStore(FakeStore):
    """Loses its lease between claim and mark: a paused relay whose lease expired."""

    def mark_sending(self, owner: str, ids: Sequence[int], now: float) -> list[int]:
        self.leases = {p: ("other", now + 60) for p in self.leases}
        return super().mark_sending(owner, ids, now)


def test_a_relay_that_lost_its_lease_sends_and_changes_nothing(broadcast: Broadcast) -> None:
    store = LosingStore()
    write(store, "a", 3)
    relay = Relay(broadcast, owner="r1", store=store)
    stats = relay.run_once()
    assert (stats.fenced, stats.delivered) == (3, 0)
    assert set(store.states().values()) == {PENDING}
    assert broadcast.driver(BroadcastMemoryDriver).driver.messages == []


async def test_arun_stops_and_releases_its_leases(broadcast: Broadcast) -> None:
    import asyncio

    store = FakeStore()
    write(store, "a", 5)
    relay = Relay(broadcast, owner="r1", store=store)
    task = asyncio.create_task(relay.arun())
    memory = broadcast.driver(BroadcastMemoryDriver).driver
    for _ in range(500):
        if len(memory.messages) == 5:
            break
        await asyncio.sleep(0.01)
    relay.stop()
    await asyncio.wait_for(task, 5)
    assert len(memory.messages) == 5
    assert store.leases == {}
    assert relay.stats().delivered == 5


class Slow:
    """A real plugin (a ``broadcasting_publish`` wrapper) that takes 2 ms per publish on the
    async path and notes which channels are being sent at once."""

    def __init__(self) -> None:
        self.active: Counter[str] = Counter()
        self.overlaps: list[str] = []
        self.most = 0

    @hookimpl(wrapper=True)
    def broadcasting_publish(self, broadcast: Broadcast, driver: Any, message: Any) -> Any:
        for channel in message.channels:
            if self.active[channel]:
                self.overlaps.append(channel)
            self.active[channel] += 1
        self.most = max(self.most, sum(1 for n in self.active.values() if n))
        try:
            wait_for(asyncio.sleep(0.002))
            return (yield)
        finally:
            self.active.subtract(message.channels)


def test_a_channels_rows_go_one_at_a_time_and_other_channels_at_once(
    broadcast: Broadcast,
) -> None:
    slow = Slow()
    broadcast.plugin_manager.register(slow)
    store = FakeStore()
    assert partition_of("a", PARTITIONS) == partition_of("c", PARTITIONS)
    for n in range(10):
        for channel in ("a", "b", "c", "d"):
            write(store, channel, 1)
        both = NewRow(
            partition_of("a", PARTITIONS), 0.0, 0.0, "memory", "e", ("a", "c"),
            f'{{"n":{n}}}', "json", None, f"both-{n}",
        )  # fmt: skip
        store.insert([both])  # a row to two channels, between their own rows
    relay = Relay(broadcast, owner="r1", store=store)
    while relay.run_once().busy:
        pass
    assert slow.overlaps == []
    assert slow.most > 1  # different channels did go at once
    assert set(store.states().values()) == {DELIVERED}
    sent = broadcast.driver(BroadcastMemoryDriver).driver.messages
    for channel in ("a", "c"):  # in id order: its own row, then the shared one, ten times
        ids = [m.id.split("-")[0] for m in sent if channel in m.channels]
        assert ids == ["m", "both"] * 10


class FlakyStore(FakeStore):
    """Its first fetch fails as a database that restarts would."""

    failed = False

    def fetch(
        self,
        owner: str,
        partitions: Sequence[int],
        now: float,
        limit: int,
        skip: Collection[int] = (),
    ) -> list[Row]:
        if not self.failed:
            self.failed = True
            raise ConnectionError("the server closed the connection unexpectedly")
        return super().fetch(owner, partitions, now, limit, skip)


async def test_a_database_failure_is_logged_and_the_relay_goes_on(
    broadcast: Broadcast, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore()
    write(store, "a", 3)
    relay = Relay(broadcast, owner="r1", store=store)
    task = asyncio.create_task(relay.arun())
    memory = broadcast.driver(BroadcastMemoryDriver).driver
    with caplog.at_level(logging.WARNING, "broadcasting.outbox"):
        for _ in range(500):
            if len(memory.messages) == 3:
                break
            await asyncio.sleep(0.01)
        relay.stop()
        await asyncio.wait_for(task, 5)
    assert len(memory.messages) == 3
    assert any("ConnectionError" in r.getMessage() for r in caplog.records)


# -- waves: a channel's rows one at a time, held back behind a row that backs off -----------


class FailsOnce:
    """A real plugin (a ``broadcasting_publish`` wrapper) that refuses the first publish of
    each listed message id as a service that is briefly down would (retryable, certainly
    not delivered), and notes every publish it saw."""

    def __init__(self, *ids: str) -> None:
        self.left = set(ids)
        self.seen: list[str] = []

    @hookimpl(wrapper=True)
    def broadcasting_publish(self, broadcast: Broadcast, driver: Any, message: Any) -> Any:
        from broadcasting import PublishError

        self.seen.append(message.id)
        if message.id in self.left:
            self.left.discard(message.id)
            raise PublishError("unavailable", driver=driver.name, status=503, retryable=True)
        return (yield)


def rows_on(store: FakeStore, channels: tuple[str, ...], mid: str) -> None:
    """One row to ``channels`` (which share a partition), id ``mid``."""
    (partition,) = {partition_of(c, PARTITIONS) for c in channels}
    store.insert(
        [NewRow(partition, 0.0, 0.0, "memory", "e", channels, '{"n":0}', "json", None, mid)]
    )


def sent_on(broadcast: Broadcast, channel: str) -> list[str]:
    memory = broadcast.driver(BroadcastMemoryDriver).driver
    return [m.id for m in memory.messages if channel in m.channels]


def test_a_row_that_backs_off_holds_back_only_the_rows_after_it_on_its_channels(
    broadcast: Broadcast,
) -> None:
    from broadcasting.outbox._policy import Backoff

    assert partition_of("a", PARTITIONS) == partition_of("c", PARTITIONS)
    fails = FailsOnce("a1")
    broadcast.plugin_manager.register(fails)
    store = FakeStore()
    for mid, channels in [
        ("a0", ("a",)),
        ("c0", ("c",)),
        ("a1", ("a",)),  # backs off once
        ("c1", ("c",)),
        ("a2", ("a",)),
        ("ac", ("a", "c")),  # after a1 and c1: waits for a1
        ("c2", ("c",)),  # after ac
        ("b0", ("b",)),  # another channel: goes
    ]:
        rows_on(store, channels, mid)
    relay = Relay(broadcast, owner="r1", store=store, backoff=Backoff(0.01, 0.02))
    first = relay.run_once()
    assert (first.delivered, first.retried, first.fenced) == (4, 1, 3)
    assert set(fails.seen) == {"a0", "c0", "a1", "c1", "b0"}  # a2, ac, c2 never went
    held = {r.message_id: r.state for r in store.rows.values()}
    assert [held[m] for m in ("a1", "a2", "ac", "c2")] == [PENDING] * 4  # none left sending
    for _ in range(200):
        if not relay.run_once().busy and set(store.states().values()) == {DELIVERED}:
            break
        threading.Event().wait(0.01)
    assert set(store.states().values()) == {DELIVERED}
    assert sent_on(broadcast, "a") == ["a0", "a1", "a2", "ac"]
    assert sent_on(broadcast, "c") == ["c0", "c1", "ac", "c2"]
    assert sent_on(broadcast, "b") == ["b0"]


async def test_running_rows_of_a_channel_never_overlap_even_when_one_backs_off(
    broadcast: Broadcast,
) -> None:
    """Rounds fetched while earlier rows are out, rows on two channels, rows that back off:
    never two rows of a channel out at once, each channel in order, each row once."""
    from broadcasting.outbox._policy import Backoff

    slow, fails = Slow(), FailsOnce("m-a-3", "both-5", "m-c-7")
    broadcast.plugin_manager.register(slow)
    broadcast.plugin_manager.register(fails)
    store = FakeStore()
    store.batch = 7  # small rounds: many of them out at once
    expected: dict[str, list[str]] = {c: [] for c in "abcd"}
    for n in range(12):
        for channel in "abcd":
            rows_on(store, (channel,), f"m-{channel}-{n}")
            expected[channel].append(f"m-{channel}-{n}")
        rows_on(store, ("a", "c"), f"both-{n}")
        expected["a"].append(f"both-{n}")
        expected["c"].append(f"both-{n}")
    relay = Relay(broadcast, owner="r1", store=store, backoff=Backoff(0.01, 0.02))
    relay.batch = 7
    task = asyncio.create_task(relay.arun())
    for _ in range(1000):
        if set(store.states().values()) == {DELIVERED}:
            break
        await asyncio.sleep(0.01)
    relay.stop()
    await asyncio.wait_for(task, 10)
    assert set(store.states().values()) == {DELIVERED}
    assert slow.overlaps == []
    for channel in "abcd":
        assert sent_on(broadcast, channel) == expected[channel]
    assert relay.stats().retried == 3


class MarkFailsOnce(FakeStore):
    """Its first mark fails as a database that restarts would."""

    failed = False

    def mark_sending(self, owner: str, ids: Sequence[int], now: float) -> list[int]:
        if not self.failed:
            self.failed = True
            raise ConnectionError("the server closed the connection unexpectedly")
        return super().mark_sending(owner, ids, now)


async def test_a_failure_to_mark_is_logged_and_the_rows_go_later_once_in_order(
    broadcast: Broadcast, caplog: pytest.LogCaptureFixture
) -> None:
    store = MarkFailsOnce()
    for channel in ("a", "b"):
        write(store, channel, 4)
    relay = Relay(broadcast, owner="r1", store=store)
    task = asyncio.create_task(relay.arun())
    with caplog.at_level(logging.WARNING, "broadcasting.outbox"):
        for _ in range(1000):
            if set(store.states().values()) == {DELIVERED}:
                break
            await asyncio.sleep(0.01)
        relay.stop()
        await asyncio.wait_for(task, 10)
    assert any("ConnectionError" in r.getMessage() for r in caplog.records)
    assert set(store.states().values()) == {DELIVERED}
    for channel in ("a", "b"):
        assert sent_on(broadcast, channel) == [f"m-{channel}-{n}" for n in range(4)]


async def test_stopping_leaves_the_rows_not_gone_pending(broadcast: Broadcast) -> None:
    slow = Slow()
    broadcast.plugin_manager.register(slow)
    store = FakeStore()
    write(store, "a", 40)  # one channel: one row at a time, 2 ms each
    relay = Relay(broadcast, owner="r1", store=store)
    task = asyncio.create_task(relay.arun())
    memory = broadcast.driver(BroadcastMemoryDriver).driver
    for _ in range(10_000):  # up to 10 s
        if len(memory.messages) >= 3:
            break
        await asyncio.sleep(0.001)
    relay.stop()
    await asyncio.wait_for(task, 10)
    states = [store.rows[i].state for i in sorted(store.rows)]
    sent = len(memory.messages)
    assert 3 <= sent < 40
    assert states == [DELIVERED] * sent + [PENDING] * (40 - sent)  # nothing left sending
