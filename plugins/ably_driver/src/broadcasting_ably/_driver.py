"""The ``ably`` driver: Ably's REST API through the official ``ably`` SDK, and its state queries."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, Union
from urllib.parse import quote

from broadcasting import (
    Channel,
    ChannelInfo,
    Health,
    InvalidChannelError,
    Member,
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
    InputError,
    Limits,
    Message,
    Part,
    QueryError,
)
from broadcasting_ably import _auth, _webhooks, _wire
from broadcasting_ably._settings import DRIVER, AblySettings, is_utf8, parse_settings
from broadcasting_ably._transport import Clients, call, closed, finish, post, settled

if TYPE_CHECKING:
    from typing_extensions import Self

T = TypeVar("T")

#: Ably's channel naming rule, and the driver's: no private or presence name is a wildcard.
#: Ably refuses "newline characters (or similar)": every line break str.splitlines() knows.
LINE_BREAKS = r"\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029"
CHANNEL_PATTERN = re.compile(
    rf"(?![\[:])(?!(?:private|presence):(?:[\[:]|[^{LINE_BREAKS}]*\*))[^{LINE_BREAKS}]+"
)
CHANNEL_RULE = (
    "Ably channel names are non-empty, do not start with '[' or ':' and have no line breaks; "
    "private: and presence: names have no '*' and no '[' or ':' right after the prefix"
)

_Outcome = Union[Answer, PublishError]
QUERY_HOSTS = 3  #: hosts a query may try (the SDK's default): reading again is harmless
PAGE_LIMIT = 1000  #: the largest page Ably serves for enumeration and presence
MAX_PAGES = 1000  #: against a server that never stops paginating


class BroadcastAblyDriver(Driver):
    """Publishes to Ably channels over Ably's REST API with the ``ably`` SDK (3.x); each message
    has the fixed id ``<Message.id>:0``, which Ably de-duplicates: the core may retry it."""

    name = "ably"
    features = frozenset(Feature) - {Feature.EXCLUDE_SENDER, Feature.USER_SIGN_IN, Feature.LISTEN}
    ssl_option = "tls"
    requires_socket_id = False  #: Ably's clients send none when they ask for a token
    #: Ably's connection ids (``hd9fMBWlAT``) and connection keys (``hd9f!x-1``).
    socket_id_pattern: ClassVar[re.Pattern[str]] = re.compile(r"[A-Za-z0-9._:!-]{1,64}")
    channel_prefixes: ClassVar[Mapping[ChannelKind, str]] = _auth.PREFIXES
    special_characters: ClassVar[str] = "*:[]"  #: Ably's wildcards, namespaces, qualifiers
    capabilities = Capabilities(
        channels_per_request=_wire.MAX_CHANNELS_PER_REQUEST,
        batch_channels=_wire.MAX_CHANNELS_PER_REQUEST,
        batch_bytes=_wire.MAX_BATCH_BODY_BYTES,
        deduplicates=True,
        # Ably drops a repeated message id for 2 minutes after the first; 20 s of it are
        # kept for the re-send's own time (the SDK's retries take up to 15 s) and for clocks
        dedup_window=100.0,
    )

    def __init__(self, settings: AblySettings) -> None:
        self.settings = settings
        self.limits = Limits(
            max_payload_bytes=settings.max_payload_bytes,
            channel_pattern=CHANNEL_PATTERN,
            channel_rule=CHANNEL_RULE,
        )
        self._scrub = _wire.Scrubber(settings.key)
        self._clients = Clients(settings)
        self._key_name = _auth.key_name(settings.key)
        self._endpoint = settings.endpoint or "main"
        self._health = _health_check(self._key_name, self._endpoint)

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> Self:
        return cls(parse_settings(options))

    def payload_size(self, message: Message) -> int:
        """Bytes Ably counts for the message: data as sent, event name and client id."""
        client_id = self.settings.client_id or ""
        return len(message.text.encode()) + len(message.event.encode()) + len(client_id.encode())

    def part_size(self, part: Part) -> int:
        wire = _wire.wire_message(part.message)
        return _wire.spec_size(part.channels, wire, binary=self.settings.use_binary_protocol)

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        """Ably's error shape: Ably's SDKs read an ``authUrl``'s error as it, and fail on others."""
        return {"error": {"message": message, "statusCode": status, "code": status * 100}}

    def send(self, batch: Batch) -> list[_Outcome]:
        """One request; with fallback hosts the SDK tries at most ``batch.budget`` hosts."""
        return finish(self._send(batch, aio=False))

    async def asend(self, batch: Batch) -> list[_Outcome]:
        return await self._send(batch, aio=True)

    async def _send(self, batch: Batch, aio: bool) -> list[_Outcome]:
        path, body = _wire.request_for(batch.parts)
        what, channels = _what(batch.parts), [part.channels for part in batch.parts]
        failed_over = renewed = False  # failed over: an earlier host may have stored it all
        spent = 0
        while True:
            client = await self._clients.fresh(batch.budget - spent, aio)
            sent, failure, cut = [0], None, False
            try:
                response = await post(client, path, sent, body)
            except Exception as exc:
                failure, cut = exc, isinstance(exc, RuntimeError) and closed(client)
            finally:
                self._clients.release(client)
            spent += (tried := max(1, sent[0]))
            batch.requests = spent
            failed_over = failed_over or tried > 1
            if failure is not None:  # raised here, not chained to the SDK's (it may echo the key)
                if cut:
                    # httpx refused to send (again: a fallback host) on the client the driver's
                    # close() closed under this send; its new client may send it
                    raise _wire.closed_under(what, maybe=failed_over or sent[0] > 0)
                # an earlier host, of this send or the first, may have stored it
                raise _wire.publish_failure(self._scrub, what, failure, 2 if failed_over else 1)
            try:
                status, items = int(response.status_code), _wire.answer_items(response)
            except Exception as exc:
                raise _wire.unreadable_answer(self._scrub, what, exc) from None
            result = _wire.read_answer(channels, status, items)
            if isinstance(result, tuple) and _wire.is_token_error(code := result[1]):
                # the token was refused, so the request was: renewed, it is sent again at once
                # (within the budget; the same message ids) as the SDK's own publish does
                self._clients.drop(client)
                if not renewed and spent < batch.budget and code != _wire.BAD_SIGNATURE:
                    renewed = True
                    continue
            if isinstance(result, tuple):
                raise _wire.ably_error(self._scrub, what, result, failed_over=failed_over)
            parts = zip(batch.parts, result, strict=True)
            return [self._outcome(part, reading, status, failed_over) for part, reading in parts]

    def _outcome(
        self, part: Part, reading: _wire.Reading | None, status: int, failed_over: bool
    ) -> _Outcome:
        if reading is None:
            return _wire.not_mentioned(part.channels, status)
        by_fault: dict[_wire.Fault, list[str]] = {}
        for channel, fault in reading.failures.items():
            by_fault.setdefault(fault, []).append(channel)
        refused: dict[str, PublishError] = {}
        for fault, channels in by_fault.items():
            text = _wire.channels_text(channels)
            error = _wire.ably_error(self._scrub, text, fault, failed_over=failed_over)
            refused.update(dict.fromkeys(channels, error))
        if reading.missing:
            missing = _wire.not_mentioned(reading.missing, status)
            refused.update(dict.fromkeys(reading.missing, missing))
        return Answer(ids=tuple(reading.ids), refused=refused)

    async def _query(self, query: Query[T], aio: bool) -> T:
        """What the answer to ``query`` means, every page read. Its error is raised here, in
        a frame holding no SDK object: a keyed client (and its responses) holds the key."""
        answer = await self._ask(query, aio)
        if isinstance(answer, QueryError):
            raise answer
        return answer[0]

    async def _ask(self, query: Query[T], aio: bool) -> tuple[T] | QueryError:
        """The meaning of the answer to ``query``, or its error with no traceback, context or
        cause (a keyed client is for this call alone)."""
        keyed = query.keyed
        method = "GET" if query.body is None else "POST"
        for again in (False, True):  # renewed token, or new client
            client = (
                self._clients.keyed(aio) if keyed else await self._clients.fresh(QUERY_HOSTS, aio)
            )
            collected: list[Any] = []
            cut = False  # closed under it by the driver's close()
            try:
                response = await call(
                    client, method, query.path, params=query.params, body=query.body
                )
                for _ in range(MAX_PAGES):
                    items, more = _page(response, query.what, self._scrub)
                    collected.extend(items)
                    if not (query.paginate and more):
                        break
                    response = await settled(response.next())
                return (query.parse(collected),)
            except QueryError as exc:
                error = exc
            except Exception as exc:
                if not keyed and isinstance(exc, RuntimeError) and closed(client):
                    # httpx refused to send (a fallback host, a next page) on the client the
                    # driver's close() / aclose() closed under this query: asked again, at
                    # once, on its new client (reading twice is harmless)
                    error = QueryError(
                        f"{query.what} was not answered: the driver was closed under the request",
                        driver=DRIVER,
                        retryable=True,
                    )
                    cut = True
                else:
                    error = _wire.query_failure(self._scrub, query.what, self._endpoint, exc)
            finally:
                if keyed:
                    await settled(client.close())
                else:
                    self._clients.release(client)
            if cut and not again:
                continue
            if cut or keyed or not _wire.is_token_error(error.code):
                break
            self._clients.drop(client)  # asked again at once with a new token, as the SDK would
            if again or error.code == _wire.BAD_SIGNATURE:
                break
        # not chained to the SDK's exception (its text may echo the key, its frames hold it)
        error.__traceback__ = error.__cause__ = error.__context__ = None
        error.__suppress_context__ = True
        return error

    def check(self) -> Health:
        """Ask Ably for a token with the key (``POST /keys/{keyName}/requestToken``), once."""
        return finish(Health.ameasure(lambda: self._query(self._health, aio=False)))

    async def acheck(self) -> Health:
        return await Health.ameasure(lambda: self._query(self._health, aio=True))

    def occupied_channels(self, prefix: str | None = None) -> list[ChannelInfo]:
        return finish(self._query(_occupied(prefix), aio=False))

    async def aoccupied_channels(self, prefix: str | None = None) -> list[ChannelInfo]:
        return await self._query(_occupied(prefix), aio=True)

    def channel_info(self, channel: str) -> ChannelInfo:
        return finish(self._query(_info(channel), aio=False))

    async def achannel_info(self, channel: str) -> ChannelInfo:
        return await self._query(_info(channel), aio=True)

    def members(self, channel: str) -> list[Member]:
        return finish(self._query(_members(channel), aio=False))

    async def amembers(self, channel: str) -> list[Member]:
        return await self._query(_members(channel), aio=True)

    def terminate_user(self, user_id: str) -> None:
        """Revoke every token issued to client id ``user_id``: Ably disconnects its connections."""
        finish(self._terminate(user_id, aio=False))

    async def aterminate_user(self, user_id: str) -> None:
        await self._terminate(user_id, aio=True)

    async def _terminate(self, user_id: str, aio: bool) -> None:
        query = _revoke(self._key_name, user_id, self._scrub)
        # noted before (a renewal racing the request carries nothing over) and
        # after (nor does a token signed while it was under way: Ably revokes those too)
        _auth.REVOKED.note(self._key_name, user_id)
        try:
            await self._query(query, aio)
        finally:
            _auth.REVOKED.note(self._key_name, user_id)

    def channel_name(self, channel: str | Channel) -> str:
        """``PrivateChannel("orders.1")`` is ``private:orders.1``; an encrypted one is refused."""
        if isinstance(channel, Channel) and channel.kind == "encrypted":
            raise _auth.unsupported("encrypted")
        return super().channel_name(channel)

    def sign_channel(self, request: AuthRequest) -> dict[str, Any]:
        """A token (a JWT signed with the key, locally) granting the channel to the user."""
        return _auth.sign_channel(self.settings.key, request, ttl=self.settings.token_ttl)

    def sign_connection(self, request: AuthRequest) -> dict[str, Any]:
        """A token to connect with, before any channel: ``public:*`` and the carried ones."""
        return _auth.sign_connection(self.settings.key, request, ttl=self.settings.token_ttl)

    def held_channels(self, request: AuthRequest) -> Sequence[str]:
        """The channels of the client's token (``extra["token"]``) for the rules to decide again."""
        return _auth.held_channels(self.settings.key, request)

    def client_config(self, auth_endpoint: str, user_auth_endpoint: str) -> dict[str, Any]:
        """ably-js's and Ably's Echo connector's options: tokens from ``auth_endpoint`` (the
        browser never gets the key), and the endpoint and ports when configured."""
        s = self.settings
        connection: dict[str, Any] = {}
        if s.endpoint is not None:
            connection["endpoint"] = s.endpoint
        if s.port is not None:
            connection["port"] = s.port
        if s.tls_port is not None:
            connection["tlsPort"] = s.tls_port
        echo = {"broadcaster": "ably", **connection, **_ably_js_1(s.endpoint)}
        return {
            "client": "ably-js",
            "key": None,
            "options": {**connection, "authUrl": auth_endpoint, "authMethod": "POST"},
            "echo": {**echo, "authEndpoint": auth_endpoint},
        }

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        return _webhooks.verify(self.settings.key, headers, body)

    def close(self) -> None:
        self._clients.close()

    async def aclose(self) -> None:
        await self._clients.aclose()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} driver={self.name!r} endpoint={self._endpoint!r}>"


