"""The ``webhook`` driver: every publish is one signed JSON POST to your URL."""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import ssl
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from broadcasting import (
    ConfigurationError,
    Driver,
    Limits,
    Message,
    PublishError,
    Receipt,
    Retry,
    Secret,
)

from broadcasting_webhook._signing import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

__version__ = "0.1.0"

#: Default for the ``max_payload_bytes`` option: the whole JSON body, in bytes.
DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024
#: Event and channel names longer than this are refused (they end up in your logs and indexes).
MAX_NAME_LENGTH = 200
#: Shortest secret accepted: HMAC keys shorter than this are guessable.
MIN_SECRET_LENGTH = 16
#: Statuses worth sending again: timeouts, rate limits and server errors.
RETRYABLE_STATUSES = frozenset({408, 425, 429})
#: Errors on a reused keep-alive connection that mean "the server had closed it".
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)

_OPTIONS = {
    "url",
    "secret",
    "timeout",
    "max_payload_bytes",
    "ca_file",
    "retries",
    "retry_backoff",
    "retry_max_backoff",
}

Connection = http.client.HTTPConnection


class _Pool:
    """Idle keep-alive connections to one host, shared by every thread.

    A connection is used by one request at a time; :meth:`close` closes the
    idle ones and makes those in use be closed when they come back.
    """

    def __init__(self, connect: Any, size: int = 8) -> None:
        self._connect = connect
        self._size = size
        self._lock = threading.Lock()
        self._idle: list[Connection] = []
        self._generation = 0

    def get(self) -> tuple[Connection, bool, int]:
        """A connection, whether it was used before, and the pool generation."""
        with self._lock:
            generation = self._generation
            if self._idle:
                return self._idle.pop(), True, generation
        return self._connect(), False, generation

    def put(self, conn: Connection, generation: int) -> None:
        with self._lock:
            if generation == self._generation and len(self._idle) < self._size:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            self._generation += 1
        for conn in idle:
            conn.close()


