"""Integrations with web frameworks: ``broadcasting.contrib.django`` (a Django app) and
``broadcasting.contrib.flask`` (a Flask extension). Each imports its framework only when it
is itself imported."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from contextlib import redirect_stderr, redirect_stdout
from typing import Any, TextIO

__all__ = ["run_cli"]


def run_cli(
    argv: Sequence[str],
    *,
    prog: str,
    config: Any,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the ``broadcasting`` command line on ``argv`` with ``config`` (what ``Broadcast()``
    takes) in place of ``--config``, unless ``argv`` gives one: its exit status. Its own parser
    reads the arguments (an argument error or ``--help`` exits, as argparse does); output goes
    to ``out`` and ``err`` (default: ``sys.stdout``, ``sys.stderr`` at the call)."""
    from broadcasting import cli
    from broadcasting._errors import BroadcastError

    parser = cli._parser()
    parser.prog = prog
    with redirect_stdout(out or sys.stdout), redirect_stderr(err or sys.stderr):
        args = parser.parse_args(list(argv))
        if hasattr(args, "config") and args.config is None:
            args.config = config
        try:
            status: int = args.run(args)
        except BroadcastError as exc:
            print(f"broadcasting: error: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    return status
