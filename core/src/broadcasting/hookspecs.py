"""Hook specifications for ``broadcasting`` plugins.

A plugin is a module or object with functions named after these specs and
decorated with :data:`broadcasting.hookimpl`. Driver plugins are found through
the ``broadcasting.drivers`` entry-point group (entry-point name = driver
name); other plugins through ``broadcasting.plugins`` or by passing them to
``Broadcast(plugins=[...])``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from broadcasting._markers import hookspec

if TYPE_CHECKING:
    from broadcasting._auth import AuthRequest
    from broadcasting._broadcast import Broadcast
    from broadcasting._driver import Driver
    from broadcasting._types import Message, Receipt
    from broadcasting._webhooks import WebhookEvent


@hookspec(firstresult=True)
def broadcasting_connect(name: str, options: Mapping[str, Any]) -> Driver | None:
    """Turn a driver name and its options into a connected driver.

    Called when a :class:`~broadcasting.Broadcast` first needs the driver
    called ``name``; the result is kept by that ``Broadcast`` and reused:
    ``close()`` closes it, and it reconnects on its next publish. Only the
    plugin registered under ``name`` in the ``broadcasting.drivers``
    entry-point group is imported for this call. An entry point that names a
    :class:`~broadcasting.Driver` class needs no implementation of this hook:
    the core connects it with ``from_config(options)``; implement it for a
    factory (one plugin serving several names, say).

    :param name: the driver name, as written in ``DRIVER`` or passed to
        ``Broadcast.driver()``.
    :param options: that driver's mapping from ``DRIVERS`` (empty if absent),
        less the delivery options the core reads itself (``retries``,
        ``retry_backoff``, ``retry_max_backoff``, ``at_least_once``, ``batch``,
        ``batch_in_flight``). Implementations must raise :class:`~broadcasting.ConfigurationError`
        for a missing or bad key, naming the key and never its value. Options
        named like secrets arrive as :class:`~broadcasting.Secret`; so do those a
        factory plugin lists in a ``secret_options`` attribute of its own.

    :return: a :class:`~broadcasting.Driver`, or ``None`` if this plugin does
        not provide ``name``.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def broadcasting_publish(broadcast: Broadcast, driver: Driver, message: Message) -> Receipt | None:
    """Deliver one validated message through ``driver``.

    Every publish goes through this hook, from ``channel()`` and from
    ``achannel()`` alike, after the core has validated the message against
    the driver's limits. The core's own implementation runs last: the core's
    delivery (requests, retries, batching, outcomes) for a driver that
    implements ``send``, or the driver's own ``publish`` for one that delivers
    in process. So a ``wrapper=True`` implementation observes, and may alter
    or veto, every publish on every driver, and sees its final outcome, on
    the async path too (pluggy calls the hook there in a greenlet, so hook
    call monitoring sees every call). On the async path a non-wrapper
    implementation may return an awaitable; it is awaited after the call.

    :param broadcast: the :class:`~broadcasting.Broadcast` publishing it.
    :param driver: the connected driver the message is for.
    :param message: the message, with de-duplicated channels, the encoded
        text and its id.

    :return: a :class:`~broadcasting.Receipt` once the service acknowledged
        the message on every channel. Raise :class:`~broadcasting.PublishError`
        otherwise, saying which channels were ``delivered``, ``failed`` or are
        ``unknown``; never return ``None`` for a message that was not delivered.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def broadcasting_authorize(
    broadcast: Broadcast, driver: Driver, request: AuthRequest
) -> dict[str, Any] | None:
    """Authorize one subscription or sign-in and return what the client expects.

    Every authorization goes through this hook, from ``authorize()``,
    ``aauthorize()``, ``authenticate_user()`` and the web endpoints alike,
    after the core has checked the request's form (``socket_id``, channel name).
    The core's own implementation runs last: it finds the channel rule that
    matches ``request.name``, calls it with the user and the pattern's
    parameters, and has the driver sign the result
    (:meth:`~broadcasting.Driver.sign_channel`, or
    :meth:`~broadcasting.Driver.sign_user` for a sign-in). So a
    ``wrapper=True`` implementation can audit every authorization and its
    outcome, rate-limit, or veto one by raising :class:`~broadcasting.ForbiddenError`.
    On the async path a non-wrapper implementation may return an awaitable;
    it is awaited.

    :param broadcast: the :class:`~broadcasting.Broadcast` whose rules apply.
    :param driver: the connected driver that signs.
    :param request: the :class:`~broadcasting.AuthRequest`: its ``kind``
        (``private``, ``presence``, ``encrypted`` or ``user``), ``socket_id``,
        ``channel``, ``name`` without the prefix, and ``user``.

    :return: the JSON-ready body for the client (Pusher's ``{"auth": ...}``,
        an Ably token...). Raise :class:`~broadcasting.ForbiddenError` to
        refuse; never return ``None`` for a refusal.

    Stops at first non-None result.
    """


@hookspec
def broadcasting_webhook(broadcast: Broadcast, driver: Driver, event: WebhookEvent) -> None:
    """Receive one verified webhook event.

    Called once per event of every delivery that ``Broadcast.webhook()`` or
    ``awebhook()`` verified (key, signature and age), in the delivery's
    order, before the handlers registered with ``Broadcast.on_webhook()``.
    Every implementation is called. An implementation may return an
    awaitable: ``awebhook()`` awaits it on the caller's loop, ``webhook()``
    runs it to completion on the core's background loop. Services retry a
    delivery that was not answered with 2xx, so the same event may arrive
    twice: de-duplicate on ``event.id``, which is the same for every
    delivery of that event.

    :param broadcast: the :class:`~broadcasting.Broadcast` that verified it.
    :param driver: the driver whose credentials verified it.
    :param event: the :class:`~broadcasting.WebhookEvent`.

    :return: nothing (or an awaitable); the value is ignored. An exception
        propagates at once to the caller of ``webhook()`` (the later events
        and handlers of that delivery are not run; the endpoint answers 500
        and the service retries the whole delivery).
    """
