"""The ``broadcasting relay`` and ``broadcasting outbox`` subcommands (docs/background.md).

:func:`add_commands` adds both to the ``broadcasting`` command's subparsers; each handler
takes the parsed arguments and returns the exit status (errors derived from
``BroadcastError`` are reported by ``broadcasting.cli.main`` with status 1).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import sys
import time
from argparse import ArgumentParser, Namespace, _SubParsersAction
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from typing import TYPE_CHECKING, Any

from broadcasting._broadcast import Broadcast
from broadcasting._errors import BroadcastError, OutboxError
from broadcasting.outbox import _policy

if TYPE_CHECKING:
    from broadcasting.outbox._store import Store

#: What to look at when the outbox's database fails (its tables missing are said apart).
HINT = "is the database up, and is it the one the OUTBOX settings name?"
_CONFIG_HELP = "a .py, .toml or .json file with DRIVER, DRIVERS and OUTBOX"
_LISTED = {"dead": _policy.DEAD, "unknown": _policy.UNKNOWN, "pending": _policy.PENDING}
#: The largest row id (a 64-bit key) and ``--limit``: larger numbers reach no database.
_MAX_ID = 2**63 - 1


def add_commands(commands: _SubParsersAction[ArgumentParser]) -> None:
    """Add ``relay`` and ``outbox`` (with its own subcommands) to ``commands``."""
    relay = commands.add_parser(
        "relay",
        help="deliver the outbox's rows (until SIGTERM or Ctrl-C)",
        description=(
            "Deliver the rows that publishes with send='outbox' wrote, through the configured "
            "drivers. Several relays may run at once: each holds leases on a share of the "
            "outbox's partitions. SIGTERM or Ctrl-C: the requests in flight finish, the "
            "leases are released, exit status 0. --stats prints the backlog instead."
        ),
    )
    relay.add_argument("--config", metavar="PATH", help=_CONFIG_HELP)
    relay.add_argument("--once", action="store_true", help="run one round, print what it did")
    relay.add_argument("--owner", metavar="NAME", help="this relay's name in the lease table")
    relay.add_argument(
        "--stats", action="store_true", help="print the backlog per state, the lag and the relays"
    )
    relay.add_argument("--json", action="store_true", help="print JSON (--once, --stats)")
    relay.set_defaults(run=_database_errors(relay_command))

    outbox = commands.add_parser(
        "outbox",
        help="list, retry, drop, purge the outbox's rows; create its tables",
        description="Look after the outbox: its dead and unknown rows, old rows, its tables.",
    )
    actions = outbox.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="list the rows in one state")
    listing.add_argument("--state", choices=sorted(_LISTED), default="dead")
    listing.add_argument("--limit", type=int, default=100, metavar="N", help="at most N rows")
    _config(listing, list_command, "print a JSON list")

    retry = actions.add_parser("retry", help="send dead or unknown rows again")
    retry.add_argument("ids", nargs="*", type=int, metavar="ID", help="row ids (outbox list)")
    retry.add_argument("--all-dead", action="store_true", help="every dead row")
    _config(retry, retry_command)

    drop = actions.add_parser(
        "drop",
        help="delete dead or unknown rows: they are never sent",
        description=(
            "Delete dead or unknown rows that must never be sent (outbox list shows them). "
            "A row in another state is left alone: pending or sending (a relay's to send), "
            "delivered (outbox purge). Prints how many were deleted."
        ),
    )
    drop.add_argument("ids", nargs="*", type=int, metavar="ID", help="row ids (outbox list)")
    drop.add_argument("--all-dead", action="store_true", help="every dead row")
    drop.add_argument("--all-unknown", action="store_true", help="every unknown row")
    _config(drop, drop_command)

    purge = actions.add_parser("purge", help="delete delivered rows older than a given age")
    purge.add_argument(
        "--before", type=float, required=True, metavar="SECONDS", help="done SECONDS ago or more"
    )
    _config(purge, purge_command)

    init = actions.add_parser("init", help="create the outbox's tables (if they do not exist)")
    _config(init, init_command)


def _database_errors(command: Callable[[Namespace], int]) -> Callable[[Namespace], int]:
    """``command``, with a failure of the outbox's database reported in one line (status 1):
    an :class:`OutboxError` whole (its message has no password); another error of the
    database (a Django alias's) by its name, as its message may hold a URL with a password."""

    @functools.wraps(command)
    def run(args: Namespace) -> int:
        try:
            return command(args)
        except OutboxError as exc:
            from broadcasting.outbox._store import EXPLAINED

            # tables, their schema or the SQLite file missing: its message says which, and
            # what to do (the database is up)
            hint = "" if isinstance(exc, EXPLAINED) else f" ({HINT})"
            print(f"broadcasting: error: OutboxError: {exc}{hint}", file=sys.stderr)
            return 1
        except BroadcastError:
            raise  # broadcasting.cli.main reports it
        except Exception as exc:
            print(
                f"broadcasting: error: the outbox's database failed: {type(exc).__name__} "
                f"(message withheld; {HINT})",
                file=sys.stderr,
            )
            return 1

    return run


def _config(parser: ArgumentParser, run: Callable[[Namespace], int], json_help: str = "") -> None:
    parser.set_defaults(run=_database_errors(run))
    parser.add_argument("--config", metavar="PATH", help=_CONFIG_HELP)
    if json_help:
        parser.add_argument("--json", action="store_true", help=json_help)


@contextmanager
def _store(args: Namespace, *, create: bool = False) -> Iterator[Store]:
    """The configured outbox's store (closed with the Broadcast). Unless ``create``
    (``outbox init``), a SQLite file that does not exist is refused, and one without the
    outbox's tables gets none (:meth:`Store.require_file`): a mistyped path is said, not
    made an empty outbox."""
    from broadcasting.outbox._store import store_for

    with Broadcast(args.config) as broadcast:
        store = store_for(broadcast)
        store.require_file(create)
        yield store


@contextmanager
def _logging_to_stderr() -> Iterator[None]:
    """``broadcasting`` logs at INFO and above on stderr while the command runs."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("broadcasting")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(min(level or logging.INFO, logging.INFO))
    try:
        yield
    finally:  # main() may run in a process that goes on (a test, a script)
        logger.removeHandler(handler)
        logger.setLevel(level)


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready data (its ``as_dict()``, or a dataclass as a dict)."""
    as_dict = getattr(value, "as_dict", None)
    if callable(as_dict):
        return as_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value


def relay_command(args: Namespace) -> int:
    """``broadcasting relay``: relay until stopped, one round (``--once``), or ``--stats``."""
    with Broadcast(args.config) as broadcast:
        return relay_main(
            broadcast, owner=args.owner, once=args.once, stats=args.stats, as_json=args.json
        )


def relay_main(
    broadcast: Broadcast,
    *,
    owner: str | None = None,
    once: bool = False,
    stats: bool = False,
    as_json: bool = False,
) -> int:
    """Run a relay of ``broadcast`` as ``broadcasting relay`` does (and ``manage.py
    broadcasting_relay``): until SIGTERM/SIGINT, one round (``once``), or print ``stats``."""
    from broadcasting.outbox._relay import Relay

    with _logging_to_stderr():
        relay = Relay(broadcast, owner=owner)
        if stats:  # looks after the outbox: makes no SQLite file (Store.require_file)
            relay.store.require_file()
            _print_stats(relay.store.stats(time.time()), as_json=as_json)
            return 0
        _connect_drivers(broadcast)
        if once:
            try:
                done = relay.run_once()
            finally:
                relay.release()
            if as_json:
                print(json.dumps(_plain(done), default=str))
            else:
                print(
                    f"relay {relay.owner}: partitions {list(done.partitions)}, "
                    f"{done.fetched} fetched, {done.delivered} delivered, {done.retried} "
                    f"retrying, {done.dead} dead, {done.unknown} unknown"
                )
            return 0
        log = logging.getLogger("broadcasting.outbox")
        log.info("relay %s: started (SIGTERM or Ctrl-C stops it)", relay.owner)
        relay.run()
        log.info("relay %s: stopped", relay.owner)
    return 0


def _connect_drivers(broadcast: Broadcast) -> None:
    """Build ``DRIVER`` and every ``DRIVERS`` entry before relaying: one that cannot be built
    (a bad or missing option, its package not installed) raises its error now, so the relay
    exits with status 1, instead of making every row for that driver dead."""
    config = broadcast.config
    for name in dict.fromkeys([config.driver, *config.drivers]):
        broadcast.driver(name)


def _print_stats(stats: object, *, as_json: bool) -> None:
    data = _plain(stats)
    if as_json or not isinstance(data, dict):
        print(json.dumps(data, indent=2, default=str))
        return
    for key, value in data.items():
        shown = json.dumps(value, default=str) if isinstance(value, (dict, list)) else value
        print(f"{key}: {shown}")


def _row_data(row: Any) -> dict[str, Any]:
    data = _plain(row)
    return dict(data) if isinstance(data, dict) else {"id": getattr(row, "id", None)}


def list_command(args: Namespace) -> int:
    """``broadcasting outbox list``: the rows in one state (dead by default)."""
    if not 1 <= args.limit <= _MAX_ID:
        print("broadcasting: error: --limit must be from 1 to 2**63-1", file=sys.stderr)
        return 2
    with _store(args) as store:
        rows = store.rows(_LISTED[args.state], min(args.limit + 1, _MAX_ID))
    if len(rows) > args.limit:  # said on stderr: stdout stays the rows (JSON too)
        rows = rows[: args.limit]
        print(
            f"broadcasting: the first {args.limit} {args.state} rows; there are more "
            "(`broadcasting relay --stats` counts them, --limit N lists N)",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps([_row_data(row) for row in rows], indent=2, default=str))
        return 0
    if not rows:
        print(f"no {args.state} rows", file=sys.stderr)
        return 0
    for row in rows:
        channels = ",".join(row.channels)
        error = " ".join((row.error or "-").split())
        print(
            f"{row.id}  {row.message_id}  {row.driver}  {row.event}  {channels}  "
            f"attempts={row.attempts}  {error}"
        )
    return 0


def retry_command(args: Namespace) -> int:
    """``broadcasting outbox retry``: dead or unknown rows back to pending."""
    ids: Sequence[int] = args.ids
    if not ids and not args.all_dead:
        print("broadcasting: error: name row ids, or --all-dead", file=sys.stderr)
        return 2
    if not _ids_checked(ids):
        return 2
    with _store(args) as store:
        if args.all_dead:
            ids = [*ids, *_all(store, _policy.DEAD)]
        count = store.requeue(sorted(set(ids)))
    print(f"{count} row(s) will be sent again")
    return 0


def _ids_checked(ids: Sequence[int]) -> bool:
    """Whether every one of ``ids`` may be a row id; else says which is not (on stderr)."""
    wrong = [i for i in ids if not 1 <= i <= _MAX_ID]
    if wrong:
        print(
            f"broadcasting: error: {wrong[0]} is not a row id (from 1 to 2**63-1)", file=sys.stderr
        )
    return not wrong


def drop_command(args: Namespace) -> int:
    """``broadcasting outbox drop``: delete dead or unknown rows (never another state's)."""
    ids: Sequence[int] = args.ids
    if not ids and not args.all_dead and not args.all_unknown:
        print("broadcasting: error: name row ids, or --all-dead, --all-unknown", file=sys.stderr)
        return 2
    if not _ids_checked(ids):
        return 2
    named = sorted(set(ids))
    with _store(args) as store:
        count = store.drop(named) if named else 0
        if args.all_dead:
            count += store.drop_all(_policy.DEAD)
        if args.all_unknown:
            count += store.drop_all(_policy.UNKNOWN)
    print(f"{count} row(s) deleted")
    if named and not (args.all_dead or args.all_unknown) and count < len(named):
        print(
            f"broadcasting: {len(named) - count} of the {len(named)} rows named left alone: "
            "not dead or unknown (or no such row)",
            file=sys.stderr,
        )
    return 0


def _all(store: Store, state: int) -> list[int]:
    """The ids of every row in ``state``."""
    return [row.id for row in store.rows(state, 1 << 30)]


def purge_command(args: Namespace) -> int:
    """``broadcasting outbox purge --before SECONDS``: delete delivered rows done before."""
    if not math.isfinite(args.before) or args.before < 0:  # NaN: every row on PostgreSQL
        print("broadcasting: error: --before must be a number of seconds >= 0", file=sys.stderr)
        return 2
    with _store(args) as store:
        count = store.purge(time.time() - args.before)
    print(f"{count} delivered row(s) deleted")
    return 0


def init_command(args: Namespace) -> int:
    """``broadcasting outbox init``: create the tables (nothing if they exist)."""
    with _store(args, create=True) as store:
        store.create_tables()
        print(
            f"outbox ready: table {store.table!r} ({store.dialect}, {store.partitions} partitions)"
        )
    return 0
