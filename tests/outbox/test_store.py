"""The outbox Store on a real SQLite file and a real PostgreSQL table: rows in and out,
leases (fair shares, no two owners, takeover after expiry), fencing, outcomes, the
operator's requeue and purge, stats, fork safety, waking."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import pytest

from broadcasting._errors import ConfigurationError
from broadcasting._types import Message
from broadcasting.outbox import DEAD, DELIVERED, PENDING, SENDING, UNKNOWN, Outcome, Store
from broadcasting.outbox._row import new_rows, partition_of

NOW = 1_800_000_000.0


def message(channels: tuple[str, ...], data: object = None, **kw: object) -> Message:
    text = "hello" if data is None else data
    body = text if isinstance(text, str) else __import__("json").dumps(text, separators=(",", ":"))
    return Message(channels, "shipped", text, body, kw.pop("id", "m1"), **kw)  # type: ignore[arg-type]


def put(store: Store, channels: tuple[str, ...], mid: str = "m1", now: float = NOW) -> None:
    store.insert(new_rows(message(channels, id=mid), "pusher", store.partitions, now))


def all_partitions(store: Store) -> list[int]:
    return list(range(store.partitions))


def test_insert_and_fetch_round_trip(store: Store) -> None:
    sent = message(("a", "b", "c", "d"), {"id": 42, "é": "ü"}, id="m42", socket_id="1.2")
    store.insert(new_rows(sent, "pusher", store.partitions, NOW))
    store.insert(new_rows(message(("a",), "plain text", id="m43"), "ably", store.partitions, NOW))
    rows = store.fetch("r", all_partitions(store), NOW, 100)
    # one row per partition the channels hash to, in (partition, id) order
    assert [(r.partition, r.id) for r in rows] == sorted((r.partition, r.id) for r in rows)
    first = [r for r in rows if r.message_id == "m42"]
    assert sorted(c for r in first for c in r.channels) == ["a", "b", "c", "d"]
    assert len(first) == len({partition_of(c, store.partitions) for c in "abcd"})
    for row in first:
        assert {partition_of(c, store.partitions) for c in row.channels} == {row.partition}
        assert (row.state, row.attempts, row.error, row.done_at) == (PENDING, 0, None, None)
        got = row.message()
        assert (got.event, got.data, got.text, got.id, got.socket_id, got.via) == (
            "shipped",
            {"id": 42, "é": "ü"},
            sent.text,
            "m42",
            "1.2",
            "outbox",
        )
        assert row.driver == "pusher"
    (text_row,) = [r for r in rows if r.message_id == "m43"]
    assert text_row.message().data == "plain text" and text_row.data_kind == "text"


def test_create_tables_is_idempotent_and_keeps_rows(store: Store) -> None:
    put(store, ("a",))
    store.create_tables()
    assert len(store.fetch("r", all_partitions(store), NOW, 10)) == 1


def test_two_owners_never_hold_the_same_partition_and_share_fairly(
    new_store: Callable[..., Store], request: pytest.FixtureRequest
) -> None:
    for kind in ("sqlite", "postgresql", "mysql"):
        store = new_store(kind, partitions=16)
        a = store.claim("a", NOW, 30)
        assert a == list(range(16))  # alone: everything
        b = store.claim("b", NOW + 1, 30)
        assert b == []  # all held: b waits for a to give some up
        a = store.claim("a", NOW + 2, 30)
        assert len(a) == 8  # two live relays: a keeps its share
        b = store.claim("b", NOW + 3, 30)
        assert len(b) == 8 and not set(a) & set(b) and set(a) | set(b) == set(range(16))
        c = store.claim("c", NOW + 4, 30)
        a = store.claim("a", NOW + 5, 30)
        b = store.claim("b", NOW + 6, 30)
        c = store.claim("c", NOW + 7, 30)
        held = [set(a), set(b), set(c)]
        assert sum(map(len, held)) == 16 and set().union(*held) == set(range(16))
        assert max(map(len, held)) <= 6  # ceil(16 / 3)
        stats = store.stats(NOW + 8)
        assert {o: set(p) for o, p in stats.relays.items()} == dict(zip("abc", held, strict=True))


def test_fewer_partitions_than_before_are_never_claimed(
    store: Store, new_store: Callable[..., Store]
) -> None:
    store.claim("a", NOW, 30)
    store.release("a")
    fewer = Store(store._source, table=store.table, partitions=2)
    assert fewer.claim("b", NOW, 30) == [0, 1]


def test_concurrent_claims_never_overlap(store: Store) -> None:
    results: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def claim(owner: str) -> None:
        barrier.wait()
        try:
            for i in range(5):
                results[owner] = store.claim(owner, NOW + i, 30)
        except BaseException as exc:  # MySQL: a deadlock, say
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(f"r{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    held = [p for owner in results for p in results[owner]]
    assert len(held) == len(set(held))
    leases = store.stats(NOW + 5).relays
    assert sorted(p for ps in leases.values() for p in ps) == sorted(held)


def test_keep_holds_partitions_in_flight(store: Store) -> None:
    assert store.claim("a", NOW, 30) == [0, 1, 2, 3]
    store.claim("b", NOW, 30)
    assert store.claim("a", NOW + 1, 30, keep=[0, 1, 2, 3]) == [0, 1, 2, 3]
    assert store.claim("a", NOW + 2, 30, keep=[3]) == [0, 3]


def test_an_expired_lease_is_taken_over_and_the_old_owner_is_fenced(store: Store) -> None:
    put(store, ("a", "b", "c", "d", "e", "f"))
    assert store.claim("old", NOW, 30) == [0, 1, 2, 3]
    rows = store.fetch("old", all_partitions(store), NOW, 100)
    ids = [r.id for r in rows]
    assert store.mark_sending("old", ids[:1], NOW) == ids[:1]
    # "old" pauses past its lease; "new" takes everything over
    later = NOW + 31
    assert store.claim("new", later, 30) == [0, 1, 2, 3]
    # the paused relay wakes up: nothing it does changes a row
    assert store.mark_sending("old", ids, later) == []
    assert store.mark_sending("old", ids, NOW + 1) == []  # its own clock does not help
    store.finish("old", [Outcome(i, DELIVERED) for i in ids], NOW + 1)
    after = store.fetch("new", all_partitions(store), later, 100)
    assert [(r.id, r.state) for r in after] == [(ids[0], SENDING)] + [(i, PENDING) for i in ids[1:]]
    # and it cannot renew what it lost
    assert store.claim("old", later + 1, 30) == []
    # the new owner's changes go through
    assert store.mark_sending("new", ids[1:], later) == ids[1:]
    store.finish("new", [Outcome(i, DELIVERED) for i in ids], later)
    assert store.fetch("new", all_partitions(store), later, 100) == []
    assert store.stats(later).backlog["delivered"] == len(ids)


def test_outcomes_partial_retry_dead_unknown(store: Store) -> None:
    # all on one partition, so the head-of-line rule shows
    channels = [f"c{i}" for i in range(40) if partition_of(f"c{i}", 4) == 0][:4]
    put(store, (channels[0], channels[1]), "m1")
    put(store, (channels[2],), "m2")
    put(store, (channels[3],), "m3")
    store.claim("r", NOW, 30)
    one, two, three = store.fetch("r", [0], NOW, 10)
    assert store.mark_sending("r", [one.id, two.id, three.id], NOW) == [one.id, two.id, three.id]
    store.finish(
        "r",
        [
            # one channel delivered, the other to retry later: the partition waits for it
            Outcome(one.id, PENDING, (channels[1],), NOW + 5, "503 Service Unavailable", 1),
            Outcome(two.id, DEAD, error="400 bad event", attempts=1),
            Outcome(three.id, UNKNOWN, error="timed out after sending"),
        ],
        NOW,
    )
    assert store.fetch("r", [0], NOW + 1, 10) == []  # head-of-line: the partition waits
    assert store.due([0, 1]) == NOW + 5
    (retry,) = store.fetch("r", [0], NOW + 5, 10)
    assert (retry.id, retry.channels, retry.attempts, retry.error) == (
        one.id,
        (channels[1],),
        1,
        "503 Service Unavailable",
    )
    assert retry.done_at is None and retry.message().channels == (channels[1],)
    (dead,) = store.rows(DEAD, 10)
    (unknown,) = store.rows(UNKNOWN, 10)
    assert (dead.id, dead.error, dead.done_at) == (two.id, "400 bad event", NOW)
    assert (unknown.id, unknown.state_name) == (three.id, "unknown")
    assert store.due([1, 2]) is None


def test_finish_leaves_closed_rows_alone(store: Store) -> None:
    put(store, ("a",))
    store.claim("r", NOW, 30)
    (row,) = store.fetch("r", all_partitions(store), NOW, 10)
    store.finish("r", [Outcome(row.id, DELIVERED)], NOW)
    store.finish("r", [Outcome(row.id, DEAD, error="late")], NOW + 1)  # a stale second word
    assert store.rows(DELIVERED, 10)[0].done_at == NOW
    assert store.mark_sending("r", [row.id], NOW + 2) == []


def test_fetch_skips_rows_out_but_a_skipped_row_backing_off_still_holds_its_partition(
    store: Store,
) -> None:
    channels = [f"c{i}" for i in range(40) if partition_of(f"c{i}", 4) == 0][:3]
    for i, channel in enumerate(channels):
        put(store, (channel,), f"m{i}")
    store.claim("r", NOW, 30)
    one, two, three = store.fetch("r", [0], NOW, 10)
    assert store.fetch("r", [0], NOW, 10, skip={one.id, three.id}) == [two]
    store.finish("r", [Outcome(one.id, PENDING, available_at=NOW + 5, attempts=1)], NOW)
    assert store.fetch("r", [0], NOW, 10, skip={one.id}) == []  # head-of-line, even skipped
    assert [r.id for r in store.fetch("r", [0], NOW + 5, 10, skip={one.id})] == [two.id, three.id]


def test_many_marks_and_outcomes_at_once_and_a_repeated_id_in_turn(store: Store) -> None:
    rows = [
        row
        for i in range(600)
        for row in new_rows(message((f"k{i}",), id=f"m{i}"), "pusher", store.partitions, NOW)
    ]
    store.insert(rows)
    store.claim("r", NOW, 30)
    found = store.fetch("r", all_partitions(store), NOW, 1000)
    ids = [r.id for r in found]
    assert len(ids) == 600
    assert sorted(store.mark_sending("r", ids, NOW)) == sorted(ids)
    assert store.fetch("r", all_partitions(store), NOW, 1000)[0].state == SENDING
    first, rest = ids[0], ids[1:]
    store.finish("r", [Outcome(i, DELIVERED) for i in rest], NOW)
    # one row's two outcomes in one call are recorded in turn: a retry, then delivered
    store.finish("r", [Outcome(first, PENDING, attempts=1), Outcome(first, DELIVERED)], NOW)
    assert store.stats(NOW).backlog["delivered"] == 600
    assert store.fetch("r", all_partitions(store), NOW, 1000) == []
    store.finish("other", [Outcome(i, DEAD) for i in ids], NOW)  # fenced: changes nothing
    assert store.stats(NOW).backlog["dead"] == 0


def test_fetch_shares_the_limit_between_partitions(store: Store) -> None:
    by_partition: dict[int, list[str]] = {}
    for i in range(400):
        by_partition.setdefault(partition_of(f"ch{i}", 4), []).append(f"ch{i}")
    for n in range(30):  # partition 0 has a long backlog
        put(store, (by_partition[0][n % 5],), f"p0-{n}")
    put(store, (by_partition[3][0],), "p3")
    rows = store.fetch("r", all_partitions(store), NOW, 8)
    assert [r.message_id for r in rows if r.partition == 3] == ["p3"]
    assert [r.message_id for r in rows if r.partition == 0] == [f"p0-{n}" for n in range(2)]


def test_requeue_purge_and_stats(store: Store) -> None:
    for n in range(4):
        put(store, ("a",), f"m{n}", now=NOW - 100)
    store.claim("r", NOW, 30)
    rows = store.fetch("r", all_partitions(store), NOW, 10)
    store.mark_sending("r", [rows[0].id], NOW)
    store.finish(
        "r",
        [
            Outcome(rows[0].id, DELIVERED),
            Outcome(rows[1].id, DEAD, error="x", attempts=3),
            Outcome(rows[2].id, UNKNOWN, error="y"),
        ],
        NOW,
    )
    stats = store.stats(NOW + 10)
    assert dict(stats.backlog) == {
        "pending": 1,
        "sending": 0,
        "delivered": 1,
        "dead": 1,
        "unknown": 1,
    }
    assert stats.lag == pytest.approx(110)
    assert stats.relays == {"r": (0, 1, 2, 3)} and stats.partitions == 4
    assert stats.as_dict()["relays"] == {"r": [0, 1, 2, 3]}
    # only dead and unknown rows are requeued
    assert store.requeue([r.id for r in rows]) == 2
    requeued = {r.id: r for r in store.fetch("r", all_partitions(store), time.time() + 1, 10)}
    assert set(requeued) == {r.id for r in rows[1:]}
    assert requeued[rows[1].id].attempts == 0 and requeued[rows[1].id].error is None
    assert store.purge(NOW) == 0  # done at NOW: not before it
    assert store.purge(NOW + 1) == 1
    assert store.stats(NOW + 10).backlog["delivered"] == 0
    store.release("r")
    assert store.stats(NOW + 10).relays == {}
    assert store.claim("s", NOW + 11, 30) == [0, 1, 2, 3]


def test_fork_child_uses_connections_of_its_own(store: Store) -> None:
    put(store, ("a",), "parent-before")
    pid = os.fork()
    if pid == 0:  # the child: inherited pooled connections must not be used
        code = 1
        try:
            put(store, ("a",), "child")
            code = 0 if len(store.fetch("c", [0, 1, 2, 3], NOW, 10)) == 2 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    put(store, ("a",), "parent-after")  # the parent's connection still works
    ids = [r.message_id for r in store.fetch("r", [0, 1, 2, 3], NOW, 10)]
    assert ids == ["parent-before", "child", "parent-after"]


def test_wait_wakes_on_an_insert(store: Store) -> None:
    """PostgreSQL: a NOTIFY in the writer's transaction; SQLite: an insert in this process.
    Without the wake-up, the wait would last its whole 60 s."""
    store.wait(0.0)  # LISTEN now (PostgreSQL), so the next insert is heard
    done = threading.Event()

    def waiter() -> None:
        store.wait(60)
        done.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    put(store, ("a",))
    thread.join(30)
    assert done.is_set()


def test_settings_are_checked_without_showing_values(tmp_path: object) -> None:
    with pytest.raises(ConfigurationError, match="'partitons' is not an outbox setting"):
        Store.from_config({"partitons": 8})
    with pytest.raises(ConfigurationError, match="table"):
        Store.from_config({"table": "outbox; DROP TABLE x"})
    with pytest.raises(ConfigurationError, match="SQLite file"):
        Store.from_config({"url": "sqlite:///:memory:"})
    with pytest.raises(ConfigurationError, match="either 'url' or 'django'"):
        Store.from_config({"url": "sqlite:///x.sqlite3", "django": "default"})
    with pytest.raises(ConfigurationError, match="'partitions' must be at least 1"):
        Store.from_config({"partitions": 0})
    with pytest.raises(ConfigurationError, match="'lease' must be a number"):
        Store.from_config({"lease": "30"})
    with pytest.raises(ConfigurationError, match="sync driver") as caught:
        Store.from_config({"url": "postgresql+asyncpg://u:hunter2@127.0.0.1/db"})
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigurationError, match="supports PostgreSQL, SQLite") as caught:
        Store.from_config({"url": "oracle+oracledb://u:hunter2@h/db"})
    assert "hunter2" not in str(caught.value)


def test_purge_deletes_every_row_due_more_than_a_chunk_of_them(store: Store) -> None:
    """MySQL purges by key, a chunk of rows a transaction: every row due goes, none other."""
    from broadcasting.outbox._store import CHUNK

    total = CHUNK * 2 + 7
    rows = [
        row
        for n in range(total)
        for row in new_rows(message(("a",), id=f"m{n}"), "pusher", store.partitions, NOW)
    ]
    for start in range(0, total, 200):
        store.insert(rows[start : start + 200])
    put(store, ("a",), "kept")  # pending: never purged
    held = store.claim("r", NOW, 30)
    delivered = 0
    while ids := [r.id for r in store.fetch("r", held, NOW, 400) if r.message_id != "kept"]:
        sending = store.mark_sending("r", ids, NOW)
        store.finish("r", [Outcome(i, DELIVERED) for i in sending], NOW)
        delivered += len(sending)
    assert delivered == total
    assert store.purge(NOW + 1) == total
    assert store.stats(NOW + 1).backlog["delivered"] == 0
    assert [r.message_id for r in store.fetch("r", held, NOW, 10)] == ["kept"]


def test_default_store_is_a_sqlite_file(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    monkeypatch.delenv("BROADCASTING_OUTBOX", raising=False)
    store = Store.from_config({})
    try:
        assert (store.dialect, store.table, store.partitions) == (
            "sqlite",
            "broadcasting_outbox",
            16,
        )
        put(store, ("a",))  # the tables are created on first use
        assert os.path.exists("broadcasting-outbox.sqlite3")
    finally:
        store.close()
    monkeypatch.setenv("BROADCASTING_OUTBOX", "elsewhere.sqlite3")
    other = Store.from_config({"table": "mine"})
    try:
        put(other, ("a",))
        assert os.path.exists("elsewhere.sqlite3") and other.table == "mine"
    finally:
        other.close()


def test_sqlalchemy_url(store: Store, request: pytest.FixtureRequest) -> None:
    """Any other URL goes through SQLAlchemy: the same statements on its connections."""
    if store.dialect == "sqlite":
        path = request.getfixturevalue("tmp_path") / "sa.sqlite3"
        url = f"sqlite+pysqlite:///{path}"
        table = "broadcasting_outbox"
    elif store.dialect == "mysql":  # through SQLAlchemy already: a second store on its URL
        url = store._source.engine.url.render_as_string(hide_password=False)  # type: ignore[attr-defined]
        table = store.table
    else:
        url = request.getfixturevalue("pg_url").replace("postgresql://", "postgresql+psycopg://")
        table = store.table
    through = Store.from_config({"url": url, "table": table, "partitions": 4})
    try:
        through.create_tables()
        put(through, ("a", "b"), "sa")
        assert through.claim("r", NOW, 30) == [0, 1, 2, 3]
        rows = through.fetch("r", [0, 1, 2, 3], NOW, 10)
        assert through.mark_sending("r", [r.id for r in rows], NOW) == [r.id for r in rows]
        through.finish("r", [Outcome(r.id, DELIVERED) for r in rows], NOW)
        assert through.stats(NOW).backlog["delivered"] == len(rows)
        assert through.purge(NOW + 1) == len(rows)
        through.wait(0.0)
    finally:
        through.close()


def test_a_connection_the_server_dropped_is_replaced(
    new_store: Callable[..., Store], pg_url: str
) -> None:
    import psycopg

    store = new_store("postgresql")
    put(store, ("a",), "before")
    kept = store._source._idle  # type: ignore[attr-defined]
    assert kept, "the store keeps its connection for the next call"
    with psycopg.connect(pg_url, autocommit=True) as admin:  # as a server restart would
        admin.execute("SELECT pg_terminate_backend(%s)", (kept[0].info.backend_pid,))
    put(store, ("a",), "after")
    ids = [r.message_id for r in store.fetch("r", [0, 1, 2, 3], NOW, 10)]
    assert ids == ["before", "after"]


def test_wait_polls_when_it_cannot_listen(caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("psycopg")
    import socket

    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = Store.from_config({"url": f"postgresql://postgres:hunter2@127.0.0.1:{port}/test"})
    try:
        with caplog.at_level("WARNING", logger="broadcasting.outbox"):
            store.wait(0.01)
            store.wait(0.01)
    finally:
        store.close()
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "polling" in warnings[0]
    assert "hunter2" not in warnings[0]


def test_plain_and_other_outcomes_in_one_call(store: Store) -> None:
    """Delivered rows share one statement per (state, attempts); the others are recorded
    each with its own columns, in the same call; an earlier failure's reason is cleared."""
    channels = [f"o{i}" for i in range(60) if partition_of(f"o{i}", 4) == 1][:6]
    for n, channel in enumerate(channels):
        put(store, (channel,), f"m{n}")
    put(store, (channels[0], channels[1]), "both")
    store.claim("r", NOW, 30)
    rows = store.fetch("r", [1], NOW, 20)
    first, second, third, fourth, fifth, sixth, both = rows
    store.finish("r", [Outcome(second.id, PENDING, None, NOW - 1, "503", 2)], NOW)  # a retry
    store.finish(
        "r",
        [
            Outcome(first.id, DELIVERED),
            Outcome(second.id, DELIVERED, attempts=2),  # delivered on its third try
            Outcome(third.id, DEAD, error="400 bad event", attempts=1),
            Outcome(fourth.id, DELIVERED),
            Outcome(fifth.id, UNKNOWN, error="timed out", attempts=0),
            Outcome(both.id, PENDING, (channels[1],), NOW + 5, "429", 1),
        ],
        NOW + 1,
    )
    by_id = {r.id: r for state in (DELIVERED, DEAD, UNKNOWN) for r in store.rows(state, 10)}
    assert {i: (r.state, r.attempts, r.error, r.done_at) for i, r in by_id.items()} == {
        first.id: (DELIVERED, 0, None, NOW + 1),
        second.id: (DELIVERED, 2, None, NOW + 1),
        third.id: (DEAD, 1, "400 bad event", NOW + 1),
        fourth.id: (DELIVERED, 0, None, NOW + 1),
        fifth.id: (UNKNOWN, 0, "timed out", NOW + 1),
    }
    assert by_id[first.id].channels == first.channels  # kept
    # the sixth untouched; the shared row waits with one channel left, holding the partition
    (left,) = store.fetch("r", [1], NOW + 5, 20, skip={sixth.id})
    assert (left.id, left.channels, left.attempts, left.error, left.available_at) == (
        both.id,
        (channels[1],),
        1,
        "429",
        NOW + 5,
    )
    assert store.fetch("r", [1], NOW + 4, 20) == [sixth]


