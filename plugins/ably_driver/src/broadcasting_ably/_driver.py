"""The ``ably`` driver: Ably's REST API through the official ``ably`` SDK (see the README)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, Union

from broadcasting import (
    Channel,
    ChannelInfo,
    Health,
    Member,
    NotSupportedError,
    PublishError,
    WebhookEvent,
)
from broadcasting.plugin import (
    Answer,
    AuthRequest,
    Batch,
    Capabilities,
    ChannelKind,
    Driver,
    Feature,
    Limits,
    Message,
    Part,
    Secret,
)
from broadcasting_ably import _auth, _errors, _state, _webhooks, _wire
from broadcasting_ably._settings import AblySettings, parse_settings
from broadcasting_ably._transport import Clients, call, finish, settled

if TYPE_CHECKING:
    from typing_extensions import Self

T = TypeVar("T")

#: Ably's channel naming rule, and the driver's: a private or presence name is never a
#: wildcard in a token's capability (``*``, or ``[``/``:`` right after the prefix).
CHANNEL_PATTERN = re.compile(r"(?![\[:])(?!(?:private|presence):(?:[\[:]|.*\*))[^\r\n]+")
CHANNEL_RULE = (
    "Ably channel names are non-empty, do not start with '[' or ':' and have no line breaks; "
    "private: and presence: names have no '*' and no '[' or ':' right after the prefix"
)

_Outcome = Union[Answer, PublishError]


class BroadcastAblyDriver(Driver):
    """Publishes to Ably channels over Ably's REST API with the ``ably`` SDK (3.x).

    Each message has the fixed id ``<Message.id>:0``, which Ably de-duplicates, so the
    core may retry an unknown outcome.
    """

    name = "ably"
    features = frozenset(
        {
            Feature.AUTHORIZE,
            Feature.CONNECTION_TOKENS,
            Feature.WEBHOOKS,
            Feature.STATE,
            Feature.TERMINATE_USER,
        }
    )
    ssl_option = "tls"
    #: Ably's clients send no socket id when they ask for a token.
    requires_socket_id = False
    #: Ably's connection ids (``hd9fMBWlAT``) and connection keys (``hd9f!x-1``).
    socket_id_pattern: ClassVar[re.Pattern[str]] = re.compile(r"[A-Za-z0-9._:!-]{1,64}")
    channel_prefixes: ClassVar[Mapping[ChannelKind, str]] = _auth.PREFIXES
    #: Ably's capability syntax: ``*`` wildcards, ``:`` namespaces, ``[...]`` qualifiers.
    special_characters: ClassVar[str] = "*:[]"
    capabilities = Capabilities(
        channels_per_request=_wire.MAX_CHANNELS_PER_REQUEST,
        batch_channels=_wire.MAX_CHANNELS_PER_REQUEST,
        batch_bytes=_wire.MAX_BATCH_BODY_BYTES,
        deduplicates=True,
    )

    def __init__(self, settings: AblySettings) -> None:
        self.settings = settings
        self.limits = Limits(
            max_payload_bytes=settings.max_payload_bytes,
            channel_pattern=CHANNEL_PATTERN,
            channel_rule=CHANNEL_RULE,
        )
        self._scrub = _errors.Scrubber(settings.key)
        self._clients = Clients(settings)

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> Self:
        return cls(parse_settings(options))

    def payload_size(self, message: Message) -> int:
        """Bytes Ably counts for the message: data as sent, event name and client id."""
        return _wire.payload_size(message, self.settings.client_id)

    def part_size(self, part: Part) -> int:
        wire = _wire.wire_message(part.message)
        return _wire.spec_size(part.channels, wire, binary=self.settings.use_binary_protocol)

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        """Ably's error shape: Ably's SDKs read an ``authUrl``'s error as it, and fail on others."""
        return {"error": {"message": message, "statusCode": status, "code": status * 100}}

    # -- one request: send and asend share all but the client --------------------------

    def send(self, batch: Batch) -> list[_Outcome]:
        """One request; with fallback hosts the SDK tries at most ``batch.budget`` hosts."""
        return finish(self._send(batch, aio=False))

    async def asend(self, batch: Batch) -> list[_Outcome]:
        return await self._send(batch, aio=True)

    async def _send(self, batch: Batch, aio: bool) -> list[_Outcome]:
        client = self._clients.get(batch.budget, aio)
        path, body = _wire.request_for(batch.parts)
        sent = [0]
        failure: Exception | None = None
        try:
            response = await call(client, "POST", path, sent, body=body)
        except Exception as exc:
            failure = exc
        batch.requests = max(1, sent[0])
        if failure is not None:  # raised here, not chained to the SDK's (it may echo the key)
            raise _errors.publish_failure(self._scrub, _what(batch.parts), failure, batch.requests)
        return self._answered(batch, response)

    def _answered(self, batch: Batch, response: Any) -> list[_Outcome]:
        failed_over = batch.requests > 1  # an earlier host may have stored it all
        try:
            status = int(response.status_code)
            items = list(response.items)
        except Exception as exc:
            raise _errors.unreadable_answer(self._scrub, _what(batch.parts), exc) from None
        result = _wire.read_answer([part.channels for part in batch.parts], status, items)
        if isinstance(result, tuple):
            raise _errors.ably_error(
                self._scrub, _what(batch.parts), result, failed_over=failed_over
            )
        parts = zip(batch.parts, result, strict=True)
        return [self._outcome(part, reading, failed_over) for part, reading in parts]

    def _outcome(self, part: Part, reading: _wire.Reading | None, failed_over: bool) -> _Outcome:
        if reading is None:
            return _errors.not_mentioned(part.channels)
        by_fault: dict[_errors.Fault, list[str]] = {}
        for channel, fault in reading.failures.items():
            by_fault.setdefault(fault, []).append(channel)
        refused: dict[str, PublishError] = {}
        for fault, channels in by_fault.items():
            error = _errors.ably_error(
                self._scrub, _errors.channels_text(channels), fault, failed_over=failed_over
            )
            refused.update(dict.fromkeys(channels, error))
        if reading.missing:
            unknown = _errors.not_mentioned(reading.missing)
            refused.update(dict.fromkeys(reading.missing, unknown))
        return Answer(ids=tuple(reading.ids), refused=refused)

    # -- queries: one coroutine each, run by the sync or the async twin -----------------

    async def _query(self, query: _state.Query[T], aio: bool) -> T:
        endpoint = self.settings.endpoint or "main"
        if not query.keyed:
            client = self._clients.get(_state.QUERY_HOSTS, aio)
            return query.parse(await _state.read(client, query, self._scrub, endpoint))
        client = self._clients.keyed(aio)  # made for this call (the key itself), then closed
        try:
            items = await _state.read(client, query, self._scrub, endpoint)
        finally:
            await settled(client.close())
        return query.parse(items)

    def check(self) -> Health:
        """Ask Ably for a token with the key (``POST /keys/{keyName}/requestToken``), once."""
        return finish(self._check(aio=False))

    async def acheck(self) -> Health:
        return await self._check(aio=True)

    async def _check(self, aio: bool) -> Health:
        query = _state.token_check(self._key_name(), self.settings.endpoint or "main")
        return await Health.ameasure(lambda: self._query(query, aio))

    def occupied_channels(self, prefix: str | None = None) -> list[ChannelInfo]:
        return finish(self._query(_state.occupied(prefix, self._kind), aio=False))

    async def aoccupied_channels(self, prefix: str | None = None) -> list[ChannelInfo]:
        return await self._query(_state.occupied(prefix, self._kind), aio=True)

    def channel_info(self, channel: str) -> ChannelInfo:
        return finish(self._query(_state.info(channel, self._kind(channel)), aio=False))

    async def achannel_info(self, channel: str) -> ChannelInfo:
        return await self._query(_state.info(channel, self._kind(channel)), aio=True)

    def members(self, channel: str) -> list[Member]:
        return finish(self._query(_state.members(channel), aio=False))

    async def amembers(self, channel: str) -> list[Member]:
        return await self._query(_state.members(channel), aio=True)

    def terminate_user(self, user_id: str) -> None:
        """Revoke every token issued to client id ``user_id``: Ably disconnects its connections."""
        finish(self._terminate(user_id, aio=False))

    async def aterminate_user(self, user_id: str) -> None:
        await self._terminate(user_id, aio=True)

    async def _terminate(self, user_id: str, aio: bool) -> None:
        query = _state.revoke(self._key_name(), user_id, self._scrub)
        # noted before (a renewal racing the request carries nothing over) and
        # after (nor does a token signed while it was under way: Ably revokes those too)
        _auth.REVOKED.note(self._key_name(), user_id)
        try:
            await self._query(query, aio)
        finally:
            _auth.REVOKED.note(self._key_name(), user_id)

    def _kind(self, channel: str) -> ChannelKind:
        return self.parse_channel(channel)[0]

    def _key_name(self) -> str:
        return _auth.key_name(self.settings.key)

    # -- channel names, authorizing subscriptions ---------------------------------------

    def channel_name(self, channel: str | Channel) -> str:
        """``PrivateChannel("orders.1")`` is ``private:orders.1``; an encrypted one is refused."""
        if isinstance(channel, Channel) and channel.kind == "encrypted":
            raise NotSupportedError(self.name, "encrypted channels", _auth.NO_ENCRYPTED)
        return super().channel_name(channel)

    def sign_channel(self, request: AuthRequest) -> dict[str, Any]:
        """A token (a JWT signed with the key, locally) granting the channel to the user."""
        return _auth.sign_channel(self.settings.key, request, ttl=self.settings.token_ttl)

    def sign_connection(self, request: AuthRequest) -> dict[str, Any]:
        """A token to connect with, before any channel: ``public:*`` and the carried ones."""
        return _auth.sign_connection(self.settings.key, request, ttl=self.settings.token_ttl)

    def held_channels(self, request: AuthRequest) -> Sequence[str]:
        """The channels of the client's token (``extra["token"]``) for the rules to decide again."""
        held = request.extra.get("token")
        client_id = _auth.user_client_id(request.user)
        if not isinstance(held, Secret) or not held or client_id is None:
            return ()
        return _auth.held_channels(self.settings.key, held, client_id)

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        return _webhooks.verify(self.settings.key, headers, body)

    def close(self) -> None:
        self._clients.close()

    async def aclose(self) -> None:
        await self._clients.aclose()

    def __repr__(self) -> str:
        endpoint = self.settings.endpoint or "main"
        return f"<{type(self).__name__} driver={self.name!r} endpoint={endpoint!r}>"


def _what(parts: Sequence[Part]) -> str:
    """The request's channels for an error message (a shared one names no channel)."""
    if len(parts) == 1:
        return _errors.channels_text(parts[0].channels)
    count = sum(len(part.channels) for part in parts)
    return f"{count} channels of {len(parts)} publishes sharing one request"
