"""The wire: signed Pusher requests built with the SDK, and what an answer (or its absence) means.

Requests are built with the SDK's own ``pusher.http.Request`` (which signs
them) rather than through ``Pusher.trigger``: ``trigger`` re-checks the size
with ``sys.getsizeof`` (wrong for non-ASCII text, pusher-http-python issue
236) and would refuse payloads a dedicated cluster accepts. The driver's own
checks, made before this point, are the authoritative ones.

Every failure says whether Pusher may have processed the request
(``maybe_delivered``): the core never re-sends one that it may have, since
Pusher has no idempotency key for triggers.

A wrong ``ssl`` setting looks like a network failure (a TLS handshake that
never completes, a connection closed without an answer). The transports then
probe the server once (:func:`probe_plain_http`, :func:`probe_tls`) and, if it
speaks the other protocol, raise :func:`ssl_mismatch`: certain, not retried,
naming the setting. Only a server that has not yet answered this process in
the configured protocol is probed, and what a probe finds is remembered.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import ssl
import threading
from collections.abc import Iterable
from contextlib import suppress
from typing import Any, Literal

from pusher.crypto import encrypt
from pusher.http import POST, Request

from broadcasting import Batch, Part, PublishError, Secret
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


def query_path(request: Request) -> str:
    """The request's path with its signed, URL-encoded query string."""
    from urllib.parse import urlencode

    return f"{request.path}?{urlencode(sorted(request.query_params.items()))}"


def _secrets(settings: PusherSettings) -> tuple[str, ...]:
    master = settings.encryption_master_key
    return (settings.secret.reveal(), master.reveal() if master is not None else "")


def _scrub(text: str, settings: PusherSettings) -> str:
    for secret in _secrets(settings):
        if secret:
            text = text.replace(secret, "********")
    return text[:_MAX_SERVER_TEXT]