def _ably_js_1(endpoint: str | None) -> dict[str, str]:
    """``endpoint`` in ably-js 1's own options, which Ably's Echo connector runs on: ably-js 1
    has no ``endpoint`` (ably-js 2's), and without these it connects to Ably's production hosts
    with a token the configured endpoint's key signed. A host name is the REST and realtime
    host; ``nonprod:sandbox`` and other routing policies are an ``environment``."""
    if endpoint is None or endpoint == "main":
        return {}
    if "." in endpoint or "::" in endpoint or endpoint == "localhost":
        return {"realtimeHost": endpoint, "restHost": endpoint}
    return {"environment": endpoint.removeprefix("nonprod:")}


def _what(parts: Sequence[Part]) -> str:
    if len(parts) == 1:
        return _wire.channels_text(parts[0].channels)
    count = sum(len(part.channels) for part in parts)
    return f"{count} channels of {len(parts)} publishes sharing one request"


# -- state queries: each a request that publishes nothing, and what its answer means
@dataclass(frozen=True)
class Query(Generic[T]):
    """One request that publishes nothing, and what its answer means (``parse``)."""

    what: str  # for error messages: "the presence set of channel 'x'"
    path: str
    parse: Callable[[list[Any]], T]
    params: dict[str, str] | None = None
    body: Any = None  # a POST when set
    paginate: bool = False
    keyed: bool = False  # needs the key itself (Basic auth), not a token


