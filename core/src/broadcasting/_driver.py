"""The Driver base class: the interface a service's driver implements, and nothing else."""

from __future__ import annotations

import enum
import inspect
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

#: Pusher's socket ids (``1234.5678``), shared by soketi, Reverb and ``memory``.
PUSHER_SOCKET_ID = re.compile(r"[0-9]{1,30}\.[0-9]{1,30}")


class ClientSocketId(str):
    """A socket id a client sent (``socket_id_from``'s ``X-Socket-ID``): a wish to be left
    out, not a command. A driver that cannot leave a connection out, or whose ids have
    another shape, sends to every subscriber instead of refusing it, so a header any client
    may send cannot make a publish fail. A plain ``str`` socket id is checked strictly."""

    __slots__ = ()


class Feature(enum.Enum):
    """What a driver can do beyond publishing, declared in :attr:`Driver.features`.

    Its :data:`FEATURE_METHODS` must be implemented; using an undeclared one: NotSupportedError.
    """

    EXCLUDE_SENDER = "exclude_sender"  #: leave ``socket_id``'s connection out of a publish
    AUTHORIZE = "authorize"  #: sign private, presence and encrypted subscriptions
    CONNECTION_TOKENS = "connection_tokens"  #: sign a connection before any channel
    USER_SIGN_IN = "user_sign_in"  #: sign users in, and reach them (``send_to_user``)
    WEBHOOKS = "webhooks"  #: verify the service's webhooks
    STATE = "state"  #: answer ``occupied_channels``, ``channel_info``, ``members``
    TERMINATE_USER = "terminate_user"  #: disconnect every connection of a user
    LISTEN = "listen"  #: subscribe as a client would (``broadcasting listen``)


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


#: The methods the core awaits: a driver's own must be coroutine functions.
_ASYNC_METHODS = (
    "asend",
    "acheck",
    "aoccupied_channels",
    "achannel_info",
    "amembers",
    "aterminate_user",
    "aclose",
)
#: The methods the core calls without awaiting (the sync twins, and ``publish``): a driver's
#: own must not be coroutine functions.
_SYNC_METHODS = ("publish", *(name.removeprefix("a") for name in _ASYNC_METHODS))


