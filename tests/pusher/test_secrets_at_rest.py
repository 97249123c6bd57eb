"""No object the driver keeps holds the app secret or the encryption key as text.

Debuggers, ``vars()`` and error trackers (which record frame locals, and the
objects those reach) show whatever the driver's object graph holds. The walk
below follows every attribute, slot, mapping and sequence reachable from the
connected driver, after it has published (sync and async, an encrypted
channel too), checked its health and queried channels: the SDK client it uses
included (the walk is the conformance kit's, which every driver's
``test_secrets_never_shown`` runs too). Only ``driver.pusher`` (the raw SDK,
handed out on request) is outside it, as documented.
"""

from __future__ import annotations

import asyncio
import base64
import os

from soketi_server import APP_SECRET, SoketiServer

from broadcasting import Broadcast
from broadcasting.testing._suite import holders

MASTER_KEY = os.urandom(32)
MASTER_B64 = base64.b64encode(MASTER_KEY).decode()


def test_the_driver_holds_no_secret_as_text_after_using_every_path(soketi: SoketiServer) -> None:
    options = soketi.driver_options(encryption_master_key_base64=MASTER_B64, retries=0)
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}) as broadcast:
        driver = broadcast.driver().driver
        broadcast.channel("orders", {"id": 1}, "shipped")
        broadcast.channel("private-encrypted-orders", {"id": 2}, "shipped")
        asyncio.run(broadcast.achannel(["orders", "audit"], {"id": 3}, "shipped"))
        assert driver.check().status == "ok"
        broadcast.occupied_channels()
        broadcast.rule("orders")(lambda user: True)
        broadcast.authorize("u", socket_id="1.2", channel_name="private-encrypted-orders")
        held = holders(driver, [APP_SECRET, APP_SECRET.encode(), MASTER_B64, MASTER_KEY])
        assert held == [], f"the secret is held as text at {held[:5]}"
        # the walk does find what is there: the raw SDK, once asked for, holds it
        driver.pusher  # noqa: B018
        assert holders(driver, [APP_SECRET]), "the walk missed the raw SDK's plain secret"
