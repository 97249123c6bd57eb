"""Pusher's HTTP API: the signed requests (not ``Pusher.trigger``, whose size check is wrong
for non-ASCII text; the driver checks first), and what an answer means."""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import urlencode

from pusher.crypto import encrypt
from pusher.http import POST, Request
from pusher.pusher_client import PusherClient

from broadcasting.plugin import Batch, Message, PublishError, QueryError, Secret, ServiceError
from broadcasting_pusher._rules import ENCRYPTED_PREFIX, is_encrypted
from broadcasting_pusher._settings import NAME, PusherSettings

#: Refusals that may be accepted if sent again (and any 5xx).
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
#: What ``urlencode`` leaves as it is in a name or a value, and the ``=`` and ``&`` it joins with.
_PLAIN_QUERY = re.compile(r"[\w.~=&-]*", re.ASCII)
#: The answers of soketi (``{"ok":true}``) and Pusher (``{}``) to a publish: an acknowledgement.
_ACKNOWLEDGED = frozenset({b'{"ok":true}', b"{}"})
#: What else an acknowledgement of a publish may hold: Pusher's and Reverb's ``channels`` (an
#: object, with ``info=``) or ``batch`` (a list, with ``info=``; Reverb: ``{}`` without), and
#: soketi's ``ok`` (true).
_ACKNOWLEDGEMENT_FIELDS: dict[str, tuple[type, ...]] = {
    "channels": (dict,),
    "batch": (list, dict),
    "ok": (bool,),
}


