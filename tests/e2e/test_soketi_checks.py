"""Controls: soketi really checks what our driver signs, so the client proofs mean something.

A raw Pusher-protocol WebSocket (tests/servers/pusher_ws.py) presents
signatures straight to soketi: the driver's own are accepted, and the same
signature for another connection, tampered presence data or a wrong sign-in
are refused. On an encrypted channel soketi only ever carries ciphertext,
which opens with the ``shared_secret`` our endpoint hands out.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from pusher_ws import PusherSubscriber
from soketi_server import SoketiServer

from broadcasting import Broadcast

ANN = {"id": "1", "name": "Ann"}


class Ann:
    id = 1
    name = "Ann"


async def test_soketi_accepts_our_private_signature_and_refuses_it_on_another_connection(
    soketi: SoketiServer, broadcast: Broadcast
) -> None:
    async with (
        PusherSubscriber(soketi.ws_url()) as first,
        PusherSubscriber(soketi.ws_url()) as second,
    ):
        body = await broadcast.aauthorize(
            Ann(), socket_id=first.socket_id, channel_name="private-orders.1"
        )
        await first.subscribe("private-orders.1", auth={"private-orders.1": body["auth"]})
        with pytest.raises(RuntimeError, match="subscription failed"):
            await second.subscribe("private-orders.1", auth={"private-orders.1": body["auth"]})


async def test_soketi_refuses_presence_data_changed_after_signing(
    soketi: SoketiServer, broadcast: Broadcast
) -> None:
    channel = "presence-chat.controls"
    async with websockets.connect(soketi.ws_url()) as ws:
        socket_id = json.loads(json.loads(await ws.recv())["data"])["socket_id"]
        body = await broadcast.aauthorize(Ann(), socket_id=socket_id, channel_name=channel)
        forged = body["channel_data"].replace('"Ann"', '"Eve"')
        assert forged != body["channel_data"]
        for data, expected in ((forged, "error"), (body["channel_data"], "succeeded")):
            frame = {"channel": channel, "auth": body["auth"], "channel_data": data}
            await ws.send(json.dumps({"event": "pusher:subscribe", "data": frame}))
            answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert expected in answer["event"], answer


async def test_soketi_signs_in_our_user_and_refuses_a_wrong_signature(
    soketi: SoketiServer, broadcast: Broadcast
) -> None:
    for tamper, expected in ((False, "pusher:signin_success"), (True, "pusher:error")):
        async with websockets.connect(soketi.ws_url()) as ws:
            socket_id = json.loads(json.loads(await ws.recv())["data"])["socket_id"]
            body = await broadcast.aauthenticate_user(socket_id, ANN)
            auth = body["auth"][:-4] + "0000" if tamper else body["auth"]
            frame = {"auth": auth, "user_data": body["user_data"]}
            await ws.send(json.dumps({"event": "pusher:signin", "data": frame}))
            answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert answer["event"] == expected, answer


async def test_soketi_carries_only_ciphertext_that_opens_with_our_shared_secret(
    soketi: SoketiServer, broadcast: Broadcast
) -> None:
    channel = "private-encrypted-vault.controls"
    async with PusherSubscriber(soketi.ws_url()) as raw:
        body = await broadcast.aauthorize(Ann(), socket_id=raw.socket_id, channel_name=channel)
        await raw.subscribe(channel, auth={channel: body["auth"]})
        await broadcast.achannel(channel, {"plans": "under the floor"}, "opened")
        event = await raw.next_event(timeout=10)
        assert "under the floor" not in event.data
        assert set(json.loads(event.data)) == {"nonce", "ciphertext"}
        assert json.loads(event.decrypt(body["shared_secret"])) == {"plans": "under the floor"}
