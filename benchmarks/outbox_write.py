"""The outbox's write cost: a publish with ``send="outbox"`` inside an open transaction,
against a bare INSERT of the same row.

Usage::

    python benchmarks/outbox_write.py                         # SQLite and PostgreSQL, 2,000 each
    python benchmarks/outbox_write.py --count 10000 --databases postgresql
    python benchmarks/outbox_write.py --pg postgresql://postgres@127.0.0.1:5432/test

For each database, in transactions of the caller's own (one publish each), it times the
statement alone, not the BEGIN or the COMMIT (which are the same either way):

- **bare**: ``INSERT INTO broadcasting_outbox (...) VALUES (...)`` of the row a publish
  writes, straight on the caller's connection: the least any outbox could cost;
- **outbox**: ``broadcast.channel("orders-N", data, "shipped", send="outbox",
  transaction=...)``: validation, hooks, the row built and written (on PostgreSQL with the
  channel's advisory lock and the relay's NOTIFY in the same statement).

- **outbox INSERT alone**: the statement the write path runs (built beforehand), to tell
  the database's share of the cost from Python's.

Prints the median and mean of each, per publish, and their ratio (target <= 1.5x), and the
same with the COMMIT counted. The three run in turn, one transaction each, so a busy
machine's drift falls on all alike. A SQLite file in a temporary folder (WAL, synchronous=NORMAL,
as the store opens it), a PostgreSQL schema of the run's own (dropped at the end). Exits 1
if a target is missed (``--no-targets``: never).
"""

from __future__ import annotations

import argparse
import functools
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "core" / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "core" / "src"))

from broadcasting import Broadcast  # noqa: E402
from broadcasting.hookspecs import hookimpl  # noqa: E402
from broadcasting.outbox import _sql, store_for  # noqa: E402
from broadcasting.outbox._row import NewRow, partition_of  # noqa: E402

TARGET = 1.5
DATA = {"id": 42, "status": "shipped", "items": 3}


class Tx:
    """The caller's connection as the publish's ``transaction=``."""

    def __init__(self, connection: Any, dialect: str, paramstyle: str) -> None:
        self.connection, self.dialect, self.paramstyle = connection, dialect, paramstyle

    def active(self) -> bool:
        return True

    def on_commit(self, callback: Callable[[], object]) -> None:
        raise NotImplementedError

    def execute(self, sql: str, params: Sequence[Any]) -> object:
        return self.connection.execute(sql, tuple(params))


class Adapt:
    @hookimpl
    def broadcasting_transaction(self, broadcast: object, transaction: object) -> Any:
        return transaction if isinstance(transaction, Tx) else None


def _call(op: Callable[[int], object], n: int, _: int) -> object:
    return op(n)


def measure(
    count: int, begin: Callable[[], None], op: Callable[[int], object], commit: Callable[[], None]
) -> tuple[list[float], list[float]]:
    """Per transaction: the op's time, and the op's plus the commit's."""
    alone: list[float] = []
    whole: list[float] = []
    for n in range(count):
        begin()
        start = time.perf_counter()
        op(n)
        middle = time.perf_counter()
        commit()
        end = time.perf_counter()
        alone.append(middle - start)
        whole.append(end - start)
    return alone, whole


