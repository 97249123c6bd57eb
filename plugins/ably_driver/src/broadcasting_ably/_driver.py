"""The ``ably`` driver: one request to Ably's REST API through the official ``ably`` SDK."""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Union
from urllib.parse import quote

from broadcasting import (
    Answer,
    AuthRequest,
    Batch,
    Capabilities,
    Channel,
    ChannelInfo,
    ChannelKind,
    Driver,
    Health,
    Limits,
    Member,
    Message,
    NotSupportedError,
    Part,
    PublishError,
    Secret,
    WebhookEvent,
)
from broadcasting_ably import _auth, _state, _webhooks
from broadcasting_ably._errors import (
    Scrubber,
    ably_error,
    channels_text,
    describe,
    int_or_none,
    not_mentioned,
    transport_error,
    unreadable_answer,
)
from broadcasting_ably._settings import AblySettings, parse_settings
from broadcasting_ably._transport import Clients, counting, guard_sdk_logging
from broadcasting_ably._wire import (
    API_VERSION,
    MAX_BATCH_BODY_BYTES,
    MAX_CHANNELS_PER_REQUEST,
    Fault,
    Reading,
    payload_size,
    read_answer,
    request_for,
    spec_size,
    wire_message,
)

if TYPE_CHECKING:
    from typing_extensions import Self

#: Ably's channel naming rule, checked by the core before any request, plus
#: one of this driver's: a private or presence name is never one Ably would
#: read as a wildcard in a token's capability (``*``, or ``[``/``:`` right
#: after the prefix), so no authorization can ask for one.
CHANNEL_PATTERN = re.compile(r"(?![\[:])(?!(?:private|presence):(?:[\[:]|.*\*))[^\r\n]+")
CHANNEL_RULE = (
    "Ably channel names are non-empty, do not start with '[' or ':' and have no line breaks; "
    "private: and presence: names have no '*' and no '[' or ':' right after the prefix"
)

_Outcome = Union[Answer, PublishError]

#: The channel prefixes of Ably's own Laravel broadcaster and Echo connector.
ABLY_PREFIXES: Mapping[ChannelKind, str] = _auth.PREFIXES
_NO_ENCRYPTED = (
    "Ably encrypts on the client with cipher keys the application hands out itself; "
    "there is no server-signed shared secret (use PrivateChannel)"
)


