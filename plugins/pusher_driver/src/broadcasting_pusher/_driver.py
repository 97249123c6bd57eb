"""The ``pusher`` driver: Pusher Channels and Pusher-protocol servers (soketi, Reverb)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from pusher import Pusher
from pusher.http import Request
from pusher.pusher_client import PusherClient

from broadcasting import ConfigurationError, Driver, Message, PublishError, Receipt
from broadcasting_pusher import _rules
from broadcasting_pusher._async_backend import LoopSessions, SessionBackend
from broadcasting_pusher._batcher import Batcher
from broadcasting_pusher._settings import NAME, PusherSettings, parse_settings
from broadcasting_pusher._sync_backend import ConnectionPool, PooledBackend
from broadcasting_pusher._wire import (
    BatchEvent,
    batch_request,
    master_key_bytes,
    read_answer,
    trigger_request,
)

if TYPE_CHECKING:
    from typing_extensions import Self


class _Count:
    """HTTP requests made for one publish (retries included)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


def _partial(exc: PublishError, channels: Sequence[str], delivered: Sequence[str]) -> PublishError:
    """``exc`` restated for the whole publish: which channels got it and which did not."""
    done = set(delivered)
    failed = [channel for channel in channels if channel not in done]
    text = str(exc.args[0]) if exc.args else ""
    if delivered:
        text += (
            f" -- delivered to {len(delivered)} of {len(channels)} channels before the failure; "
            "see .delivered and .failed"
        )
    error = PublishError(
        text,
        driver=NAME,
        status=exc.status,
        code=exc.code,
        retryable=exc.retryable,
        delivered=delivered,
        failed=failed,
    )
    error.__cause__ = exc
    return error