def run_one(
    dialect: str, outbox: dict[str, Any], connect: Callable[[], Any], count: int
) -> dict[str, float]:
    broadcast = Broadcast({"DRIVER": "null", "OUTBOX": outbox}, plugins=[Adapt()])
    store = store_for(broadcast)
    store.create_tables()
    connection = connect()
    paramstyle = "qmark" if dialect == "sqlite" else "format"
    tx = Tx(connection, dialect, paramstyle)
    if dialect == "sqlite":
        begin: Callable[[], None] = lambda: connection.execute("BEGIN")  # noqa: E731
        commit: Callable[[], None] = lambda: connection.execute("COMMIT")  # noqa: E731
    else:
        begin = lambda: None  # noqa: E731  (psycopg opens one at the first statement)
        commit = connection.commit
    text = '{"id":42,"status":"shipped","items":3}'
    bare_sql = _sql.render(_sql.insert(_sql.SQLITE, store.table, 1, 0), dialect, paramstyle)

    def bare(n: int) -> object:  # the same row's INSERT, its parameters built beforehand
        return connection.execute(bare_sql, rows[n % len(rows)])

    now = time.time()
    rows = [
        [n % 16, now, now, "null", "shipped", f'["orders-{n}"]', text, "json", None, f"b{n}"]
        for n in range(50)
    ]

    def publish(n: int) -> object:
        return broadcast.channel(f"orders-{n % 50}", DATA, "shipped", send="outbox", transaction=tx)

    def statement(n: int) -> object:  # the write path's INSERT alone, built beforehand
        return connection.execute(*statements[n % len(statements)])

    statements = []
    for n in range(50):
        row = NewRow(
            partition_of(f"orders-{n}", store.partitions), time.time(), time.time(), "null",
            "shipped", (f"orders-{n}",), text, "json", None, f"stmt{n}",
        )  # fmt: skip
        sql, params = _sql.insert_params(dialect, store.table, [row])
        statements.append((_sql.render(sql, dialect, paramstyle), params))
    ops: dict[str, Callable[[int], object]] = {
        "bare": bare,
        "outbox": publish,
        "statement": statement,
    }
    warm = max(20, count // 10)
    for op in ops.values():
        measure(warm, begin, op, commit)
    # one of each in turn: a busy machine's drift falls on all alike
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in ops}
    for n in range(count):
        for name, op in ops.items():
            alone, whole = measure(1, begin, functools.partial(_call, op, n), commit)
            times[name][0].extend(alone)
            times[name][1].extend(whole)
    results: dict[str, float] = {}
    for name, (alone, whole) in times.items():
        results[f"{name}_median"] = statistics.median(alone)
        results[f"{name}_mean"] = statistics.fmean(alone)
        results[f"{name}_with_commit"] = statistics.median(whole)
    results["ratio"] = results["outbox_median"] / results["bare_median"]
    results["ratio_mean"] = results["outbox_mean"] / results["bare_mean"]
    results["ratio_statement"] = results["statement_median"] / results["bare_median"]
    results["ratio_with_commit"] = results["outbox_with_commit"] / results["bare_with_commit"]
    connection.close()
    store.close()
    broadcast.close()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="publishes per kind")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--pg",
        default=os.environ.get("OUTBOX_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--no-targets", action="store_true", help="exit 0 whatever the figures")
    args = parser.parse_args(argv)
    missed = False
    print(
        "| database | bare INSERT | outbox publish | ratio (median) | ratio (mean) "
        "| ratio with COMMIT | outbox INSERT alone |"
    )
    print("|---|---|---|---|---|---|---|")
    for dialect in args.databases.split(","):
        with tempfile.TemporaryDirectory() as folder:
            if dialect == "sqlite":
                path = os.path.join(folder, "outbox.sqlite3")
                outbox: dict[str, Any] = {"url": f"sqlite:///{path}"}

                def connect(path: str = path) -> Any:
                    conn = sqlite3.connect(path, isolation_level=None)
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("PRAGMA synchronous=NORMAL")
                    return conn

                results = run_one(dialect, outbox, connect, args.count)
            else:
                import psycopg

                schema = f"bench_{uuid.uuid4().hex[:10]}"
                with psycopg.connect(args.pg, autocommit=True) as admin:
                    admin.execute(f'CREATE SCHEMA "{schema}"')
                try:
                    outbox = {"url": args.pg, "table": f"{schema}.broadcasting_outbox"}
                    results = run_one(dialect, outbox, lambda: psycopg.connect(args.pg), args.count)
                finally:
                    with psycopg.connect(args.pg, autocommit=True) as admin:
                        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        us = 1e6
        print(
            f"| {dialect} | {results['bare_median'] * us:.1f} µs | "
            f"{results['outbox_median'] * us:.1f} µs | {results['ratio']:.2f}x | "
            f"{results['ratio_mean']:.2f}x | {results['ratio_with_commit']:.2f}x | "
            f"{results['ratio_statement']:.2f}x |"
        )
        missed |= results["ratio"] > TARGET
    print(f"target: outbox publish <= {TARGET}x a bare INSERT (median, inside the transaction)")
    return 1 if missed and not args.no_targets else 0


if __name__ == "__main__":
    sys.exit(main())
