"""Building signed Pusher requests with the SDK, and reading the answers.

Requests are built with the SDK's own ``pusher.http.Request`` (which signs
them) rather than through ``Pusher.trigger``: ``trigger`` re-checks the size
with ``sys.getsizeof`` (wrong for non-ASCII text, pusher-http-python issue
236) and would refuse payloads a dedicated cluster accepts. The driver's own
checks, made before this point, are the authoritative ones.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any

from pusher.crypto import encrypt
from pusher.http import POST, Request

from broadcasting import PublishError
from broadcasting_pusher._rules import Chunk
from broadcasting_pusher._settings import NAME, PusherSettings

#: HTTP statuses worth sending the same request again for.
RETRYABLE_STATUSES = frozenset({408, 425, 429}) | frozenset(range(500, 600))

_HINTS = {
    400: "the server refused the request as malformed",
    401: "authentication failed: check the app key and secret",
    403: "forbidden: the app may be disabled or over its message quota",
    404: "not found: check app_id, host and cluster",
    413: "the payload is too large for this server",
    429: "rate limited by the server",
}
_MAX_SERVER_TEXT = 500


@dataclass(frozen=True)
class BatchEvent:
    """One event of a ``/batch_events`` request (one channel each)."""

    channel: str
    name: str
    data: str
    socket_id: str | None = None


def _data_for(channel: str, text: str, master_key: bytes | None) -> str:
    if master_key is None or not channel.startswith("private-encrypted-"):
        return text
    return json.dumps(encrypt(channel, text, master_key), ensure_ascii=False)


def master_key_bytes(settings: PusherSettings) -> bytes | None:
    """The decoded end-to-end encryption master key, if configured."""
    key = settings.encryption_master_key
    return None if key is None else base64.b64decode(key.reveal())


def trigger_request(
    client: Any,
    chunk: Chunk,
    event: str,
    text: str,
    socket_id: str | None,
    master_key: bytes | None,
) -> Request:
    """A signed ``POST /apps/{id}/events`` for one chunk of channels."""
    data = _data_for(chunk.channels[0], text, master_key) if chunk.encrypted else text
    params: dict[str, Any] = {"name": event, "channels": list(chunk.channels), "data": data}
    if socket_id is not None:
        params["socket_id"] = socket_id
    return Request(client, POST, f"/apps/{client.app_id}/events", params)


def batch_request(client: Any, events: Iterable[BatchEvent], master_key: bytes | None) -> Request:
    """A signed ``POST /apps/{id}/batch_events`` (at most 10 events on hosted Pusher)."""
    batch = []
    for event in events:
        item = {
            "channel": event.channel,
            "name": event.name,
            "data": _data_for(event.channel, event.data, master_key),
        }
        if event.socket_id is not None:
            item["socket_id"] = event.socket_id
        batch.append(item)
    return Request(client, POST, f"/apps/{client.app_id}/batch_events", {"batch": batch})


def query_path(request: Request) -> str:
    """The request's path with its signed, URL-encoded query string."""
    from urllib.parse import urlencode

    return f"{request.path}?{urlencode(sorted(request.query_params.items()))}"


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "********")
    return text


def read_answer(status: int, body: bytes, settings: PusherSettings) -> Mapping[str, Any]:
    """The JSON answer of a successful request; raise PublishError for any other answer.

    soketi 1.6 answers API errors with HTTP 200 and ``{"error": ..., "code": N}``
    (its status line is written too late to count); such an answer is an error
    with status ``N``, not a success.
    """
    text = body.decode("utf-8", "replace")
    data: Any = None
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError:
        data = None
    code: int | str | None = None
    server_text = text.strip()
    if isinstance(data, dict):
        raw_code = data.get("code")
        if isinstance(raw_code, (int, str)) and not isinstance(raw_code, bool):
            code = raw_code
        error = data.get("error")
        if isinstance(error, str):
            server_text = error
            if 200 <= status < 300 and isinstance(raw_code, int) and raw_code >= 400:
                status = raw_code
    if 200 <= status < 300:
        if data is None:
            raise PublishError(
                f"{NAME}: the server at {settings.base_url} answered HTTP {status} with a body "
                "that is not JSON; is it a Pusher-protocol server?",
                driver=NAME,
                status=status,
                retryable=False,
            )
        return data if isinstance(data, dict) else {"answer": data}
    hint = _HINTS.get(status, "server error" if status >= 500 else "request refused")
    server_text = _scrub(server_text, _secrets(settings))[:_MAX_SERVER_TEXT]
    said = f": {server_text!r}" if server_text else ""
    raise PublishError(
        f"{NAME}: {settings.base_url} answered HTTP {status} ({hint}){said}",
        driver=NAME,
        status=status,
        code=code,
        retryable=status in RETRYABLE_STATUSES,
    )


def _secrets(settings: PusherSettings) -> tuple[str, ...]:
    master = settings.encryption_master_key
    return (settings.secret.reveal(), master.reveal() if master is not None else "")


def transport_error(exc: BaseException, settings: PusherSettings) -> PublishError:
    """A PublishError for a request that got no HTTP answer (status ``None``)."""
    where = settings.base_url
    if isinstance(exc, (TimeoutError, socket.timeout, asyncio.TimeoutError)):
        text = f"{NAME}: no answer from {where} within {settings.timeout:g} s"
        retryable = True
    elif isinstance(exc, ssl.SSLCertVerificationError):
        text = f"{NAME}: TLS certificate of {where} could not be verified: {exc.verify_message}"
        retryable = False
    else:
        detail = _scrub(str(exc), _secrets(settings))[:_MAX_SERVER_TEXT]
        text = f"{NAME}: could not reach {where}: {type(exc).__name__}" + (
            f": {detail}" if detail else ""
        )
        retryable = True
    return PublishError(text, driver=NAME, status=None, retryable=retryable)


#: Exceptions of a sync request that mean "no answer" (wrapped by transport_error).
SYNC_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (OSError, HTTPException)
