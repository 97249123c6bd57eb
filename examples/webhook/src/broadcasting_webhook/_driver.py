"""The ``webhook`` driver: each request is one signed JSON POST to your URL.

The driver sends one request and says what came of it; the core of
``broadcasting`` does the rest (splitting long channel lists into
``channels_per_request`` groups, retries, the outcome of every channel).
"""

from __future__ import annotations

import json
import logging
import math
import os
import ssl
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import urllib3
from broadcasting import ConfigurationError, PublishError
from broadcasting.plugin import Batch, Capabilities, Driver, Limits, Message, Secret

from broadcasting_webhook._signing import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

__version__ = "0.4.0.dev0"

#: Default for the ``max_payload_bytes`` option: the whole JSON body, in bytes.
DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024
#: Default for the ``channels_per_request`` option.
DEFAULT_CHANNELS_PER_REQUEST = 100
#: Event and channel names longer than this (in characters) are refused.
MAX_NAME_LENGTH = 200
#: Shortest secret accepted: HMAC keys shorter than this are guessable.
MIN_SECRET_LENGTH = 16
#: Refusals worth sending again: the receiver certainly did not process them.
RETRYABLE_STATUSES = frozenset({408, 425, 429})

_OPTIONS = frozenset(
    {
        "url",
        "secret",
        "timeout",
        "max_payload_bytes",
        "ca_file",
        "channels_per_request",
        "receiver_deduplicates",
    }
)
#: Idle keep-alive connections kept (more threads at once open more, closed after use).
POOL_SIZE = 16


