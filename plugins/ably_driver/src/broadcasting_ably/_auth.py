"""Authorizing subscriptions on Ably: a JWT per channel, signed locally with the API key.

Ably accepts a JWT signed with an API key in place of its own tokens (header
``kid`` = the key name; claims ``iat``, ``exp``, ``x-ably-capability`` as a JSON
string, ``x-ably-clientId``). The answer is shaped like Ably's ``TokenDetails``.
See the package README, "Authorizing subscriptions", for what a token grants
and what a client's held token may carry over.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import json
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from broadcasting import BadRequestError, InputError, NotSupportedError
from broadcasting.plugin import AuthRequest, ChannelKind, Secret
from broadcasting_ably._settings import MAX_TOKEN_TTL

DRIVER = "ably"

#: Private and presence channels as Ably's Laravel broadcaster and Echo connector name
#: them: the channels a client token may grant.
PREFIXES: Mapping[ChannelKind, str] = {"private": "private:", "presence": "presence:"}

#: What a token grants on its channel, by kind; nobody may publish (the server does).
OPERATIONS: Mapping[str, tuple[str, ...]] = {
    "private": ("history", "subscribe"),
    "presence": ("history", "presence", "subscribe"),
}

#: What the connection token grants on public channels (Ably's Echo connector
#: subscribes ``Echo.channel("orders")`` to ``public:orders`` without asking).
PUBLIC_RESOURCE = "public:*"
PUBLIC_OPERATIONS = ("history", "subscribe")

#: Ably refuses larger presence data (the smallest plans' message size limit).
MAX_MEMBER_INFO_BYTES = 64 * 1024

#: Carried channels past these are left out (never the requested one), so the token
#: a client sends back fits the web endpoints' 8 KiB body.
MAX_CHANNELS_PER_TOKEN = 100
MAX_CAPABILITY_BYTES = 4096
NO_ENCRYPTED = (
    "Ably encrypts on the client with cipher keys the application hands out itself; "
    "there is no server-signed shared secret (use PrivateChannel)"
)


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
    except (ValueError, binascii.Error, RecursionError):  # a crafted token nests deeply
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


def wildcard_free(channel: str) -> bool:
    """Whether ``channel``, as a capability resource, grants that one channel only.

    Ably reads ``*`` as a wildcard and a leading ``[...]`` as a qualifier; the
    driver also refuses ``[`` or ``:`` right after the ``private:`` /
    ``presence:`` prefix, where a namespace or qualifier would begin.
    """
    if "*" in channel or channel.startswith(("[", ":")):
        return False
    for prefix in PREFIXES.values():
        if channel.startswith(prefix):
            return not channel[len(prefix) :].startswith(("[", ":"))
    return True


def _client_operations(resource: str) -> tuple[str, ...] | None:
    """What a client token of this driver may grant on ``resource`` (``None``: nothing)."""
    if resource == PUBLIC_RESOURCE:
        return PUBLIC_OPERATIONS
    if not wildcard_free(resource):
        return None
    for kind, prefix in PREFIXES.items():
        if resource.startswith(prefix):
            return OPERATIONS[kind]
    return None


class Revocations:
    """When this process last revoked the tokens of each (key name, client id).

    ``terminate_user`` notes it; a held token issued at or before it is not
    carried over. Only this process's revocations are known here: the channel
    rules, run again for every carried channel, are what hold across processes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at: dict[tuple[str, str], float] = {}

    def note(self, key: str, client_id: str) -> None:
        now = time.time()
        with self._lock:
            # every token issued before a note older than the longest lifetime has expired
            stale = now - MAX_TOKEN_TTL
            for old in [pair for pair, seen in self._at.items() if seen < stale]:
                del self._at[old]
            self._at[(key, client_id)] = now

    def at(self, key: str, client_id: str) -> float | None:
        with self._lock:
            return self._at.get((key, client_id))

    def clear(self) -> None:
        with self._lock:
            self._at.clear()


REVOKED = Revocations()


def held_channels(
    key: Secret, held: Secret, client_id: str, *, now: float | None = None
) -> list[str]:
    """The channels of the client's token ``held`` for the rules to decide again, or none.

    Only a token this key signed for ``client_id``, unexpired and not revoked
    here, counts, and only whole: with one resource the driver never signs for
    a client (a wildcard, an operation clients never get, the publishing
    token's ``{"*": ["*"]}``), nothing of it is carried.
    """
    # revealed as a temporary: only decode_jwt's frame, which catches what it raises, holds it
    claims = decode_jwt(key, held.reveal(), now=now)
    if claims is None or claims.get("x-ably-clientId") != client_id:
        return []
    issued = claims.get("iat")
    if not isinstance(issued, (int, float)) or isinstance(issued, bool):
        return []
    revoked = REVOKED.at(key_name(key), client_id)
    if revoked is not None and issued <= revoked:
        return []
    raw = claims.get("x-ably-capability")
    try:
        capability = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return []
    if not isinstance(capability, dict):
        return []
    names: list[str] = []
    for resource, operations in capability.items():
        granted = _client_operations(resource)
        if (
            granted is None
            or not isinstance(operations, list)
            or not all(isinstance(op, str) and op in granted for op in operations)
        ):
            return []
        if resource != PUBLIC_RESOURCE:
            names.append(resource)
    return names


def sign_channel(
    key: Secret, request: AuthRequest, *, ttl: int, now: float | None = None
) -> dict[str, Any]:
    """The token answer for an authorized subscription, valid ``ttl`` seconds.

    :class:`NotSupportedError` for an encrypted channel, :class:`BadRequestError`
    for a name Ably would read as a wildcard, :class:`InputError` for presence
    info Ably would refuse.
    """
    if request.kind not in OPERATIONS or request.channel is None:
        raise NotSupportedError(DRIVER, f"{request.kind} channels", NO_ENCRYPTED)
    if not wildcard_free(request.channel):  # the channel pattern refuses it first; kept here
        raise BadRequestError(
            f"{DRIVER}: {request.channel[:80]!r} would be a wildcard in an Ably capability"
        )
    info: dict[str, Any] | None = None
    if request.kind == "presence":
        assert request.member is not None  # the core's rule check guarantees it
        info = dict(request.member)
        try:
            size = len(_compact(info).encode())
        except (TypeError, ValueError):
            raise InputError(
                f"{DRIVER}: the presence member info for {request.channel!r} is not JSON"
            ) from None
        if size > MAX_MEMBER_INFO_BYTES:
            raise InputError(
                f"{DRIVER}: the presence member info for {request.channel!r} is {size} bytes; "
                f"Ably accepts at most {MAX_MEMBER_INFO_BYTES}"
            )
        client_id: str | None = request.member_id
        if client_id == "*":
            raise InputError(
                f"{DRIVER}: a presence member id of '*' would be Ably's wildcard client id"
            )
    else:
        client_id = user_client_id(request.user)
    own = {request.channel: list(OPERATIONS[request.kind])}
    capability = _capability(own, request.carried, client_id)
    return _answer(key, capability, client_id, time.time() if now is None else now, ttl, info)


def sign_connection(
    key: Secret, request: AuthRequest, *, ttl: int, now: float | None = None
) -> dict[str, Any]:
    """A token to connect with before any private channel: ``public:*`` and the carried channels.

    What Ably's Echo connector asks for first (no channel name), and again to
    renew. The user's ``id`` is its client id; a guest's token has none.
    """
    client_id = user_client_id(request.user) if request.user is not None else None
    capability = _capability({}, request.carried, client_id)
    return _answer(key, capability, client_id, time.time() if now is None else now, ttl, None)


def _capability(
    own: Mapping[str, list[str]], carried: Sequence[AuthRequest], client_id: str | None
) -> dict[str, list[str]]:
    """``public:*``, ``own`` and the carried channels that fit (count and size).

    Built from the requests only (what the rules allowed just now), never
    from the held token's capability.
    """
    capability = {PUBLIC_RESOURCE: list(PUBLIC_OPERATIONS), **own}
    size = len(canonical_capability(capability).encode())
    for held in carried:
        channel = held.channel
        if (
            held.kind not in OPERATIONS
            or channel is None
            or channel in capability
            or not wildcard_free(channel)
        ):
            continue
        if held.kind == "presence" and held.member_id != client_id:
            continue  # a token has one client id, the one presence is entered with
        operations = list(OPERATIONS[held.kind])
        size += len(_COMPACT.encode({channel: operations}).encode())
        if len(capability) >= MAX_CHANNELS_PER_TOKEN or size > MAX_CAPABILITY_BYTES:
            break
        capability[channel] = operations
    return capability


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
