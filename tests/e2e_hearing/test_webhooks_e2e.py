"""soketi's real webhooks, caused by real pusher-js clients, verified by our endpoint under uvicorn.

pusher-js (Node) subscribes through our ``/broadcasting/auth``, joins and
leaves presence channels; soketi posts ``channel_occupied``, ``member_added``,
``member_removed`` and ``channel_vacated`` to ``/broadcasting/webhook``; the
library verifies each delivery and hands the events to the hook (an
online-users plugin) and the handlers. Deliveries arrive one per event and
in any order, so every wait is for a set of events; the timeouts only bound
a failure. Captured real deliveries are then replayed (Pusher's retry),
tampered with, re-signed with a wrong secret, sent with an unknown key and
re-signed with an old ``time_ms``: all but the replay are refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import pytest
from hearing_support import Delivery, Heard, OnlineUsers, Recorder, Start, Uvicorn
from node_clients import NodeClient
from soketi_server import APP_KEY, APP_SECRET

from broadcasting import Broadcast, WebhookEvent
from broadcasting.web import WEBHOOK_PATH

pytestmark = pytest.mark.soketi


def join(client: NodeClient, channel: str) -> dict[str, Any]:
    client.send({"cmd": "subscribe", "channel": channel})
    return client.expect("subscribed", channel=channel)


def about(channel: str) -> Any:
    """A delivery matcher: a delivery carrying an event on ``channel``."""

    def match(delivery: Delivery) -> bool:
        try:
            events = json.loads(delivery.body)["events"]
        except (ValueError, KeyError, TypeError):
            return False  # a malformed body a test posted
        return any(isinstance(e, dict) and e.get("channel") == channel for e in events)

    return match


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(receiver: Uvicorn, headers: dict[str, str], body: bytes) -> httpx.Response:
    keep = {k: v for k, v in headers.items() if k.lower().startswith(("x-pusher", "content-type"))}
    return httpx.post(f"{receiver.url}{WEBHOOK_PATH}", headers=keep, content=body, timeout=10)


def test_presence_joins_and_leaves_arrive_as_verified_webhooks(
    pusher_js: Start,
    broadcast: Broadcast,
    heard: Heard,
    recorder: Recorder,
    plugin: OnlineUsers,
) -> None:
    channel = "presence-room.joins"
    ann = pusher_js("1")
    assert join(ann, channel)["me"]["id"] == "1"
    heard.wait_for(channel, ("channel_occupied", None), ("member_added", "1"))
    assert plugin.of(channel) == {"1"}

    bob = pusher_js("2")
    assert [m["id"] for m in join(bob, channel)["members"]] == ["1", "2"]
    heard.wait_for(channel, ("member_added", "2"))
    assert plugin.of(channel) == {"1", "2"}
    # the queries agree with soketi's state while the clients are connected
    assert sorted(m.id for m in broadcast.members(channel)) == ["1", "2"]
    info = broadcast.channel_info(channel)
    assert (info.occupied, info.user_count, info.subscription_count) == (True, 2, 2)
    assert channel in [c.name for c in broadcast.occupied_channels(prefix="presence-room.")]

    bob.send({"cmd": "unsubscribe", "channel": channel})
    heard.wait_for(channel, ("member_removed", "2"))
    assert plugin.of(channel) == {"1"}
    assert [m.id for m in broadcast.members(channel)] == ["1"]

    ann.send({"cmd": "disconnect"})
    events = heard.wait_for(channel, ("member_removed", "1"), ("channel_vacated", None))
    assert plugin.of(channel) == set()
    assert sorted(heard.on(channel)) == sorted(
        [
            ("channel_occupied", None),
            ("member_added", "1"),
            ("member_added", "2"),
            ("member_removed", "2"),
            ("member_removed", "1"),
            ("channel_vacated", None),
        ]
    )
    assert {e.driver for e in events} == {"pusher"}
    assert len({e.id for e in events}) == len(events)
    assert all(abs(e.time_ms / 1000 - time.time()) < 60 for e in events)
    # every delivery about it was verified and answered 200 (the last one recorded once answered)
    mine = recorder.wait_count(about(channel), 6)
    assert len(mine) == 6 and {d.status for d in mine} == {200}
    assert {d.headers["x-pusher-key"] for d in mine} == {APP_KEY}
    assert broadcast.channel_info(channel).occupied is False


def test_a_replayed_delivery_keeps_its_ids_and_forgeries_are_refused(
    pusher_js: Start,
    broadcast: Broadcast,
    heard: Heard,
    recorder: Recorder,
    plugin: OnlineUsers,
    receiver: Uvicorn,
) -> None:
    channel = "presence-room.forged"
    cy = pusher_js("3")
    join(cy, channel)
    heard.wait_for(channel, ("member_added", "3"))
    real = recorder.wait_for(
        lambda d: about(channel)(d) and b"member_added" in d.body and d.status == 200
    )
    first = [e for e in heard.events if e.channel == channel and e.name == "member_added"]

    # Pusher retries a delivery it got no 2xx for: the same body, so the same ids
    before = plugin.duplicates
    replay = post(receiver, real.headers, real.body)
    assert (replay.status_code, replay.json()) == (200, {"ok": True, "events": 1})
    again = [e for e in heard.events if e.channel == channel and e.name == "member_added"]
    assert len(again) == len(first) + 1 and again[-1].id == first[-1].id
    assert plugin.duplicates == before + 1  # the plugin de-duplicated it on event.id
    assert plugin.of(channel) == {"3"}

    count = len(heard.events)
    data = json.loads(real.body)
    tampered = real.body.replace(b'"user_id":"3"', b'"user_id":"1"')
    assert tampered != real.body
    old = json.dumps({**data, "time_ms": data["time_ms"] - 301_000}).encode()
    not_json = b'{"time_ms": 1, "events": [}'
    forged: list[tuple[str, dict[str, str], bytes, int]] = [
        ("tampered body", real.headers, tampered, 401),
        (
            "wrong signature",
            {**real.headers, "x-pusher-signature": sign(real.body, "not-the-secret")},
            real.body,
            401,
        ),
        ("unknown key", {**real.headers, "x-pusher-key": "someone-else"}, real.body, 401),
        ("old time_ms", {**real.headers, "x-pusher-signature": sign(old)}, old, 401),
        ("malformed", {**real.headers, "x-pusher-signature": sign(not_json)}, not_json, 400),
    ]
    for case, headers, body, status in forged:
        answer = post(receiver, headers, body)
        assert answer.status_code == status, case
        assert APP_SECRET not in answer.text
        assert "Traceback" not in answer.text
    assert len(heard.events) == count  # none of them reached a handler
    assert plugin.of(channel) == {"3"}
    cy.send({"cmd": "disconnect"})
    heard.wait_for(channel, ("channel_vacated", None))


def test_a_failing_handler_answers_500_and_the_retry_has_the_same_ids(
    pusher_js: Start,
    broadcast: Broadcast,
    heard: Heard,
    recorder: Recorder,
    receiver: Uvicorn,
) -> None:
    channel = "presence-room.flaky"
    failures: list[str] = []

    @broadcast.on_webhook("member_added")
    def flaky(event: WebhookEvent) -> None:
        if event.channel == channel and not failures:
            failures.append(event.id)
            raise ConnectionError("the app's database is down")

    ann = pusher_js("1")
    join(ann, channel)
    failed = recorder.wait_for(lambda d: about(channel)(d) and b"member_added" in d.body)
    assert failed.status == 500  # so a service that retries would send it again
    retry = post(receiver, failed.headers, failed.body)
    assert retry.status_code == 200
    # the failing handler (for "member_added") ran before the "*" one, which only saw the
    # retry: handled once in all, under the id the failed attempt had
    handled = [e for e in heard.events if e.channel == channel and e.name == "member_added"]
    assert [e.id for e in handled] == failures
    ann.send({"cmd": "disconnect"})
    heard.wait_for(channel, ("channel_vacated", None))


async def test_a_client_event_arrives_with_its_sender(
    soketi: Any, receiver: Uvicorn, heard: Heard, recorder: Recorder, broadcast: Broadcast
) -> None:
    """A Pusher-protocol WebSocket client (tests/servers/pusher_ws.py) whispers in a room."""
    from pusher_ws import PusherSubscriber

    channel = "presence-room.whispers"
    client = await PusherSubscriber(soketi.ws_url()).connect()
    try:
        answer = await broadcast.aauthorize("2", socket_id=client.socket_id, channel_name=channel)
        future = client._subscribed[channel] = asyncio.get_running_loop().create_future()
        frame = {"channel": channel, **answer}
        await client._ws.send(json.dumps({"event": "pusher:subscribe", "data": frame}))
        await asyncio.wait_for(future, 10)
        whisper = {"event": "client-typing", "channel": channel, "data": {"typing": True}}
        await client._ws.send(json.dumps(whisper))
        events = await asyncio.to_thread(heard.wait_for, channel, ("client_event", "2"))
    finally:
        await client.close()
    (typed,) = [e for e in events if e.name == "client_event"]
    assert (typed.event, typed.socket_id, typed.user_id) == ("client-typing", client.socket_id, "2")
    assert typed.data == {"typing": True}  # as the client sent it
    await asyncio.to_thread(heard.wait_for, channel, ("channel_vacated", None))
