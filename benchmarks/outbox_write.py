"""The outbox's write cost (issue 19, Speed): a publish with ``send="outbox"`` inside an open
transaction, against a bare INSERT of the same row. Target: at most 1.5x.

Usage::

    python benchmarks/outbox_write.py                      # SQLite and PostgreSQL, 2,000 each
    python benchmarks/outbox_write.py --count 10000 --databases sqlite
    python benchmarks/outbox_write.py --pg postgresql://postgres@127.0.0.1:5432/test
    python benchmarks/outbox_write.py --databases mysql   # MariaDB (--mysql URL); no target

Each operation runs in a transaction of its own; its BEGIN and COMMIT are not timed (they are
the same whichever operation ran):

- **bare INSERT**: ``INSERT INTO broadcasting_outbox (...) VALUES (...)`` of the row a publish
  writes, its parameters built beforehand, straight on the connection: the least any outbox
  could cost;
- **outbox INSERT alone**: the statement the write path runs, built beforehand (on PostgreSQL
  it also takes the channel's advisory lock and sends the relays' NOTIFY; on MariaDB the write
  path runs two, the channel's lock row's upsert first, and both are timed);
- **whole call**: ``broadcast.channel("orders-N", data, "shipped", send="outbox",
  transaction=tx)``: validation and encoding, the ``broadcasting_transaction`` hook, the
  core's ``broadcasting_defer`` (called without pluggy while no other plugin implements it),
  the row built and written, the receipt. ``tx`` is a minimal
  adapter of the connection (the library's own cost; the test suite's adapter is the same);
- on SQLite, **whole call, transaction=sqlite3.Connection**: the same with the connection
  itself, adapted by the built-in ``broadcasting.contrib.sqlite``: what an application passes.

Printed: (a) the whole call against the bare INSERT, the issue's figure, checked against
1.5x; (b) the outbox INSERT alone against the bare INSERT: the database's share; (c) the
floor: the least any Python outbox could do per write (the row built in the call, with nothing
validated and no hook: the time, the partition, the two JSON texts, a random id; then the
INSERT), against the bare INSERT and against the whole call. Then, for each database, where
the whole call's time goes: each part of it timed alone in the same way (on PostgreSQL, each
part followed by the bare INSERT, less the bare INSERT: a part run between two round trips to
the server costs several times what it costs in a loop of its own, and that is the cost a
write pays).

How it is timed, on a machine shared with other work:

- **SQLite** runs in this process: the CPU time of this thread (``time.thread_time_ns``) per
  operation, less the timer's own cost (an empty operation, timed the same way). Other
  processes on the machine do not count in it.
- **PostgreSQL** (and **MariaDB**) do the INSERT's work in the server's process, which the
  client's CPU time leaves out: wall-clock time (``time.perf_counter_ns``) per operation.

The issue's target is for SQLite and PostgreSQL; MariaDB (``--databases mysql``, through
PyMySQL) prints its figures with no target: its write runs one statement more than a bare
INSERT, the lock row that keeps each channel's ids in commit order.

The operations take turns (one transaction each, in a shuffled order: each follows any other
alike), so a busy moment falls on all alike, in ``--rounds`` rounds; each figure is the least
of the rounds' medians (min of N). The SQLite
file is in a temporary folder (WAL, synchronous=NORMAL, as the store opens it), the
PostgreSQL table in a schema of the run's own (dropped at the end). Exits 1 if the whole call
misses 1.5x anywhere (``--no-targets``: never).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "core" / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "core" / "src"))

from broadcasting import Broadcast  # noqa: E402
from broadcasting._background import defer, pending  # noqa: E402
from broadcasting._types import Message, encode_payload  # noqa: E402
from broadcasting._validate import build_message  # noqa: E402
from broadcasting.hookspecs import hookimpl  # noqa: E402
from broadcasting.outbox import _sql, store_for  # noqa: E402
from broadcasting.outbox._row import NewRow, partition_of  # noqa: E402

TARGET = 1.5
DATA = {"id": 42, "status": "shipped", "items": 3}
TEXT = '{"id":42,"status":"shipped","items":3}'
CHANNELS = 50  # the operations cycle through orders-0 ... orders-49


class Tx:
    """The caller's connection as the publish's ``transaction=``: a minimal adapter."""

    def __init__(self, connection: Any, dialect: str, paramstyle: str) -> None:
        self.connection, self.dialect, self.paramstyle = connection, dialect, paramstyle

    def active(self) -> bool:
        return True

    def on_commit(self, callback: Callable[[], object]) -> None:
        raise NotImplementedError

    def execute(self, sql: str, params: Sequence[Any]) -> object:
        return self.connection.execute(sql, tuple(params))


class PyMySQL:
    """A PyMySQL connection (autocommit: the benchmark sends BEGIN and COMMIT) with an
    ``execute(sql, params)`` of sqlite3's and psycopg's kind, on one cursor."""

    def __init__(self, url: str) -> None:
        import pymysql
        from sqlalchemy import make_url

        parsed = make_url(url)
        self.connection = pymysql.connect(
            host=parsed.host,
            port=parsed.port or 3306,
            user=parsed.username,
            password=parsed.password or "",
            database=parsed.database,
            autocommit=True,
        )
        self.cursor = self.connection.cursor()

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> object:
        self.cursor.execute(sql, params)
        return self.cursor

    def close(self) -> None:
        self.connection.close()


class Nowhere(Tx):
    """An adapter that runs nothing: the write path without its INSERT (the breakdown)."""

    def execute(self, sql: str, params: Sequence[Any]) -> object:
        return None


class Adapt:
    @hookimpl
    def broadcasting_transaction(self, broadcast: object, transaction: object) -> Any:
        return transaction if isinstance(transaction, Tx) else None


@dataclass
class Timed:
    """An operation, and its times (ns) per round."""

    label: str
    op: Callable[[int], object]
    in_transaction: bool = True
    rounds: list[list[int]] = field(default_factory=list)

    def figure(self, overhead: list[float]) -> float:
        """Nanoseconds: the least of the rounds' medians, each less that round's timer cost."""
        medians = [statistics.median(times) for times in self.rounds]
        return min(median - cost for median, cost in zip(medians, overhead, strict=True))


def run_rounds(
    ops: list[Timed],
    clock: Callable[[], int],
    begin: Callable[[], object],
    commit: Callable[[], object],
    count: int,
    rounds: int,
) -> list[float]:
    """Time each op ``count`` times, in turn, over ``rounds`` rounds; returns each round's
    timer cost (the median of an empty operation timed the same way)."""
    empty = Timed("timer", lambda n: None, in_transaction=False)
    warm = max(20, count // 10)
    for n in range(warm):  # warm-up: connections, prepared statements, caches
        for timed in ops:
            begin()
            timed.op(n)
            commit()
    per_round = max(1, count // rounds)
    order = [*ops, empty]
    shuffle = random.Random(19).shuffle
    for _ in range(rounds):
        for timed in order:
            timed.rounds.append([])
        for n in range(per_round):
            shuffle(order)  # each op follows any other alike (what ran before warms caches)
            for timed in order:
                if timed.in_transaction:
                    begin()
                start = clock()
                timed.op(n)
                end = clock()
                if timed.in_transaction:
                    commit()
                timed.rounds[-1].append(end - start)
    return [statistics.median(times) for times in empty.rounds]


def bench(
    dialect: str, outbox: dict[str, Any], connect: Callable[[], Any], args: argparse.Namespace
) -> list[str]:
    """The lines to print for one database."""
    broadcast = Broadcast({"DRIVER": "null", "OUTBOX": outbox}, plugins=[Adapt()])
    store = store_for(broadcast)
    store.create_tables()
    connection = connect()
    paramstyle = "qmark" if dialect == "sqlite" else "format"
    tx = Tx(connection, dialect, paramstyle)
    begin = lambda: connection.execute("BEGIN")  # noqa: E731
    commit = lambda: connection.execute("COMMIT")  # noqa: E731
    now = time.time()
    names = [f"orders-{n}" for n in range(CHANNELS)]

    bare_sql = _sql.render(_sql.insert(_sql.SQLITE, store.table, 1, 0), dialect, paramstyle)
    bare_rows = [
        (partition_of(name, store.partitions), now, now, "null", "shipped", f'["{name}"]', TEXT,
         "json", None, f"bare-{n}")
        for n, name in enumerate(names)
    ]  # fmt: skip
    statements: list[list[tuple[str, tuple[Any, ...]]]] = []  # what the write path runs
    for n, name in enumerate(names):
        row = NewRow(
            partition_of(name, store.partitions), now, now, "null", "shipped", (name,), TEXT,
            "json", None, f"stmt-{n}",
        )  # fmt: skip
        sql, params = _sql.insert_params(dialect, store.table, [row])
        locks = _sql.row_locks(dialect, store.table, [name])  # MariaDB: its lock row first
        statements.append(
            [
                *([(_sql.render(locks[0], dialect, paramstyle), tuple(locks[1]))] if locks else []),
                (_sql.render(sql, dialect, paramstyle), tuple(params)),
            ]
        )

    def statement(n: int) -> object:
        for sql, params in statements[n % CHANNELS]:
            result = connection.execute(sql, params)
        return result

    def publisher(transaction: object) -> Callable[[int], object]:
        def publish(n: int) -> object:
            return broadcast.channel(
                names[n % CHANNELS], DATA, "shipped", send="outbox", transaction=transaction
            )

        return publish

    encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    partitions, bits = store.partitions, random.getrandbits

    def floor(n: int) -> object:
        """The least any Python outbox does per write: what the bare INSERT's row was built
        from beforehand, built here, with nothing validated, no hook and no receipt."""
        name = names[n % CHANNELS]
        at, key = time.time(), bits(96).to_bytes(12, "big").hex()
        row = (zlib.crc32(name.encode()) % partitions, at, at, "null", "shipped",
               encode([name]), encode(DATA), "json", None, key)  # fmt: skip
        return connection.execute(bare_sql, row)

    ops = [
        Timed("bare", lambda n: connection.execute(bare_sql, bare_rows[n % CHANNELS])),
        Timed("floor", floor),
        Timed("statement", statement),
        Timed("whole", publisher(tx)),
    ]
    if dialect == "sqlite":
        ops.append(Timed("whole_stdlib", publisher(connection)))
        clock, timing = time.thread_time_ns, "CPU time (this thread)"
    else:
        clock, timing = time.perf_counter_ns, "wall clock"
    if dialect == "postgresql":
        # the same two statements where the driver does not prepare them (parsed and planned
        # each time: Django's default client-side cursors)
        ops += [
            Timed(
                "bare_unprepared",
                lambda n: connection.execute(bare_sql, bare_rows[n % CHANNELS], prepare=False),
            ),
            Timed(
                "statement_unprepared",
                lambda n: connection.execute(*statements[n % CHANNELS][0], prepare=False),
            ),
        ]
    overhead = run_rounds(ops, clock, begin, commit, args.count, args.rounds)
    us = {timed.label: timed.figure(overhead) / 1000 for timed in ops}
    lines = [row_line(dialect, "transaction=adapter", timing, us, "whole")]
    if dialect == "sqlite":
        stdlib = row_line(dialect, "transaction=sqlite3.Connection", timing, us, "whole_stdlib")
        lines.append(stdlib)
    lines.append(floor_line(dialect, us))
    if "bare_unprepared" in us:
        bare, statement = us["bare_unprepared"], us["statement_unprepared"]
        lines.append(
            f"| {dialect} not prepared | {bare:.1f} µs | {statement:.1f} µs | "
            f"{statement / bare:.2f}x |"
        )
    # the parts, in a rotation of their own (with the three above again): the table's
    # figures are not measured among them
    alone = breakdown_ops(broadcast, names, tx)
    if dialect != "sqlite":  # each followed by the bare INSERT (its wall clock is the server's)
        alone = [Timed(t.label, then_bare(t.op, connection, bare_sql, bare_rows)) for t in alone]
    parts = [*(t for t in ops if t.label in ("bare", "statement", "whole")), *alone]
    for timed in parts:
        timed.rounds = []
    overhead = run_rounds(parts, clock, begin, commit, args.count, args.rounds)
    lines.append("")
    us = {timed.label: timed.figure(overhead) / 1000 for timed in parts}
    lines += breakdown_lines(us, dialect)
    connection.close()
    store.close()
    broadcast.close()
    return lines


def bench_mysql(args: argparse.Namespace) -> list[str]:
    """:func:`bench` on MariaDB/MySQL, in a database of the run's own (dropped at the end)."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    server = PyMySQL(args.mysql)
    server.execute(f"CREATE DATABASE `{name}`")
    try:
        url = args.mysql.rsplit("/", 1)[0] + f"/{name}"
        return bench("mysql", {"url": url}, lambda: PyMySQL(url), args)
    finally:
        server.execute(f"DROP DATABASE `{name}`")
        server.close()


