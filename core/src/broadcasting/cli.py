"""The ``broadcasting`` command: list drivers, send a message, check a configuration."""

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
    send.add_argument("--config", metavar="PATH", help="a .py file with DRIVER and DRIVERS")
    send.add_argument("--json", action="store_true", help="print the receipt as JSON")

    check = commands.add_parser("check", help="connect every configured driver")
    check.add_argument("--config", metavar="PATH", help="a .py file with DRIVER and DRIVERS")
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
    rows = [("NAME", "PACKAGE", "VERSION", "MODULE")] + [
        (i.name, i.distribution or "(registered)", i.version or "-", i.module) for i in infos
    ]
    widths = [max(len(row[col]) for row in rows) for col in range(3)]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
            + "  "
            + row[3]
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


def _check(args: argparse.Namespace) -> int:
    broadcast = Broadcast(args.config)
    names = list(dict.fromkeys([broadcast.config.driver, *broadcast.config.drivers]))
    failed = 0
    try:
        for name in names:
            try:
                broadcast.driver(name)
            except BroadcastError as exc:
                failed += 1
                print(f"{name}: error: {exc}")
            else:
                default = " (default)" if name == broadcast.config.driver else ""
                print(f"{name}: ok{default}")
    finally:
        broadcast.close()
    return 1 if failed else 0


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
