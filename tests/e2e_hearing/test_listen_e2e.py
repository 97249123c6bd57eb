"""The pusher driver's listener (what ``broadcasting listen`` runs) against soketi and pusher-js.

It speaks the Pusher WebSocket protocol itself, signing its presence and
encrypted subscriptions with the configured secret: it hears a pusher-js
user join and leave a presence channel (and shows in ``members()`` itself),
every publish of the library, and decrypts an encrypted channel's events
with the master key. Waits are on events; timeouts bound failures only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
from hearing_support import Start
from soketi_server import SoketiServer

from broadcasting import Broadcast, BroadcastError
from broadcasting.plugin import SUBSCRIBED, Heard
from broadcasting_pusher import _listen

pytestmark = pytest.mark.soketi

MASTER_KEY = base64.b64encode(bytes(range(40, 72))).decode()


async def next_heard(listener: AsyncIterator[Heard], timeout: float = 20) -> Heard:
    return await asyncio.wait_for(anext(listener), timeout)


async def test_the_listener_hears_joins_leaves_publishes_and_decrypts(
    soketi: SoketiServer, pusher_js: Start
) -> None:
    options = soketi.driver_options(encryption_master_key_base64=MASTER_KEY)
    room, secret_channel = "presence-room.listened", "private-encrypted-listened"
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}) as broadcast:
        listener = _listen.listen_channels(broadcast.driver().driver, [room, secret_channel, room])
        async with contextlib.aclosing(listener):
            ready = [await next_heard(listener), await next_heard(listener)]
            assert [(h.channel, h.event) for h in ready] == [
                (room, SUBSCRIBED),
                (secret_channel, SUBSCRIBED),
            ]
            (itself,) = await broadcast.amembers(room)
            assert itself.id.startswith("broadcasting-listen-")

            bob = await asyncio.to_thread(pusher_js, "2")
            bob.send({"cmd": "subscribe", "channel": room})
            joined = await next_heard(listener)
            assert (joined.channel, joined.event, joined.user_id) == (
                room,
                "pusher:member_added",
                "2",
            )
            assert json.loads(joined.data)["user_info"] == {"id": "2", "name": "Bob"}

            await broadcast.achannel([room], {"order": 1}, "shipped")
            await broadcast.achannel(secret_channel, {"card": "4242"}, "paid")
            shipped, paid = await next_heard(listener), await next_heard(listener)
            assert (shipped.channel, shipped.event, shipped.data) == (
                room,
                "shipped",
                '{"order":1}',
            )
            # soketi only relayed ciphertext; the listener decrypted it with the master key
            assert (paid.channel, paid.event, paid.data) == (
                secret_channel,
                "paid",
                '{"card":"4242"}',
            )

            bob.send({"cmd": "disconnect"})
            left = await next_heard(listener)
            assert (left.event, left.user_id) == ("pusher:member_removed", "2")
        # closed: it left the channel
        assert await broadcast.amembers(room) == []


async def test_a_refused_subscription_is_one_clear_error(soketi: SoketiServer) -> None:
    options = soketi.driver_options(secret="not-the-secret")
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}) as broadcast:
        listener = _listen.listen_channels(broadcast.driver().driver, ["private-refused"])
        with pytest.raises(BroadcastError, match="refused") as error:
            await next_heard(listener)
        assert "not-the-secret" not in str(error.value)
        assert _listen.ws_url(broadcast.driver().driver.settings).startswith(
            f"ws://127.0.0.1:{soketi.port}/app/{soketi.key}?protocol=7"
        )


def test_the_cluster_websocket_host_is_derived_from_the_api_host() -> None:
    options = {"app_id": "1", "key": "app-key", "secret": "s", "cluster": "eu"}
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}) as broadcast:
        url = _listen.ws_url(broadcast.driver().driver.settings)
    assert url.startswith("wss://ws-eu.pusher.com:443/app/app-key?protocol=7&client=")