def then_bare(
    op: Callable[[int], object], connection: Any, sql: str, rows: Sequence[tuple[Any, ...]]
) -> Callable[[int], object]:
    """``op``, then the bare INSERT: on PostgreSQL a part is timed as what it adds to a write."""

    def both(n: int) -> object:
        op(n)
        return connection.execute(sql, rows[n % CHANNELS])

    return both


def row_line(dialect: str, how: str, timing: str, us: dict[str, float], whole: str) -> str:
    bare, statement, total = us["bare"], us["statement"], us[whole]
    verdict = "met" if total / bare <= TARGET else "MISSED"
    if dialect == "mysql":
        verdict = "no target"
    return (
        f"| {dialect} | {how} | {timing} | {bare:.1f} µs | {statement:.1f} µs | "
        f"{statement / bare:.2f}x | {total:.1f} µs | {total / bare:.2f}x | {verdict} |"
    )


def floor_line(dialect: str, us: dict[str, float]) -> str:
    """The floor: the least any Python outbox's write costs, against the bare INSERT."""
    bare, floor, whole = us["bare"], us["floor"], us["whole"]
    return (
        f"| {dialect} floor | {bare:.1f} µs | {floor:.1f} µs | {floor / bare:.2f}x | "
        f"{TARGET * bare - floor:.1f} µs | {whole / floor:.2f}x |"
    )


