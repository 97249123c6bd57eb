"""The ``broadcasting`` command: list drivers, send a message, check each driver's service."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from broadcasting import __version__
from broadcasting._broadcast import Broadcast
from broadcasting._errors import BroadcastError
from broadcasting._health import Health
from broadcasting._plugins import installed_drivers


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="broadcasting", description="Publish realtime events through pluggable drivers."
    )
    parser.add_argument("--version", action="version", version=f"broadcasting {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    drivers = commands.add_parser("drivers", help="list every installed driver")
    drivers.add_argument("--json", action="store_true", help="print JSON")

    send = commands.add_parser("send", help="publish one message")
    send.add_argument("message", metavar="MESSAGE", help="a JSON object/array, or any text")
    send.add_argument(
        "--channel", "-c", action="append", required=True, metavar="NAME", help="repeatable"
    )
    send.add_argument("--event", "-e", default="base-event", metavar="NAME")
    send.add_argument("--driver", "-d", metavar="NAME", help="default: DRIVER from the config")
    send.add_argument(
        "--config", metavar="PATH", help="a .py, .toml or .json file with DRIVER and DRIVERS"
    )
    send.add_argument("--json", action="store_true", help="print the receipt as JSON")

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
    check.add_argument(
        "--config", metavar="PATH", help="a .py, .toml or .json file with DRIVER and DRIVERS"
    )
    check.add_argument(
        "--driver",
        "-d",
        action="append",
        metavar="NAME",
        help="check only this driver (repeatable; default: DRIVER and every DRIVERS entry)",
    )
    check.add_argument("--json", action="store_true", help="print a JSON list")
    return parser


def _parse_message(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (dict, list)) else text


def _drivers(as_json: bool) -> int:
    infos = installed_drivers()
    if as_json:
        print(json.dumps([asdict(info) for info in infos], indent=2))
        return 0
    _print_table(
        [("NAME", "PACKAGE", "VERSION", "MODULE")]
        + [(i.name, i.distribution or "(registered)", i.version or "-", i.module) for i in infos]
    )
    return 0


def _send(args: argparse.Namespace) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logger = logging.getLogger("broadcasting")
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    with Broadcast(args.config) as broadcast:
        driver = broadcast.driver(args.driver)
        receipt = driver.channel(args.channel, _parse_message(args.message), args.event)
    if args.json:
        print(json.dumps(asdict(receipt)))
    else:
        print(f"sent: {receipt}")
    return 0


def _check_one(broadcast: Broadcast, name: str) -> Health:
    """Connect ``name`` and run its check; a driver that cannot be built is an ``error``."""
    try:
        driver = broadcast.driver(name)
        return driver.check()
    except BroadcastError as exc:  # ConfigurationError, DriverNotFound, PluginLoadError...
        return Health("error", None, f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # a driver's bug; its message may hold anything, secrets too
        return Health("error", None, f"{type(exc).__name__} raised by the check (message withheld)")


def _check(args: argparse.Namespace) -> int:
    broadcast = Broadcast(args.config)
    default = broadcast.config.driver
    names = list(dict.fromkeys(args.driver or [default, *broadcast.config.drivers]))
    try:
        results = [(name, _check_one(broadcast, name)) for name in names]
        _print_health(results, default, as_json=args.json)
    finally:
        broadcast.close()
    return 1 if any(health.failed for _, health in results) else 0


def _print_health(results: list[tuple[str, Health]], default: str, *, as_json: bool) -> None:
    if as_json:
        rows = [
            {"driver": name, "default": name == default, **asdict(health)}
            for name, health in results
        ]
        print(json.dumps(rows, indent=2))
        return
    _print_table(
        [("DRIVER", "STATUS", "LATENCY", "DETAIL")]
        + [
            (
                name + (" (default)" if name == default else ""),
                health.status,
                "-" if health.latency_ms is None else f"{health.latency_ms:.1f} ms",
                " ".join(health.detail.split()),
            )
            for name, health in results
        ]
    )


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    """Columns padded to their widest cell; the last one is not padded."""
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``broadcasting`` console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "drivers":
            return _drivers(args.json)
        if args.command == "send":
            return _send(args)
        return _check(args)
    except BroadcastError as exc:
        print(f"broadcasting: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
