"""The ``broadcasting`` command: drivers, send, check, channels, members, listen, relay, outbox."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from argparse import ArgumentParser, Namespace
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, TextIO

from broadcasting import __version__
from broadcasting._broadcast import Broadcast
from broadcasting._driver import Feature
from broadcasting._errors import BroadcastError, InvalidPayloadError, NotSupportedError
from broadcasting._health import Health
from broadcasting._plugins import installed_drivers
from broadcasting._state import SUBSCRIBED, Heard

#: The exit status after Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130
#: The exit status when stdout's reader went away (128 + SIGPIPE): ``broadcasting ... | head``.
BROKEN_PIPE = 141
_DRIVER = "default: DRIVER from the config"
Command = Callable[[Namespace], int]


def _parser(prog: str = "broadcasting") -> ArgumentParser:
    # prog given here, not set afterwards: each command's usage line is made from it now
    parser = ArgumentParser(
        prog=prog, description="Publish realtime events through pluggable drivers."
    )
    parser.add_argument("--version", action="version", version=f"broadcasting {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    drivers = commands.add_parser("drivers", help="list every installed driver")
    drivers.add_argument("--json", action="store_true", help="print JSON")
    drivers.set_defaults(run=_drivers)

    send = commands.add_parser("send", help="publish one message")
    send.add_argument("message", metavar="MESSAGE", help="a JSON object/array, or any text")
    send.add_argument(
        "--channel", "-c", action="append", required=True, metavar="NAME", help="repeatable"
    )
    send.add_argument("--event", "-e", default="base-event", metavar="NAME")
    _common(send, _send, "print the receipt as JSON")

    check = commands.add_parser(
        "check",
        help="check that each configured driver's service answers and accepts its credentials",
        description=(
            "Connect each driver and make its health check: one authenticated request, "
            "never retried. Prints ok, auth_failed, unreachable, error or not_supported "
            "per driver. Exit status 0 when every driver is ok or not_supported (a driver "
            "without a health check), 1 when any failed or could not be built."
        ),
    )
    _common(
        check,
        _check,
        "print a JSON list",
        "check only this driver (repeatable; default: DRIVER and every DRIVERS entry)",
        action="append",
    )

    channels = commands.add_parser(
        "channels",
        help="list the occupied channels the service reports",
        description="Ask the driver's service which channels are occupied (one request).",
    )
    channels.add_argument("--prefix", "-p", metavar="P", help="only channels starting with P")
    _common(channels, _channels, "print a JSON list")

    members = commands.add_parser(
        "members",
        help="list the members of a presence channel",
        description="Ask the driver's service who is in a presence channel (one request).",
    )
    members.add_argument(
        "channel", metavar="CHANNEL", help="a presence channel, e.g. presence-room"
    )
    _common(members, _members, "print a JSON list")

    listen = commands.add_parser(
        "listen",
        help="subscribe to channels and print each event as it arrives",
        description=(
            "Subscribe to the channels as a client would (the Pusher WebSocket protocol for "
            "pusher, signing private and presence subscriptions with the configured secret; "
            "this process's publishes for memory) and print each event as it arrives, one "
            "line each. Ctrl-C stops it (exit status 130)."
        ),
    )
    listen.add_argument("channel", nargs="+", metavar="CHANNEL", help="full channel names")
    _common(listen, _listen, "print one JSON object per event")
    from broadcasting.outbox._cli import add_commands as _outbox_commands

    _outbox_commands(commands)  # relay; outbox list|retry|purge|init (docs/background.md)
    return parser


def _common(
    parser: ArgumentParser, run: Command, json_help: str, driver_help: str = _DRIVER, **driver: Any
) -> None:
    parser.set_defaults(run=run)
    parser.add_argument("--driver", "-d", metavar="NAME", help=driver_help, **driver)
    parser.add_argument(
        "--config", metavar="PATH", help="a .py, .toml or .json file with DRIVER and DRIVERS"
    )
    parser.add_argument("--json", action="store_true", help=json_help)


def _parse_message(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    except RecursionError:  # JSON, but nested deeper than Python decodes
        raise InvalidPayloadError("MESSAGE is JSON nested too deeply to decode") from None
    return value if isinstance(value, (dict, list)) else text


def _drivers(args: Namespace) -> int:
    infos = installed_drivers()
    rows = [(i.name, i.distribution or "(registered)", i.version or "-", i.module) for i in infos]
    _show(args, [asdict(i) for i in infos], [("NAME", "PACKAGE", "VERSION", "MODULE"), *rows])
    return 0


def _send(args: Namespace) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logger = logging.getLogger("broadcasting")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(min(level or logging.INFO, logging.INFO))
    try:
        with Broadcast(args.config) as broadcast:
            driver = broadcast.driver(args.driver)
            receipt = driver.channel(args.channel, _parse_message(args.message), args.event)
    finally:  # main() may run in a process that goes on (a test, a script)
        logger.removeHandler(handler)
        logger.setLevel(level)
    print(json.dumps(asdict(receipt)) if args.json else f"sent: {receipt}")
    return 0


def _check_one(broadcast: Broadcast, name: str) -> Health:
    """Connect ``name`` and run its check; a driver that cannot be built is an ``error``."""
    try:
        return broadcast.driver(name).check()
    except BroadcastError as exc:  # ConfigurationError, DriverNotFoundError, PluginLoadError...
        return Health("error", None, f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # a driver's bug; its message may hold anything, secrets too
        return Health("error", None, f"{type(exc).__name__} raised by the check (message withheld)")


def _check(args: Namespace) -> int:
    with Broadcast(args.config) as broadcast:
        default = broadcast.config.driver
        names = dict.fromkeys(args.driver or [default, *broadcast.config.drivers])
        results = [(name, _check_one(broadcast, name)) for name in names]
        uses_outbox = broadcast.config.send == "outbox" or bool(broadcast.config.outbox)
        outbox = _check_outbox(broadcast) if uses_outbox and not args.driver else None
    rows: list[tuple[str, str, str, str]] = [
        (
            name + (" (default)" if name == default else ""),
            health.status,
            "-" if health.latency_ms is None else f"{health.latency_ms:.1f} ms",
            " ".join(health.detail.split()),
        )
        for name, health in results
    ]
    data: list[dict[str, Any]] = [
        {"driver": n, "default": n == default, **asdict(h)} for n, h in results
    ]
    if outbox is not None:
        rows.append(("outbox", outbox[0], "-", outbox[1]))
        data.append({"outbox": True, "status": outbox[0], "detail": outbox[1], **outbox[2]})
    _show(args, data, [("DRIVER", "STATUS", "LATENCY", "DETAIL"), *rows])
    failed = any(health.failed for _, health in results) or (outbox and outbox[0] != "ok")
    return 1 if failed else 0


def _check_outbox(broadcast: Broadcast) -> tuple[str, str, dict[str, Any]]:
    """The outbox's status, a line on its backlog and lag, and its stats as data: ``error``
    when it cannot be read (its tables missing, its database down, its SQLite file not there:
    a check makes none, see :meth:`Store.require_file`)."""
    from broadcasting.outbox import store_for

    try:
        store = store_for(broadcast)
        store.require_file()
        stats = store.stats(time.time())
    except BroadcastError as exc:
        return "error", f"{type(exc).__name__}: {exc}", {}
    except Exception as exc:  # a database error's message may hold a URL with a password
        return "error", f"{type(exc).__name__} reading the outbox (message withheld)", {}
    counts = ", ".join(f"{count} {state}" for state, count in stats.backlog.items() if count)
    lag = "no lag" if stats.lag is None else f"lag {stats.lag:.1f} s"
    relays = len(stats.relays)
    detail = f"{counts or 'empty'}; {lag}; {relays} relay{'' if relays == 1 else 's'} running"
    data = {"backlog": dict(stats.backlog), "lag": stats.lag, "relays": relays}
    if stats.stranded:
        return "error", f"{detail}; {stats.stranded_note()}", {**data, "stranded": stats.stranded}
    return "ok", detail, data


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _channels(args: Namespace) -> int:
    with Broadcast(args.config) as broadcast:
        found = broadcast.occupied_channels(args.prefix, driver=args.driver)
    rows = [(c.name, _count(c.subscription_count), _count(c.user_count)) for c in found]
    empty = "no occupied channels" + (f" starting with {args.prefix!r}" if args.prefix else "")
    _show(args, [asdict(c) for c in found], [("CHANNEL", "SUBSCRIPTIONS", "USERS"), *rows], empty)
    return 0


def _members(args: Namespace) -> int:
    with Broadcast(args.config) as broadcast:
        found = broadcast.members(args.channel, driver=args.driver)
    rows = [(m.id, "-" if m.info is None else json.dumps(m.info, default=str)) for m in found]
    data = [{"id": m.id, "info": m.info} for m in found]
    _show(args, data, [("ID", "INFO"), *rows], f"nobody is in {args.channel}")
    return 0


def _heard_line(heard: Heard, as_json: bool) -> str:
    if as_json:
        row = {k: v for k, v in asdict(heard).items() if k != "user_id" or v is not None}
        return json.dumps(row, ensure_ascii=False)
    clock = time.strftime("%H:%M:%S", time.localtime(heard.received_at))
    millis = int(heard.received_at * 1000) % 1000
    data = heard.data.replace("\r", "\\r").replace("\n", "\\n")  # one line per event
    return f"{clock}.{millis:03d}  {heard.channel}  {heard.event}  {data}"


async def listen(
    broadcast: Broadcast,
    channels: Sequence[str],
    *,
    driver: str | None = None,
    as_json: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> None:
    """Print each event heard on ``channels`` to ``out`` until cancelled (``broadcasting listen``).

    ``err`` gets a line once every channel is subscribed.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    target = broadcast.driver(driver).driver
    if Feature.LISTEN not in target.features:
        raise NotSupportedError(target.name, "listening to channels")
    waiting = set(channels)
    heard_events = target.listen_channels(list(channels))
    try:
        async for heard in heard_events:
            if heard.event == SUBSCRIBED:
                waiting.discard(heard.channel)
                if not waiting:
                    names = ", ".join(dict.fromkeys(channels))
                    ready = f"broadcasting: listening on {names} ({target.name}); Ctrl-C to stop"
                    print(ready, file=err, flush=True)
                continue
            print(_heard_line(heard, as_json), file=out, flush=True)
    finally:
        close = getattr(heard_events, "aclose", None)
        if close is not None:
            await close()  # unsubscribe and disconnect, also when cancelled (Ctrl-C)


