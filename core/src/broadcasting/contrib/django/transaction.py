"""Django's database transactions for ``send="after_commit"`` and ``send="outbox"``
(docs/background.md).

A ``broadcasting_transaction`` plugin: ``transaction=`` may name a database alias
(``"default"``), and with no ``transaction=`` at all the ``default`` database is used once
Django's ORM is loaded and its settings are configured (so inside ``transaction.atomic()``
nothing more needs saying). It needs neither the ``broadcasting.contrib.django`` app in
``INSTALLED_APPS`` nor Django itself until it is asked about a transaction.

- after commit: through ``django.db.transaction.on_commit(using=alias)``, so it follows
  Django's rules: sent when the outermost ``atomic()`` block commits, dropped if it rolls
  back, and dropped with a savepoint (an inner ``atomic()``) that rolls back; outside
  ``atomic()`` (autocommit) it is sent at once. ``TestCase.captureOnCommitCallbacks()``
  captures it like any other callback.
- outbox: the row is written with the alias's cursor (``%s`` placeholders), inside the
  open ``atomic()`` block.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from broadcasting._errors import InputError
from broadcasting.hookspecs import hookimpl

if TYPE_CHECKING:
    from broadcasting._broadcast import Broadcast

__all__ = ["DjangoTransaction", "broadcasting_transaction"]

DEFAULT_ALIAS = "default"


@hookimpl
def broadcasting_transaction(broadcast: Broadcast, transaction: object) -> DjangoTransaction | None:
    """Adapt a Django database alias, or (for ``None``) Django's default database while an
    ``atomic()`` block is open on it in this thread; ``None`` for anything else."""
    if transaction is None:
        if not _orm_ready():
            return None
        from django.db import connections  # type: ignore[import-untyped, unused-ignore]

        if not connections[DEFAULT_ALIAS].in_atomic_block:
            return None  # nothing to join: a script, a management command, a view outside one
        return DjangoTransaction(DEFAULT_ALIAS, ambient=True)
    if not isinstance(transaction, str):
        return None
    try:
        from django.conf import settings  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        raise InputError(
            f"transaction={transaction!r}: a string names a Django database alias, and Django "
            "is not installed (pip install 'broadcasting[django]')"
        ) from None
    if not settings.configured:
        raise InputError(
            f"transaction={transaction!r} names a Django database, but Django's settings are "
            "not configured (DJANGO_SETTINGS_MODULE or settings.configure())"
        )
    return DjangoTransaction(transaction)


def _orm_ready() -> bool:
    """Whether ``django.db`` is imported and there is a ``default`` database configured."""
    if "django.db" not in sys.modules:
        return False
    from django.conf import settings  # type: ignore[import-untyped, unused-ignore]

    if not settings.configured:
        return False
    databases = getattr(settings, "DATABASES", None) or {}
    return DEFAULT_ALIAS in databases


class DjangoTransaction:
    """A Django database alias as a :class:`~broadcasting.plugin.Transaction`."""

    __slots__ = ("alias", "ambient", "dialect")

    #: Django's cursors take ``%s`` on every backend.
    paramstyle = "format"
    dialect: str

    def __init__(self, alias: str, *, ambient: bool = False) -> None:
        from django.db import connections  # type: ignore[import-untyped, unused-ignore]
        from django.utils.connection import ConnectionDoesNotExist  # type: ignore[import-untyped, unused-ignore]

        try:
            connection = connections[alias]
        except ConnectionDoesNotExist:
            known = ", ".join(map(repr, connections)) or "none"
            raise InputError(
                f"transaction={alias!r}: no such Django database (DATABASES has {known})"
            ) from None
        self.alias = alias
        #: found open (the caller passed no ``transaction=``), not given
        self.ambient = ambient
        # Django's vendor names are SQLAlchemy's: postgresql, sqlite, mysql (MariaDB too), oracle
        self.dialect = connection.vendor

    def active(self) -> bool:
        """Whether an ``atomic()`` block is open on the alias's connection (in this thread)."""
        from django.db import connections  # type: ignore[import-untyped, unused-ignore]

        return bool(connections[self.alias].in_atomic_block)

    def on_commit(self, callback: Callable[[], object]) -> None:
        """``django.db.transaction.on_commit(callback, using=alias)``."""
        from django.db import transaction  # type: ignore[import-untyped, unused-ignore]

        transaction.on_commit(callback, using=self.alias)

    def execute(self, sql: str, params: Sequence[Any]) -> object:
        """Run ``sql`` with the alias's cursor, inside its open transaction; the row count."""
        from django.db import connections  # type: ignore[import-untyped, unused-ignore]

        with connections[self.alias].cursor() as cursor:
            cursor.execute(sql, list(params))
            return cursor.rowcount

    def __repr__(self) -> str:
        return f"<DjangoTransaction {self.alias!r} on {self.dialect}>"
