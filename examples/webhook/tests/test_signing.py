"""The signature scheme, and verify_signature as a receiver uses it."""

from __future__ import annotations

import email.message
import json

import pytest
from broadcasting.plugin import Secret

from broadcasting_webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    InvalidSignature,
    sign,
    verify_signature,
)

KEY = "whsec-known-answer-secret"
BODY = b'{"id":"abc","event":"e"}'
NOW = 1_700_000_000


def _headers(body: bytes = BODY, timestamp: int = NOW, key: str = KEY) -> dict[str, str]:
    return {SIGNATURE_HEADER: sign(key, body, timestamp), TIMESTAMP_HEADER: str(timestamp)}


def test_known_answer() -> None:
    """Computed independently: printf '1700000000.<body>' | openssl dgst -sha256 -hmac <key>."""
    expected = "e1b9c1a94348aa45dcb7ec9fd8c406c926939ede8b1462c71b579a9f3de5ee39"
    assert sign(KEY, BODY, NOW) == f"sha256={expected}"
    assert sign(Secret(KEY), BODY, NOW) == f"sha256={expected}"


def test_a_good_request_is_verified_and_decoded() -> None:
    assert verify_signature(KEY, BODY, _headers(), now=NOW + 10) == {"id": "abc", "event": "e"}


def test_header_names_are_case_insensitive() -> None:
    lowered = {k.lower(): v for k, v in _headers().items()}
    assert verify_signature(Secret(KEY), BODY, lowered, now=NOW)["id"] == "abc"


def test_http_server_headers_work() -> None:
    """``http.server`` hands receivers an email.message.Message."""
    message = email.message.Message()
    for key, value in _headers().items():
        message[key] = value
    assert verify_signature(KEY, BODY, message, now=NOW)["event"] == "e"


@pytest.mark.parametrize(
    ("body", "headers", "reason"),
    [
        (BODY + b" ", _headers(), "does not match"),
        (BODY.replace(b"abc", b"abd"), _headers(), "does not match"),
        (BODY, _headers(key="whsec-some-other-secret"), "does not match"),
        (BODY, {**_headers(), TIMESTAMP_HEADER: str(NOW + 1)}, "does not match"),
        (BODY, {TIMESTAMP_HEADER: str(NOW)}, "missing"),
        (BODY, {SIGNATURE_HEADER: sign(KEY, BODY, NOW)}, "missing"),
        (BODY, {**_headers(), TIMESTAMP_HEADER: "yesterday"}, "not an integer"),
        (BODY, {**_headers(), SIGNATURE_HEADER: sign(KEY, BODY, NOW)[7:]}, "sha256="),
        (BODY, {**_headers(), SIGNATURE_HEADER: "sha256=ünïcode"}, "does not match"),
    ],
    ids=[
        "body-appended",
        "body-changed",
        "other-secret",
        "timestamp-changed",
        "no-signature",
        "no-timestamp",
        "bad-timestamp",
        "no-prefix",
        "non-ascii",
    ],
)
def test_tampering_is_refused(body: bytes, headers: dict[str, str], reason: str) -> None:
    with pytest.raises(InvalidSignature, match=reason):
        verify_signature(KEY, body, headers, now=NOW)


@pytest.mark.parametrize("skew", [-301, 301, 10_000])
def test_old_or_future_requests_are_refused(skew: int) -> None:
    """A correctly signed request replayed later (or from the future) is refused."""
    with pytest.raises(InvalidSignature, match="replay"):
        verify_signature(KEY, BODY, _headers(), now=NOW + skew)
    assert verify_signature(KEY, BODY, _headers(), now=NOW + skew, tolerance=abs(skew))


def test_signed_non_object_body_is_refused() -> None:
    body = json.dumps([1, 2]).encode()
    with pytest.raises(InvalidSignature, match="not a JSON object"):
        verify_signature(KEY, body, _headers(body), now=NOW)


def test_empty_secret_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        sign("", BODY, NOW)
