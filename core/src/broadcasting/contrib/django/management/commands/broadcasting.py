"""``manage.py broadcasting COMMAND ...``: the ``broadcasting`` command line (send, check,
channels, members, listen, drivers) with ``settings.BROADCASTING`` as its ``--config``.

The arguments are those of ``broadcasting`` itself (docs/cli.md), parsed by its own parser;
``--config PATH`` still reads a file instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from contextlib import suppress
from typing import Any, ClassVar, TextIO

from django.core.management.base import BaseCommand, CommandError  # type: ignore[import-untyped, unused-ignore]

#: Django's own options, which ``manage.py`` has read already.
_DJANGO_OPTIONS = ("--settings", "--pythonpath")


def run(argv: Sequence[str], prog: str, out: TextIO, err: TextIO) -> int:
    """Run the ``broadcasting`` command line on ``argv`` with the settings' config: its exit
    status (an argument error exits, as argparse does)."""
    from django.conf import settings  # type: ignore[import-untyped, unused-ignore]

    from broadcasting.contrib import run_cli
    from broadcasting.contrib.django._broadcast import SETTING

    return run_cli(argv, prog=prog, config=getattr(settings, SETTING, None), out=out, err=err)


def _without_django_options(argv: Sequence[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _DJANGO_OPTIONS:
            skip = True  # its value follows
        elif not arg.startswith(tuple(f"{option}=" for option in _DJANGO_OPTIONS)):
            kept.append(arg)
    return kept


class Command(BaseCommand):  # type: ignore[misc, unused-ignore]
    help = (
        "The broadcasting command line (send, check, channels, members, listen, drivers) "
        "with settings.BROADCASTING as its configuration; `manage.py broadcasting --help`."
    )
    # `broadcasting check` reports a bad config itself, as the command line does
    requires_system_checks: ClassVar[list[str]] = []

    def add_arguments(self, parser: Any) -> None:
        # for call_command("broadcasting", "send", ...): everything goes to the CLI's parser
        parser.add_argument("args", nargs=argparse.REMAINDER, help="a broadcasting command")

    def print_help(self, prog_name: str, subcommand: str) -> None:
        """``manage.py help broadcasting``: the command line's own help."""
        with suppress(SystemExit):  # argparse exits after printing its help
            run(["--help"], f"{os.path.basename(prog_name)} {subcommand}", sys.stdout, sys.stderr)

    def run_from_argv(self, argv: list[str]) -> None:
        """``manage.py broadcasting ...``: the command line's parser reads the arguments."""
        prog = f"{os.path.basename(argv[0])} {argv[1]}"
        status = run(_without_django_options(argv[2:]), prog, sys.stdout, sys.stderr)
        if status:
            sys.exit(status)

    def handle(self, *args: str, **options: Any) -> None:
        """``call_command("broadcasting", "send", ...)``: a non-zero status (a bad argument's
        too, where the command line exits) is a CommandError."""
        out = options.get("stdout") or sys.stdout
        err = options.get("stderr") or sys.stderr
        try:
            status = run(args, "manage.py broadcasting", out, err)
        except SystemExit as exc:  # argparse's, on a bad argument (or --help): not from code
            status = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
        if status:
            what = f"broadcasting {args[0]}" if args else "broadcasting"
            raise CommandError(f"{what} exited with status {status}", returncode=status)
