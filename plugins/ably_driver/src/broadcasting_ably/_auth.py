"""Subscription tokens: JWTs signed locally with the API key (what they grant: the README)."""

from __future__ import annotations

import base64
import hmac
import json
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

from broadcasting import BadRequestError, InputError, NotSupportedError
from broadcasting.plugin import AuthRequest, ChannelKind, Secret, in_forked_child
from broadcasting_ably._settings import DRIVER, MAX_TOKEN_TTL

#: Private and presence channels as Ably's Laravel broadcaster and Echo connector name them.
PREFIXES: Mapping[ChannelKind, str] = {"private": "private:", "presence": "presence:"}
#: What a token grants on its channel, by kind; nobody may publish (the server does).
OPERATIONS: Mapping[str, tuple[str, ...]] = {
    "private": ("history", "subscribe"),
    "presence": ("history", "presence", "subscribe"),
}
#: Every client token grants it: Ably's Echo connector joins ``public:<name>`` without asking.
PUBLIC_RESOURCE = "public:*"
PUBLIC_OPERATIONS = ("history", "subscribe")
MAX_MEMBER_INFO_BYTES = 64 * 1024  #: Ably refuses more (the smallest plans' message size limit)
#: Carried channels past these are left out (never the requested one): tokens fit 8 KiB bodies.
MAX_CHANNELS_PER_TOKEN = 100
MAX_CAPABILITY_BYTES = 4096

_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  #: keys in given order


def unsupported(kind: str) -> NotSupportedError:
    hint = "Ably encrypts on the client with cipher keys the application hands out itself; "
    hint += "there is no server-signed shared secret (use PrivateChannel)"
    return NotSupportedError(DRIVER, f"{kind} channels", hint)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def canonical_capability(capability: Mapping[str, Any]) -> str:
    """The capability as the JSON string Ably expects: sorted resources and operations."""
    return _COMPACT.encode({name: sorted(set(capability[name])) for name in sorted(capability)})


def key_name(key: Secret) -> str:
    """The public part of an Ably key (``appId.keyId``)."""
    return key.reveal().partition(":")[0]


def mac(key: Secret, data: bytes) -> bytes:
    """HMAC-SHA256 of ``data`` with the key's secret."""
    # revealed as a temporary: no frame that may raise (and reach an error tracker) holds it
    return hmac.digest(key.reveal().partition(":")[2].encode(), data, "sha256")


def encode_jwt(key: Secret, claims: Mapping[str, Any]) -> str:
    """An HS256 JWT with ``claims``, signed with the key's secret, naming the key in ``kid``."""
    header = _COMPACT.encode({"alg": "HS256", "kid": key_name(key), "typ": "JWT"})
    signing_input = f"{_b64url(header.encode())}.{_b64url(_COMPACT.encode(claims).encode())}"
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
    except (ValueError, RecursionError):  # binascii's errors too; a crafted token nests deeply
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
    return claims if _number(exp) and exp > time.time() else None


def token_details(
    key: Secret, capability: Mapping[str, Any], client_id: str | None, ttl: int
) -> dict[str, Any]:
    """A JWT granting ``capability`` for ``ttl`` seconds, in Ably's ``TokenDetails`` shape."""
    iat = int(time.time())
    exp = iat + ttl
    text = canonical_capability(capability)
    claims: dict[str, Any] = {"iat": iat, "exp": exp, "x-ably-capability": text}
    details: dict[str, Any] = {"issued": iat * 1000, "expires": exp * 1000, "capability": text}
    if client_id is not None:
        claims["x-ably-clientId"] = details["clientId"] = client_id
    return {"token": encode_jwt(key, claims), **details}


def user_client_id(user: Any) -> str | None:
    """A mapping's ``"id"``, else ``id``, ``pk`` or ``get_id()``, as text; never ``"*"``."""
    if isinstance(user, Mapping):
        ident = user.get("id")
    else:
        found = (getattr(user, name, None) for name in ("id", "pk"))
        ident = next((value for value in found if value is not None and not callable(value)), None)
        if ident is None and callable(get_id := getattr(user, "get_id", None)):
            ident = get_id()
    if isinstance(ident, bool) or not isinstance(ident, (str, int, uuid.UUID)):
        return None
    return text if (text := str(ident)) and text != "*" else None


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
    kinds = [kind for kind, prefix in PREFIXES.items() if resource.startswith(prefix)]
    return OPERATIONS[kinds[0]] if kinds and wildcard_free(resource) else None


