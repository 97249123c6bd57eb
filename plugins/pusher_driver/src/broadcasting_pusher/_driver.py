"""The ``pusher`` driver: Pusher Channels and Pusher-protocol servers (soketi, Reverb)."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pusher import Pusher

from broadcasting import ChannelInfo, ConfigurationError, Health, Member, QueryError, WebhookEvent
from broadcasting.plugin import AuthRequest, Batch, Capabilities, Driver, Feature, Heard, Message
from broadcasting_pusher import _auth, _listen, _rules, _state, _webhooks
from broadcasting_pusher._api import check_answer, request_for
from broadcasting_pusher._sdk import GuardedPusherClient
from broadcasting_pusher._settings import NAME, PusherSettings, parse_settings
from broadcasting_pusher._transport import (
    ConnectionPool,
    PooledBackend,
    SessionBackend,
    loop_sessions,
)

if TYPE_CHECKING:
    from pusher.http import Request
    from typing_extensions import Self


class BroadcastPusherDriver(Driver):
    """Publishes through the Pusher Channels HTTP API (or soketi, Laravel Reverb...).

    Options: see the README (``app_id``, ``key``/``client``, ``secret``, ``cluster``,
    ``host``, ``port``, ``ssl``, ``timeout``, ``encryption_master_key_base64``,
    ``max_payload_bytes``, ``max_connections``). It sends one request at a time and
    says what Pusher answered; the core plans, batches and retries. Sync requests
    share a fork-safe keep-alive pool, async ones one aiohttp session per loop.
    """

    name = NAME
    features = frozenset(
        {
            Feature.EXCLUDE_SENDER,
            Feature.AUTHORIZE,
            Feature.USER_SIGN_IN,
            Feature.WEBHOOKS,
            Feature.STATE,
            Feature.TERMINATE_USER,
            Feature.LISTEN,
        }
    )
    ssl_option = "ssl"
    #: 100 channels per trigger, 10 events per ``/batch_events``; no idempotency key.
    capabilities = Capabilities(
        channels_per_request=_rules.MAX_CHANNELS_PER_TRIGGER,
        batch_channels=_rules.MAX_BATCH_EVENTS,
        deduplicates=False,
    )

    def __init__(self, settings: PusherSettings) -> None:
        self.settings = settings
        self.limits = _rules.limits(settings.max_payload_bytes)
        self._master_key = settings.encryption_master_key  # a Secret, decoded per event
        self._pool = ConnectionPool(settings)
        self._sessions = loop_sessions(settings)
        self._sync_backend = {"backend": PooledBackend, "pool": self._pool}
        self._async_backend = {
            "backend": SessionBackend,
            "sessions": self._sessions,
            "settings": settings,
        }
        # the SDK's client, its secret kept wrapped (see _sdk.py)
        self._client = self._sdk(GuardedPusherClient, self._sync_backend)
        self._aclient = self._sdk(GuardedPusherClient, self._async_backend)
        self._lock = threading.Lock()
        self._full: dict[str, Pusher] = {}

    def _sdk(self, kind: type, backend: Mapping[str, Any], **extra: Any) -> Any:
        s = self.settings
        try:
            return kind(
                app_id=s.app_id,
                key=s.key,
                secret=s.secret.reveal(),
                ssl=s.ssl,
                host=s.host,
                port=s.port,
                timeout=s.timeout,
                **backend,
                **extra,
            )
        except (ValueError, TypeError) as exc:
            # the SDK's messages name the setting, never its value
            raise ConfigurationError(NAME, None, f"the pusher SDK refused it: {exc}") from None

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> Self:
        """Build the driver from its ``DRIVERS['pusher']`` options (no network yet)."""
        return cls(parse_settings(options))

    # -- the SDK, for what the driver does not wrap -----------------------------

    def _full_sdk(self, kind: str) -> Pusher:
        with self._lock:
            client = self._full.get(kind)
            if client is None:
                master = self.settings.encryption_master_key
                backend = self._sync_backend if kind == "sync" else self._async_backend
                client = self._full[kind] = self._sdk(
                    Pusher,
                    backend,
                    encryption_master_key_base64=master.reveal() if master else None,
                )
            return client

    @property
    def pusher(self) -> Pusher:
        """The official SDK client, sharing this driver's sync connection pool.

        For what the driver does not wrap. It is the SDK as it is: it holds the
        app secret (and the encryption key) as plain text, as the SDK does, so
        it is made only when asked for; the driver's own clients keep the
        secret wrapped in a :class:`~broadcasting.Secret`.
        """
        return self._full_sdk("sync")

    @property
    def apusher(self) -> Pusher:
        """The SDK client on the async transport (its calls return coroutines)."""
        return self._full_sdk("async")

    # -- the Driver API ----------------------------------------------------------

    def validate(self, message: Message) -> None:
        """Pusher's own rules: reserved event names, a master key for encrypted channels."""
        _rules.validate(message, has_master_key=self._master_key is not None)

    def payload_size(self, message: Message) -> int:
        """UTF-8 bytes of the ``data`` field as sent (encrypted channels send more)."""
        return _rules.payload_size(message)

    def plan(self, message: Message) -> list[tuple[str, ...]]:
        """Plain channels 100 per request; each ``private-encrypted-`` channel alone (own key)."""
        return _rules.plan(message.channels)

    def send(self, batch: Batch) -> None:
        """One ``/events`` (one message) or ``/batch_events`` (several) request."""
        status, body = self._client.http.send(request_for(self._client, batch, self._master_key))
        check_answer(status, body, self.settings)

    async def asend(self, batch: Batch) -> None:
        """Async twin of :meth:`send`, on this loop's session."""
        request = request_for(self._aclient, batch, self._master_key)
        status, body = await self._aclient.http.send(request)
        check_answer(status, body, self.settings)

    # -- the health check ---------------------------------------------------------------

    def check(self) -> Health:
        """One signed ``GET /apps/{app_id}/channels`` on the sync pool, never retried.

        ``ok`` when the server lists the app's channels; ``auth_failed`` when it
        refuses the key or secret (HTTP 401/403, including soketi's HTTP 200
        with an error body); ``unreachable`` when no answer comes (refused,
        DNS, nothing within ``timeout``); ``error`` otherwise (an unknown
        ``app_id`` is a 404, a certificate that cannot be verified...).
        """
        request = self._channels_request(self._client)
        return Health.measure(lambda: self._channels_listed(*self._client.http.send(request)))

    async def acheck(self) -> Health:
        """Async twin of :meth:`check`, on this loop's session."""
        request = self._channels_request(self._aclient)
        self._sessions.get()  # made (and aiohttp imported) before the clock starts

        async def probe() -> str:
            return self._channels_listed(*await self._aclient.http.send(request))

        return await Health.ameasure(probe)

    @staticmethod
    def _channels_request(client: Any) -> Request:
        # the SDK's own signed request for the channels query, sent by our transport
        request: Request = client.channels_info.make_request()
        return request

    def _channels_listed(self, status: int, body: bytes) -> str:
        """The detail of an answered check, or the QueryError the answer deserves."""
        s = self.settings
        where = f"GET /apps/{s.app_id}/channels"
        data: Any = None
        if 200 <= status < 300:
            try:
                data = json.loads(body)
            except ValueError:
                raise self._not_pusher(where, f"HTTP {status} but not JSON") from None
        check_answer(status, body, s, query=True)  # soketi's HTTP 200 with an error body too
        channels = data.get("channels") if isinstance(data, dict) else None
        if not isinstance(channels, dict):
            raise self._not_pusher(where, f"HTTP {status} but no channel list")
        count = len(channels)
        return (
            f"{s.base_url} accepted the app key and secret ({where}: "
            f"{count} occupied channel{'' if count == 1 else 's'})"
        )

    def _not_pusher(self, where: str, answer: str) -> QueryError:
        return QueryError(
            f"{self.name}: {self.settings.base_url} answered {where} with {answer} "
            "(is it a Pusher-protocol server?)",
            driver=self.name,
        )

    # -- authorizing subscriptions: _auth.py -----------------------------------------

    def sign_channel(self, request: AuthRequest) -> dict[str, Any]:
        """Pusher's answer for a private, presence or encrypted subscription (see ``_auth``)."""
        return _auth.sign_channel(self, request)

    def sign_user(self, request: AuthRequest) -> dict[str, Any]:
        """Pusher's answer for a user sign-in (``pusher:signin``)."""
        return _auth.sign_user(self, request)

    def user_channel(self, user_id: str) -> str:
        """``#server-to-user-<id>``: what ``send_to_user`` triggers on."""
        return _auth.user_channel(user_id)

    # -- hearing back: _webhooks.py and _state.py --------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        """Verify ``X-Pusher-Key``/``X-Pusher-Signature`` and parse the events."""
        return _webhooks.verify(self, headers, body)

    def listen_channels(self, channels: Sequence[str]) -> AsyncIterator[Heard]:
        """Subscribe over the Pusher WebSocket protocol (aiohttp), as ``broadcasting listen`` does.

        Private and presence subscriptions are signed with this driver's own
        secret; encrypted channels are decrypted with its master key.
        """
        return _listen.listen_channels(self, channels)

    def occupied_channels(self, prefix: str | None = None) -> list[ChannelInfo]:
        """``GET /apps/{id}/channels``."""
        return _state.run(self, _state.occupied_channels(self, prefix))

    async def aoccupied_channels(self, prefix: str | None = None) -> list[ChannelInfo]:
        """Async twin of :meth:`occupied_channels`."""
        return await _state.arun(self, _state.occupied_channels(self, prefix))

    def channel_info(self, channel: str) -> ChannelInfo:
        """``GET /apps/{id}/channels/{name}``."""
        return _state.run(self, _state.channel_info(self, channel))

    async def achannel_info(self, channel: str) -> ChannelInfo:
        """Async twin of :meth:`channel_info`."""
        return await _state.arun(self, _state.channel_info(self, channel))

    def members(self, channel: str) -> list[Member]:
        """``GET /apps/{id}/channels/{name}/users``."""
        return _state.run(self, _state.members(self, channel))

    async def amembers(self, channel: str) -> list[Member]:
        """Async twin of :meth:`members`."""
        return await _state.arun(self, _state.members(self, channel))

    def terminate_user(self, user_id: str) -> None:
        """``POST /apps/{id}/users/{user}/terminate_connections``."""
        _state.run(self, _state.terminate_user(self, user_id))

    async def aterminate_user(self, user_id: str) -> None:
        """Async twin of :meth:`terminate_user`."""
        await _state.arun(self, _state.terminate_user(self, user_id))

    # -- lifecycle ------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool and every loop's session (reopened on demand)."""
        self._pool.close()
        self._sessions.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        self._pool.close()
        await self._sessions.aclose()

    def __repr__(self) -> str:
        s = self.settings
        return f"<{type(self).__name__} driver={NAME!r} app_id={s.app_id!r} url={s.base_url!r}>"
