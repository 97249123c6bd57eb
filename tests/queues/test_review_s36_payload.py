"""A task payload that names a channel twice: delivered once, as ``channel()`` delivers it.

The producer never writes such a payload (``channel(["a", "a"])`` is one channel), but a
payload from elsewhere (another producer, one edited in the broker, a hostile one) can. The
worker validated the message it rebuilt (which keeps a channel once) and then sent the
payload's own list, both times: soketi delivered the event twice to a subscriber of that
channel, and the journal noted the channel twice. Against a real soketi and a real
WebSocket subscriber, with a real Redis journal.
"""

from __future__ import annotations

import pytest
from pusher_ws import PusherSubscriber
from soketi_server import SoketiServer

from broadcasting import Broadcast, Receipt
from broadcasting.contrib._queue import DONE, RedisJournal, encode, parse, perform

pytestmark = pytest.mark.soketi


async def test_a_channel_named_twice_in_a_payload_is_delivered_once(
    soketi: SoketiServer, subscriber: PusherSubscriber, journal: RedisJournal, uid: str
) -> None:
    channel = f"q-{uid}"
    await subscriber.subscribe(channel)
    config = {"DRIVER": "pusher", "DRIVERS": {"pusher": soketi.driver_options()}}
    async with Broadcast(config) as broadcast:
        broadcaster = broadcast.driver()
        message = broadcaster._message([channel], {"n": 1}, "queued", None)  # type: ignore[arg-type]
        assert not isinstance(message, Receipt)
        message.via = "rq"
        payload = encode(broadcaster, message)
        payload["channels"] = [channel, channel]
        receipt = perform(broadcast, payload, via="rq", journal=journal)
        assert receipt is not None and receipt.channels == (channel,)
        assert parse(journal.read(payload["id"]) or "") == (DONE, (channel,))
        events = await subscriber.until_marker(
            lambda marker: broadcast.achannel(channel, marker, "m")
        )
    assert [event.data for event in events] == ['{"n":1}']