def _listen(args: Namespace) -> int:
    broadcast = Broadcast(args.config)
    try:
        return asyncio.run(_listen_until_stopped(broadcast, args))
    except KeyboardInterrupt:  # Ctrl-C before the loop's own handler was in place
        print("broadcasting: stopped", file=sys.stderr)
        return INTERRUPTED
    finally:
        with contextlib.suppress(Exception):
            broadcast.close()


async def _listen_until_stopped(broadcast: Broadcast, args: Namespace) -> int:
    """:func:`listen` until Ctrl-C, which cancels it as a task: a KeyboardInterrupt raised
    wherever the loop happens to be (Python 3.10's ``asyncio.run`` has no handler of its own)
    can leave it unable to finish, and the process hanging."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    stopped: list[bool] = []

    def stop() -> None:
        stopped.append(True)
        if task is not None:
            task.cancel()

    # not on Windows, nor outside the main thread: there a KeyboardInterrupt it is
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGINT, stop)
    try:
        await listen(broadcast, args.channel, driver=args.driver, as_json=args.json)
    except asyncio.CancelledError:
        if not stopped:
            raise
        print("broadcasting: stopped", file=sys.stderr)
        return INTERRUPTED
    finally:
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(signal.SIGINT)
    return 0  # pragma: no cover - listening ends only by Ctrl-C or an error


def _show(
    args: Namespace, data: Sequence[object], table: Sequence[Sequence[str]], empty: str = ""
) -> None:
    """``data`` as JSON with ``--json``; else ``table`` (header first), or ``empty`` on stderr."""
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    elif empty and len(table) == 1:
        print(empty, file=sys.stderr)
    else:  # columns padded to their widest cell, but the last
        widths = [max(len(row[col]) for row in table) for col in range(len(table[0]) - 1)]
        for row in table:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            print("  ".join([*cells, row[-1]]).rstrip())


def main(argv: Sequence[str] | None = None, *, prog: str | None = None, config: Any = None) -> int:
    """Entry point of the ``broadcasting`` console script. A framework's command that wraps it
    passes its own ``prog`` and a ``config`` (what ``Broadcast()`` takes) used unless
    ``--config`` is given."""
    parser = _parser() if prog is None else _parser(prog)
    args = parser.parse_args(argv)
    if config is not None and getattr(args, "config", "") is None:
        args.config = config
    try:
        status: int = args.run(args)
        if sys.stdout is not None:
            sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
    except BroadcastError as exc:
        print(f"broadcasting: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C while connecting, sending or printing
        print("broadcasting: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # whoever read stdout stopped reading: stop quietly, as Unix tools do
        _drop_stdout()
        return BROKEN_PIPE
    return status


def _drop_stdout() -> None:
    """Point stdout at the null device, so the flush at exit does not fail on the closed pipe."""
    import os

    with contextlib.suppress(AttributeError, OSError, ValueError):  # no fd: captured, replaced
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, sys.stdout.fileno())
        finally:
            os.close(null)