def test_fetch_with_rows_out_reads_the_others_in_full(store: Store) -> None:
    """Rows out are left out after a first look at ids alone; the rows read then are the
    same, column for column, as a fetch without rows out reads."""
    odd = ('quote"d', "back\\slash", "ünï", "tab\there", "plain")
    for n in range(12):
        put(store, (odd[n % len(odd)],), f"m{n}")
    put(store, ("plain", "ünï", 'quote"d'), "fan")  # a row per partition of its channels
    store.insert(new_rows(message(("plain",), "some text", id="text"), "ably", 4, NOW))
    store.claim("r", NOW, 30)
    everything = store.fetch("r", all_partitions(store), NOW, 100)
    assert {c for r in everything for c in r.channels} == set(odd)
    out = {r.id for r in everything[::3]}
    rest = store.fetch("r", all_partitions(store), NOW, 100, skip=out)
    assert rest == [r for r in everything if r.id not in out]
    assert [r.message().data for r in rest if r.message_id == "text"] == ["some text"]
    assert store.fetch("r", all_partitions(store), NOW, 100, skip={r.id for r in everything}) == []


def test_a_mysql_stores_own_transactions_read_committed(new_store: Callable[..., Store]) -> None:
    """MariaDB/MySQL: the relay's statements run at READ COMMITTED (PostgreSQL's default).
    At InnoDB's default, REPEATABLE READ, a range scan also locks the gaps it passes: a
    relay purging delivered rows would hold up the application's INSERTs into the outbox."""
    store = new_store("mysql")
    with store._transaction(write=True) as run:
        ((level,),) = run("SELECT @@tx_isolation")
    assert level == "READ-COMMITTED"
