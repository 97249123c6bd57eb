"""Authorizing subscriptions on Ably: a JWT per channel, signed locally with the API key.

What a token grants and what a client's held token may carry over: the package README.
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
from typing import Any, TypeGuard

from broadcasting import BadRequestError, InputError, NotSupportedError
from broadcasting.plugin import AuthRequest, ChannelKind, Secret
from broadcasting_ably._settings import MAX_TOKEN_TTL

DRIVER = "ably"

#: Private and presence channels as Ably's Laravel broadcaster and Echo connector name them.
PREFIXES: Mapping[ChannelKind, str] = {"private": "private:", "presence": "presence:"}
#: What a token grants on its channel, by kind; nobody may publish (the server does).
OPERATIONS: Mapping[str, tuple[str, ...]] = {
    "private": ("history", "subscribe"),
    "presence": ("history", "presence", "subscribe"),
}
#: Every client token's grant: Ably's Echo connector subscribes ``Echo.channel("orders")``
#: to ``public:orders`` without asking.
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

#: JSON without spaces, keys in the order given.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@functools.lru_cache(maxsize=64)
def _jwt_header(key_name: str) -> str:
    return _b64url(_COMPACT.encode({"alg": "HS256", "kid": key_name, "typ": "JWT"}).encode())


def canonical_capability(capability: Mapping[str, Any]) -> str:
    """The capability as the JSON string Ably expects: sorted resources and operations."""
    return _COMPACT.encode({name: sorted(set(capability[name])) for name in sorted(capability)})


def key_name(key: Secret) -> str:
    """The public part of an Ably key (``appId.keyId``)."""
    return key.reveal().partition(":")[0]


def mac(key: Secret, data: bytes) -> bytes:
    """HMAC-SHA256 of ``data`` with the key's secret."""
    # revealed here only, as a temporary: no frame that may raise (and so end up in a
    # traceback an error tracker records) holds it
    return hmac.digest(key.reveal().partition(":")[2].encode(), data, "sha256")


def encode_jwt(key: Secret, claims: Mapping[str, Any]) -> str:
    """An HS256 JWT with ``claims``, signed with the key's secret, naming the key in ``kid``."""
    signing_input = f"{_jwt_header(key_name(key))}.{_b64url(_COMPACT.encode(claims).encode())}"
    return f"{signing_input}.{_b64url(mac(key, signing_input.encode('ascii')))}"


def decode_jwt(key: Secret, token: str) -> dict[str, Any] | None:
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
    if (
        not isinstance(header, dict)
        or not isinstance(claims, dict)
        or header.get("alg") != "HS256"
        or header.get("kid") != key_name(key)
        or not hmac.compare_digest(mac(key, f"{head}.{body}".encode("ascii")), given)
    ):
        return None
    exp = claims.get("exp")
    if not _number(exp) or exp <= time.time():
        return None
    return claims


def token_details(
    key: Secret, capability: Mapping[str, Any], client_id: str | None, ttl: int
) -> dict[str, Any]:
    """A JWT granting ``capability`` for ``ttl`` seconds, in Ably's ``TokenDetails`` shape."""
    iat = int(time.time())
    text = canonical_capability(capability)
    claims: dict[str, Any] = {"iat": iat, "exp": iat + ttl, "x-ably-capability": text}
    if client_id is not None:
        claims["x-ably-clientId"] = client_id
    details = {
        "token": encode_jwt(key, claims),
        "issued": iat * 1000,
        "expires": (iat + ttl) * 1000,
        "capability": text,
    }
    if client_id is not None:
        details["clientId"] = client_id
    return details


def user_client_id(user: Any) -> str | None:
    """A client id from the user: a mapping's ``"id"``, else ``id``, ``pk`` or ``get_id()``.

    A ``str``, ``int`` or ``UUID``, as text; never ``"*"`` (Ably's wildcard).
    """
    if isinstance(user, Mapping):
        ident = user.get("id")
    else:
        found = (getattr(user, name, None) for name in ("id", "pk"))
        ident = next((value for value in found if value is not None and not callable(value)), None)
        if ident is None and callable(get_id := getattr(user, "get_id", None)):
            ident = get_id()
    if isinstance(ident, bool) or not isinstance(ident, (str, int, uuid.UUID)):
        return None
    text = str(ident)
    return text if text and text != "*" else None


def wildcard_free(channel: str) -> bool:
    """Whether ``channel``, as a capability resource, grants that one channel only."""
    # Ably reads `*` as a wildcard and a leading `[...]` as a qualifier; `[` or `:` right
    # after the private:/presence: prefix is where a namespace or qualifier would begin
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

    A held token issued at or before it is not carried over. Other processes'
    revocations are not known here: the channel rules, run again for every
    carried channel, are what hold across processes.
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


def held_channels(key: Secret, held: Secret, client_id: str) -> list[str]:
    """The channels of the client's token ``held`` for the rules to decide again, or none.

    Only a token this key signed for ``client_id``, unexpired and not revoked here,
    counts, and only whole: with one resource the driver never signs for a client (a
    wildcard, an operation clients never get, the publishing token's ``{"*": ["*"]}``),
    nothing of it is carried.
    """
    # revealed as a temporary: only decode_jwt's frame, which catches what it raises, holds it
    claims = decode_jwt(key, held.reveal())
    if claims is None or claims.get("x-ably-clientId") != client_id:
        return []
    issued = claims.get("iat")
    if not _number(issued):
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


def sign_channel(key: Secret, request: AuthRequest, *, ttl: int) -> dict[str, Any]:
    if request.kind not in OPERATIONS or request.channel is None:
        raise NotSupportedError(DRIVER, f"{request.kind} channels", NO_ENCRYPTED)
    if not wildcard_free(request.channel):  # the channel pattern refuses it first; kept here
        raise BadRequestError(
            f"{DRIVER}: {request.channel[:80]!r} would be a wildcard in an Ably capability"
        )
    own = {request.channel: list(OPERATIONS[request.kind])}
    if request.kind != "presence":
        client_id = user_client_id(request.user)
        return token_details(key, _capability(own, request.carried, client_id), client_id, ttl)
    assert request.member is not None  # the core's rule check guarantees it
    info = dict(request.member)
    try:
        text = json.dumps(info, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        raise InputError(
            f"{DRIVER}: the presence member info for {request.channel!r} is not JSON"
        ) from None
    if (size := len(text.encode())) > MAX_MEMBER_INFO_BYTES:
        raise InputError(
            f"{DRIVER}: the presence member info for {request.channel!r} is {size} bytes; "
            f"Ably accepts at most {MAX_MEMBER_INFO_BYTES}"
        )
    member_id = request.member_id
    if member_id == "*":
        raise InputError(
            f"{DRIVER}: a presence member id of '*' would be Ably's wildcard client id"
        )
    capability = _capability(own, request.carried, member_id)
    return {**token_details(key, capability, member_id, ttl), "info": info}


def sign_connection(key: Secret, request: AuthRequest, *, ttl: int) -> dict[str, Any]:
    client_id = user_client_id(request.user)  # a guest's token has none
    return token_details(key, _capability({}, request.carried, client_id), client_id, ttl)


def _capability(
    own: Mapping[str, list[str]], carried: Sequence[AuthRequest], client_id: str | None
) -> dict[str, list[str]]:
    """``public:*``, ``own`` and the carried channels that fit (count and size).

    Built from the requests only (what the rules allowed just now), never from the held
    token's capability.
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
