"""Authorizing subscriptions on Ably: a JWT per channel, signed locally with the API key.

Ably's clients (ably-js, the ``ably`` SDK, Ably's Laravel Echo connector) ask
an ``authUrl`` for a token and use it for every request on their connection.
So the answer to "may this user subscribe to ``private:orders.1``?" is a
token whose capability grants that channel, signed with the key's secret.
Ably accepts a JWT signed with an API key in place of its own tokens:

* header ``{"typ": "JWT", "alg": "HS256", "kid": "<keyName>"}``;
* claims ``iat`` and ``exp`` (seconds), ``x-ably-capability`` (the capability
  as a JSON *string*) and ``x-ably-clientId`` (left out when there is none).

Like ``ably/laravel-broadcaster`` (which this follows in idea, not in code), a
client that already holds a token sends it with the next authorization
(``token`` in the request's ``extra``); when it is one of ours (``kid`` is this
key, the HS256 signature verifies with the key's secret, it has not expired,
its client id is the same), its capabilities are kept and the new channel is
added, so one connection keeps one token that grants every channel the user
was allowed. Anything else about the old token (a bad signature, another
key, expired, unreadable, another user's) is ignored: the answer is a fresh
token with just the requested channel. Nothing is sent to Ably.

The answer is a JSON object shaped like Ably's ``TokenDetails`` (``token``,
``issued``, ``expires``, ``capability``, ``clientId``), which the ``ably`` SDK
and ably-js accept from an ``authUrl`` served as ``application/json``, and
whose ``token`` is what Ably's Echo connector reads; a presence answer also
carries the member's ``info``, which that connector enters presence with.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from broadcasting import AuthRequest, NotSupported, Secret, ValidationError

DRIVER = "ably"

#: What a token grants on the channel it was asked for, by kind of channel:
#: members of a private channel receive its messages (and may read its
#: history); members of a presence channel may also enter its presence set.
#: Nobody may publish: the server publishes through the driver.
OPERATIONS: Mapping[str, tuple[str, ...]] = {
    "private": ("history", "subscribe"),
    "presence": ("history", "presence", "subscribe"),
}

#: What the connection token grants on public channels (Ably's Echo connector
#: subscribes ``Echo.channel("orders")`` to ``public:orders`` without asking).
PUBLIC_RESOURCE = "public:*"
PUBLIC_OPERATIONS = ("history", "subscribe")

#: Ably refuses presence data larger than this (the message size limit of the
#: smallest plans); checked before signing.
MAX_MEMBER_INFO_BYTES = 64 * 1024

#: How many channels one merged token may grant (each authorization adds one),
#: and how long its capability may be as JSON: past either, the client gets a
#: fresh token for the requested channel only. The size keeps the token (sent
#: back with the next authorization) well under the web endpoints' 8 KiB body.
MAX_CHANNELS_PER_TOKEN = 100
MAX_CAPABILITY_BYTES = 4096


#: JSON without spaces; keys in the order given (the callers build them sorted).
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@functools.lru_cache(maxsize=64)
def _jwt_header(key_name: str) -> str:
    """The encoded JWT header for a key name (public; the same for every token of the key)."""
    return _b64url(_compact({"typ": "JWT", "alg": "HS256", "kid": key_name}).encode())


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def canonical_capability(capability: Mapping[str, Any]) -> str:
    """The capability as the JSON string Ably expects: sorted resources and operations."""
    return _COMPACT.encode({name: sorted(set(capability[name])) for name in sorted(capability)})


def key_name(key: Secret) -> str:
    """The public part of an Ably key (``appId.keyId``)."""
    return key.reveal().partition(":")[0]


def mac(key: Secret, data: bytes) -> bytes:
    """HMAC-SHA256 of ``data`` with the key's secret.

    The secret is revealed here only, as a temporary: no frame that may raise
    (and so end up in a traceback an error tracker records) holds it.
    """
    return hmac.digest(key.reveal().partition(":")[2].encode(), data, "sha256")


def encode_jwt(key: Secret, claims: Mapping[str, Any]) -> str:
    """An HS256 JWT with ``claims``, signed with the key's secret, naming the key in ``kid``."""
    signing_input = f"{_jwt_header(key_name(key))}.{_b64url(_COMPACT.encode(claims).encode())}"
    return f"{signing_input}.{_b64url(mac(key, signing_input.encode('ascii')))}"


