"""The Driver base class: the interface a service's driver implements, and nothing else."""

from __future__ import annotations

import enum
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from broadcasting._channels import PUSHER_PREFIXES, Channel, ChannelKind, parse, render
from broadcasting._delivery import Batch, Capabilities, Part, SendResult
from broadcasting._errors import ConfigurationError, NotSupportedError
from broadcasting._health import Health, not_supported
from broadcasting._types import Limits, Message, Receipt

if TYPE_CHECKING:
    from typing_extensions import Self

    from broadcasting._auth import AuthRequest
    from broadcasting._state import ChannelInfo, Heard, Member
    from broadcasting._webhooks import WebhookEvent

#: Pusher's socket ids (``1234.5678``), which soketi, Reverb and the ``memory``
#: driver share: the default :attr:`Driver.socket_id_pattern`.
PUSHER_SOCKET_ID = re.compile(r"[0-9]{1,30}\.[0-9]{1,30}")


class Feature(enum.Enum):
    """What a driver can do beyond publishing, declared in :attr:`Driver.features`.

    Each names the methods a driver that declares it implements (the sync or
    the ``a``-prefixed async one, or both); the core refuses a call for a
    feature a driver does not declare with :class:`NotSupportedError`.
    """

    #: Leave the sender's own connection out of a publish (``socket_id=``).
    EXCLUDE_SENDER = "exclude_sender"
    #: Sign subscriptions to private, presence or encrypted channels: ``sign_channel``.
    AUTHORIZE = "authorize"
    #: Sign a connection before any channel is named (Ably's clients ask for a
    #: token first): ``sign_connection``; an authorization may then name no channel.
    CONNECTION_TOKENS = "connection_tokens"
    #: Sign a user in (``pusher:signin``) and reach them: ``sign_user``, ``user_channel``.
    USER_SIGN_IN = "user_sign_in"
    #: Verify the service's webhooks: ``verify_webhook``.
    WEBHOOKS = "webhooks"
    #: Ask the service about channels: ``occupied_channels``, ``channel_info``, ``members``.
    STATE = "state"
    #: Disconnect every connection of a user: ``terminate_user``.
    TERMINATE_USER = "terminate_user"
    #: Subscribe as a client would and hear what is published: ``listen_channels``.
    LISTEN = "listen"


#: The methods each feature needs (one of a sync/async pair is enough).
FEATURE_METHODS: Mapping[Feature, tuple[str, ...]] = {
    Feature.EXCLUDE_SENDER: (),
    Feature.AUTHORIZE: ("sign_channel",),
    Feature.CONNECTION_TOKENS: ("sign_connection",),
    Feature.USER_SIGN_IN: ("sign_user", "user_channel"),
    Feature.WEBHOOKS: ("verify_webhook",),
    Feature.STATE: ("occupied_channels", "channel_info", "members"),
    Feature.TERMINATE_USER: ("terminate_user",),
    Feature.LISTEN: ("listen_channels",),
}