def _page(response: Any, what: str, scrub: _wire.Scrubber) -> tuple[list[Any], bool]:
    try:
        status, items, more = int(response.status_code), list(response.items), response.has_next()
    except Exception as exc:
        text = f"Ably's answer to {what} could not be read ({type(exc).__name__})"
        raise QueryError(text, driver=DRIVER, kind="other", retryable=True) from None
    if 200 <= status < 300:
        return items, more
    first = items[0] if items else None
    error = first.get("error") if isinstance(first, Mapping) else None
    if isinstance(error, Mapping):
        _, code, said = _wire.fault(error)
    else:
        code, said = _wire.int_or_none(getattr(response, "error_code", None)), ""
    raise _wire.refusal(QueryError, scrub, f"Ably refused {what}", (status, code, said))


def _occupied(prefix: str | None) -> Query[list[ChannelInfo]]:
    """``GET /channels?by=value``: the channels with a connection, by name."""
    if prefix is not None and not (isinstance(prefix, str) and is_utf8(prefix)):
        shown = "text UTF-8 cannot encode" if isinstance(prefix, str) else type(prefix).__name__
        raise InputError(f"{DRIVER}: a channel prefix is a str or None, not {shown}")
    params = {"by": "value", "limit": str(PAGE_LIMIT), **({"prefix": prefix} if prefix else {})}
    what = "the channel enumeration" + (f" (prefix {prefix!r})" if prefix else "")

    def parse(items: list[Any]) -> list[ChannelInfo]:
        found: dict[str, ChannelInfo] = {}
        details: Mapping[str, Any]
        for item in items:
            if isinstance(item, str):  # an answer by id: names only
                name, details = item, {}
            elif isinstance(item, Mapping) and isinstance(item.get("channelId"), str):
                name, details = item["channelId"], item
            else:
                continue
            if prefix and not name.startswith(prefix):
                continue
            info = _channel_info(details, name)
            if info.occupied or not details:
                found[name] = info
        return [found[name] for name in sorted(found)]

    return Query(what, "/channels", parse, params, paginate=True)


