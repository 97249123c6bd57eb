"""Hook specifications for ``broadcasting`` plugins (docs/hooks.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from broadcasting._auth import AuthRequest
    from broadcasting._background import Transaction
    from broadcasting._broadcast import Broadcast
    from broadcasting._driver import Driver
    from broadcasting._types import Message, Receipt
    from broadcasting._webhooks import WebhookEvent

PROJECT = "broadcasting"
#: Marks a function as a hook specification.
hookspec = pluggy.HookspecMarker(PROJECT)
#: Marks a function as an implementation of a ``broadcasting`` hook.
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec(firstresult=True)
def broadcasting_connect(name: str, options: Mapping[str, Any]) -> Driver | None:
    """Turn a driver name and its options into a connected driver.

    Called when a Broadcast first needs ``name``; it keeps the driver (``close()``
    closes it, next use reconnects). An entry point naming a Driver class needs no
    implementation: the core calls its ``from_config(options)``.

    :param name: the driver name, from ``DRIVER`` or ``Broadcast.driver()``.
    :param options: that driver's ``DRIVERS`` mapping less the delivery options; secret
        options arrive as ``Secret``. Raise ``ConfigurationError`` for a missing or bad
        key, naming the key and never its value; for several, one
        ``ConfigurationError.combine(errors)`` that holds them all.
    :return: a Driver, or ``None`` if this plugin does not provide ``name``. Stops at
        the first non-None result.
    """


@hookspec(firstresult=True)
def broadcasting_publish(broadcast: Broadcast, driver: Driver, message: Message) -> Receipt | None:
    """Deliver one validated message through ``driver``.

    Every publish goes through it; the core's implementation runs last, so a
    ``wrapper=True`` one sees, may alter or veto, every publish and its outcome.
    On the async path a non-wrapper may return an awaitable.

    :param broadcast: the Broadcast publishing it.
    :param driver: the connected driver the message is for.
    :param message: the message: de-duplicated channels, encoded text, id.
    :return: a Receipt once the service acknowledged every channel; else raise
        ``PublishError``, never return ``None``. Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def broadcasting_authorize(
    broadcast: Broadcast, driver: Driver, request: AuthRequest
) -> dict[str, Any] | None:
    """Authorize one subscription or sign-in and return what the client expects.

    Every authorization goes through it once the request's form was checked; the
    core's implementation runs last (the matching channel rule decides, the driver
    signs). A ``wrapper=True`` one can audit, rate-limit or veto (raise
    ``ForbiddenError``). On the async path a non-wrapper may return an awaitable.

    :param broadcast: the Broadcast whose rules apply.
    :param driver: the connected driver that signs.
    :param request: the AuthRequest (kind, socket_id, channel, name, user...).
    :return: the JSON-ready body for the client; raise ``ForbiddenError`` to refuse,
        never return ``None``. Stops at the first non-None result.
    """


@hookspec
def broadcasting_webhook(broadcast: Broadcast, driver: Driver, event: WebhookEvent) -> None:
    """Receive one verified webhook event.

    Called for each event of a verified delivery, in order, before the ``on_webhook()``
    handlers; every implementation is called. Services retry: de-duplicate on ``event.id``.

    :param broadcast: the Broadcast that verified it.
    :param driver: the driver whose credentials verified it.
    :param event: the WebhookEvent.
    :return: nothing, or an awaitable (``awebhook()`` awaits it, ``webhook()`` runs it on
        the core's background loop). An exception reaches the caller at once: the
        delivery's later events and handlers are not run.
    """


@hookspec(firstresult=True)
def broadcasting_transaction(broadcast: Broadcast, transaction: object) -> Transaction | None:
    """Adapt the caller's database transaction for a publish sent after commit or by outbox.

    Called for every such publish; the built-in plugins adapt a SQLAlchemy ``Session``,
    ``AsyncSession`` or ``Connection``, a Django database alias (and, for ``None``, Django's
    default database once Django's ORM is loaded) and a ``sqlite3.Connection``.

    :param broadcast: the Broadcast publishing.
    :param transaction: what the caller passed as ``transaction=``, or ``None``.
    :return: a ``Transaction``, or ``None`` if this plugin does not know the object. Stops
        at the first non-None result; with none, ``None`` means "no transaction" and any
        other object is a ``TypeError``.
    """


@hookspec(firstresult=True)
def broadcasting_defer(
    broadcast: Broadcast, driver: Driver, message: Message, transaction: Transaction | None
) -> Receipt | None:
    """Take one validated message that is not to be sent now; ``message.via`` says how.

    The core's implementation runs last and handles ``"after_commit"`` and ``"outbox"``;
    a queue plugin handles its own name (``"celery"``) and returns ``None`` for others.
    On the async path a non-wrapper may return an awaitable.

    :param broadcast: the Broadcast publishing.
    :param driver: the connected driver the message is for.
    :param message: the message, validated; its ``id`` stays the same until it is sent.
    :param transaction: the caller's transaction, adapted, or ``None`` outside one.
    :return: a Receipt with ``pending=True`` (or, sent at once, the publish's receipt).
        Stops at the first non-None result.
    """