class BroadcastPusherDriver(Driver):
    """Publishes through the Pusher Channels HTTP API (or soketi, Laravel Reverb...).

    Options (the ``pusher`` entry of ``DRIVERS``): ``app_id`` (numeric),
    ``key`` (or the seed's ``client``), ``secret``, then optionally
    ``cluster``, ``host``, ``port``, ``ssl`` (default True), ``timeout``
    (seconds, default 5), ``encryption_master_key_base64`` (for
    ``private-encrypted-`` channels), ``max_payload_bytes`` (default 10240),
    ``max_connections`` (default 10), ``retries``/``retry_backoff``/
    ``retry_max_backoff``, and ``batch_events``/``batch_in_flight`` (async
    micro-batching, on by default: see the README).

    A list of channels goes out 100 channels per request; each encrypted
    channel goes alone. Sync publishes share a keep-alive connection pool
    (thread-safe); async publishes share one ``aiohttp`` session per event
    loop. Both are closed by :meth:`close` / :meth:`aclose` and reopened on
    demand.
    """

    name = NAME
    supports_socket_id = True

    def __init__(self, settings: PusherSettings) -> None:
        self.settings = settings
        self.limits = _rules.limits(settings.max_payload_bytes)
        self._master_key = master_key_bytes(settings)
        self._pool = ConnectionPool(settings)
        self._sessions = LoopSessions(settings)
        self._client = self._sdk_client(PooledBackend, pool=self._pool)
        self._aclient = self._sdk_client(SessionBackend, sessions=self._sessions)
        self._lock = threading.Lock()
        self._batchers: dict[asyncio.AbstractEventLoop, Batcher] = {}
        self._sdk: dict[str, Pusher] = {}

    def _sdk_kwargs(self) -> dict[str, Any]:
        s = self.settings
        return {
            "app_id": s.app_id,
            "key": s.key,
            "secret": s.secret.reveal(),
            "ssl": s.ssl,
            "host": s.host,
            "port": s.port,
            "timeout": s.timeout,
        }

    def _sdk_client(self, backend: type, **backend_options: Any) -> Any:
        try:
            return PusherClient(**self._sdk_kwargs(), backend=backend, **backend_options)
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
            client = self._sdk.get(kind)
            if client is None:
                master = self.settings.encryption_master_key
                extra: dict[str, Any] = (
                    {"backend": PooledBackend, "pool": self._pool}
                    if kind == "sync"
                    else {"backend": SessionBackend, "sessions": self._sessions}
                )
                client = self._sdk[kind] = Pusher(
                    **self._sdk_kwargs(),
                    encryption_master_key_base64=master.reveal() if master else None,
                    **extra,
                )
            return client

    @property
    def pusher(self) -> Pusher:
        """The official SDK client, sharing this driver's sync connection pool.

        For what the driver does not wrap: ``authenticate()`` for private and
        presence channel auth endpoints, ``channels_info()``, webhooks...
        """
        return self._full_sdk("sync")

    @property
    def apusher(self) -> Pusher:
        """The SDK client on the async transport (its calls return coroutines)."""
        return self._full_sdk("async")

    # -- the Driver API ----------------------------------------------------------

    def validate(self, message: Message) -> None:
        """Pusher's own rules: socket ids, and a master key for encrypted channels."""
        _rules.validate(message, has_master_key=self._master_key is not None)

    def payload_size(self, message: Message) -> int:
        """UTF-8 bytes of the ``data`` field as sent (encrypted channels send more)."""
        return _rules.payload_size(message)

    def ssl(self, enabled: bool) -> Self:
        """The seed's toggle: this driver with ``ssl`` switched on or off."""
        return self.with_options(ssl=enabled)

    def _request(self, chunk: _rules.Chunk, message: Message) -> Request:
        return trigger_request(
            self._client, chunk, message.event, message.text, message.socket_id, self._master_key
        )

    def _receipt(self, message: Message, requests: int) -> Receipt:
        return Receipt(NAME, message.event, message.channels, message.id, (), requests)

    def publish(self, message: Message) -> Receipt:
        """Send ``message`` (100 channels per request); retry what may succeed."""
        count = _Count()
        delivered: list[str] = []
        for chunk in _rules.plan(message.channels):
            request = self._request(chunk, message)
            try:
                self.settings.retry.call(partial(self._send, request, count))
            except PublishError as exc:
                raise _partial(exc, message.channels, delivered) from exc
            delivered.extend(chunk.channels)
        return self._receipt(message, count.value)

    def _send(self, request: Request, count: _Count) -> Mapping[str, Any]:
        count.value += 1
        status, body = self._client.http.send(request)
        return read_answer(status, body, self.settings)

    async def _asend(self, request: Request, count: _Count) -> Mapping[str, Any]:
        count.value += 1
        status, body = await self._aclient.http.send(request)
        return read_answer(status, body, self.settings)

    async def _achunk(self, chunk: _rules.Chunk, message: Message, count: _Count) -> None:
        request = self._request(chunk, message)
        await self.settings.retry.acall(lambda: self._asend(request, count))

    async def apublish(self, message: Message) -> Receipt:
        """Async twin of :meth:`publish`; the requests of a fan-out run concurrently."""
        if self.settings.batch_events and len(message.channels) <= _rules.MAX_BATCH_EVENTS:
            requests = await self._batcher().submit(message)
            return self._receipt(message, requests)
        count = _Count()
        chunks = _rules.plan(message.channels)
        if len(chunks) == 1:
            try:
                await self._achunk(chunks[0], message, count)
            except PublishError as exc:
                raise _partial(exc, message.channels, ()) from exc
            return self._receipt(message, count.value)
        results = await asyncio.gather(
            *(self._achunk(chunk, message, count) for chunk in chunks), return_exceptions=True
        )
        delivered: list[str] = []
        first: PublishError | None = None
        for chunk, result in zip(chunks, results, strict=True):
            if result is None:
                delivered.extend(chunk.channels)
            elif isinstance(result, PublishError):
                first = first or result
            else:
                raise result
        if first is not None:
            raise _partial(first, message.channels, delivered) from first
        return self._receipt(message, count.value)

    # -- micro-batching ------------------------------------------------------------

    def _batcher(self) -> Batcher:
        loop = asyncio.get_running_loop()
        batcher = self._batchers.get(loop)
        if batcher is None:
            with self._lock:
                for dead in [other for other in self._batchers if other.is_closed()]:
                    del self._batchers[dead]
                batcher = self._batchers.setdefault(
                    loop, Batcher(self._send_batch, self.settings.batch_in_flight)
                )
        return batcher

    async def _send_batch(self, messages: list[Message]) -> int:
        count = _Count()
        if len(messages) == 1:
            chunks = _rules.plan(messages[0].channels)
            if len(chunks) == 1:
                await self._achunk(chunks[0], messages[0], count)
                return count.value
        events = [
            BatchEvent(channel, message.event, message.text, message.socket_id)
            for message in messages
            for channel in message.channels
        ]
        request = batch_request(self._aclient, events, self._master_key)
        await self.settings.retry.acall(lambda: self._asend(request, count))
        return count.value

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