def _checked(channel: object) -> str:
    """A channel name a query may put in its path: one a publish may use (before any request:
    ``""`` would ask for the enumeration, ``[...]`` would be a qualifier; a lone surrogate
    cannot be in a URL)."""
    if (
        not isinstance(channel, str)
        or CHANNEL_PATTERN.fullmatch(channel) is None
        or not is_utf8(channel)
    ):
        shown = repr(channel[:80]) if isinstance(channel, str) else type(channel).__name__
        raise InvalidChannelError(f"{DRIVER}: {shown} is not a channel name: {CHANNEL_RULE}")
    return channel


def _info(channel: str) -> Query[ChannelInfo]:
    """``GET /channels/{name}`` (Ably's ``ChannelDetails``)."""
    channel = _checked(channel)
    what = f"the status of channel {channel!r}"

    def parse(items: list[Any]) -> ChannelInfo:
        first = items[0] if items else None
        if not isinstance(first, Mapping):
            raise QueryError(f"Ably's answer to {what} holds no channel details", driver=DRIVER)
        return _channel_info(first, channel)

    return Query(what, f"/channels/{quote(channel, safe='')}", parse)


def _members(channel: str) -> Query[list[Member]]:
    """``GET /channels/{name}/presence``: one :class:`Member` per client id, in Ably's order."""
    channel = _checked(channel)

    def parse(entries: list[Any]) -> list[Member]:
        seen: dict[str, Member] = {}
        for entry in entries:
            client_id = entry.get("clientId") if isinstance(entry, Mapping) else None
            if not isinstance(client_id, str) or not client_id or client_id in seen:
                continue
            data = _wire.decoded(entry)
            info = data if isinstance(data, Mapping) else None if data is None else {"data": data}
            seen[client_id] = Member(id=client_id, info=info)
        return list(seen.values())

    path = f"/channels/{quote(channel, safe='')}/presence"
    what = f"the presence set of channel {channel!r}"
    return Query(what, path, parse, {"limit": str(PAGE_LIMIT)}, paginate=True)