class Driver:
    """Base class of every driver (docs/writing-a-driver.md).

    A driver for a service implements :meth:`send`, :meth:`asend` or both (one
    request; the core does the rest); one with no service implements :meth:`publish`.
    """

    #: The driver's name: its ``broadcasting.drivers`` entry-point name.
    name: ClassVar[str] = ""
    #: Limits the core enforces before any request (instances may override).
    limits: Limits = Limits()
    #: What one request to the service can carry; the core plans around it.
    capabilities: Capabilities = Capabilities()
    #: What the driver can do beyond publishing.
    features: ClassVar[frozenset[Feature]] = frozenset()
    #: The prefix of each kind of channel (Pusher's by default); a kind left out is not offered.
    channel_prefixes: ClassVar[Mapping[ChannelKind, str]] = PUSHER_PREFIXES
    #: The shape of the service's connection ids (``socket_id``).
    socket_id_pattern: ClassVar[re.Pattern[str]] = PUSHER_SOCKET_ID
    #: Whether clients send a ``socket_id`` to be authorized (Pusher's do; Ably's do not).
    requires_socket_id: ClassVar[bool] = True
    #: Characters special to the service's channel or capability syntax (Ably's
    #: ``*:[]``): a rule's ``{param}`` never matches one, so it cannot widen a grant.
    special_characters: ClassVar[str] = ""
    #: Options that hold a secret though not named like one (a URL with a token): wrapped too.
    secret_options: ClassVar[frozenset[str]] = frozenset()
    #: The option ``Broadcaster.ssl()`` sets, if the service has one.
    ssl_option: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in (*_ASYNC_METHODS, *_SYNC_METHODS):
            defined = vars(cls).get(name)
            if not inspect.isfunction(defined):
                continue
            # a decorator's wrapper (functools.wraps) is judged by what it wraps
            awaited = inspect.iscoroutinefunction(inspect.unwrap(defined))
            where = f"{cls.__qualname__}.{name}()"
            if name in _ASYNC_METHODS and not awaited:  # it would run, then fail to be awaited
                raise TypeError(
                    f"{where} is not a coroutine function: the core awaits it; write "
                    f"`async def {name}`"
                )
            if name in _SYNC_METHODS and awaited:  # it would never run
                fix = (
                    f"name it a{name}()" if "a" + name in _ASYNC_METHODS else "write a plain `def`"
                )
                raise TypeError(
                    f"{where} is a coroutine function, but the core calls it without "
                    f"awaiting it; {fix}"
                )
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
        """Build the driver from its options; raise :class:`ConfigurationError` naming each bad
        key (:meth:`ConfigurationError.combine` for several)."""
        if options:
            unknown = [ConfigurationError(cls.name, str(key), "unknown option") for key in options]
            raise ConfigurationError.combine(unknown)
        return cls()

    def send(self, batch: Batch) -> SendResult:
        """Send one request carrying ``batch`` (never retry); say what the service answered.

        ``None``: all acknowledged; else an ``Answer`` for a one-part batch, or one ``Answer``
        or ``PublishError`` per part. Raise ``PublishError`` when the request failed as a whole.
        """
        raise TypeError(f"{type(self).__qualname__} implements neither send() nor asend()")

    async def asend(self, batch: Batch) -> SendResult:
        """Async twin of :meth:`send`; must not block the event loop."""
        raise TypeError(f"{type(self).__qualname__} implements neither send() nor asend()")

    def publish(self, message: Message) -> Receipt:
        """Deliver ``message`` in process (no service); never wait: async code calls it too."""
        raise TypeError(f"{type(self).__qualname__} implements none of send() and publish()")

    def plan(self, message: Message) -> list[tuple[str, ...]]:
        """The channel groups of ``message``, one request each (by ``channels_per_request``)."""
        channels, step = message.channels, self.capabilities.channels_per_request
        if step is None or len(channels) <= step:
            return [channels]
        return [channels[i : i + step] for i in range(0, len(channels), step)]

    def part_size(self, part: Part) -> int:
        """Bytes ``part`` adds to a shared request (the payload once per channel)."""
        return self.payload_size(part.message) * len(part.channels)

    def validate(self, message: Message) -> None:
        """Check rules beyond :attr:`limits` before the publish hook; raise :class:`InputError`."""

    def payload_size(self, message: Message) -> int:
        """Bytes of the message as the driver sends it (checked against the limit)."""
        return message.size

    def check(self) -> Health:
        """One cheap request that needs the credentials, never retried; default: not_supported."""
        return not_supported(self.name)

    async def acheck(self) -> Health:
        """Async twin of :meth:`check`."""
        return not_supported(self.name)

    def channel_name(self, channel: str | Channel) -> str:
        """The service's name for ``channel`` (a ``str`` is kept as it is)."""
        return render(self.channel_prefixes, channel)

    def parse_channel(self, channel: str) -> tuple[ChannelKind, str]:
        """The kind of a full channel name, and the name without its prefix."""
        return parse(self.channel_prefixes, channel)

    def sign_channel(self, request: AuthRequest) -> dict[str, Any]:
        """The body the client expects for an allowed subscription (InputError: bad member info)."""
        raise NotSupportedError(self.name, "channel authorization")

    def sign_connection(self, request: AuthRequest) -> dict[str, Any]:
        """Sign a connection before any channel is named (``request.carried`` may hold some)."""
        raise NotSupportedError(self.name, "connection tokens")

    def held_channels(self, request: AuthRequest) -> Sequence[str]:
        """The channels of the credential the client holds (``request.extra``), to keep.

        Only from one this driver issued to the same user, not revoked, with no wildcard;
        the rules decide each again (``request.carried``).
        """
        return ()

    def sign_user(self, request: AuthRequest) -> dict[str, Any]:
        """Sign a user in (``request.member`` is the user data, with an ``id``)."""
        raise NotSupportedError(self.name, "user sign-in")

    def user_channel(self, user_id: str) -> str:
        """The channel that reaches every connection of a signed-in user."""
        raise NotSupportedError(self.name, "sending to a user")

    def client_config(self, auth_endpoint: str, user_auth_endpoint: str) -> dict[str, Any]:
        """What a browser needs to connect (never a secret): ``client``, the library's name
        (``"pusher-js"``); ``key``, the public app key it takes first, or ``None``; ``options``,
        that library's options, with the endpoints given; ``echo``, Laravel Echo's."""
        raise NotSupportedError(self.name, "browser client configuration")

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        """The JSON body the web endpoints answer an error with, in the shape clients read."""
        return {"error": message}

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        """Verify a delivery (raw body, headers in any case) and return its events.

        Raise UnauthorizedError (unknown key, bad signature, old), BadRequestError (malformed).
        """
        raise NotSupportedError(self.name, "webhooks")

    def occupied_channels(self, prefix: str | None = None) -> list[ChannelInfo]:
        """The occupied channels whose name starts with ``prefix`` (a failure: QueryError)."""
        raise NotSupportedError(self.name, "listing channels")

    async def aoccupied_channels(self, prefix: str | None = None) -> list[ChannelInfo]:
        """Async twin of :meth:`occupied_channels`."""
        raise NotSupportedError(self.name, "listing channels")

    def channel_info(self, channel: str) -> ChannelInfo:
        """What the service knows of ``channel``."""
        raise NotSupportedError(self.name, "channel info")

    async def achannel_info(self, channel: str) -> ChannelInfo:
        """Async twin of :meth:`channel_info`."""
        raise NotSupportedError(self.name, "channel info")

    def members(self, channel: str) -> list[Member]:
        """The members of a presence channel."""
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
        """Subscribe as a client would; yield a :data:`SUBSCRIBED` per channel, then each event.

        An async generator, ended by closing it; a lost connection raises a BroadcastError.
        """
        raise NotSupportedError(self.name, "listening to channels")

    def close(self) -> None:
        """Release connections. Idempotent; the driver may reconnect on next use."""

    async def aclose(self) -> None:
        """Async twin of :meth:`close` (the default calls it)."""
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} driver={self.name!r}>"
