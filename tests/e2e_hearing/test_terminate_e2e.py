"""``terminate_user`` against pusher-js users signed in through our ``/broadcasting/user-auth``.

pusher-js (Node) signs in (``pusher.signin()``) through the library's
endpoint under uvicorn; soketi checks the signature. ``terminate_user`` then
makes soketi close every connection of that user with Pusher's error 4009
("You got disconnected by the app"), after which pusher-js does not
reconnect, while another user's connection stays as it was. Waits are on the lines pusher-js prints.
"""

from __future__ import annotations

import asyncio

import pytest
from hearing_support import Start
from node_clients import NodeClient

from broadcasting import Broadcast

pytestmark = pytest.mark.soketi


def signed_in(client: NodeClient, user: str) -> None:
    client.send({"cmd": "signin"})
    line = client.expect("signed_in")
    assert line["user_data"]["id"] == user


@pytest.mark.parametrize("path", ["sync", "async"])
async def test_terminate_user_disconnects_every_connection_of_that_user_only(
    pusher_js: Start, broadcast: Broadcast, path: str
) -> None:
    ann_phone, ann_laptop, bob = pusher_js("1"), pusher_js("1"), pusher_js("2")
    first = {c: c.seen("connected")[0]["socket_id"] for c in (ann_phone, ann_laptop, bob)}
    for client, user in ((ann_phone, "1"), (ann_laptop, "1"), (bob, "2")):
        signed_in(client, user)
    if path == "sync":
        broadcast.terminate_user("1")
    else:
        await broadcast.aterminate_user("1")
    for client in (ann_phone, ann_laptop):
        # soketi closes the connection with Pusher's 4009; pusher-js does not reconnect after it
        closed = await asyncio.to_thread(
            client.expect, "connection_error", where=lambda line: "4009" in line["error"]
        )
        assert "disconnected by the app" in closed["error"]
    # bob kept his connection: a publish to his user channel reaches it, and he never reconnected
    bob.send({"cmd": "subscribe", "channel": "after-terminate"})
    bob.expect("subscribed", channel="after-terminate")
    await broadcast.achannel("after-terminate", {"still": "here"}, "ping")
    assert bob.expect("event", channel="after-terminate")["data"] == {"still": "here"}
    assert [line["socket_id"] for line in bob.seen("connected")] == [first[bob]]