class BroadcastWebhookDriver(Driver):
    """POSTs each message as JSON to ``url``, signed with HMAC-SHA256 over the body.

    The body is ``{"id", "message_id", "timestamp", "event", "channels",
    "data"}``; ``data`` is the message as published (a JSON string for a str
    message). Headers: ``X-Broadcasting-Signature: sha256=<hex>``,
    ``X-Broadcasting-Timestamp`` (signed with the body, to stop replays) and
    ``X-Broadcasting-Id`` (= ``id``: the same on every retry of a request, so
    receivers can drop duplicates; see :meth:`request_id`). Verify requests
    with :func:`broadcasting_webhook.verify_signature`.

    Any 2xx answer acknowledges the request. How failures end (the core
    decides retries from these):

    * no connection (refused, DNS, connect timeout): certainly not
      delivered, retryable;
    * no answer after sending (timeout, connection lost) or a 5xx: maybe
      delivered, retryable. Not re-sent unless ``receiver_deduplicates`` or
      the core's ``at_least_once`` option is set;
    * 408, 425, 429: certainly not delivered, retryable;
    * any other status, or an untrusted TLS certificate: certainly not
      delivered, not retryable.
    """

    name = "webhook"
    #: the URL's path and query often carry a token: the core keeps the option wrapped
    secret_options = frozenset({"url"})

    def __init__(
        self,
        url: str,
        secret: str | Secret,
        *,
        timeout: float = 5.0,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        ca_file: str | None = None,
        channels_per_request: int = DEFAULT_CHANNELS_PER_REQUEST,
        receiver_deduplicates: bool = False,
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
        self.capabilities = Capabilities(
            channels_per_request=channels_per_request, deduplicates=receiver_deduplicates
        )
        self._ssl = ssl.create_default_context(cafile=ca_file) if self._https else None
        self._pool = self._new_pool()
        _hidden_paths.drivers.add(self)

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> BroadcastWebhookDriver:
        """Build the driver from its ``DRIVERS['webhook']`` options.

        ``url`` and ``secret`` are required; ``timeout`` (seconds, default 5),
        ``max_payload_bytes`` (default 262144), ``ca_file`` (a CA bundle for
        https), ``channels_per_request`` (default 100) and
        ``receiver_deduplicates`` (default False) are optional. The delivery
        options (``retries``, ``at_least_once``...) are read by the core and
        never reach this method.
        """
        for key in options:
            if key not in _OPTIONS:
                raise ConfigurationError(cls.name, str(key), "unknown option")
        url = options.get("url")
        if isinstance(url, Secret):  # the core keeps it wrapped (secret_options)
            url = url.reveal()
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
        per_request = options.get("channels_per_request", DEFAULT_CHANNELS_PER_REQUEST)
        if not isinstance(per_request, int) or isinstance(per_request, bool) or per_request < 1:
            raise ConfigurationError(cls.name, "channels_per_request", "must be an int >= 1")
        deduplicates = options.get("receiver_deduplicates", False)
        if not isinstance(deduplicates, bool):
            raise ConfigurationError(cls.name, "receiver_deduplicates", "must be True or False")
        return cls(
            url,
            Secret(revealed),
            timeout=float(timeout),
            max_payload_bytes=max_bytes,
            ca_file=ca_file,
            channels_per_request=per_request,
            receiver_deduplicates=deduplicates,
        )

    # -- the body ---------------------------------------------------------------

    @staticmethod
    def request_id(message: Message, channels: tuple[str, ...]) -> str:
        """The ``X-Broadcasting-Id`` of the request carrying ``message`` to ``channels``.

        ``message.id`` when the request carries all the message's channels
        (the usual case: it is then the receipt's ``message_id``). A publish
        the core split into several requests gets ``<message id>.<n>`` per
        request, ``n`` being the position of the request's first channel in
        the publish, so every request has its own id and a retry of it the
        same one: a receiver that drops repeated ids never drops part of a
        fan-out.
        """
        if channels == message.channels:
            return message.id
        return f"{message.id}.{message.channels.index(channels[0])}"

    @classmethod
    def body(cls, message: Message, channels: tuple[str, ...], timestamp: int) -> bytes:
        """The JSON body sending ``message`` to ``channels`` at ``timestamp``."""
        return cls._head(message, channels, timestamp) + cls._data(message)

    @classmethod
    def _head(cls, message: Message, channels: tuple[str, ...], timestamp: int) -> bytes:
        head = json.dumps(
            {
                "id": cls.request_id(message, channels),
                "message_id": message.id,
                "timestamp": timestamp,
                "event": message.event,
                "channels": list(channels),
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return (head[:-1] + ',"data":').encode("utf-8")

    @staticmethod
    def _data(message: Message) -> bytes:
        """``data`` as embedded in the body (compact, UTF-8), with the closing brace."""
        if isinstance(message.data, str):
            return (json.dumps(message.text, ensure_ascii=False) + "}").encode("utf-8")
        return (message.text + "}").encode("utf-8")

    def payload_size(self, message: Message) -> int:
        """Bytes of the largest request body ``message`` makes, which ``max_payload_bytes`` limits.

        Each request of a split fan-out lists only its own channels, so the
        largest body is measured, not one listing every channel.
        """
        now = int(time.time())
        head = max(len(self._head(message, group, now)) for group in self.plan(message))
        return head + len(self._data(message))

    # -- one request ----------------------------------------------------------------

    def send(self, batch: Batch) -> None:
        """POST ``batch.message`` to ``batch.channels``; return once a 2xx came back.

        Raises :class:`~broadcasting.PublishError` otherwise, saying whether
        the receiver may have processed it (``maybe_delivered``) and whether
        sending it again may succeed (``retryable``). Never retries: the core
        does, by those two answers and the user's delivery options.
        """
        message, channels = batch.message, batch.channels
        body = self.body(message, channels, int(time.time()))
        status, reason, answer = self._post(body, self.request_id(message, channels))
        if 200 <= status < 300:
            return
        snippet = answer[:200].decode("utf-8", "replace").strip()
        raise PublishError(
            f"{self.endpoint} answered {status} {reason}" + (f": {snippet}" if snippet else ""),
            driver=self.name,
            status=status,
            retryable=status in RETRYABLE_STATUSES or status >= 500,
            maybe_delivered=status >= 500,
        )

    def _new_pool(self) -> urllib3.HTTPConnectionPool:
        """urllib3's keep-alive pool for the endpoint, shared by every thread.

        Before reusing an idle connection it checks that the server has not
        closed it meanwhile, so a request is never written to a dead one.
        Requests are never retried here (``retries=False``): the core does.
        """
        options: dict[str, Any] = {"maxsize": POOL_SIZE, "retries": False, "timeout": self.timeout}
        if self._ssl is not None:
            return urllib3.HTTPSConnectionPool(
                self._host, self._port, ssl_context=self._ssl, **options
            )
        return urllib3.HTTPConnectionPool(self._host, self._port, **options)

    def _headers(self, body: bytes, request_id: str) -> dict[str, str]:
        now = int(time.time())
        return {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": f"broadcasting-webhook/{__version__}",
            SIGNATURE_HEADER: sign(self._secret, body, now),
            TIMESTAMP_HEADER: str(now),
            ID_HEADER: request_id,
        }

    def _post(self, body: bytes, request_id: str) -> tuple[int, str, bytes]:
        """One POST: the status, reason and body of the answer, or a PublishError."""
        try:
            response = self._pool.urlopen(
                "POST",
                self._target.reveal(),
                body=body,
                headers=self._headers(body, request_id),
                redirect=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            error = self._failure(exc)
        else:
            return response.status, response.reason or "", response.data
        # raised out here, with no chained urllib3 error: its frames hold the secret URL path
        raise error

    def _failure(self, exc: urllib3.exceptions.HTTPError) -> PublishError:
        """What a request that got no answer means (``exc``: urllib3's error)."""
        cause = exc.__context__ or exc  # the standard library's error underneath
        if isinstance(cause, ssl.SSLCertVerificationError):
            return PublishError(
                f"{self.endpoint}: TLS certificate not trusted ({cause.verify_message})",
                driver=self.name,
                retryable=False,
            )
        if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
            # could not connect (refused, DNS, connect timeout): nothing was sent
            return PublishError(
                f"could not connect to {self.endpoint}: {_describe(cause)}",
                driver=self.name,
                retryable=True,
            )
        # anything else may have come once the request was written (urllib3 reports a TLS
        # handshake that timed out as a read timeout too): the receiver may have it
        return PublishError(
            f"sent to {self.endpoint} but got no answer: {_describe(cause)}",
            driver=self.name,
            retryable=True,
            maybe_delivered=True,
        )

    def close(self) -> None:
        """Close the kept-alive connections (idempotent); the next publish reconnects.

        Connections in use are closed when their request ends.
        """
        pool, self._pool = self._pool, self._new_pool()
        pool.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} driver={self.name!r} endpoint={self.endpoint!r}>"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc) or 'no details'}"


class _HidePaths(logging.Filter):
    """Hides the endpoints' paths (they often carry a token) from urllib3's DEBUG log.

    urllib3 logs every request line, path and query included
    (``"POST /hooks/<token> HTTP/1.1" 204``); this filter replaces the path of
    every live webhook driver in those records before any handler sees them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.drivers: weakref.WeakSet[BroadcastWebhookDriver] = weakref.WeakSet()

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            paths = [driver._target.reveal() for driver in list(self.drivers)]
            record.args = tuple(_hide(arg, paths) for arg in record.args)
        return True


def _hide(value: object, paths: list[str]) -> object:
    if isinstance(value, str):
        for path in paths:
            value = value.replace(path, "/<hidden>")
    return value


_hidden_paths = _HidePaths()
logging.getLogger("urllib3.connectionpool").addFilter(_hidden_paths)


def _forget_pools_in_child() -> None:
    """After ``os.fork()``: every live driver lets go of its parent's kept-alive connections.

    A module-level ``Broadcast`` that published before the fork (``gunicorn --preload``)
    would otherwise write the child's requests on the parent's connections: answers read
    by the wrong process, and over TLS a broken session whose next request ends unknown.
    The old pool is dropped, not closed, so nothing is written on the parent's sockets.
    """
    for driver in list(_hidden_paths.drivers):
        driver._pool = driver._new_pool()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools_in_child)
