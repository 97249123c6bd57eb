"""Only an acknowledgement counts as delivered (README, "Only an acknowledgement is delivered").

Pusher and Reverb answer a publish with ``{}`` (``{"channels": ...}`` or ``{"batch": ...}``
with ``info``), soketi with ``{"ok":true}``. Any other 2xx (an empty body, ``{"ok":false}``,
an ``error`` without a 4xx ``code``, other fields, a JSON list or text) is an unknown outcome:
``maybe_delivered``, not retried by default, and never "delivered".

The end-to-end test runs against a real soketi through the counting proxy
(tests/servers/http_proxy.py), a fault-injecting asyncio TCP server: soketi itself only ever
answers ``{"ok":true}``, so the proxy forwards each request to soketi (which delivers it to a
real WebSocket subscriber) and replaces soketi's answer with the odd 2xx under test. That the
subscriber got every event shows why "failed" would be wrong and only "unknown" is honest.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from http_proxy import CountingProxy, containing
from pusher_ws import PusherSubscriber, Received, Subscribe

from broadcasting import Broadcast, PublishError, Receipt
from broadcasting_pusher._api import check_answer
from broadcasting_pusher._driver import BroadcastPusherDriver

SECRET = "app-secret-never-shown-7d1c"
MASTER = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

#: 2xx bodies that are not an acknowledgement of a publish.
NOT_ACKNOWLEDGEMENTS = [
    '{"ok":false}',
    "",
    "[]",
    '"rejected"',
    "null",
    '{"error":"Over quota"}',
    '{"status":"queued for review"}',
    '{"ok":true,"warning":"dropped"}',
    '{"channels":[]}',
    '{"ok":"yes"}',
]
#: What Pusher, Reverb and soketi answer to a publish they took.
ACKNOWLEDGEMENTS = [
    "{}",
    '{"ok":true}',
    ' { "ok" : true }\n',
    '{"channels":{"orders":{"subscription_count":1}}}',
    '{"batch":{}}',
    '{"batch":[{},{"user_count":2}]}',
]


async def publish(broadcast: Broadcast, mode: str, channel: str, data: str) -> Receipt:
    if mode == "sync":
        return await asyncio.to_thread(broadcast.channel, channel, data)
    return await broadcast.achannel(channel, data)


@pytest.mark.soketi
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_only_an_acknowledgement_is_delivered(
    proxied: Broadcast,
    proxy: CountingProxy,
    subscribe: Subscribe,
    received: Received,
    mode: str,
) -> None:
    channel = f"acks-{mode}"
    sub: PusherSubscriber = await subscribe(channel)
    for n, body in enumerate(NOT_ACKNOWLEDGEMENTS):
        data = f"odd-{n}"
        proxy.fail(200, body, forward=True, when=containing(data))
        with pytest.raises(PublishError) as info:
            await publish(proxied, mode, channel, data)
        error = info.value
        assert (error.delivered, error.failed, error.unknown) == ((), (), (channel,)), body
        assert (error.maybe_delivered, error.retryable, error.requests) == (True, False, 1)
        assert "may have been delivered" in str(error)
        assert (body or "an empty body") in str(error), "says what was answered"
    for n, body in enumerate(ACKNOWLEDGEMENTS):
        data = f"ack-{n}"
        proxy.fail(200, body, forward=True, when=containing(data))
        receipt = await publish(proxied, mode, channel, data)
        assert receipt.requests == 1
    sent = [f"odd-{n}" for n in range(len(NOT_ACKNOWLEDGEMENTS))]
    sent += [f"ack-{n}" for n in range(len(ACKNOWLEDGEMENTS))]
    assert len(proxy.posts()) == len(sent), "nothing was sent twice"
    assert [event.data for event in await received(sub, channel)] == sent


def _settings() -> Any:
    options = {"app_id": "1", "key": "k", "secret": SECRET, "encryption_master_key_base64": MASTER}
    return BroadcastPusherDriver.from_config(options).settings


@pytest.mark.parametrize("status", [200, 202, 204])
def test_what_a_2xx_said_is_shown_without_secrets_and_cut_short(status: int) -> None:
    body = '{"error":"' + SECRET + " and " + MASTER + " " + "x" * 2000 + '"}'
    with pytest.raises(PublishError) as info:
        check_answer(status, body.encode(), _settings(), where="https://node:443")
    error = info.value
    text = str(error.args[0])
    assert (error.maybe_delivered, error.retryable, error.status) == (True, False, status)
    assert SECRET not in str(error) and MASTER not in str(error)
    assert "********" in text and "not an acknowledgement" in text
    assert text.count("x") <= 500, "at most 500 characters of what the server said"
    assert f"https://node:443 answered HTTP {status}" in text
