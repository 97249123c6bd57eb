"""The master key is checked as the pusher SDK checks it, when the driver is configured, and
an SDK client that cannot be made leaves neither the master key nor the app secret in its
error, in what it chains, or in the locals of any frame its traceback keeps.

No server is needed. The pusher SDK takes only canonical base64 (its ``is_base64``: the
decoded bytes encode back to the same text); a key whose last character sets padding bits
decodes to the same 32 bytes with ``validate=True`` but the SDK refuses it.

Once the driver has checked its settings the SDK has nothing left to refuse, so the SDK's own
refusal is reached by giving the driver settings it did not check (a ``PusherSettings`` made
in code, as the driver's constructor takes one, or one replaced after the driver was made):
the SDK's real code runs and raises; nothing is mocked.
"""

from __future__ import annotations

import base64
import dataclasses
from decimal import Decimal
from typing import Any

import pytest
from http_proxy import ConnectAttempts
from secret_scan import chain, showing
from soketi_server import HOST

from broadcasting import Broadcast, ConfigurationError
from broadcasting.plugin import Secret
from broadcasting_pusher import parse_settings
from broadcasting_pusher._driver import BroadcastPusherDriver

SECRET = "app-secret-never-shown-5e8a"
KEY_BYTES = bytes(range(32))
CANONICAL = base64.b64encode(KEY_BYTES).decode()  # ends "Hx8="
#: The same 32 bytes, its last character with a padding bit set: "Hx9=".
NON_CANONICAL = CANONICAL[:-2] + chr(ord(CANONICAL[-2]) + 1) + "="


def options(**changes: Any) -> dict[str, Any]:
    return {"app_id": "1", "key": "k", "secret": SECRET, "ssl": False, **changes}


def leaks(error: BaseException) -> list[str]:
    """Where the master key (either spelling) or the app secret shows in ``error``'s graph."""
    secrets = {NON_CANONICAL: "master key", CANONICAL: "master key", SECRET: "secret"}
    return [
        f"{name}: {where}"
        for secret, name in secrets.items()
        for where in showing(error, secret, skip=__file__)
    ]


@pytest.mark.parametrize("key", [NON_CANONICAL, Secret(NON_CANONICAL)], ids=["text", "Secret"])
def test_a_non_canonical_key_is_refused_when_the_driver_is_configured(
    key: Any, refusing: ConnectAttempts
) -> None:
    # the same 32 bytes as a canonical key, even to a strict decoder
    assert base64.b64decode(NON_CANONICAL, validate=True) == KEY_BYTES
    assert parse_settings(options(encryption_master_key_base64=CANONICAL)).encryption_master_key
    config = options(host=HOST, port=refusing.port, encryption_master_key_base64=key)
    with pytest.raises(ConfigurationError) as info:
        parse_settings(config)
    assert info.value.key == "encryption_master_key_base64"
    assert "canonical" in str(info.value)
    broadcast = Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": config}})
    with broadcast:
        with pytest.raises(ConfigurationError) as info:
            broadcast.driver()
        with pytest.raises(ConfigurationError):
            broadcast.channel("private-encrypted-orders", "x")
    error = info.value
    assert (error.driver, error.key) == ("pusher", "encryption_master_key_base64")
    assert leaks(error) == []
    assert refusing.count == 0, "refused before any request"


@pytest.mark.parametrize("client", ["pusher", "apusher"])
@pytest.mark.parametrize(
    "refused",
    ["a non-canonical master key", "a timeout the SDK does not take"],
)
def test_an_sdk_client_that_cannot_be_made_keeps_no_secret(client: str, refused: str) -> None:
    checked = parse_settings(options(encryption_master_key_base64=CANONICAL))
    if refused == "a non-canonical master key":
        # settings made in code, with a key the driver's check would have refused
        unchecked = dataclasses.replace(checked, encryption_master_key=Secret(NON_CANONICAL))
        driver = BroadcastPusherDriver(unchecked)
    else:
        # the canonical key reaches the SDK, which refuses another setting
        driver = BroadcastPusherDriver(checked)
        driver.settings = dataclasses.replace(checked, timeout=Decimal(5))  # type: ignore[arg-type]
    try:
        with pytest.raises(ConfigurationError, match="the pusher SDK refused it") as info:
            getattr(driver, client)
    finally:
        driver.close()
    error = info.value
    assert leaks(error) == []
    assert error.__cause__ is None and error.__context__ is None, "the SDK's error not chained"
    assert [type(e).__name__ for e in chain(error)] == ["ConfigurationError"]