class Revocations:
    """When this process last revoked the tokens of each (key name, client id): a held token
    issued at or before it is not carried over (across processes, the channel rules hold)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at: dict[tuple[str, str], float] = {}

    def note(self, key: str, client_id: str) -> None:
        now = time.time()
        with self._lock:
            # every token issued before a note older than the longest lifetime has expired
            self._at = {pair: t for pair, t in self._at.items() if t >= now - MAX_TOKEN_TTL}
            self._at[(key, client_id)] = now

    def at(self, key: str, client_id: str) -> float | None:
        with self._lock:
            return self._at.get((key, client_id))

    def clear(self) -> None:
        with self._lock:
            self._at.clear()


REVOKED = Revocations()


@in_forked_child
def _unlock_in_child() -> None:
    # a parent's thread may have held the lock at the fork: what it guards is kept
    REVOKED._lock = threading.Lock()


def held_channels(key: Secret, request: AuthRequest) -> list[str]:
    """The channels of the token the user holds (``extra["token"]``) for the rules to decide again.

    Only an unexpired, unrevoked token this key signed for the user's client id, and only whole:
    one resource the driver never signs for a client (a wildcard, an operation clients never
    get, the publishing token's ``{"*": ["*"]}``) and nothing of it is carried.
    """
    held, client_id = request.extra.get("token"), user_client_id(request.user)
    if not isinstance(held, Secret) or not held or client_id is None:
        return []
    # revealed as a temporary: only decode_jwt's frame, which catches what it raises, holds it
    claims = decode_jwt(key, held.reveal())
    if claims is None or claims.get("x-ably-clientId") != client_id:
        return []
    issued = claims.get("iat")
    revoked = REVOKED.at(key_name(key), client_id)
    if not _number(issued) or (revoked is not None and issued <= revoked):
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
        if granted is None or not isinstance(operations, list):
            return []
        if not all(isinstance(op, str) and op in granted for op in operations):
            return []
        if resource != PUBLIC_RESOURCE:
            names.append(resource)
    return names


def sign_channel(key: Secret, request: AuthRequest, *, ttl: int) -> dict[str, Any]:
    if request.kind not in OPERATIONS or request.channel is None:
        raise unsupported(request.kind)
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
    where = f"{DRIVER}: the presence member info for {request.channel!r}"
    try:
        text = json.dumps(info, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        size = len(text.encode())  # a lone surrogate: a UnicodeEncodeError (the core refuses it)
    except (TypeError, ValueError):
        raise InputError(f"{where} is not JSON") from None
    if size > MAX_MEMBER_INFO_BYTES:
        raise InputError(f"{where} is {size} bytes; Ably accepts at most {MAX_MEMBER_INFO_BYTES}")
    if (member_id := request.member_id) == "*":
        raise InputError(f"{DRIVER}: a presence member id '*' would be Ably's wildcard client id")
    capability = _capability(own, request.carried, member_id)
    return {**token_details(key, capability, member_id, ttl), "info": info}


def sign_connection(key: Secret, request: AuthRequest, *, ttl: int) -> dict[str, Any]:
    client_id = user_client_id(request.user)  # a guest's token has none
    return token_details(key, _capability({}, request.carried, client_id), client_id, ttl)


def _capability(
    own: Mapping[str, list[str]], carried: Sequence[AuthRequest], client_id: str | None
) -> dict[str, list[str]]:
    """``public:*``, ``own`` and the carried channels that fit (count and size): from the
    requests the rules allowed just now, never from the held token's capability."""
    capability = {PUBLIC_RESOURCE: list(PUBLIC_OPERATIONS), **own}
    size = len(canonical_capability(capability).encode())
    for held in carried:
        channel = held.channel
        if held.kind not in OPERATIONS or channel is None or channel in capability:
            continue
        # a token has one client id, the one presence is entered with
        if not wildcard_free(channel) or (held.kind == "presence" and held.member_id != client_id):
            continue
        operations = list(OPERATIONS[held.kind])
        size += len(_COMPACT.encode({channel: operations}).encode())
        if len(capability) >= MAX_CHANNELS_PER_TOKEN or size > MAX_CAPABILITY_BYTES:
            break
        capability[channel] = operations
    return capability