def _signed_by(key: Secret, signing_input: str, signature: bytes) -> bool:
    return hmac.compare_digest(mac(key, signing_input.encode("ascii")), signature)


def decode_jwt(key: Secret, token: str, *, now: float | None = None) -> dict[str, Any] | None:
    """The claims of ``token`` if it is an unexpired HS256 JWT this key signed, else ``None``."""
    if not isinstance(token, str) or token.count(".") != 2 or len(token) > 16 * 1024:
        return None
    head, body, signature = token.split(".")
    try:
        header = json.loads(_unb64url(head))
        claims = json.loads(_unb64url(body))
        given = _unb64url(signature)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None
    if header.get("alg") != "HS256" or header.get("kid") != key_name(key):
        return None
    if not _signed_by(key, f"{head}.{body}", given):
        return None
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or isinstance(exp, bool):
        return None
    if exp <= (time.time() if now is None else now):
        return None
    return claims


def _held_capability(claims: Mapping[str, Any]) -> dict[str, list[str]] | None:
    """The capability of a verified token's claims, or ``None`` when it is not readable."""
    raw = claims.get("x-ably-capability")
    try:
        capability = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return None
    if not isinstance(capability, dict):
        return None
    if not all(
        isinstance(ops, list) and all(isinstance(op, str) for op in ops)
        for ops in capability.values()
    ):
        return None
    return {str(name): list(ops) for name, ops in capability.items()}


def user_client_id(user: Any) -> str | None:
    """A client id for a private channel's token, from the user, or ``None``.

    A mapping's ``"id"``; else the user's ``id`` attribute, else ``pk``
    (Django), else ``get_id()`` (Flask-Login); a ``str``, ``int`` or ``UUID``,
    as text. ``"*"`` (Ably's wildcard) is never used.
    """
    if isinstance(user, Mapping):
        ident = user.get("id")
    else:
        ident = None
        for attribute in ("id", "pk"):
            value = getattr(user, attribute, None)
            if value is not None and not callable(value):
                ident = value
                break
        else:
            get_id = getattr(user, "get_id", None)
            if callable(get_id):
                ident = get_id()
    if isinstance(ident, bool) or not isinstance(ident, (str, int, uuid.UUID)):
        return None
    text = str(ident)
    return text if text and text != "*" else None


def sign_channel(
    key: Secret, request: AuthRequest, *, ttl: int, now: float | None = None
) -> dict[str, Any]:
    """The token answer for an authorized subscription (see the module docstring).

    ``ttl`` is the new token's lifetime in seconds. Raises :class:`NotSupported`
    for an encrypted channel and :class:`ValidationError` for presence info
    Ably would refuse.
    """
    if request.kind not in OPERATIONS or request.channel is None:
        raise NotSupported(
            DRIVER,
            f"{request.kind} channels",
            "Ably encrypts on the client with cipher keys the application hands out itself; "
            "there is no server-signed shared secret",
        )
    info: dict[str, Any] | None = None
    if request.kind == "presence":
        assert request.member is not None  # the core's rule check guarantees it
        info = dict(request.member)
        try:
            size = len(_compact(info).encode())
        except (TypeError, ValueError):
            raise ValidationError(
                f"{DRIVER}: the presence member info for {request.channel!r} is not JSON"
            ) from None
        if size > MAX_MEMBER_INFO_BYTES:
            raise ValidationError(
                f"{DRIVER}: the presence member info for {request.channel!r} is {size} bytes; "
                f"Ably accepts at most {MAX_MEMBER_INFO_BYTES}"
            )
        client_id: str | None = request.member_id
    else:
        client_id = user_client_id(request.user)

    issued = time.time() if now is None else now
    capability, client_id = _merged(key, request.extra.get("token"), client_id, issued)
    capability.pop(request.channel, None)
    capability = _room_for_one(capability, request.channel)
    capability[request.channel] = list(OPERATIONS[request.kind])
    return _answer(key, capability, client_id, issued, ttl, info)


