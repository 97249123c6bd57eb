"""Pusher's HTTP API: the signed requests the driver sends, and what an answer means.

Requests are built with the SDK's own ``pusher.http.Request`` (which signs
them) rather than through ``Pusher.trigger``: ``trigger`` re-checks the size
with ``sys.getsizeof`` (wrong for non-ASCII text, pusher-http-python issue
236) and would refuse payloads a dedicated cluster accepts. The driver's own
checks, made before this point, are the authoritative ones.

An answer is read by :func:`check_answer`: a 4xx certainly did not deliver
(``maybe_delivered=False``), a 5xx or a success that cannot be read may have.
What the absence of an answer means is the transport's business
(:mod:`broadcasting_pusher._transport`). A request that publishes nothing (a
state query, terminate_user, the health check) fails with a QueryError.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from pusher.crypto import encrypt
from pusher.http import POST, Request

from broadcasting.plugin import Batch, Part, PublishError, QueryError, Secret, ServiceError
from broadcasting_pusher._rules import is_encrypted
from broadcasting_pusher._settings import NAME, PusherSettings

#: HTTP statuses of a request the server refused but may accept if sent again.
RETRYABLE_STATUSES = frozenset({408, 425, 429})

_HINTS = {
    400: "the server refused the request as malformed",
    401: "authentication failed: check the app key and secret",
    403: "forbidden: the app may be disabled or over its message quota",
    404: "not found: check app_id, host and cluster",
    413: "the payload is too large for this server",
    429: "rate limited by the server",
}
_MAX_SERVER_TEXT = 500


def _data_for(channel: str, text: str, master_key: Secret | None) -> str:
    if master_key is None or not is_encrypted(channel):
        return text
    # decoded here, for this one event: the raw key never sits in an attribute
    return json.dumps(
        encrypt(channel, text, base64.b64decode(master_key.reveal())), ensure_ascii=False
    )


def _events_request(client: Any, part: Part, master_key: Secret | None) -> Request:
    """``POST /apps/{id}/events``: one message to its channels (an encrypted one alone)."""
    message, channels = part.message, part.channels
    data = _data_for(channels[0], message.text, master_key) if len(channels) == 1 else message.text
    params: dict[str, Any] = {"name": message.event, "channels": list(channels), "data": data}
    if message.socket_id is not None:
        params["socket_id"] = message.socket_id
    return Request(client, POST, f"/apps/{client.app_id}/events", params)


def _batch_request(client: Any, parts: Iterable[Part], master_key: Secret | None) -> Request:
    """``POST /apps/{id}/batch_events``: one event per channel of every part."""
    events = []
    for part in parts:
        message = part.message
        for channel in part.channels:
            event = {
                "channel": channel,
                "name": message.event,
                "data": _data_for(channel, message.text, master_key),
            }
            if message.socket_id is not None:
                event["socket_id"] = message.socket_id
            events.append(event)
    return Request(client, POST, f"/apps/{client.app_id}/batch_events", {"batch": events})


def request_for(client: Any, batch: Batch, master_key: Secret | None) -> Request:
    """The signed request for ``batch``: ``/events`` for one part, else ``/batch_events``."""
    if len(batch.parts) == 1:
        return _events_request(client, batch.parts[0], master_key)
    return _batch_request(client, batch.parts, master_key)


def publishes(request: Request) -> bool:
    """Whether ``request`` publishes (``/events``, ``/batch_events``) rather than queries."""
    path: str = request.path
    return path.endswith(("/events", "/batch_events"))


def service_error(
    text: str, *, query: bool, maybe_delivered: bool = False, **service: Any
) -> ServiceError:
    """A QueryError for a request that publishes nothing, else a PublishError."""
    if query:
        return QueryError(text, driver=NAME, **service)
    return PublishError(text, driver=NAME, maybe_delivered=maybe_delivered, **service)


def query_path(request: Request) -> str:
    """The request's path with its signed, URL-encoded query string."""
    return f"{request.path}?{urlencode(sorted(request.query_params.items()))}"


def _secrets(settings: PusherSettings) -> tuple[str, ...]:
    master = settings.encryption_master_key
    return (settings.secret.reveal(), master.reveal() if master is not None else "")


def scrub(text: str, settings: PusherSettings) -> str:
    """``text`` without the app secret or the master key, and at most 500 characters."""
    for secret in _secrets(settings):
        if secret:
            text = text.replace(secret, "********")
    return text[:_MAX_SERVER_TEXT]


def check_answer(
    status: int, body: bytes, settings: PusherSettings, *, query: bool = False
) -> None:
    """Return if the server acknowledged the request; raise a ServiceError for any other answer.

    soketi 1.6 answers API errors with HTTP 200 and ``{"error": ..., "code": N}``
    (its status line is written too late to count); such an answer is an error
    with status ``N``, not a success. A 4xx was certainly not delivered; a 5xx,
    or a success that cannot be read, may have been. A PublishError, or a
    QueryError with ``query`` (the request publishes nothing).
    """
    text = body.decode("utf-8", "replace")
    try:
        data: Any = json.loads(text) if text.strip() else {}
    except ValueError:
        data = None
    code: int | str | None = None
    server_text = text.strip()
    if isinstance(data, dict):
        raw_code = data.get("code")
        if isinstance(raw_code, (int, str)) and not isinstance(raw_code, bool):
            code = raw_code
        if isinstance(data.get("error"), str):
            server_text = data["error"]
            if 200 <= status < 300 and isinstance(raw_code, int) and raw_code >= 400:
                status = raw_code  # what soketi meant: the kind follows it
    if 200 <= status < 300:
        if data is not None:
            return
        raise service_error(
            f"{NAME}: the server at {settings.base_url} answered HTTP {status} with a body "
            "that is not JSON (is it a Pusher-protocol server?)"
            + ("" if query else "; it may have been delivered"),
            query=query,
            status=status,
            maybe_delivered=True,
        )
    hint = _HINTS.get(status, "server error" if status >= 500 else "request refused")
    said = scrub(server_text, settings)
    if status == 400 and data is None and not settings.ssl:
        # what a TLS port of nginx and most load balancers answers to plain HTTP
        said += (" " if said else "") + "(does the server expect TLS? then set ssl=True)"
    raise service_error(
        f"{NAME}: {settings.base_url} answered HTTP {status} ({hint})"
        + (f": {said!r}" if said else ""),
        query=query,
        status=status,
        code=code,
        retryable=status in RETRYABLE_STATUSES or status >= 500,
        maybe_delivered=status >= 500,
    )
