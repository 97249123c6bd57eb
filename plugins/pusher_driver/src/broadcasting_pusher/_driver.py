"""The ``pusher`` driver: Pusher Channels and Pusher-protocol servers (soketi, Reverb)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pusher import Pusher

from broadcasting import ChannelInfo, ConfigurationError, Health, Member, WebhookEvent
from broadcasting.plugin import (
    AuthRequest,
    Batch,
    Capabilities,
    Driver,
    Feature,
    Heard,
    Message,
    Secret,
    call_after_fork,
)
from broadcasting_pusher import _auth, _listen, _rules, _state, _transport, _webhooks
from broadcasting_pusher._api import GuardedPusherClient, check_answer, request_for, scrub
from broadcasting_pusher._hosts import Hosts, Node
from broadcasting_pusher._settings import NAME, PusherSettings, parse_settings

if TYPE_CHECKING:
    from typing_extensions import Self


#: Pusher's own API hosts: the browser then needs only the key and the cluster.
_HOSTED = re.compile(r"api(?:-(?P<cluster>[a-z0-9-]+))?\.(pusher\.com|pusherapp\.com)")
#: pusher-js 8 throws without a cluster; with wsHost set, any value does.
DEFAULT_CLUSTER = "mt1"
#: The SDK's argument for the master key (given only to the full SDK client).
_MASTER_KEY = "encryption_master_key_base64"


class BroadcastPusherDriver(Driver):
    """Publishes through the Pusher Channels HTTP API (or soketi, Laravel Reverb...).

    Options and behaviour: the plugin's README.
    """

    name = NAME
    features = frozenset(Feature) - {Feature.CONNECTION_TOKENS}  # that one is Ably's
    ssl_option = "ssl"
    capabilities = Capabilities(
        channels_per_request=_rules.MAX_CHANNELS_PER_TRIGGER,
        batch_channels=_rules.MAX_BATCH_EVENTS,
        deduplicates=False,  # no idempotency key: a trigger sent again is a second event
    )

    def __init__(self, settings: PusherSettings) -> None:
        self.settings = settings
        self.limits = _rules.limits(settings.max_payload_bytes)
        #: this server's: ``max_batch_events`` events per ``/batch_events`` request
        self.capabilities = dataclasses.replace(
            type(self).capabilities, batch_channels=settings.max_batch_events
        )
        self._master_key = settings.encryption_master_key  # a Secret, decoded per event
        self._hosts = Hosts(settings.nodes)  # which node is up: shared by sync and async
        self._pool = _transport.ConnectionPool(settings, self._hosts)
        self._sessions = _transport.loop_sessions(settings, self._hosts)
        sync = dict(backend=_transport.PooledBackend, pool=self._pool)
        aio = dict(
            backend=_transport.SessionBackend,
            sessions=self._sessions,
            settings=settings,
            hosts=self._hosts,
        )
        self._backends: dict[str, dict[str, Any]] = {"sync": sync, "async": aio}
        self._client = self._sdk(GuardedPusherClient, "sync")
        self._aclient = self._sdk(GuardedPusherClient, "async")
        self._lock = threading.Lock()
        self._full: dict[str, Pusher] = {}
        call_after_fork(self)

    def _sdk(self, kind: type, backend: str, master_key: Secret | None = None) -> Any:
        """The SDK's ``kind`` of client on ``backend``. The secret and the master key are
        revealed only into the call (never a local of this frame), and an error the SDK
        raises is not chained: its frames hold both."""
        s = self.settings
        args = dict(
            app_id=s.app_id, key=s.key, ssl=s.ssl, host=s.host, port=s.port, timeout=s.timeout
        )
        refused = ""
        try:
            return kind(
                **args,
                secret=s.secret.reveal(),
                **self._backends[backend],
                **({} if master_key is None else {_MASTER_KEY: master_key.reveal()}),
            )
        except (ValueError, TypeError) as exc:
            # the SDK's messages name the setting, never its value (scrubbed all the same)
            refused = f"the pusher SDK refused it: {scrub(str(exc), s)}"
        raise ConfigurationError(NAME, None, refused)  # after the block: no __context__

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> Self:
        """Build the driver from its ``DRIVERS['pusher']`` options (no network yet)."""
        return cls(parse_settings(options))

    def _full_sdk(self, backend: str) -> Pusher:
        with self._lock:
            if backend not in self._full:
                self._full[backend] = self._sdk(Pusher, backend, self._master_key)
            return self._full[backend]

    @property
    def pusher(self) -> Pusher:
        """The official SDK client on the sync pool, for what the driver does not wrap (made on
        first use: it holds the secret and the master key as plain text, as the SDK does)."""
        return self._full_sdk("sync")

    @property
    def apusher(self) -> Pusher:
        """The SDK client on the async transport (its calls return coroutines)."""
        return self._full_sdk("async")

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
        request = request_for(self._client, batch, self._master_key)
        status, body, where = self._client.http.exchange(request)
        check_answer(status, body, self.settings, where=where)

    async def asend(self, batch: Batch) -> None:
        request = request_for(self._aclient, batch, self._master_key)
        status, body, where = await self._aclient.http.exchange(request)
        check_answer(status, body, self.settings, where=where)

    def check(self) -> Health:
        """One signed ``GET /apps/{app_id}/channels`` (to each node, with ``hosts``), never
        retried; with several nodes the detail says what each answered."""
        nodes = self.settings.nodes
        if len(nodes) == 1:
            return Health.measure(lambda: _state.run(self, _state.health(self)))
        return Health.measure(
            lambda: _state.summary(self, [(node, self._check_node(node)) for node in nodes])
        )

    def _check_node(self, node: Node) -> Health:
        return Health.measure(lambda: _state.run(self, _state.health(self, node), node))

    async def acheck(self) -> Health:
        self._sessions.get()  # made (and aiohttp imported) before the clock starts
        nodes = self.settings.nodes
        if len(nodes) == 1:
            return await Health.ameasure(lambda: _state.arun(self, _state.health(self)))

        async def every_node() -> str:
            checked = await asyncio.gather(*(self._acheck_node(node) for node in nodes))
            return _state.summary(self, list(zip(nodes, checked, strict=True)))

        return await Health.ameasure(every_node)

    async def _acheck_node(self, node: Node) -> Health:
        return await Health.ameasure(lambda: _state.arun(self, _state.health(self, node), node))

    def sign_channel(self, request: AuthRequest) -> dict[str, Any]:
        return _auth.sign_channel(self, request)

    def sign_user(self, request: AuthRequest) -> dict[str, Any]:
        return _auth.sign_user(self, request)

    def user_channel(self, user_id: str) -> str:
        """``#server-to-user-<id>``: what ``send_to_user`` triggers on."""
        return _auth.user_channel(user_id)

    def client_config(self, auth_endpoint: str, user_auth_endpoint: str) -> dict[str, Any]:
        """pusher-js's and Echo's options: the key and cluster, and for a server of your own
        (soketi, Reverb) its host, port, TLS and WebSocket transports. Never the secret.
        With ``hosts``, the first node's: a browser connects to one host (README, "Several
        nodes")."""
        s = self.settings
        hosted = _HOSTED.fullmatch(s.host)
        # host: api-eu.pusher.com (as Laravel's config spells it) is the eu cluster's: the
        # browser must connect to ws-eu, which pusher-js derives from the cluster
        cluster = (hosted["cluster"] if hosted else None) or s.cluster or DEFAULT_CLUSTER
        connection: dict[str, Any] = {"cluster": cluster, "forceTLS": s.ssl}
        if not hosted:
            # pusher-js 8 wants a cluster even then; wsHost wins, and the HTTP fallbacks
            # (Pusher's own hosts) are off
            connection.update(
                wsHost=s.host, wsPort=s.port, wssPort=s.port, enabledTransports=["ws", "wss"]
            )
        return {
            "client": "pusher-js",
            "key": s.key,
            "options": {
                **connection,
                "channelAuthorization": {"endpoint": auth_endpoint},
                "userAuthentication": {"endpoint": user_auth_endpoint},
            },
            "echo": {
                "broadcaster": "pusher",
                "key": s.key,
                **connection,
                "authEndpoint": auth_endpoint,
                "userAuthentication": {"endpoint": user_auth_endpoint, "headers": {}},
            },
        }

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        """Verify ``X-Pusher-Key``/``X-Pusher-Signature`` and parse the events."""
        return _webhooks.verify(self, headers, body)

    def listen_channels(self, channels: Sequence[str]) -> AsyncIterator[Heard]:
        """Subscribe over the Pusher WebSocket protocol (aiohttp), signing with the app secret."""
        return _listen.listen_channels(self, channels)

    def occupied_channels(self, prefix: str | None = None) -> list[ChannelInfo]:
        return _state.run(self, _state.occupied_channels(self, prefix))

    async def aoccupied_channels(self, prefix: str | None = None) -> list[ChannelInfo]:
        return await _state.arun(self, _state.occupied_channels(self, prefix))

    def channel_info(self, channel: str) -> ChannelInfo:
        return _state.run(self, _state.channel_info(self, channel))

    async def achannel_info(self, channel: str) -> ChannelInfo:
        return await _state.arun(self, _state.channel_info(self, channel))

    def members(self, channel: str) -> list[Member]:
        return _state.run(self, _state.members(self, channel))

    async def amembers(self, channel: str) -> list[Member]:
        return await _state.arun(self, _state.members(self, channel))

    def terminate_user(self, user_id: str) -> None:
        _state.run(self, _state.terminate_user(self, user_id))

    async def aterminate_user(self, user_id: str) -> None:
        await _state.arun(self, _state.terminate_user(self, user_id))

    def close(self) -> None:
        self._pool.close()
        self._sessions.close()

    async def aclose(self) -> None:
        self._pool.close()
        await self._sessions.aclose()

    def _after_fork(self) -> None:
        """After fork: a parent thread may have held the lock (making the SDK client behind
        ``pusher``), and it does not exist in the child: a fresh one."""
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        s = self.settings
        where = f"url={s.base_url!r}"
        if s.hosts:
            where = f"urls={[node.url(s.ssl) for node in s.hosts]!r}"
        return f"<{type(self).__name__} driver={NAME!r} app_id={s.app_id!r} {where}>"