def publisher_token(
    key: Secret, client_id: str | None, ttl: int, now: float | None = None
) -> tuple[str, int, int]:
    """The driver's own token: ``(jwt, issued_ms, expires_ms)``, every operation the key allows.

    Ably intersects a token's capability with its key's, so ``{"*": ["*"]}``
    grants exactly what the key grants.
    """
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iat": issued,
        "exp": issued + ttl,
        "x-ably-capability": canonical_capability({"*": ["*"]}),
    }
    if client_id is not None:
        claims["x-ably-clientId"] = client_id
    return encode_jwt(key, claims), issued * 1000, (issued + ttl) * 1000


def sign_connection(
    key: Secret, user: Any, *, held: str | None, ttl: int, now: float | None = None
) -> dict[str, Any]:
    """A token to connect with before any private channel: the ``public:`` channels only.

    What Ably's Echo connector asks for first (no channel name). It grants
    ``history`` and ``subscribe`` on ``public:*``, keeps the channels of a
    valid ``held`` token of the same user, and carries the user's ``id`` as
    client id when it has one.
    """
    issued = time.time() if now is None else now
    client_id = user_client_id(user) if user is not None else None
    capability, client_id = _merged(key, held, client_id, issued)
    capability = _room_for_one(capability, PUBLIC_RESOURCE)
    capability[PUBLIC_RESOURCE] = list(PUBLIC_OPERATIONS)
    return _answer(key, capability, client_id, issued, ttl, None)


def _room_for_one(capability: dict[str, list[str]], name: str) -> dict[str, list[str]]:
    """``capability`` if one more resource fits (count and size), else nothing of it."""
    if len(capability) >= MAX_CHANNELS_PER_TOKEN:
        return {}
    size = len(canonical_capability(capability).encode()) + len(name.encode()) + 48
    return capability if size <= MAX_CAPABILITY_BYTES else {}


def _merged(
    key: Secret, held: str | None, client_id: str | None, now: float
) -> tuple[dict[str, list[str]], str | None]:
    """The capability of the client's current token and the client id to sign for.

    ``held`` counts only when it is an unexpired JWT of this key for the same
    user (or for no user): another user's token is never merged.
    """
    claims = decode_jwt(key, held, now=now) if held else None
    if claims is None:
        return {}, client_id
    held_client = claims.get("x-ably-clientId")
    held_client = held_client if isinstance(held_client, str) and held_client else None
    capability = _held_capability(claims)
    same_user = held_client is None or client_id is None or held_client == client_id
    if capability is None or not same_user:
        return {}, client_id
    return capability, client_id or held_client


def _answer(
    key: Secret,
    capability: Mapping[str, list[str]],
    client_id: str | None,
    issued: float,
    ttl: int,
    info: dict[str, Any] | None,
) -> dict[str, Any]:
    """The signed JWT and the TokenDetails-shaped answer around it."""
    iat = int(issued)
    exp = iat + ttl
    text = canonical_capability(capability)
    token_claims: dict[str, Any] = {"iat": iat, "exp": exp, "x-ably-capability": text}
    if client_id is not None:
        token_claims["x-ably-clientId"] = client_id
    body: dict[str, Any] = {
        "token": encode_jwt(key, token_claims),
        "issued": iat * 1000,
        "expires": exp * 1000,
        "capability": text,
    }
    if client_id is not None:
        body["clientId"] = client_id
    if info is not None:
        body["info"] = info
    return body