def check_answer(status: int, body: bytes, settings: PusherSettings) -> None:
    """Return if the server acknowledged the request; raise PublishError for any other answer.

    soketi 1.6 answers API errors with HTTP 200 and ``{"error": ..., "code": N}``
    (its status line is written too late to count); such an answer is an error
    with status ``N``, not a success. A 4xx was certainly not delivered; a 5xx,
    or a success that cannot be read, may have been.
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
                status = raw_code
    if 200 <= status < 300:
        if data is not None:
            return
        raise PublishError(
            f"{NAME}: the server at {settings.base_url} answered HTTP {status} with a body "
            "that is not JSON (is it a Pusher-protocol server?); it may have been delivered",
            driver=NAME,
            status=status,
            maybe_delivered=True,
        )
    hint = _HINTS.get(status, "server error" if status >= 500 else "request refused")
    said = _scrub(server_text, settings)
    if status == 400 and data is None and not settings.ssl:
        # what a TLS port of nginx and most load balancers answers to plain HTTP
        said += (" " if said else "") + "(does the server expect TLS? then set ssl=True)"
    raise PublishError(
        f"{NAME}: {settings.base_url} answered HTTP {status} ({hint})"
        + (f": {said!r}" if said else ""),
        driver=NAME,
        status=status,
        code=code,
        retryable=status in RETRYABLE_STATUSES or status >= 500,
        maybe_delivered=status >= 500,
    )


def transport_error(exc: BaseException, settings: PusherSettings, *, sent: bool) -> PublishError:
    """A PublishError for a request that got no HTTP answer (status ``None``).

    ``sent`` says whether the whole request was written: a failure before that
    (connecting, DNS, TLS, writing) certainly did not deliver it; one after it
    (a read timeout, a reset or closed connection) may have.
    """
    where = settings.base_url
    timeout = f"{settings.timeout:g} s"
    timed_out = isinstance(exc, (TimeoutError, asyncio.TimeoutError))
    if isinstance(exc, ssl.SSLCertVerificationError):
        text = f"TLS certificate of {where} could not be verified: {exc.verify_message}"
        return PublishError(f"{NAME}: {text}", driver=NAME, retryable=False)
    detail = _scrub(str(exc), settings)
    detail = f"{type(exc).__name__}" + (f": {detail}" if detail else "")
    if not sent:
        text = f"could not send the request to {where} within {timeout}" if timed_out else ""
        text = text or f"could not reach {where}: {detail}"
        return PublishError(f"{NAME}: {text} (not sent)", driver=NAME, retryable=True)
    text = f"no answer from {where} within {timeout}" if timed_out else ""
    text = text or f"the connection to {where} was lost before the answer ({detail})"
    return PublishError(
        f"{NAME}: {text}; the request was sent, so it may have been delivered",
        driver=NAME,
        retryable=True,
        maybe_delivered=True,
    )


# -- a wrong ``ssl`` setting ---------------------------------------------------------------

#: What a server is known to speak, by (host, port): learned from an answer or a probe.
Speaks = Literal["http", "tls", "neither"]
_known: dict[tuple[str, int], Speaks] = {}
_known_lock = threading.Lock()
#: Bytes of a probe's answer that are read (a status line's start, or a TLS record header).
PROBE_READ = 12
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})")


def known_protocol(settings: PusherSettings) -> Speaks | None:
    """What the server of ``settings`` is known to speak, if anything yet."""
    return _known.get((settings.host, settings.port))


def learn_protocol(settings: PusherSettings, protocol: Speaks) -> None:
    """Remember what the server speaks (an answer in the configured protocol, or a probe)."""
    with _known_lock:
        _known[(settings.host, settings.port)] = protocol


def heard(settings: PusherSettings) -> None:
    """The server answered over the configured protocol: it is never probed."""
    if (settings.host, settings.port) not in _known:
        learn_protocol(settings, "tls" if settings.ssl else "http")


def plain_http_probe(settings: PusherSettings) -> bytes:
    """A harmless plain HTTP request (``GET /``) that any HTTP server answers at once."""
    host = settings.host if settings.port in (80, 443) else f"{settings.host}:{settings.port}"
    return f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode("ascii")


def tls_probe() -> bytes:
    """A TLS ClientHello: a TLS server answers it at once with its ServerHello.

    Sent only to a server that gave no HTTP answer to :func:`plain_http_probe`.
    Nothing follows the hello, so a plain HTTP server (or a proxy) just waits
    for the end of a request line and never passes the bytes on.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    outgoing = ssl.MemoryBIO()
    hello = context.wrap_bio(ssl.MemoryBIO(), outgoing)
    with suppress(ssl.SSLWantReadError):  # the hello is written; the answer would come next
        hello.do_handshake()
    return outgoing.read()


def answers_plain_http(head: bytes) -> bool:
    """Whether ``head`` starts an HTTP answer that a TLS port would not give.

    A 400 is left out: TLS ports of nginx and most load balancers answer
    plain HTTP with one ("The plain HTTP request was sent to HTTPS port").
    """
    match = _STATUS_LINE.match(head)
    return match is not None and match.group(1) != b"400"


def answers_tls(head: bytes) -> bool:
    """Whether ``head`` starts a TLS record (a handshake or an alert)."""
    return len(head) >= 2 and head[0] in (0x15, 0x16) and head[1] == 0x03


def ssl_mismatch(settings: PusherSettings) -> PublishError:
    """The certain, not retried, error of a server that speaks the other protocol."""
    where = settings.base_url
    if settings.ssl:
        text = (
            f"the server at {where} does not speak TLS (it answers plain HTTP): "
            "set ssl=False, or use its TLS port (not sent)"
        )
    else:
        text = (
            f"the server at {where} expects TLS (it answers with a TLS handshake), so it "
            "could not read the request: set ssl=True, or use its plain HTTP port (not delivered)"
        )
    return PublishError(f"{NAME}: {text}", driver=NAME)
