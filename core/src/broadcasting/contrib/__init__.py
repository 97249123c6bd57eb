"""Integrations: web frameworks (``django``, a Django app; ``flask``, a Flask extension),
database transactions (``sqlalchemy``, ``sqlite``, ``django.transaction``) and task queues
(``celery``, ``rq``, ``dramatiq``). Each imports its library only when it is used."""

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

    with redirect_stdout(out or sys.stdout), redirect_stderr(err or sys.stderr):
        return cli.main(list(argv), prog=prog, config=config)
