"""``manage.py broadcasting_relay``: the outbox's relay for the project's Broadcast
(``settings.BROADCASTING``, its ``OUTBOX`` too), as ``broadcasting relay`` runs it."""

from __future__ import annotations

from typing import Any, ClassVar

from django.core.management.base import BaseCommand, CommandError  # type: ignore[import-untyped, unused-ignore]


class Command(BaseCommand):  # type: ignore[misc, unused-ignore]
    help = (
        "Deliver the outbox's rows (publishes made with send='outbox') until SIGTERM or "
        "Ctrl-C; --once runs one round, --stats prints the backlog (docs/background.md)."
    )
    requires_system_checks: ClassVar[list[str]] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="run one round")
        parser.add_argument("--owner", metavar="NAME", help="this relay's name in the lease table")
        parser.add_argument("--stats", action="store_true", help="print the backlog and relays")
        parser.add_argument("--json", action="store_true", help="print JSON (--once, --stats)")

    def handle(self, *args: str, **options: Any) -> None:
        from contextlib import redirect_stdout

        from broadcasting._errors import BroadcastError
        from broadcasting.contrib.django import broadcast
        from broadcasting.outbox._cli import relay_main

        self.stdout.ending = ""  # print() ends its own lines
        with redirect_stdout(self.stdout):
            try:
                status = relay_main(
                    broadcast,
                    owner=options.get("owner"),
                    once=bool(options.get("once")),
                    stats=bool(options.get("stats")),
                    as_json=bool(options.get("json")),
                )
            except BroadcastError as exc:
                raise CommandError(f"{type(exc).__name__}: {exc}", returncode=1) from exc
            except Exception as exc:  # Django's database error: its message less the password
                said = _described(broadcast, exc)
                withheld = "message withheld; " if said == type(exc).__name__ else ""
                raise CommandError(
                    f"the outbox's database failed: {said} ({withheld}is the database up, and "
                    "were its tables made: `manage.py migrate`, or `manage.py broadcasting "
                    "outbox init`?)",
                    returncode=1,
                ) from exc
        if status:
            raise CommandError(f"broadcasting_relay exited with status {status}", returncode=status)


def _described(broadcast: Any, error: BaseException) -> str:
    """``error`` as the outbox's store would log it (its type alone if there is no store)."""
    from broadcasting.outbox import store_for

    try:
        return store_for(broadcast).describe(error)
    except Exception:
        return type(error).__name__