class BroadcastWebhookDriver(Driver):
    """POSTs each message as JSON to ``url``, signed with HMAC-SHA256 over the body.

    The body is ``{"id", "timestamp", "event", "channels", "data"}``; ``data``
    is the message as published (a JSON string for a str message). Headers:
    ``X-Broadcasting-Signature: sha256=<hex>``, ``X-Broadcasting-Timestamp``
    (signed with the body, to stop replays) and ``X-Broadcasting-Id`` (the
    same on every retry, so receivers can drop duplicates). Verify requests
    with :func:`broadcasting_webhook.verify_signature`.

    Any 2xx answer acknowledges the message. 408, 425, 429, 5xx and
    connection failures are retried (``retries``, default 2, with backoff);
    other answers raise :class:`~broadcasting.PublishError` at once.
    """

    name = "webhook"
    supports_socket_id = False

    def __init__(
        self,
        url: str,
        secret: str | Secret,
        *,
        timeout: float = 5.0,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        ca_file: str | None = None,
        retry: Retry | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(self.name, "url", "must be an http:// or https:// URL")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        # the path and query often carry a token: keep them out of every repr and error
        self._target = Secret((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
        self._secret = secret if isinstance(secret, Secret) else Secret(secret)
        self.timeout = timeout
        self.endpoint = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
        self.limits = Limits(
            max_payload_bytes=max_payload_bytes,
            max_event_name_length=MAX_NAME_LENGTH,
            max_channel_name_length=MAX_NAME_LENGTH,
        )
        self._retry = retry or Retry()
        self._ssl = ssl.create_default_context(cafile=ca_file) if self._https else None
        self._pool = _Pool(self._connect)

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> BroadcastWebhookDriver:
        """Build the driver from its ``DRIVERS['webhook']`` options.

        ``url`` and ``secret`` are required; ``timeout`` (seconds, default 5),
        ``max_payload_bytes`` (default 262144), ``ca_file`` (a CA bundle for
        https), ``retries``, ``retry_backoff`` and ``retry_max_backoff`` are optional.
        """
        for key in options:
            if key not in _OPTIONS:
                raise ConfigurationError(cls.name, str(key), "unknown option")
        url = options.get("url")
        if not isinstance(url, str) or not url:
            raise ConfigurationError(cls.name, "url", "is required (the URL to POST to)")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(cls.name, "url", "must be an http:// or https:// URL")
        if parts.username is not None or parts.password is not None:
            raise ConfigurationError(
                cls.name, "url", "must not contain a user or password; sign with `secret`"
            )
        try:
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise ConfigurationError(cls.name, "url", "has an invalid port") from None
        secret = options.get("secret")
        if isinstance(secret, Secret):
            revealed = secret.reveal()
        elif isinstance(secret, str):
            revealed = secret
        else:
            raise ConfigurationError(cls.name, "secret", "is required (a str or Secret)")
        if len(revealed) < MIN_SECRET_LENGTH:
            raise ConfigurationError(
                cls.name, "secret", f"must be at least {MIN_SECRET_LENGTH} characters"
            )
        timeout = options.get("timeout", 5.0)
        if (
            not isinstance(timeout, (int, float))
            or isinstance(timeout, bool)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ConfigurationError(cls.name, "timeout", "must be a number of seconds > 0")
        max_bytes = options.get("max_payload_bytes", DEFAULT_MAX_PAYLOAD_BYTES)
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1024:
            raise ConfigurationError(cls.name, "max_payload_bytes", "must be an int >= 1024")
        ca_file = options.get("ca_file")
        if ca_file is not None:
            if not isinstance(ca_file, str) or not Path(ca_file).is_file():
                raise ConfigurationError(cls.name, "ca_file", "must be the path of a CA file")
            if parts.scheme != "https":
                raise ConfigurationError(cls.name, "ca_file", "only applies to https:// URLs")
        retry = Retry.from_options(cls.name, options)
        return cls(
            url,
            Secret(revealed),
            timeout=float(timeout),
            max_payload_bytes=max_bytes,
            ca_file=ca_file,
            retry=retry,
        )

    # -- the body ---------------------------------------------------------------

    @staticmethod
    def body(message: Message, timestamp: int) -> bytes:
        """The JSON body for ``message``: compact, UTF-8, ``data`` embedded as sent."""
        data = (
            json.dumps(message.text, ensure_ascii=False)
            if isinstance(message.data, str)
            else message.text
        )
        head = json.dumps(
            {
                "id": message.id,
                "timestamp": timestamp,
                "event": message.event,
                "channels": list(message.channels),
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return (head[:-1] + ',"data":' + data + "}").encode("utf-8")

    def payload_size(self, message: Message) -> int:
        """The size of the whole body, which ``max_payload_bytes`` limits."""
        return len(self.body(message, int(time.time())))

    # -- sending ------------------------------------------------------------------

    def _connect(self) -> Connection:
        if self._ssl is not None:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self.timeout, context=self._ssl
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def _headers(self, body: bytes, message_id: str) -> dict[str, str]:
        now = int(time.time())
        return {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": f"broadcasting-webhook/{__version__}",
            SIGNATURE_HEADER: sign(self._secret, body, now),
            TIMESTAMP_HEADER: str(now),
            ID_HEADER: message_id,
        }

    def _post(self, body: bytes, message_id: str, attempts: list[int]) -> None:
        """One delivery attempt (plus one silent retry if a kept-alive connection was stale)."""
        while True:
            conn, reused, generation = self._pool.get()
            attempts[0] += 1
            try:
                conn.request("POST", self._target.reveal(), body, self._headers(body, message_id))
                response = conn.getresponse()
                answer = response.read()
            except _STALE as exc:
                conn.close()
                if reused:
                    continue  # the server closed an idle connection: open a new one
                raise self._unreachable(exc) from exc
            except ssl.SSLCertVerificationError as exc:
                conn.close()
                raise PublishError(
                    f"{self.endpoint}: TLS certificate not trusted ({exc.verify_message})",
                    driver=self.name,
                    retryable=False,
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise self._unreachable(exc) from exc
            if response.will_close:
                conn.close()
            else:
                self._pool.put(conn, generation)
            status = response.status
            if 200 <= status < 300:
                return
            snippet = answer[:200].decode("utf-8", "replace").strip()
            raise PublishError(
                f"{self.endpoint} answered {status} {response.reason}"
                + (f": {snippet}" if snippet else ""),
                driver=self.name,
                status=status,
                retryable=status in RETRYABLE_STATUSES or status >= 500,
            )

    def _unreachable(self, exc: BaseException) -> PublishError:
        reason = str(exc) or type(exc).__name__
        return PublishError(
            f"could not deliver to {self.endpoint}: {type(exc).__name__}: {reason}",
            driver=self.name,
            retryable=True,
        )

    def _receipt(self, message: Message, attempts: int) -> Receipt:
        return Receipt(self.name, message.event, message.channels, message.id, (), attempts)

    def publish(self, message: Message) -> Receipt:
        """POST the message; retry retryable failures; return once a 2xx came back."""
        body = self.body(message, int(time.time()))
        attempts = [0]
        self._retry.call(lambda: self._post(body, message.id, attempts))
        return self._receipt(message, attempts[0])

    async def apublish(self, message: Message) -> Receipt:
        """Async twin of :meth:`publish`: each attempt runs in a worker thread.

        The blocking request runs in ``asyncio.to_thread`` (sharing the
        keep-alive pool with sync callers); waits between retries are
        ``asyncio.sleep``, so the event loop is never blocked.
        """
        body = self.body(message, int(time.time()))
        attempts = [0]
        await self._retry.acall(lambda: asyncio.to_thread(self._post, body, message.id, attempts))
        return self._receipt(message, attempts[0])

    def close(self) -> None:
        """Close the kept-alive connections (idempotent); the next publish reconnects."""
        self._pool.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} driver={self.name!r} endpoint={self.endpoint!r}>"