class BroadcastAblyDriver(Driver):
    """Publishes to Ably channels over Ably's REST API, using the ``ably`` SDK (3.x).

    Configure it with the seed's ``secret`` (or ``key``): an Ably API key of the
    form ``appId.keyId:keySecret``. The driver sends one request and reads
    Ably's answer (:meth:`send`, :meth:`asend`); the core splits channel lists
    (100 per request), retries, micro-batches async publishes and reports every
    channel's outcome. One channel is ``POST /channels/{name}/messages``,
    several are one spec of Ably's batch endpoint ``POST /messages``, and a
    micro-batch is a list of specs in one ``POST /messages``.

    Every message has the fixed id ``<Message.id>:0``; Ably drops a re-sent
    id, so the core may retry even when an answer was lost
    (``capabilities.deduplicates``).

    It also authorizes subscriptions (:meth:`sign_channel`: a JWT per
    channel, signed locally with the key, for ``private:`` and ``presence:``
    channels; :meth:`sign_connection` for the first token), reads channel
    state (:meth:`channels`, :meth:`channel_info`, :meth:`members`) and
    verifies Ably's signed webhooks (:meth:`verify_webhook`). See the package
    README.
    """

    name = "ably"
    supports_socket_id = False
    #: Ably's clients send no socket id when they ask for a token.
    requires_socket_id = False
    #: ``private:`` and ``presence:``, as ably/laravel-broadcaster and Ably's Echo
    #: connector name them; Ably has no server-signed encrypted channels.
    channel_prefixes: ClassVar[Mapping[ChannelKind, str]] = ABLY_PREFIXES
    #: Ably's capability syntax: ``*`` wildcards, ``:`` namespaces, ``[...]``
    #: qualifiers. A rule's ``{param}`` never matches them.
    special_characters: ClassVar[str] = "*:[]"
    capabilities = Capabilities(
        channels_per_request=MAX_CHANNELS_PER_REQUEST,
        batch_channels=MAX_CHANNELS_PER_REQUEST,
        batch_bytes=MAX_BATCH_BODY_BYTES,
        deduplicates=True,
    )

    def __init__(self, settings: AblySettings) -> None:
        self.settings = settings
        self.limits = Limits(
            max_payload_bytes=settings.max_payload_bytes,
            channel_pattern=CHANNEL_PATTERN,
            channel_rule=CHANNEL_RULE,
        )
        self._scrub = Scrubber(settings.key)
        self._clients = Clients(settings, lambda: self.delivery.retry.retries)

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> Self:
        """Build the driver from its ``DRIVERS['ably']`` options (see the package README)."""
        return cls(parse_settings(options))

    def ssl(self, enabled: bool) -> Self:
        """The seed's TLS toggle. Ably requires TLS with an API key: ``ssl(False)`` raises."""
        return self.with_options(tls=enabled)

    def payload_size(self, message: Message) -> int:
        """Bytes Ably counts for the message: data as sent, event name and client id."""
        return payload_size(message, self.settings.client_id)

    def part_size(self, part: Part) -> int:
        """Bytes ``part``'s spec takes in a shared ``POST /messages`` body."""
        wire = wire_message(part.message)
        return spec_size(part.channels, wire, binary=self.settings.use_binary_protocol)

    # -- one request ------------------------------------------------------------------

    def send(self, batch: Batch) -> list[_Outcome]:
        """Send ``batch`` as one request with the sync SDK client; one outcome per part.

        Raises :class:`PublishError` when the request failed as a whole. The
        hosts the SDK tried (fallback hosts) are counted in ``batch.requests``.
        """
        client = self._clients.sync_client()
        path, body = request_for(batch.parts)
        with counting() as sent:
            try:
                response = client.request("POST", path, API_VERSION, body=body)
            except Exception as exc:
                error = self._failure(batch, sent[0], exc)
            else:
                return self._answered(batch, sent[0], response)
        raise error

    async def asend(self, batch: Batch) -> list[_Outcome]:
        """Async twin of :meth:`send`, with this event loop's SDK client."""
        client = self._clients.async_client()
        path, body = request_for(batch.parts)
        with counting() as sent:
            try:
                response = await client.request("POST", path, API_VERSION, body=body)
            except Exception as exc:
                error = self._failure(batch, sent[0], exc)
            else:
                return self._answered(batch, sent[0], response)
        raise error

    def _answered(self, batch: Batch, sent: int, response: Any) -> list[_Outcome]:
        batch.requests = max(1, sent)
        try:
            status = int(response.status_code)
            items = list(response.items)
        except Exception as exc:
            raise unreadable_answer(self._scrub, _what(batch.parts), exc) from None
        result = read_answer([part.channels for part in batch.parts], status, items)
        if isinstance(result, tuple):
            raise self._refused(_what(batch.parts), result, failed_over=sent > 1)
        parts = zip(batch.parts, result, strict=True)
        return [self._outcome(part, reading, failed_over=sent > 1) for part, reading in parts]

    def _outcome(self, part: Part, reading: Reading | None, *, failed_over: bool) -> _Outcome:
        """One part's answer (``failed_over``: an earlier host may have stored it all)."""
        if reading is None:
            return not_mentioned(channels_text(part.channels))
        refused: dict[str, PublishError] = {}
        by_fault: dict[Fault, list[str]] = {}
        for channel, fault in reading.failures.items():
            by_fault.setdefault(fault, []).append(channel)
        for fault, channels in by_fault.items():
            error = self._refused(channels_text(channels), fault, failed_over=failed_over)
            refused.update(dict.fromkeys(channels, error))
        if reading.missing:
            unknown = not_mentioned(channels_text(reading.missing))
            refused.update(dict.fromkeys(reading.missing, unknown))
        return Answer(ids=tuple(reading.ids), refused=refused)

    def _refused(self, what: str, fault: Fault, *, failed_over: bool = False) -> PublishError:
        status, code, text = fault
        return ably_error(self._scrub, what, status, code, text, failed_over=failed_over)

    def _failure(self, batch: Batch, sent: int, exc: Exception) -> PublishError:
        """The SDK call raised: the error for the whole request (other exceptions propagate)."""
        import httpx
        from ably.util.exceptions import AblyException

        batch.requests = max(1, sent)
        what = _what(batch.parts)
        if isinstance(exc, httpx.TransportError):
            return transport_error(self._scrub, what, exc, sent)
        if isinstance(exc, AblyException):
            status = int_or_none(getattr(exc, "status_code", None))
            code = int_or_none(getattr(exc, "code", None))
            fault = (status, code, str(getattr(exc, "message", "") or ""))
            return self._refused(what, fault, failed_over=sent > 1)
        if isinstance(exc, (ValueError, KeyError)):  # an answer the SDK could not decode
            return unreadable_answer(self._scrub, what, exc)
        raise exc

    # -- the health check ---------------------------------------------------------------

    def check(self) -> Health:
        """Ask Ably for a token with the key (``POST /keys/{keyName}/requestToken``), once.

        The request is authenticated with the key exactly as publishes are
        (HTTP Basic), and issuing a token needs no capability beyond the key's
        own, so a key limited to publishing passes; the token is discarded.
        ``ok`` when Ably issues it; ``auth_failed`` when Ably refuses the key
        (HTTP 401/403: 40101 invalid credentials...); ``unreachable`` when no
        answer comes; ``error`` otherwise (a TLS certificate that cannot be
        verified, another error, an unreadable answer).

        The check uses its own SDK client, which tries only the first host
        (no fallback hosts: a check is never retried), and closes it.
        """
        from ably.sync import AblyRestSync

        client = AblyRestSync(**self._check_client_options())
        path, body = self._token_request()

        def probe() -> str:
            try:
                response = client.request("POST", path, API_VERSION, body=body)
            except Exception as exc:
                raise self._check_failure(exc) from None
            return self._token_issued(response)

        try:
            return Health.measure(probe)
        finally:
            client.close()

    async def acheck(self) -> Health:
        """Async twin of :meth:`check`, with an async SDK client of its own."""
        from ably import AblyRest

        client = AblyRest(**self._check_client_options())
        path, body = self._token_request()

        async def probe() -> str:
            try:
                response = await client.request("POST", path, API_VERSION, body=body)
            except Exception as exc:
                raise self._check_failure(exc) from None
            return self._token_issued(response)

        try:
            return await Health.ameasure(probe)
        finally:
            await client.close()

    def _check_client_options(self) -> dict[str, Any]:
        guard_sdk_logging()
        # no retry budget: with fallback hosts the SDK tries the first one only
        return {**self.settings.sdk_options(0), "key": self.settings.key.reveal()}

    def _key_name(self) -> str:
        return self.settings.key.reveal().split(":", 1)[0]  # appId.keyId: public

    def _token_request(self) -> tuple[str, dict[str, Any]]:
        """Path and body (empty token params: the key's own capability) of the check."""
        return f"/keys/{quote(self._key_name(), safe='')}/requestToken", {}

    def _token_issued(self, response: Any) -> str:
        """The detail of a token Ably issued, or the PublishError its answer deserves."""
        try:
            status = int(response.status_code)
            items = list(response.items)
        except Exception as exc:
            raise self._check_failure(exc) from None
        first = items[0] if items else None
        if 200 <= status < 300:
            if isinstance(first, dict) and isinstance(first.get("token"), str):
                endpoint = self.settings.endpoint or "main"
                return (
                    f"Ably ({endpoint}) accepted the key {self._key_name()!r}: it issued a "
                    "token, which was discarded"
                )
            raise PublishError(
                f"Ably answered the health check's token request with HTTP {status} but no token",
                driver=self.name,
                status=status,
            )
        error = first.get("error") if isinstance(first, dict) else None
        if isinstance(error, dict):
            code = int_or_none(error.get("code"))
            said = str(error.get("message") or "")
        else:
            code, said = int_or_none(response.error_code), ""
        raise PublishError(
            self._scrub(f"Ably refused the health check: {describe(status, code, said)}"),
            driver=self.name,
            status=status,
            code=code,
        )

    def _check_failure(self, exc: Exception) -> PublishError:
        """The error of a check the SDK raised for (other exceptions propagate)."""
        import httpx
        from ably.util.exceptions import AblyException

        endpoint = self.settings.endpoint or "main"
        detail = f"{type(exc).__name__}: {self._scrub(str(exc)) or 'no detail'}"
        if isinstance(exc, httpx.TransportError):
            if _caused_by(exc, ssl.SSLCertVerificationError):
                text = f"the TLS certificate of Ably ({endpoint}) could not be verified ({detail})"
                return PublishError(text, driver=self.name)
            if isinstance(exc, httpx.TimeoutException):
                text = f"no answer from Ably ({endpoint}) in time ({detail})"
            else:
                text = f"could not reach Ably ({endpoint}): {detail}"
            return PublishError(text, driver=self.name, retryable=True)
        if isinstance(exc, AblyException):
            status = int_or_none(getattr(exc, "status_code", None))
            code = int_or_none(getattr(exc, "code", None))
            said = describe(status, code, str(getattr(exc, "message", "") or ""))
            return PublishError(
                self._scrub(f"Ably refused the health check: {said}"),
                driver=self.name,
                status=status,
                code=code,
            )
        if isinstance(exc, (ValueError, KeyError)):  # an answer the SDK could not decode
            return PublishError(
                f"Ably's answer to the health check could not be read ({detail})",
                driver=self.name,
            )
        raise exc

    # -- channel names, authorizing subscriptions -----------------------------------

    def channel_name(self, channel: str | Channel) -> str:
        """``PrivateChannel("orders.1")`` is ``private:orders.1``; an encrypted one is refused.

        Raises :class:`NotSupportedError` for an :class:`EncryptedPrivateChannel`.
        """
        if isinstance(channel, Channel) and channel.kind == "encrypted":
            raise NotSupportedError(self.name, "encrypted channels", _NO_ENCRYPTED)
        return super().channel_name(channel)

    def sign_channel(self, request: AuthRequest) -> dict[str, Any]:
        """A token (a JWT signed with the key, no network) granting the channel to the user.

        The answer is shaped like Ably's ``TokenDetails`` (``token``,
        ``issued``, ``expires``, ``capability``, ``clientId``; ``info`` for
        presence). It also grants ``public:*`` and the channels of
        ``request.carried`` (see :meth:`held_channels`). See the package
        README, "Authorizing subscriptions".
        """
        return _auth.sign_channel(self.settings.key, request, ttl=self.settings.token_ttl)

    def sign_connection(self, request: AuthRequest) -> dict[str, Any]:
        """A token to connect with, before any private channel: ``public:*`` and the carried ones.

        Ably's Echo connector (and any ably-js client whose ``authUrl`` is the
        auth endpoint) asks for a token before it names a channel, and again
        to renew it: the core calls this for ``authorize(user,
        channel_name=None)`` and the web endpoints for a request without
        ``channel_name``. A guest's token grants ``public:*`` only and has no
        client id. Local, no network. See the package README.
        """
        return _auth.sign_connection(self.settings.key, request, ttl=self.settings.token_ttl)

    def held_channels(self, request: AuthRequest) -> Sequence[str]:
        """The channels of the client's token (``extra["token"]``) for the rules to decide again.

        Only a token this driver signed for a client, for the signed-in user's
        id, unexpired, without wildcards and not revoked by this process's
        :meth:`terminate_user`; anything else holds nothing.
        """
        held = request.extra.get("token")
        client_id = _auth.user_client_id(request.user) if request.user is not None else None
        if not isinstance(held, Secret) or not held or client_id is None:
            return ()
        return _auth.held_channels(self.settings.key, held, client_id)

    def sign_user(self, request: AuthRequest) -> dict[str, Any]:
        """Not supported: Ably identifies a user by the token's ``clientId``, not a sign-in."""
        raise NotSupportedError(
            self.name,
            "user sign-in",
            "Ably has no pusher:signin; the tokens authorize() signs carry the clientId",
        )

    # -- hearing back -----------------------------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        """Verify a signed batched Ably webhook delivery and return its events.

        See the package README, "Webhooks"; raises :class:`~broadcasting.UnauthorizedError`
        or :class:`~broadcasting.BadRequestError`.
        """
        return _webhooks.verify(self.settings.key, headers, body)

    def occupied_channels(self, prefix: str | None = None) -> list[ChannelInfo]:
        """The occupied channels (Ably's channel enumeration, every page), by name."""
        return _state.occupied_channels(self, prefix)

    async def aoccupied_channels(self, prefix: str | None = None) -> list[ChannelInfo]:
        """Async twin of :meth:`channels`."""
        return await _state.aoccupied_channels(self, prefix)

    def channel_info(self, channel: str) -> ChannelInfo:
        """Occupancy of ``channel`` (``GET /channels/{name}``)."""
        return _state.channel_info(self, channel)

    async def achannel_info(self, channel: str) -> ChannelInfo:
        """Async twin of :meth:`channel_info`."""
        return await _state.achannel_info(self, channel)

    def members(self, channel: str) -> list[Member]:
        """The presence set of ``channel``, one member per client id."""
        return _state.members(self, channel)

    async def amembers(self, channel: str) -> list[Member]:
        """Async twin of :meth:`members`."""
        return await _state.amembers(self, channel)

    def terminate_user(self, user_id: str) -> None:
        """Revoke every token issued to client id ``user_id``: Ably disconnects its connections.

        ``POST /keys/{keyName}/revokeTokens`` with the target
        ``clientId:<user_id>``. Ably honours it only for tokens issued while
        the key had "revocable tokens" enabled (its dashboard setting, which
        also limits tokens to one hour). The user may sign in again: the next
        authorization runs the channel rules as usual. This process also notes
        the time, and never carries over the channels of a token of
        ``user_id`` issued before it (:meth:`held_channels`); other processes
        do not see that note.
        """
        _state.terminate_user(self, user_id)

    async def aterminate_user(self, user_id: str) -> None:
        """Async twin of :meth:`terminate_user`."""
        await _state.aterminate_user(self, user_id)

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        """Close the SDK clients (idempotent); the next publish opens new ones."""
        self._clients.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        await self._clients.aclose()

    def __repr__(self) -> str:
        endpoint = self.settings.endpoint or "main"
        return f"<{type(self).__name__} driver={self.name!r} endpoint={endpoint!r}>"


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``exc`` or an exception it was raised from or during is a ``kind``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _what(parts: Sequence[Part]) -> str:
    """The request's channels for an error message (a shared one names no channel)."""
    if len(parts) == 1:
        return channels_text(parts[0].channels)
    count = sum(len(part.channels) for part in parts)
    return f"{count} channels of {len(parts)} publishes sharing one request"