def breakdown_ops(broadcast: Broadcast, names: list[str], tx: Tx) -> list[Timed]:
    """Each part of the whole call on its own (no INSERT: the adapter like ``tx`` runs
    nothing)."""
    broadcaster = broadcast.driver()
    driver = broadcaster.driver
    dialect = tx.dialect
    nowhere = Nowhere(None, dialect, tx.paramstyle)
    pm = broadcast.plugin_manager
    store = store_for(broadcast)
    messages = [build_message(driver, name, DATA, "shipped", None) for name in names]
    for message in messages:
        message.via = "outbox"

    def deferred(n: int) -> object:  # the core's own broadcasting_defer (the call skips the
        # hook while the core alone implements it, as here)
        return defer(broadcaster, messages[n % CHANNELS], nowhere)

    def encoded(n: int) -> str:
        return encode_payload(DATA)

    def validated(n: int) -> Message:
        return build_message(driver, names[n % CHANNELS], DATA, "shipped", None)

    def adapted(n: int) -> object:
        return pm.hook.broadcasting_transaction(broadcast=broadcast, transaction=nowhere)

    def rows(n: int) -> object:  # the row's parameters and statement, from the message
        return _sql.insert_message(
            dialect, store.table, messages[n % CHANNELS], "null", store.partitions, 0.0
        )

    def receipt(n: int) -> object:
        return pending(broadcaster, messages[n % CHANNELS])

    return [
        Timed("part_encode", encoded),
        Timed("part_validate", validated),
        Timed("part_transaction_hook", adapted),
        Timed("part_defer", deferred),
        Timed("part_rows", rows),
        Timed("part_receipt", receipt),
    ]


