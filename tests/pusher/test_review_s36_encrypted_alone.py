"""An encrypted channel among others in one part of a ``send()`` is refused, not sent in clear.

The core's ``plan()`` sends each encrypted channel alone (its own key and nonce), so only code
calling ``driver.send()`` itself can give one among others; before, its data then went out as
plain text in a multi-channel ``/events`` request. Nothing here reaches a network: the refusal
comes before any request (the driver points at a closed port, so a request would fail
otherwise, as ``unavailable``)."""

from __future__ import annotations

import base64

import pytest

from broadcasting.plugin import Batch, Message, Part, PublishError
from broadcasting_pusher import BroadcastPusherDriver
from broadcasting_pusher._api import request_for

APP = {"app_id": "4242", "key": "the-key", "secret": "the-secret", "host": "127.0.0.1"}
MASTER_KEY = base64.b64encode(bytes(range(32))).decode()


def batch(*channels: str) -> Batch:
    message = Message(channels, "e", "secret text", "secret text", "id-1")
    return Batch((Part(message, message.channels),))


def test_an_encrypted_channel_among_others_is_refused_before_any_request() -> None:
    driver = BroadcastPusherDriver.from_config(
        {**APP, "port": 9, "ssl": False, "encryption_master_key_base64": MASTER_KEY}
    )
    try:
        for channels in (("orders", "private-encrypted-a"), ("private-encrypted-a", "b")):
            with pytest.raises(PublishError, match="must be sent alone") as info:
                request_for(driver._client, batch(*channels), driver._master_key)
            assert info.value.kind == "invalid"
            with pytest.raises(PublishError, match="must be sent alone"):
                driver.send(batch(*channels))
        # channels in clear share a request as before; one encrypted channel alone is sealed
        plain = request_for(driver._client, batch("a", "b"), driver._master_key)
        assert b"secret text" in plain.body
        sealed = request_for(driver._client, batch("private-encrypted-a"), driver._master_key)
        assert b"secret text" not in sealed.body
    finally:
        driver.close()
