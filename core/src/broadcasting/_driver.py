"""The Driver base class: what a driver implements, and the seed's per-driver methods."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from broadcasting._channels import PUSHER_PREFIXES, Channel, ChannelKind, parse, render
from broadcasting._delivery import (
    Batch,
    Capabilities,
    DeliveryOptions,
    Part,
    SendResult,
    adeliver,
    deliver,
)
from broadcasting._errors import ConfigurationError, NotSupportedError
from broadcasting._health import Health, not_supported
from broadcasting._loop import run_sync
from broadcasting._types import Limits, Message, Options, Payload, Receipt, wrap_secrets

if TYPE_CHECKING:
    from typing_extensions import Self

    from broadcasting._auth import AuthRequest
    from broadcasting._broadcast import Broadcast
    from broadcasting._state import ChannelInfo, Heard, Member
    from broadcasting._webhooks import WebhookEvent

_DEFAULT_DELIVERY = DeliveryOptions()
_MISSING = "{} must implement send() or asend() (or publish()/apublish() to deliver in process)"


class Driver:
    """Base class of every driver.

    A driver for a service implements :meth:`send` or :meth:`asend` (or both):
    one request and what the service answered. It declares :attr:`name`,
    :attr:`limits` (checked before any request) and :attr:`capabilities`
    (what one request can carry, whether the service de-duplicates), and
    builds itself from its ``DRIVERS`` options in :meth:`from_config`. The
    core does the rest: splitting channel lists, retries, micro-batching and
    the outcome of every channel (see :meth:`publish`).

    It may also implement :meth:`check` / :meth:`acheck`: one request that
    tells whether the service answers and accepts the credentials (what
    ``broadcasting check`` reports).

    A driver that delivers in process (``memory``, ``log``) may override
    :meth:`publish` / :meth:`apublish` instead and skip all of that.

    Users reach drivers through ``Broadcast.driver(...)``, which returns the
    connected instance; :meth:`channel` and :meth:`achannel` on it publish
    through that ``Broadcast``'s hooks.
    """

    #: The driver's name: its ``broadcasting.drivers`` entry-point name.
    name: ClassVar[str] = ""
    #: Limits the core enforces before any request (instances may override).
    limits: Limits = Limits()
    #: What one request to the service can carry; the core plans around it.
    capabilities: Capabilities = Capabilities()
    #: Whether the driver can exclude a sender's connection (``socket_id``).
    supports_socket_id: ClassVar[bool] = False
    #: How the service names private, presence and encrypted channels (the
    #: prefix of each kind); a kind left out is one the service does not have.
    #: The default is Pusher's convention (``private-``, ``presence-``,
    #: ``private-encrypted-``).
    channel_prefixes: ClassVar[Mapping[ChannelKind, str]] = PUSHER_PREFIXES
    #: Whether the service's clients send a ``socket_id`` (``digits.digits``) when
    #: they ask the application to authorize them. Pusher's do; Ably's do not
    #: (their tokens are bound to a client id), so the Ably driver sets this off.
    requires_socket_id: ClassVar[bool] = True
    #: Characters with a meaning of their own in the service's channel or
    #: capability syntax (Ably's ``*`` wildcard, ``:`` namespaces and ``[...]``
    #: qualifiers). A channel rule's ``{param}`` never matches one, so what a
    #: rule allows for ``chat.{room}`` can never widen into a wildcard grant.
    special_characters: ClassVar[str] = ""
    #: Options that hold a secret although their names do not say so (a webhook
    #: URL with a token in its path, say). Options named like secrets (``secret``,
    #: ``key``, ``token``...) are wrapped in :class:`Secret` when the configuration
    #: is loaded; these are wrapped where the core keeps the options (for
    #: :meth:`with_options`); ``from_config`` receives them as a ``Secret`` (a factory
    #: plugin declares them in its own ``secret_options``).
    secret_options: ClassVar[frozenset[str]] = frozenset()
    #: The user's delivery options (``retries``, ``at_least_once``, ``batch``...), set
    #: by the core when it connects the driver.
    delivery: DeliveryOptions = _DEFAULT_DELIVERY

    _broadcast: Broadcast | None = None
    _options: Mapping[str, Any] = Options()

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> Self:
        """Build a driver from its ``DRIVERS`` mapping.

        The default accepts no options. Override it to read yours, raising
        :class:`ConfigurationError` (key named, value never shown) for a
        missing or bad one.
        """
        for key in options:
            raise ConfigurationError(cls.name, key, "unknown option")
        return cls()

    # -- what a driver implements -------------------------------------------

    def send(self, batch: Batch) -> SendResult:
        """Send one request carrying ``batch`` and say what the service answered.

        ``batch.parts`` holds one message and its channels (at most
        ``capabilities.channels_per_request``), or several messages when the
        driver declares ``capabilities.batch_channels``. Return ``None`` when
        the service acknowledged everything, an :class:`Answer` (ids, channels
        it refused) for a one-part batch, or one ``Answer`` or
        :class:`PublishError` per part. Raise :class:`PublishError` when the
        request failed as a whole, with ``maybe_delivered=True`` if the service
        may have processed it (a timeout or lost connection after sending, a
        5xx) and ``retryable`` if sending it again may succeed. Never retry
        here: the core decides.

        The default runs :meth:`asend` on the core's background loop.
        """
        if not self._sends_async():
            raise TypeError(_MISSING.format(type(self).__name__))
        return run_sync(self.asend(batch))

    async def asend(self, batch: Batch) -> SendResult:
        """Async twin of :meth:`send`; must not block the event loop.

        The default runs :meth:`send` in a worker thread.
        """
        if not self._sends_sync():
            raise TypeError(_MISSING.format(type(self).__name__))
        import asyncio

        return await asyncio.to_thread(self.send, batch)

    def plan(self, message: Message) -> list[tuple[str, ...]]:
        """The channel groups ``message`` is sent in, one request each (each channel once).

        The default cuts ``message.channels`` into groups of
        ``capabilities.channels_per_request``; override it when some channels
        must go alone (Pusher's encrypted channels do).
        """
        step = self.capabilities.channels_per_request
        channels = message.channels
        if step is None or len(channels) <= step:
            return [channels]
        return [channels[i : i + step] for i in range(0, len(channels), step)]

    def part_size(self, part: Part) -> int:
        """Bytes ``part`` adds to a shared request (checked against ``capabilities.batch_bytes``).

        The default counts the payload once per channel.
        """
        return self.payload_size(part.message) * len(part.channels)

    def publish(self, message: Message) -> Receipt:
        """Deliver ``message``; return a receipt once every channel is acknowledged.

        The default is the core's delivery over :meth:`send`: it raises a
        :class:`PublishError` listing the ``delivered``, ``failed`` and
        ``unknown`` channels otherwise. Drivers that deliver in process may
        override it.
        """
        if self._sends_sync() or self._sends_async():
            return deliver(self, message)
        if _overrides(self, "apublish"):
            return run_sync(self.apublish(message))
        raise TypeError(_MISSING.format(type(self).__name__))

    async def apublish(self, message: Message) -> Receipt:
        """Async twin of :meth:`publish`; never blocks the event loop."""
        if self._sends_sync() or self._sends_async():
            return await adeliver(self, message)
        if _overrides(self, "publish"):
            import asyncio

            return await asyncio.to_thread(self.publish, message)
        raise TypeError(_MISSING.format(type(self).__name__))

    def _sends_sync(self) -> bool:
        return _overrides(self, "send")

    def _sends_async(self) -> bool:
        return _overrides(self, "asend")

    def _signs_connections(self) -> bool:
        """Whether an authorization may name no channel (see :meth:`sign_connection`)."""
        return _overrides(self, "sign_connection")

    def _uses_core_delivery(self) -> bool:
        """Whether publishes go through :meth:`send` (so delivery options apply)."""
        return not (_overrides(self, "publish") or _overrides(self, "apublish"))

    def validate(self, message: Message) -> None:
        """Check driver-specific rules beyond :attr:`limits`; raise a InputError.

        Called by the core before the publish hook. The default does nothing.
        """

    def payload_size(self, message: Message) -> int:
        """Bytes of the message as this driver will send it (checked against the limit)."""
        return message.size

    def check(self) -> Health:
        """Check that the service answers and accepts this driver's credentials.

        A driver for a service overrides this (or :meth:`acheck`) with one cheap
        request that needs its credentials, sent once and never retried, and
        returns what it found: :meth:`Health.measure` times such a request and
        maps a :class:`PublishError` to ``auth_failed``, ``unreachable`` or
        ``error``. A failed check is reported in the :class:`Health`, not raised.

        The default runs :meth:`acheck` on the core's background loop when only
        that is implemented, and otherwise reports ``not_supported`` (nothing
        was checked; the built-in ``log``, ``null`` and ``memory`` drivers,
        which deliver in process, report that).
        """
        if _overrides(self, "acheck"):
            return run_sync(self.acheck())
        return not_supported(self.name)

    async def acheck(self) -> Health:
        """Async twin of :meth:`check`; must not block the event loop.

        The default runs :meth:`check` in a worker thread when only that is
        implemented, and otherwise reports ``not_supported``.
        """
        if _overrides(self, "check"):
            import asyncio

            return await asyncio.to_thread(self.check)
        return not_supported(self.name)

    # -- channel names --------------------------------------------------------

    def channel_name(self, channel: str | Channel) -> str:
        """The service's name for ``channel``: ``PrivateChannel("orders.1")`` is
        ``private-orders.1`` by :attr:`channel_prefixes`; a ``str`` is kept as it is."""
        return render(self.channel_prefixes, channel)

    def parse_channel(self, channel: str) -> tuple[ChannelKind, str]:
        """The kind of the full channel name ``channel`` and its name without the prefix."""
        return parse(self.channel_prefixes, channel)

    # -- authorizing subscriptions (optional) ---------------------------------

    def sign_channel(self, request: AuthRequest) -> dict[str, Any]:
        """Sign an authorized subscription: the JSON-ready body the client expects.

        Called by the core once a channel rule allowed ``request`` (a
        ``private``, ``presence`` or ``encrypted`` channel; for presence,
        ``request.member`` holds the rule's member info with its ``id``).
        Signing is local: no network request. Raise a :class:`InputError`
        for member info the service would refuse (too large, say). The default
        raises :class:`NotSupportedError`.
        """
        raise NotSupportedError(self.name, "channel authorization")

    def sign_user(self, request: AuthRequest) -> dict[str, Any]:
        """Sign a user's sign-in (``request.member`` is the user data, with ``id``).

        The default raises :class:`NotSupportedError`.
        """
        raise NotSupportedError(self.name, "user sign-in")

    def sign_connection(self, request: AuthRequest) -> dict[str, Any]:
        """Sign a connection before any channel is named (``request.kind == "connection"``).

        For services whose clients ask the auth endpoint for a token first
        (Ably's Echo connector does, with no channel name). ``request.user`` is
        the current user or ``None``; ``request.extra`` holds what else the
        client sent (its current token). The default raises :class:`NotSupportedError`.
        """
        raise NotSupportedError(self.name, "connection tokens")

    def held_channels(self, request: AuthRequest) -> Sequence[str]:
        """The channels a credential the client already holds grants, to keep in the answer.

        For services whose clients hold one credential per connection and ask
        for a new one with each channel (Ably's tokens): read the credential
        the client sent (``request.extra``), and return its channels only if
        this driver issued it to a client, for the user ``request.user`` (the
        same id), it has not been revoked, and it grants no wildcard. The core
        then runs the channel rules for each of them again, as though the
        client had asked for it just now, and hands the ones still allowed to
        :meth:`sign_channel` / :meth:`sign_connection` in ``request.carried``;
        never sign a channel that is not there. Called only when someone is
        signed in. The default holds nothing.
        """
        return ()

    def user_channel(self, user_id: str) -> str:
        """The channel that reaches every connection of a signed-in user.

        ``Broadcast.send_to_user()`` publishes on it (the channel-name rule is
        not applied to it). The default raises :class:`NotSupportedError`.
        """
        raise NotSupportedError(self.name, "sending to a user")

    # -- hearing back (optional) ----------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        """Verify a webhook delivery and return its events.

        ``headers`` are the request's headers (any case), ``body`` the raw body
        exactly as received. Verify in constant time; raise
        :class:`UnauthorizedError` for an unknown key, a bad signature or a delivery
        older than five minutes, :class:`BadRequestError` for a malformed
        body. The default raises :class:`NotSupportedError`.
        """
        raise NotSupportedError(self.name, "webhooks")

    def occupied_channels(self, prefix: str | None = None) -> list[ChannelInfo]:
        """The occupied channels (whose name starts with ``prefix``), by name."""
        if _overrides(self, "aoccupied_channels"):
            return run_sync(self.aoccupied_channels(prefix))
        raise NotSupportedError(self.name, "listing channels")

    async def aoccupied_channels(self, prefix: str | None = None) -> list[ChannelInfo]:
        """Async twin of :meth:`occupied_channels`."""
        if _overrides(self, "occupied_channels"):
            import asyncio

            return await asyncio.to_thread(self.occupied_channels, prefix)
        raise NotSupportedError(self.name, "listing channels")

    def channel_info(self, channel: str) -> ChannelInfo:
        """What the service knows of ``channel``: occupied, subscriptions, users."""
        if _overrides(self, "achannel_info"):
            return run_sync(self.achannel_info(channel))
        raise NotSupportedError(self.name, "channel info")

    async def achannel_info(self, channel: str) -> ChannelInfo:
        """Async twin of :meth:`channel_info`."""
        if _overrides(self, "channel_info"):
            import asyncio

            return await asyncio.to_thread(self.channel_info, channel)
        raise NotSupportedError(self.name, "channel info")

    def members(self, channel: str) -> list[Member]:
        """The members of the presence channel ``channel``."""
        if _overrides(self, "amembers"):
            return run_sync(self.amembers(channel))
        raise NotSupportedError(self.name, "presence members")

    async def amembers(self, channel: str) -> list[Member]:
        """Async twin of :meth:`members`."""
        if _overrides(self, "members"):
            import asyncio

            return await asyncio.to_thread(self.members, channel)
        raise NotSupportedError(self.name, "presence members")

    def terminate_user(self, user_id: str) -> None:
        """Disconnect every connection of the signed-in user ``user_id``."""
        if _overrides(self, "aterminate_user"):
            return run_sync(self.aterminate_user(user_id))
        raise NotSupportedError(self.name, "terminating a user's connections")

    async def aterminate_user(self, user_id: str) -> None:
        """Async twin of :meth:`terminate_user`."""
        if _overrides(self, "terminate_user"):
            import asyncio

            return await asyncio.to_thread(self.terminate_user, user_id)
        raise NotSupportedError(self.name, "terminating a user's connections")

    def listen_channels(self, channels: Sequence[str]) -> AsyncIterator[Heard]:
        """Subscribe to ``channels`` as a client would and yield each event as it arrives.

        What ``broadcasting listen`` runs, so a developer sees whether events
        go out. It first yields, for each channel, a ``Heard`` whose ``event``
        is ``broadcasting._state.SUBSCRIBED`` once the subscription is confirmed
        (publishes from then on are heard), then every event as it arrives.
        An async generator: iterate it with ``async for``, and close it
        (``aclose()``, or leaving the loop of an ``async with
        contextlib.aclosing(...)``) to unsubscribe and disconnect. It ends
        only when closed; a lost connection raises a :class:`BroadcastError`.
        ``channels`` are full names (``private-orders.1``); a driver that can
        signs its own private and presence subscriptions with its credentials.

        The ``pusher`` driver speaks the Pusher WebSocket protocol; the
        ``memory`` driver hears the publishes of this process. The default
        raises :class:`NotSupportedError`.
        """
        raise NotSupportedError(self.name, "listening to channels")

    def close(self) -> None:
        """Release connections. Idempotent; the driver may reconnect on next use."""

    async def aclose(self) -> None:
        """Async twin of :meth:`close`. The default calls :meth:`close`."""
        self.close()

    # -- what users call (the seed's API) -----------------------------------

    def channel(
        self,
        channels: Any,
        message: Payload | None = None,
        event: str | None = None,
        *,
        socket_id: str | None = None,
    ) -> Receipt:
        """Publish ``message`` as ``event`` to one channel or a list of channels.

        Takes what :meth:`Broadcast.channel` takes, event objects included.
        """
        return self._owner()._publish(self, channels, message, event, socket_id)

    async def achannel(
        self,
        channels: Any,
        message: Payload | None = None,
        event: str | None = None,
        *,
        socket_id: str | None = None,
    ) -> Receipt:
        """Async twin of :meth:`channel`."""
        return await self._owner()._apublish(self, channels, message, event, socket_id)

    def with_options(self, **overrides: Any) -> Self:
        """Return a new connected driver of this kind with some options replaced."""
        options = Options({**self._options, **wrap_secrets(overrides)})
        return self._owner()._variant(type(self), self.name, options)

    def _owner(self) -> Broadcast:
        if self._broadcast is None:
            from broadcasting._broadcast import Broadcast

            owner = Broadcast({"DRIVER": self.name, "DRIVERS": {self.name: self._options}})
            owner._adopt(self)
        assert self._broadcast is not None
        return self._broadcast

    def __repr__(self) -> str:
        return f"<{type(self).__name__} driver={self.name!r}>"


def _overrides(driver: Driver, method: str) -> bool:
    return getattr(type(driver), method) is not getattr(Driver, method)