class Driver:
    """Base class of every driver: what a service's driver implements.

    A driver for a service implements :meth:`send` or :meth:`asend` (or both):
    one request and what the service answered. It declares :attr:`name`,
    :attr:`limits` (checked before any request), :attr:`capabilities` (what
    one request can carry, whether the service de-duplicates) and
    :attr:`features` (what else it can do), and builds itself from its
    ``DRIVERS`` options in :meth:`from_config`. The core does the rest:
    splitting channel lists, retries, micro-batching and the outcome of every
    channel. A driver that delivers in process (``memory``, ``log``)
    implements :meth:`publish` / :meth:`apublish` instead.

    Applications never call a driver: ``Broadcast.driver()`` returns a
    :class:`~broadcasting.Broadcaster`, which publishes through it.
    """

    #: The driver's name: its ``broadcasting.drivers`` entry-point name.
    name: ClassVar[str] = ""
    #: Limits the core enforces before any request (instances may override).
    limits: Limits = Limits()
    #: What one request to the service can carry; the core plans around it.
    capabilities: Capabilities = Capabilities()
    #: What the driver can do beyond publishing (see :class:`Feature`).
    features: ClassVar[frozenset[Feature]] = frozenset()
    #: How the service names private, presence and encrypted channels (the
    #: prefix of each kind); a kind left out is one the service does not have.
    #: The default is Pusher's convention (``private-``, ``presence-``,
    #: ``private-encrypted-``).
    channel_prefixes: ClassVar[Mapping[ChannelKind, str]] = PUSHER_PREFIXES
    #: The shape of the service's connection ids (the ``socket_id`` of an
    #: authorization, and of a publish that leaves its sender out). The default
    #: is Pusher's ``digits.digits``; a socket.io-style service declares its own.
    socket_id_pattern: ClassVar[re.Pattern[str]] = PUSHER_SOCKET_ID
    #: Whether the service's clients send their ``socket_id`` when they ask the
    #: application to authorize them. Pusher's do; Ably's do not (their tokens
    #: are bound to a client id).
    requires_socket_id: ClassVar[bool] = True
    #: Characters with a meaning of their own in the service's channel or
    #: capability syntax (Ably's ``*`` wildcard, ``:`` namespaces and ``[...]``
    #: qualifiers). A channel rule's ``{param}`` never matches one, so what a
    #: rule allows for ``chat.{room}`` can never widen into a wildcard grant.
    special_characters: ClassVar[str] = ""
    #: Options that hold a secret although their names do not say so (a webhook
    #: URL with a token in its path, say). Options named like secrets (``secret``,
    #: ``key``, ``token``...) are wrapped in :class:`Secret` when the configuration
    #: is loaded; these are wrapped too, and ``from_config`` receives them as a
    #: ``Secret`` (a factory plugin declares them in its own ``secret_options``).
    secret_options: ClassVar[frozenset[str]] = frozenset()
    #: The option that turns TLS on or off (``Broadcaster.ssl()`` sets it), if any.
    ssl_option: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for feature in cls.features:
            for method in FEATURE_METHODS[feature]:
                own = getattr(cls, method) is not getattr(Driver, method)
                twin = getattr(cls, "a" + method, None)
                if not own and (twin is None or twin is getattr(Driver, "a" + method, None)):
                    raise TypeError(
                        f"{cls.__qualname__} declares Feature.{feature.name} but does not "
                        f"implement {method}()"
                    )

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

    # -- publishing ----------------------------------------------------------------

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
        here: the core decides. Implement this, :meth:`asend`, or both.
        """
        raise TypeError(f"{type(self).__qualname__} implements neither send() nor asend()")

    async def asend(self, batch: Batch) -> SendResult:
        """Async twin of :meth:`send`; must not block the event loop."""
        raise TypeError(f"{type(self).__qualname__} implements neither send() nor asend()")

    def publish(self, message: Message) -> Receipt:
        """Deliver ``message`` in process and return its receipt (``memory``, ``log``).

        Only for drivers that have no service to send to; it must never wait
        for I/O, since the core calls it from async code too. A driver that
        implements :meth:`send` / :meth:`asend` gets the core's delivery instead.
        """
        raise TypeError(f"{type(self).__qualname__} implements none of send() and publish()")

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

    def validate(self, message: Message) -> None:
        """Check driver-specific rules beyond :attr:`limits`; raise an :class:`InputError`.

        Called by the core before the publish hook. The default does nothing.
        """

    def payload_size(self, message: Message) -> int:
        """Bytes of the message as this driver will send it (checked against the limit)."""
        return message.size

    def check(self) -> Health:
        """Check that the service answers and accepts this driver's credentials.

        One cheap request that needs the credentials, sent once and never
        retried: :meth:`Health.measure` times it and maps a
        :class:`ServiceError` to ``auth_failed``, ``unreachable`` or ``error``.
        Implement this, :meth:`acheck` or both; the default reports
        ``not_supported`` (nothing was checked).
        """
        return not_supported(self.name)

    async def acheck(self) -> Health:
        """Async twin of :meth:`check`; must not block the event loop."""
        return not_supported(self.name)

    # -- channel names -----------------------------------------------------------

    def channel_name(self, channel: str | Channel) -> str:
        """The service's name for ``channel``: ``PrivateChannel("orders.1")`` is
        ``private-orders.1`` by :attr:`channel_prefixes`; a ``str`` is kept as it is."""
        return render(self.channel_prefixes, channel)

    def parse_channel(self, channel: str) -> tuple[ChannelKind, str]:
        """The kind of the full channel name ``channel`` and its name without the prefix."""
        return parse(self.channel_prefixes, channel)

    # -- authorizing subscriptions (Feature.AUTHORIZE, CONNECTION_TOKENS, USER_SIGN_IN) --

    def sign_channel(self, request: AuthRequest) -> dict[str, Any]:
        """Sign an authorized subscription: the JSON-ready body the client expects.

        Called by the core once a channel rule allowed ``request`` (a
        ``private``, ``presence`` or ``encrypted`` channel; for presence,
        ``request.member`` holds the rule's member info with its ``id``).
        Signing is local: no network request. Raise an :class:`InputError`
        for member info the service would refuse (too large, say).
        """
        raise NotSupportedError(self.name, "channel authorization")

    def sign_connection(self, request: AuthRequest) -> dict[str, Any]:
        """Sign a connection before any channel is named (``request.kind == "connection"``).

        ``request.user`` is the current user or ``None``; ``request.carried``
        holds the channels of the client's current credential that the rules
        allowed again (see :meth:`held_channels`).
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

    def sign_user(self, request: AuthRequest) -> dict[str, Any]:
        """Sign a user's sign-in (``request.member`` is the user data, with ``id``)."""
        raise NotSupportedError(self.name, "user sign-in")

    def user_channel(self, user_id: str) -> str:
        """The channel that reaches every connection of a signed-in user.

        ``Broadcast.send_to_user()`` publishes on it (the channel-name rule is
        not applied to it).
        """
        raise NotSupportedError(self.name, "sending to a user")

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        """The JSON body the web endpoints answer an error with, in the shape the clients read.

        The default is ``{"error": message}``; pusher-js and Laravel Echo read
        only the status. (Ably's SDKs parse an ``authUrl``'s error as Ably's
        own error shape, so the Ably driver answers in it.)
        """
        return {"error": message}

    # -- hearing back (Feature.WEBHOOKS, STATE, TERMINATE_USER, LISTEN) ---------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        """Verify a webhook delivery and return its events.

        ``headers`` are the request's headers (any case), ``body`` the raw body
        exactly as received. Verify in constant time; raise
        :class:`UnauthorizedError` for an unknown key, a bad signature or a
        delivery older than five minutes, :class:`BadRequestError` for a
        malformed body.
        """
        raise NotSupportedError(self.name, "webhooks")

    def occupied_channels(self, prefix: str | None = None) -> list[ChannelInfo]:
        """The occupied channels (whose name starts with ``prefix``), by name.

        This and the other state queries raise :class:`QueryError` when the
        service fails to answer.
        """
        raise NotSupportedError(self.name, "listing channels")

    async def aoccupied_channels(self, prefix: str | None = None) -> list[ChannelInfo]:
        """Async twin of :meth:`occupied_channels`."""
        raise NotSupportedError(self.name, "listing channels")

    def channel_info(self, channel: str) -> ChannelInfo:
        """What the service knows of ``channel``: occupied, subscriptions, users."""
        raise NotSupportedError(self.name, "channel info")

    async def achannel_info(self, channel: str) -> ChannelInfo:
        """Async twin of :meth:`channel_info`."""
        raise NotSupportedError(self.name, "channel info")

    def members(self, channel: str) -> list[Member]:
        """The members of the presence channel ``channel``."""
        raise NotSupportedError(self.name, "presence members")

    async def amembers(self, channel: str) -> list[Member]:
        """Async twin of :meth:`members`."""
        raise NotSupportedError(self.name, "presence members")

    def terminate_user(self, user_id: str) -> None:
        """Disconnect every connection of the signed-in user ``user_id``."""
        raise NotSupportedError(self.name, "terminating a user's connections")

    async def aterminate_user(self, user_id: str) -> None:
        """Async twin of :meth:`terminate_user`."""
        raise NotSupportedError(self.name, "terminating a user's connections")

    def listen_channels(self, channels: Sequence[str]) -> AsyncIterator[Heard]:
        """Subscribe to ``channels`` as a client would and yield each event as it arrives.

        What ``broadcasting listen`` runs, so a developer sees whether events
        go out. It first yields, for each channel, a ``Heard`` whose ``event``
        is :data:`SUBSCRIBED` once the subscription is confirmed (publishes
        from then on are heard), then every event as it arrives. An async
        generator: iterate it with ``async for`` and close it to unsubscribe.
        It ends only when closed; a lost connection raises a
        :class:`BroadcastError`. ``channels`` are full names
        (``private-orders.1``); a driver signs its own private and presence
        subscriptions with its credentials.
        """
        raise NotSupportedError(self.name, "listening to channels")

    # -- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        """Release connections. Idempotent; the driver may reconnect on next use."""

    async def aclose(self) -> None:
        """Async twin of :meth:`close`. The default calls :meth:`close`."""
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} driver={self.name!r}>"
