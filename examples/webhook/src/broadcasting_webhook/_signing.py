"""Signing webhook requests, and verifying them on the receiving side.

The signature is HMAC-SHA256, keyed with the shared secret, over the bytes
``<timestamp>.<raw body>`` where ``<timestamp>`` is the ``X-Broadcasting-Timestamp``
header (Unix seconds). Signing the timestamp together with the body lets a
receiver refuse replays of an old request without parsing anything first.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from email.message import Message as HeaderMessage
from typing import Any, Union

from broadcasting.plugin import Secret

SIGNATURE_HEADER = "X-Broadcasting-Signature"
TIMESTAMP_HEADER = "X-Broadcasting-Timestamp"
ID_HEADER = "X-Broadcasting-Id"
#: How far (seconds) a request's timestamp may be from the receiver's clock.
DEFAULT_TOLERANCE = 300

#: Request headers as receivers get them: a mapping (any letter case) or
#: ``http.server``'s ``self.headers``.
Headers = Union[Mapping[str, str], HeaderMessage]


class InvalidSignature(ValueError):
    """A webhook request is not signed with the shared secret, or is too old."""


def _key(secret: str | Secret) -> bytes:
    value = secret.reveal() if isinstance(secret, Secret) else secret
    if not value:
        raise ValueError("the webhook secret must not be empty")
    return value.encode("utf-8")


def sign(secret: str | Secret, body: bytes, timestamp: int) -> str:
    """The ``X-Broadcasting-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(_key(secret), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _header(headers: Headers, name: str) -> str | None:
    if isinstance(headers, HeaderMessage):
        value = headers.get(name)
        return None if value is None else str(value)
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def verify_signature(
    secret: str | Secret,
    body: bytes,
    headers: Headers,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> dict[str, Any]:
    """Check a webhook request and return its decoded JSON body.

    ``body`` is the raw request body (bytes, exactly as received); ``headers``
    the request headers. Raises :class:`InvalidSignature` if the signature is
    missing or wrong, or if the timestamp is more than ``tolerance`` seconds
    away from ``now`` (default: the current time). Only a verified body is
    parsed, so a receiver never handles unauthenticated data.
    """
    signature = _header(headers, SIGNATURE_HEADER)
    stamp = _header(headers, TIMESTAMP_HEADER)
    if not signature or not stamp:
        raise InvalidSignature(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise InvalidSignature(f"{TIMESTAMP_HEADER} is not an integer") from None
    if not signature.startswith("sha256="):
        raise InvalidSignature(f"{SIGNATURE_HEADER} must start with 'sha256='")
    expected = sign(secret, body, timestamp)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii", "replace")):
        raise InvalidSignature("the signature does not match the body and the shared secret")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise InvalidSignature(
            f"the request is {abs(current - timestamp):.0f}s away from now "
            f"(tolerance {tolerance:.0f}s): a replay, or a clock out of sync"
        )
    decoded = json.loads(body)
    if not isinstance(decoded, dict):
        raise InvalidSignature("the signed body is not a JSON object")
    return decoded
