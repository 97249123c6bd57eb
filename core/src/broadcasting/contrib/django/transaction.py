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

Django's connections belong to a thread, and async code cannot open a transaction: Django
asks for the part that needs one to be a synchronous function, run with ``sync_to_async()``.
Async code that such a function (or a sync middleware) awaits through ``async_to_sync()``
runs on the event loop while that thread waits, and Django's own async ORM calls go back to
that thread, into its transaction. A publish from that async code does the same: it asks
that thread about its transaction, and registers its ``on_commit`` there (a publish from
async code that nothing awaits from a thread has no transaction to join: it goes at once).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from broadcasting._errors import InputError
from broadcasting.hookspecs import hookimpl

if TYPE_CHECKING:
    from broadcasting._broadcast import Broadcast

__all__ = ["DjangoTransaction", "broadcasting_transaction"]

DEFAULT_ALIAS = "default"
#: How long async code waits for the thread that awaits it to answer (seconds): at once
#: unless that thread runs other code of it meanwhile.
CALLER_TIMEOUT = 10.0


@hookimpl
def broadcasting_transaction(broadcast: Broadcast, transaction: object) -> DjangoTransaction | None:
    """Adapt a Django database alias, or (for ``None``) Django's default database while an
    ``atomic()`` block is open on it in this thread (or in the thread awaiting this async
    code through ``async_to_sync()``); ``None`` for anything else."""
    if transaction is None:
        if not _orm_ready():
            return None
        found = DjangoTransaction(DEFAULT_ALIAS, ambient=True)
        # nothing to join: a script, a management command, a view outside atomic()
        return found if found.active() else None
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
    """A Django database alias as a :class:`~broadcasting.plugin.Transaction`.

    Made in async code that a thread awaits through ``async_to_sync()``, it is that thread's
    transaction (see the module's docstring): it is asked about once, and an ``on_commit``
    callback registered there runs whatever the publish adds to it.
    """

    __slots__ = ("_callbacks", "_caller", "_joined", "alias", "ambient", "dialect")

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
        self._callbacks: list[Callable[[], object]] = []
        self._caller = _awaiting_thread()
        self._joined = False
        if self._caller is not None:
            self._joined = _in_caller(self._caller, self._join)

    def active(self) -> bool:
        """Whether an ``atomic()`` block is open on the alias's connection (in this thread, or
        the one awaiting this async code)."""
        if self._caller is not None:
            return self._joined  # that thread waits for this code: its block stays open
        from django.db import connections  # type: ignore[import-untyped, unused-ignore]

        return bool(connections[self.alias].in_atomic_block)

    def on_commit(self, callback: Callable[[], object]) -> None:
        """``django.db.transaction.on_commit(callback, using=alias)``."""
        if self._caller is not None:
            if self._joined:  # run by the callback registered there, at its commit
                self._callbacks.append(callback)
            else:  # no transaction there: at once, as Django does
                callback()
            return
        from django.db import transaction  # type: ignore[import-untyped, unused-ignore]

        transaction.on_commit(callback, using=self.alias)

    def execute(self, sql: str, params: Sequence[Any]) -> object:
        """Run ``sql`` with the alias's cursor, inside its open transaction: the row count
        (from async code awaited by a thread, an awaitable: it runs in that thread)."""
        if self._caller is not None:
            return self._execute_there(sql, params)
        return self._execute(sql, params)

    def _execute(self, sql: str, params: Sequence[Any]) -> object:
        from django.db import connections  # type: ignore[import-untyped, unused-ignore]

        with connections[self.alias].cursor() as cursor:
            cursor.execute(sql, list(params))
            return cursor.rowcount

    async def _execute_there(self, sql: str, params: Sequence[Any]) -> object:
        assert self._caller is not None
        try:
            future = self._caller.submit(self._execute, sql, params)
        except RuntimeError:  # it no longer waits: a task that outlived its async_to_sync()
            raise _gone(self.alias) from None
        return await asyncio.wrap_future(future)

    def _join(self) -> bool:
        """In the awaiting thread: whether its ``atomic()`` block is open, and if so, have
        its commit run this transaction's callbacks."""
        from django.db import connections, transaction  # type: ignore[import-untyped, unused-ignore]

        if not connections[self.alias].in_atomic_block:
            return False
        transaction.on_commit(self._committed, using=self.alias)
        return True

    def _committed(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def __repr__(self) -> str:
        return f"<DjangoTransaction {self.alias!r} on {self.dialect}>"


def _awaiting_thread() -> concurrent.futures.Executor | None:
    """The thread whose Django connections this code uses, when it is not this one: async
    code awaited through ``async_to_sync()`` from a thread, which runs what it is given while
    it waits (asgiref's ``CurrentThreadExecutor``, where ``sync_to_async()`` and so Django's
    async ORM send their calls). ``None`` for sync code, and for async code no thread awaits."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return None
    asgiref = sys.modules.get("asgiref.sync")
    if asgiref is None:  # Django imports it: not imported, nothing awaits through it
        return None
    caller: concurrent.futures.Executor | None = getattr(
        asgiref.AsyncToSync.executors, "current", None
    )
    return caller


def _in_caller(caller: concurrent.futures.Executor, function: Callable[[], bool]) -> bool:
    """``function()`` run in the awaiting thread, waited for here (it runs at once: that thread
    waits for this code); ``False`` if that thread no longer waits."""
    try:
        future = caller.submit(function)
    except RuntimeError:  # a task that outlived its async_to_sync(): nothing left to join
        return False
    try:
        return future.result(timeout=CALLER_TIMEOUT)
    except concurrent.futures.TimeoutError:
        if not future.cancel():  # started meanwhile: it is short
            return future.result()
        raise RuntimeError(
            f"the thread awaiting this code through async_to_sync() did not answer within "
            f"{CALLER_TIMEOUT:g} s (it runs other code of the same request meanwhile): publish "
            "from that thread with broadcast.channel(), or outside the concurrent work"
        ) from None


def _gone(alias: str) -> RuntimeError:
    return RuntimeError(
        f"the thread whose Django transaction on {alias!r} this async code joined no longer "
        "waits for it (a task that outlived its async_to_sync()): nothing can be written there"
    )