def breakdown_lines(us: dict[str, float], dialect: str) -> list[str]:
    """Where the whole call's time goes (each part timed alone: a part timed alone may run
    faster than inside the call, the rest of which then shows it). On PostgreSQL each part
    is timed followed by the bare INSERT, less the bare INSERT: what it adds to a write."""
    whole = us["whole"]
    base = 0.0 if dialect == "sqlite" else us["bare"]  # PostgreSQL: each timed with it
    part = {label: value - base for label, value in us.items() if label.startswith("part_")}
    encode = part["part_encode"]
    validate = part["part_validate"] - encode
    adapt = part["part_transaction_hook"]
    rows, receipt = part["part_rows"], part["part_receipt"]
    write_rest = part["part_defer"] - rows - receipt
    if dialect == "sqlite":
        inserts = [("the outbox INSERT (SQLite)", us["statement"])]
    elif dialect == "mysql":
        inserts = [
            ("the bare INSERT (MariaDB: its round trip)", us["bare"]),
            ("the outbox's own extra: the channel's lock row, one more statement",
             us["statement"] - us["bare"]),
        ]  # fmt: skip
    else:
        inserts = [
            ("the bare INSERT (PostgreSQL: its round trip)", us["bare"]),
            ("the outbox INSERT's own extra: the channel's lock, the NOTIFY",
             us["statement"] - us["bare"]),
        ]  # fmt: skip
    rest = whole - (encode + validate + adapt + part["part_defer"]) - sum(v for _, v in inserts)
    parts = [
        ("validation: channels, event, limits, the message id (`build_message`, "
         "less the encoding)", validate),
        ("serialisation: the payload's JSON", encode),
        ("hooks: `broadcasting_transaction` (pluggy, the adapter)", adapt),
        ("serialisation: the row's parameters (partition, channels' JSON; "
         "`insert_message`)", rows),
        ("the pending receipt", receipt),
        ("the write path's rest: checks, the store, the statement's text, the execute",
         write_rest),
        *inserts,
        ("the rest: channel()'s flow run, send mode, effects (and a part's cache misses)", rest),
    ]  # fmt: skip
    if dialect == "sqlite":
        how = (
            "SQLite, CPU time; each part timed alone, in turn with the bare INSERT, the outbox "
            "INSERT and the whole call, timed again for it"
        )
    else:
        how = (
            f"{'MariaDB' if dialect == 'mysql' else 'PostgreSQL'}, wall clock; each part timed "
            "followed by the bare INSERT, less the bare "
            "INSERT, in turn with the bare INSERT, the outbox INSERT and the whole call, timed "
            "again for it: between two round trips to the server a part costs several times "
            "what it costs in a loop of its own, as the code it runs has left the CPU's caches"
        )
    lines = [
        f"Where the whole call's time goes ({how}):",
        "",
        "| part | µs | share |",
        "|---|---|---|",
    ]
    lines += [f"| {label} | {value:.1f} | {value / whole:.0%} |" for label, value in parts]
    lines.append(f"| **the whole call** | **{whole:.1f}** | 100% |")
    lines.append(
        f"| (for the target: 1.5x the bare INSERT) | {TARGET * us['bare']:.1f} | "
        f"{TARGET * us['bare'] / whole:.0%} |"
    )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="transactions per operation")
    parser.add_argument("--rounds", type=int, default=5, help="the figure: least of N medians")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--pg",
        default=os.environ.get("OUTBOX_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument(
        "--mysql",
        default=os.environ.get("OUTBOX_BENCH_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test"),
        help="a SQLAlchemy URL of MariaDB/MySQL (--databases mysql)",
    )
    parser.add_argument("--no-targets", action="store_true", help="exit 0 whatever the figures")
    args = parser.parse_args(argv)
    print(
        f"A publish written to the outbox inside an open transaction, per publish "
        f"({args.count} transactions per operation, least of {args.rounds} rounds' medians):"
    )
    print()
    print(
        "| database | transaction= | timing | bare INSERT | outbox INSERT alone "
        "| (b) outbox INSERT / bare | whole call | (a) whole call / bare | (a) <= 1.5x |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    missed = False
    after: list[str] = []
    floors: list[str] = []
    unprepared: list[str] = []
    for dialect in args.databases.split(","):
        with tempfile.TemporaryDirectory() as folder:
            if dialect == "sqlite":
                path = os.path.join(folder, "outbox.sqlite3")

                def connect(path: str = path) -> Any:
                    conn = sqlite3.connect(path, isolation_level=None)
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("PRAGMA synchronous=NORMAL")
                    return conn

                lines = bench(dialect, {"url": f"sqlite:///{path}"}, connect, args)
            elif dialect == "mysql":
                lines = bench_mysql(args)
            else:
                import psycopg

                schema = f"bench_{uuid.uuid4().hex[:10]}"
                with psycopg.connect(args.pg, autocommit=True) as admin:
                    admin.execute(f'CREATE SCHEMA "{schema}"')
                try:
                    outbox = {"url": args.pg, "table": f"{schema}.broadcasting_outbox"}
                    # autocommit: the BEGIN is the benchmark's (not timed), not psycopg's own
                    # (which it would send with the first, timed, statement)
                    lines = bench(
                        dialect, outbox, lambda: psycopg.connect(args.pg, autocommit=True), args
                    )
                finally:
                    with psycopg.connect(args.pg, autocommit=True) as admin:
                        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        rows = [line for line in lines if line.startswith(f"| {dialect} |")]
        for line in rows:
            print(line, flush=True)
            missed |= line.rstrip().endswith("MISSED |")
        floors += [line for line in lines if line.startswith(f"| {dialect} floor |")]
        unprepared += [line for line in lines if line.startswith(f"| {dialect} not prepared |")]
        after += [line for line in lines[len(rows) :] if not line.startswith(f"| {dialect} ")]
    print()
    print(
        f"(a): the issue's figure, target <= {TARGET}x (SQLite, PostgreSQL). (b): the "
        "database's part of it. SQLite: CPU time of this thread; PostgreSQL and MariaDB: wall "
        "clock (their work is in the server's process)."
    )
    print()
    print(
        "The floor: the least any Python outbox does per write, timed the same way: the row "
        "the bare INSERT was given, built in the call (the time, the channel's partition, the "
        "channels' and the payload's JSON with a prebuilt encoder, a random id) and inserted; "
        "nothing validated, no hook, no receipt. What 1.5x leaves for all the rest:"
    )
    print()
    print(
        "| database | bare INSERT | floor | floor / bare | 1.5x bare - floor | whole call / floor |"
    )
    print("|---|---|---|---|---|---|")
    for line in floors:
        print(line)
    if unprepared:
        print()
        print(
            "(b) where the driver does not prepare the statements (psycopg prepare=False, as "
            "Django's default client-side cursors run them): each is parsed and planned at "
            "each INSERT:"
        )
        print()
        print("| database | bare INSERT | outbox INSERT alone | outbox INSERT / bare |")
        print("|---|---|---|---|")
        for line in unprepared:
            print(line)
    print()
    for line in after:
        print(line)
    return 1 if missed and not args.no_targets else 0


if __name__ == "__main__":
    sys.exit(main())
