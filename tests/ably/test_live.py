"""Against the real Ably service: runs only when ABLY_API_KEY is set (it skips otherwise).

Publishes one message to one channel and one to two channels, then reads each
channel's history with the SDK to see that exactly our message ids arrived once.
"""

from __future__ import annotations

import os
import secrets
import time

import pytest

from broadcasting import Broadcast

API_KEY = os.environ.get("ABLY_API_KEY", "")

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not API_KEY, reason="set ABLY_API_KEY to run against the real Ably"),
]


def _history_ids(channel: str) -> list[str]:
    from ably.sync import AblyRestSync

    client = AblyRestSync(key=API_KEY)
    try:
        for _ in range(10):
            page = client.channels.get(channel).history()
            ids = [m.id for m in page.items]
            if ids:
                return ids
            time.sleep(0.5)
        return []
    finally:
        client.close()


@pytest.mark.parametrize("binary", [True, False], ids=["msgpack", "json"])
def test_publish_to_the_real_service(binary: bool) -> None:
    prefix = f"broadcasting-live-{secrets.token_hex(4)}"
    config = {
        "DRIVER": "ably",
        "DRIVERS": {"ably": {"key": API_KEY, "use_binary_protocol": binary}},
    }
    with Broadcast(config) as broadcast:
        one = broadcast.channel(f"{prefix}-a", {"message": "hello world"}, "subscribed")
        two = broadcast.channel([f"{prefix}-b", f"{prefix}-c"], "hello", "subscribed")
    assert one.requests >= 1 and two.requests >= 1
    assert _history_ids(f"{prefix}-a") == [f"{one.message_id}:0"]
    for channel in (f"{prefix}-b", f"{prefix}-c"):
        assert _history_ids(channel) == [f"{two.message_id}:0"]


async def test_async_publish_to_the_real_service() -> None:
    channel = f"broadcasting-live-{secrets.token_hex(4)}"
    config = {"DRIVER": "ably", "DRIVERS": {"ably": {"key": API_KEY}}}
    async with Broadcast(config) as broadcast:
        receipt = await broadcast.achannel([channel, f"{channel}-2"], {"n": 1})
    assert receipt.channels == (channel, f"{channel}-2")