def _revoke(key_name: str, user_id: str, scrub: _wire.Scrubber) -> Query[None]:
    """``POST /keys/{keyName}/revokeTokens`` for the client id ``user_id``."""
    if not isinstance(user_id, str) or not user_id or len(user_id) > 1024 or not is_utf8(user_id):
        raise InputError(f"{DRIVER}: terminate_user() needs a non-empty user id of valid text")
    what = f"to revoke the tokens of client id {user_id!r}"

    def parse(items: list[Any]) -> None:
        for item in items:  # a batch result may hold a target's failure
            results = item.get("results") if isinstance(item, Mapping) else None
            for result in results if isinstance(results, list) else [item]:
                error = result.get("error") if isinstance(result, Mapping) else None
                if isinstance(error, Mapping):
                    fault = _wire.fault(error)
                    raise _wire.refusal(QueryError, scrub, f"Ably refused {what}", fault)

    path = f"/keys/{quote(key_name, safe='')}/revokeTokens"
    return Query(what, path, parse, body={"targets": [f"clientId:{user_id}"]}, keyed=True)


def _health_check(key_name: str, endpoint: str) -> Query[str]:
    """``POST /keys/{keyName}/requestToken`` with the key: the health check."""
    # empty token params need no capability beyond the key's own: a publish-only key passes

    def parse(items: list[Any]) -> str:
        first = items[0] if items else None
        if not (isinstance(first, Mapping) and isinstance(first.get("token"), str)):
            text = "Ably answered the health check's token request without a token"
            raise QueryError(text, driver=DRIVER)
        said = f"Ably ({endpoint}) accepted the key {key_name!r}"
        return f"{said}: it issued a token, which was discarded"

    path = f"/keys/{quote(key_name, safe='')}/requestToken"
    return Query("the health check", path, parse, body={}, keyed=True)


def _channel_info(details: Mapping[str, Any], name: str) -> ChannelInfo:
    """A :class:`ChannelInfo` from ``ChannelDetails``: occupied when it has connections."""
    status = details.get("status")
    status = status if isinstance(status, Mapping) else {}
    occupancy = status.get("occupancy")
    metrics = occupancy.get("metrics") if isinstance(occupancy, Mapping) else None
    metrics = metrics if isinstance(metrics, Mapping) else {}

    def count(metric: str) -> int | None:
        value = metrics.get(metric)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    connections, presence = count("connections"), name.startswith(_auth.PREFIXES["presence"])
    return ChannelInfo(
        name=name,
        occupied=connections > 0 if connections is not None else bool(status.get("isActive")),
        subscription_count=count("subscribers"),
        user_count=count("presenceMembers") if presence else None,
    )
