"""The project's Broadcast, built from ``settings.BROADCASTING`` on first use."""

from __future__ import annotations

import asyncio
import functools
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from asgiref.sync import async_to_sync, iscoroutinefunction, sync_to_async

from broadcasting._auth import ChannelRules, R
from broadcasting._broadcast import Broadcast
from broadcasting._fork import call_after_fork
from broadcasting._webhooks import H, WebhookHandlers

__all__ = ["SETTING", "SettingsBroadcast", "as_django_expects"]

F = TypeVar("F", bound=Callable[..., Any])

#: The setting that holds ``DRIVER`` and ``DRIVERS`` (what ``Broadcast()`` takes).
SETTING = "BROADCASTING"

#: What ``Broadcast.__init__`` sets but the rules and handlers: forgotten by :meth:`reset`.
_BUILT = (
    "config",
    "plugin_manager",
    "_named",
    "_variants",
    "_of_driver",
    "_lock",
    "_outbox_store",
)
_OWN = frozenset({"_build_lock", "_built", "rules", "webhook_handlers"})


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def as_django_expects(function: F) -> F:
    """``function`` (a rule, a webhook handler, a user function) called as Django expects of
    application code: a sync one, called on an event loop (async views, ``aauthorize()``),
    runs through ``sync_to_async`` (thread-sensitive: Django's thread and database connection,
    so it may use the ORM); an ``async def`` one, called where no loop runs (sync views),
    through ``async_to_sync`` (not on the library's own loop, whose connections Django does
    not manage)."""
    if iscoroutinefunction(function):

        def call_async(*args: Any, **kwargs: Any) -> Any:
            if _loop_running():
                return function(*args, **kwargs)  # the caller's loop awaits it
            return async_to_sync(function)(*args, **kwargs)

        # not marked as a coroutine function: an awaitable result is awaited as well
        wrapped = functools.wraps(function)(call_async)
    else:

        def call_sync(*args: Any, **kwargs: Any) -> Any:
            if _loop_running():
                return sync_to_async(function, thread_sensitive=True)(*args, **kwargs)
            return function(*args, **kwargs)

        wrapped = functools.wraps(function)(call_sync)
    return wrapped  # type: ignore[return-value]


class SettingsBroadcast(Broadcast):
    """A :class:`~broadcasting.Broadcast` whose config is ``settings.BROADCASTING``.

    It reads the setting the first time it is used (not at import, so a module may import it
    before Django is configured), and again after :meth:`reset`, which the app calls when the
    setting changes (``override_settings``, pytest-django's ``settings`` fixture). Channel rules
    and webhook handlers belong to this object: a rebuild keeps them.
    """

    def __init__(self) -> None:  # Broadcast.__init__ runs on first use, from the settings
        self._build_lock = threading.RLock()
        call_after_fork(self)
        self._built = False
        #: The channel rules added with :meth:`rule` (kept across rebuilds).
        self.rules = ChannelRules()
        #: The webhook handlers added with :meth:`on_webhook` (kept across rebuilds).
        self.webhook_handlers = WebhookHandlers()

    def rule(self, pattern: str) -> Callable[[R], R]:
        """:meth:`Broadcast.rule`; the rule is called as Django expects
        (:func:`as_django_expects`): a sync rule may query behind async views too."""
        add = super().rule(pattern)

        def decorator(rule: R) -> R:
            add(as_django_expects(rule))
            return rule

        return decorator

    @overload
    def on_webhook(self, name: H, /) -> H: ...

    @overload
    def on_webhook(self, name: str = "*") -> Callable[[H], H]: ...

    def on_webhook(self, name: str | H = "*") -> H | Callable[[H], H]:
        """:meth:`Broadcast.on_webhook`; the handler is called as Django expects
        (:func:`as_django_expects`)."""
        if callable(name):  # @broadcast.on_webhook: every event
            super().on_webhook(as_django_expects(name))
            return name
        add = super().on_webhook(name)

        def decorator(handler: H) -> H:
            add(as_django_expects(handler))
            return handler

        return decorator

    if not TYPE_CHECKING:  # to a type checker, a misspelt attribute is an error, not Any

        def __getattr__(self, name: str) -> Any:
            # only called for what is not set yet: the state Broadcast.__init__ makes
            if name in _OWN or name.startswith("__"):
                raise AttributeError(name)
            self._build()
            return object.__getattribute__(self, name)

    def _build(self) -> None:
        with self._build_lock:
            if self._built:
                return
            from django.conf import settings  # type: ignore[import-untyped, unused-ignore]

            rules, handlers = self.rules, self.webhook_handlers
            try:
                super().__init__(getattr(settings, SETTING, None))
            except BaseException:
                self._forget()
                raise
            finally:
                self.rules, self.webhook_handlers = rules, handlers
            self._built = True

    @property
    def built(self) -> bool:
        """Whether the settings have been read (the first use, or the first since a reset)."""
        return self._built

    def reset(self) -> None:
        """Close every connection and forget the config: the next use reads the settings again.

        The rules and webhook handlers stay. Broadcasters taken from the old config (``driver()``)
        are closed with it; take them again after a reset.
        """
        with self._build_lock:
            if not self._built:
                return
            try:
                self.close()
            finally:
                self._forget()

    def _forget(self) -> None:
        for name in _BUILT:
            self.__dict__.pop(name, None)
        self._built = False
        # the outbox's store is kept per Broadcast object (outbox.store_for), and this one
        # outlives its settings: the next outbox write opens the store OUTBOX names then
        stores = sys.modules.get("broadcasting.outbox._store")
        if stores is not None:
            with stores._by_broadcast_lock:
                store = stores._by_broadcast.pop(self, None)
            if store is not None:
                store.close()

    def _after_fork(self) -> None:
        """After fork: a parent thread that was building or resetting the project's Broadcast
        holds its lock in the child too, where that thread does not exist: every use would wait
        for good. A fresh lock, and :class:`Broadcast`'s own."""
        self._build_lock = threading.RLock()
        super()._after_fork()

    def __repr__(self) -> str:
        if not self._built:
            return f"<Broadcast from settings.{SETTING} (not read yet)>"
        return f"<Broadcast from settings.{SETTING} driver={self.config.driver!r}>"