class GuardedPusherClient(PusherClient):  # type: ignore[misc]
    """The SDK's client with its secret kept in a Secret, revealed only to sign a request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # the SDK checks the secret first
        self._secret: Any = Secret(self._secret)

    @property
    def secret(self) -> str:  # the SDK reads it only here (tests/pusher/test_sdk_internals.py)
        return str(self._secret.reveal())


def _data_for(channel: str, text: str, master_key: Secret | None) -> str:
    if not channel.startswith(ENCRYPTED_PREFIX):  # is_encrypted(), inlined: per event
        return text
    if master_key is None:
        # validate() refuses this at publish time, but a message it never saw (the outbox
        # relay's, run with other settings; a hook wrapper's new channel) would otherwise
        # go out in clear: refused, not sent ("invalid": alone in a shared request)
        raise PublishError(
            f"{NAME}: {channel[:80]!r} is an encrypted channel and this driver has no "
            "encryption_master_key_base64 to encrypt it with (not sent)",
            driver=NAME,
            kind="invalid",
        )
    # decoded here, for this one event: the raw key never sits in an attribute
    return json.dumps(
        encrypt(channel, text, base64.b64decode(master_key.reveal())), ensure_ascii=False
    )


def _event(message: Message, data: str, **where: Any) -> dict[str, Any]:
    event = {**where, "name": message.event, "data": data}
    if message.socket_id is not None:
        event["socket_id"] = message.socket_id
    return event


def request_for(client: Any, batch: Batch, master_key: Secret | None) -> Request:
    """The signed request for ``batch``: ``/events`` for one part, else ``/batch_events``."""
    path = f"/apps/{client.app_id}/"
    if len(batch.parts) == 1:
        message, channels = batch.parts[0].message, batch.parts[0].channels
        text = message.text
        if len(channels) == 1:
            data = _data_for(channels[0], text, master_key)
        elif any(map(is_encrypted, channels)):
            # plan() sends an encrypted channel alone (its own key and nonce); a send() given
            # one among others would otherwise put its data on the wire in clear
            raise PublishError(
                f"{NAME}: an encrypted channel shares a request with other channels: each "
                "is encrypted with its own key, so it must be sent alone (not sent)",
                driver=NAME,
                kind="invalid",
            )
        else:
            data = text
        return Request(client, POST, path + "events", _event(message, data, channels=channels))
    events = [
        _event(part.message, _data_for(channel, part.message.text, master_key), channel=channel)
        for part in batch.parts
        for channel in part.channels
    ]
    return Request(client, POST, path + "batch_events", {"batch": events})


def wire(request: Request) -> tuple[str, str, bytes, dict[str, str], bool]:
    """Method, signed target, body, headers, and whether it queries (a failure: QueryError)."""
    query = not str(request.path).endswith(("/events", "/batch_events"))
    # the SDK's headers property makes a new dict on each call: it is this request's own
    return request.method, query_path(request), request.body, request.headers, query


def service_error(
    text: str, *, query: bool, maybe_delivered: bool = False, **service: Any
) -> ServiceError:
    if query:
        return QueryError(text, driver=NAME, **service)
    return PublishError(text, driver=NAME, maybe_delivered=maybe_delivered, **service)


def query_path(request: Request) -> str:
    """The path with its signed query string."""
    items = sorted(request.query_params.items())
    # a publish's query is only the signature's: the app key, hex digests, digits, "1.0".
    # When every name and value is text that urlencode leaves as it is, the query is joined
    # as it stands (as the SDK joins it to sign it): the same string, without quoting each
    try:
        joined = "&".join(map("=".join, items))
    except TypeError:  # not text (the SDK signs only text): urlencode says what it makes
        joined = ""
    joins = joined.count("=") == len(items) and joined.count("&") == len(items) - 1
    if joins and _PLAIN_QUERY.fullmatch(joined):  # and no "=" or "&" of a name or value
        return f"{request.path}?{joined}"
    return f"{request.path}?{urlencode(items)}"


def scrub(text: str, settings: PusherSettings) -> str:
    """``text`` without the app secret or the master key, and at most 500 characters."""
    for secret in (settings.secret, settings.encryption_master_key):
        if secret:
            text = text.replace(secret.reveal(), "********")
    return text[:_MAX_SERVER_TEXT]


def _acknowledges(data: Any) -> bool:
    """Whether the decoded body of a 2xx is an acknowledgement of a publish: ``{}``, Pusher's
    ``{"channels": {...}}`` or ``{"batch": [...]}``, soketi's ``{"ok": true}``; not an empty
    body, ``{"ok": false}``, an ``error``, or any other field or value."""
    return isinstance(data, dict) and all(
        isinstance(value, _ACKNOWLEDGEMENT_FIELDS.get(name, ())) and (name != "ok" or value is True)
        for name, value in data.items()
    )


def check_answer(
    status: int,
    body: bytes,
    settings: PusherSettings,
    *,
    query: bool = False,
    where: str | None = None,
) -> None:
    """Return if the server (at ``where``: the node that answered) acknowledged the request,
    else raise a PublishError (QueryError with ``query``): a 4xx certainly did not deliver; a
    5xx, or a 2xx that is not an acknowledgement (any JSON, for a query), may have."""
    if 200 <= status < 300 and body in _ACKNOWLEDGED:
        return  # the common answer, read as the rest of this function would read it
    where = where or settings.base_url
    text = body.decode("utf-8", "replace")
    parsed = True
    try:
        data: Any = json.loads(text) if text.strip() else {}
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python decodes
        data, parsed = None, False
    raw_code = data.get("code") if isinstance(data, dict) else None
    code = raw_code if isinstance(raw_code, (int, str)) and not isinstance(raw_code, bool) else None
    server_text = text.strip()
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        server_text = data["error"]
        if 200 <= status < 300 and isinstance(raw_code, int) and raw_code >= 400:
            status = raw_code  # soketi 1.6 answers errors with HTTP 200: use its code
    if 200 <= status < 300:
        # a query's empty answer reads as {}; a publish's is no acknowledgement
        if data is not None and (query or (text.strip() and _acknowledges(data))):
            return
        said = scrub(text.strip(), settings)
        if not parsed:
            answered = f"a body that is not JSON ({said!r})"
        else:
            answered = f"{said!r}, not an acknowledgement" if said else "an empty body"
        raise service_error(
            f"{NAME}: the server at {where} answered HTTP {status} with {answered} "
            "(is it a Pusher-protocol server?)" + ("" if query else "; it may have been delivered"),
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
        f"{NAME}: {where} answered HTTP {status} ({hint})" + (f": {said!r}" if said else ""),
        query=query,
        status=status,
        code=code,
        retryable=status in RETRYABLE_STATUSES or status >= 500,
        maybe_delivered=status >= 500,
    )
