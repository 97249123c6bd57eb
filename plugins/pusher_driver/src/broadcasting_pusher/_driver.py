"""The ``pusher`` driver: Pusher Channels and Pusher-protocol servers (soketi, Reverb)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pusher import Pusher

from broadcasting import ChannelInfo, ConfigurationError, Health, Member, WebhookEvent
from broadcasting.plugin import AuthRequest, Batch, Capabilities, Driver, Feature, Heard, Message
from broadcasting_pusher import _auth, _listen, _rules, _state, _transport, _webhooks
from broadcasting_pusher._api import check_answer, request_for
from broadcasting_pusher._sdk import GuardedPusherClient
from broadcasting_pusher._settings import NAME, PusherSettings, parse_settings

if TYPE_CHECKING:
    from typing_extensions import Self


class BroadcastPusherDriver(Driver):
    """Publishes through the Pusher Channels HTTP API (or soketi, Laravel Reverb...).

    It sends one request at a time and says what Pusher answered; the core plans, batches
    and retries. Options and behaviour: the plugin's README.
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
    # no idempotency key: a trigger sent again is a second event
    capabilities = Capabilities(
        channels_per_request=_rules.MAX_CHANNELS_PER_TRIGGER,
        batch_channels=_rules.MAX_BATCH_EVENTS,
        deduplicates=False,
    )

    def __init__(self, settings: PusherSettings) -> None:
        self.settings = settings
        self.limits = _rules.limits(settings.max_payload_bytes)
        self._master_key = settings.encryption_master_key  # a Secret, decoded per event
        self._pool = _transport.ConnectionPool(settings)
        self._sessions = _transport.loop_sessions(settings)
        self._sync_backend = dict(backend=_transport.PooledBackend, pool=self._pool)
        self._async_backend = dict(
            backend=_transport.SessionBackend, sessions=self._sessions, settings=settings
        )
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
        """The official SDK client on this driver's sync pool, for what the driver does not wrap.

        Made on first use: it holds the secret and the master key as plain text, as the SDK does.
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

    # -- the health check ------------------------------------------------------------

    def check(self) -> Health:
        """One signed ``GET /apps/{app_id}/channels``, never retried."""
        return Health.measure(lambda: _state.run(self, _state.health(self)))

    async def acheck(self) -> Health:
        self._sessions.get()  # made (and aiohttp imported) before the clock starts
        return await Health.ameasure(lambda: _state.arun(self, _state.health(self)))

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
        """Subscribe over the Pusher WebSocket protocol (aiohttp), signing with the app secret."""
        return _listen.listen_channels(self, channels)

    def occupied_channels(self, prefix: str | None = None) -> list[ChannelInfo]:
        """``GET /apps/{id}/channels``."""
        return _state.run(self, _state.occupied_channels(self, prefix))

    async def aoccupied_channels(self, prefix: str | None = None) -> list[ChannelInfo]:
        return await _state.arun(self, _state.occupied_channels(self, prefix))

    def channel_info(self, channel: str) -> ChannelInfo:
        """``GET /apps/{id}/channels/{name}``."""
        return _state.run(self, _state.channel_info(self, channel))

    async def achannel_info(self, channel: str) -> ChannelInfo:
        return await _state.arun(self, _state.channel_info(self, channel))

    def members(self, channel: str) -> list[Member]:
        """``GET /apps/{id}/channels/{name}/users``."""
        return _state.run(self, _state.members(self, channel))

    async def amembers(self, channel: str) -> list[Member]:
        return await _state.arun(self, _state.members(self, channel))

    def terminate_user(self, user_id: str) -> None:
        """``POST /apps/{id}/users/{user}/terminate_connections``."""
        _state.run(self, _state.terminate_user(self, user_id))

    async def aterminate_user(self, user_id: str) -> None:
        await _state.arun(self, _state.terminate_user(self, user_id))

    # -- lifecycle ------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool and every loop's session (reopened on demand)."""
        self._pool.close()
        self._sessions.close()

    async def aclose(self) -> None:
        self._pool.close()
        await self._sessions.aclose()

    def __repr__(self) -> str:
        s = self.settings
        return f"<{type(self).__name__} driver={NAME!r} app_id={s.app_id!r} url={s.base_url!r}>"
