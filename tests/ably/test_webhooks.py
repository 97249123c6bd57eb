"""Ably webhooks: signed batched deliveries verified, parsed into events, and refused when forged.

No real Ably can send webhooks to this machine, so the deliveries are built
here from Ably's documented batched format (the payload examples of
https://ably.com/docs/platform/integrations/webhooks, "Batched message
events", "Batched presence events", "Batched channel lifecycle events") and
signed as Ably signs them when a batch rule is set to sign with a key:
``X-Ably-Key`` = the key name, ``X-Ably-Signature`` = base64 HMAC-SHA256 of
the raw body with the key's secret. Only the real service could confirm the
format beyond its documentation. The endpoint test posts them to the
library's own Starlette route on a real uvicorn.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from broadcasting import BadRequestError, Broadcast, UnauthorizedError, WebhookEvent
from broadcasting.plugin import hookimpl
from servers.ably_emulator import LIMITED_KEY, TEST_KEY

KEY_NAME, KEY_SECRET = TEST_KEY.split(":", 1)


def now_ms(offset_s: float = 0) -> int:
    return int((time.time() + offset_s) * 1000)


def sign(body: bytes, key: str = TEST_KEY) -> dict[str, str]:
    name, secret = key.split(":", 1)
    mac = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return {"X-Ably-Key": name, "X-Ably-Signature": base64.b64encode(mac).decode()}


def delivery(*items: dict[str, Any]) -> bytes:
    return json.dumps({"items": list(items)}).encode()


def lifecycle(name: str, channel: str, serial: str, stamp: int | None = None) -> dict[str, Any]:
    return {
        "webhookId": "ABcDEf",
        "source": "channel.lifecycle",
        "timestamp": stamp or now_ms(),
        "serial": serial,
        "name": name,
        "data": {
            "channelId": channel,
            "name": channel,
            "status": {
                "isActive": name == "channel.opened",
                "occupancy": {"metrics": {"connections": 1, "subscribers": 1}},
            },
        },
    }


def presence(channel: str, serial: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {
        "webhookId": "ABcDEf",
        "source": "channel.presence",
        "serial": serial,
        "timestamp": now_ms(),
        "name": "presence.message",
        "data": {"channelId": channel, "site": "eu-west-1-A", "presence": list(entries)},
    }


def member(
    action: int, client_id: str, data: Any, ident: str, *, json_encoded: bool = True
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": ident,
        "clientId": client_id,
        "connectionId": f"conn-{client_id}",
        "timestamp": now_ms(),
        "action": action,
    }
    if json_encoded and not isinstance(data, str):
        entry.update(data=json.dumps(data), encoding="json")
    else:
        entry["data"] = data
    return entry


def messages(channel: str, serial: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {
        "webhookId": "ABcDEf",
        "source": "channel.message",
        "serial": serial,
        "timestamp": now_ms(),
        "name": "channel.message",
        "data": {"channelId": channel, "site": "eu-west-1-A", "messages": list(entries)},
    }


def test_lifecycle_presence_and_message_items_become_events(broadcast: Broadcast) -> None:
    body = delivery(
        lifecycle("channel.opened", "presence:chat.1", "s1:1"),
        presence(
            "presence:chat.1",
            "s1:2",
            member(2, "7", {"id": "7", "name": "Alice"}, "A:1:0"),
            member(2, "8", {"id": "8", "name": "Bob"}, "B:1:0"),
            member(4, "8", {"id": "8", "name": "Bobby"}, "B:2:0"),
            member(3, "7", {"id": "7", "name": "Alice"}, "A:2:0"),
        ),
        messages(
            "private:orders.1",
            "s1:3",
            {
                "id": "M:1:0",
                "clientId": "7",
                "connectionId": "conn-7",
                "name": "said",
                "data": '{"text":"hi"}',
                "encoding": "json",
                "timestamp": now_ms(),
            },
            {"id": "M:1:1", "name": "plain", "data": "just text", "timestamp": now_ms()},
        ),
        lifecycle("channel.closed", "presence:chat.1", "s1:4"),
    )
    events = broadcast.webhook(sign(body), body)
    assert [(e.name, e.channel, e.user_id) for e in events] == [
        ("channel_occupied", "presence:chat.1", None),
        ("member_added", "presence:chat.1", "7"),
        ("member_added", "presence:chat.1", "8"),
        ("member_updated", "presence:chat.1", "8"),
        ("member_removed", "presence:chat.1", "7"),
        ("message", "private:orders.1", "7"),
        ("message", "private:orders.1", None),
        ("channel_vacated", "presence:chat.1", None),
    ]
    assert events[1].data == {"id": "7", "name": "Alice"}
    assert events[3].data == {"id": "8", "name": "Bobby"}
    assert events[1].socket_id == "conn-7"
    assert (events[5].event, events[5].data) == ("said", {"text": "hi"})
    assert (events[6].event, events[6].data) == ("plain", "just text")
    assert events[0].data["isActive"] is True
    assert all(e.driver == "ably" for e in events)
    assert [e.id for e in events] == [
        "s1:1",
        "s1:2:A:1:0",
        "s1:2:B:1:0",
        "s1:2:B:2:0",
        "s1:2:A:2:0",
        "s1:3:M:1:0",
        "s1:3:M:1:1",
        "s1:4",
    ]
    assert len({e.id for e in events}) == len(events)


def test_the_same_delivery_twice_gives_the_same_ids(broadcast: Broadcast) -> None:
    item = presence("presence:chat.1", "s9", member(2, "7", None, "", json_encoded=False))
    del item["serial"]  # without a serial the id is a digest of the item
    body = delivery(item, lifecycle("channel.opened", "x", "s10"))
    first = broadcast.webhook(sign(body), body)
    again = broadcast.webhook(sign(body), body)
    assert [e.id for e in first] == [e.id for e in again]
    assert first[0].id.startswith("sha256-") and first[0].id.endswith(":0")


def test_occupancy_and_unknown_sources_keep_their_data(broadcast: Broadcast) -> None:
    occupancy = {
        "webhookId": "W",
        "source": "channel.occupancy",
        "serial": "o1",
        "timestamp": now_ms(),
        "name": "channel.occupancy",
        "data": {"channelId": "room", "status": {"occupancy": {"metrics": {"connections": 4}}}},
    }
    other = {
        "webhookId": "W",
        "source": "channel.future",
        "serial": "f1",
        "timestamp": now_ms(),
        "name": "x",
        "data": {"channelId": "room", "what": 1},
    }
    body = delivery(occupancy, other)
    events = broadcast.webhook(sign(body), body)
    assert [(e.name, e.channel) for e in events] == [
        ("channel_occupancy", "room"),
        ("ably:channel.future", "room"),
    ]
    assert events[0].data["occupancy"]["metrics"]["connections"] == 4
    assert events[1].data == {"channelId": "room", "what": 1}


def test_an_empty_delivery_has_no_events(broadcast: Broadcast) -> None:
    body = delivery()
    assert broadcast.webhook(sign(body), body) == []


def test_headers_are_read_in_any_case(broadcast: Broadcast) -> None:
    body = delivery(lifecycle("channel.opened", "x", "s1"))
    lower = {k.lower(): v for k, v in sign(body).items()}
    assert [e.name for e in broadcast.webhook(lower, body)] == ["channel_occupied"]


def test_handlers_and_plugins_get_every_verified_event(
    make_broadcast: Callable[..., Broadcast],
) -> None:
    seen: list[str] = []

    class Online:
        @hookimpl
        def broadcasting_webhook(
            self, broadcast: Broadcast, driver: Any, event: WebhookEvent
        ) -> None:
            seen.append(f"plugin:{event.name}:{event.user_id}")

    broadcast = make_broadcast()
    broadcast.plugin_manager.register(Online())

    @broadcast.on_webhook("member_added")
    def joined(event: WebhookEvent) -> None:
        seen.append(f"handler:{event.user_id}")

    body = delivery(presence("presence:chat.1", "s1", member(2, "7", {"id": "7"}, "A:1:0")))
    broadcast.webhook(sign(body), body)
    assert seen == ["plugin:member_added:7", "handler:7"]


async def test_awebhook_awaits_async_handlers(abroadcast: Broadcast) -> None:
    seen: list[str] = []

    @abroadcast.on_webhook("*")
    async def record(event: WebhookEvent) -> None:
        seen.append(event.name)

    body = delivery(lifecycle("channel.opened", "x", "s1"), lifecycle("channel.closed", "x", "s2"))
    events = await abroadcast.awebhook(sign(body), body)
    assert seen == ["channel_occupied", "channel_vacated"] == [e.name for e in events]


# -- refusals -------------------------------------------------------------------------


GOOD = delivery(lifecycle("channel.opened", "x", "s1"))


def _hex_signature(body: bytes) -> dict[str, str]:
    mac = hmac.new(KEY_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Ably-Key": KEY_NAME, "X-Ably-Signature": mac}


@pytest.mark.parametrize(
    ("headers", "body", "said"),
    [
        pytest.param({}, GOOD, "are required", id="unsigned"),
        pytest.param({"X-Ably-Key": KEY_NAME}, GOOD, "are required", id="no-signature"),
        pytest.param(sign(GOOD, LIMITED_KEY), GOOD, "unknown key", id="another-key"),
        pytest.param(
            {**sign(GOOD), "X-Ably-Key": "otherapp.keyid"}, GOOD, "unknown key", id="key-renamed"
        ),
        pytest.param(
            sign(GOOD, "appid.keyid:NotTheSecret"), GOOD, "does not match", id="wrong-secret"
        ),
        pytest.param(sign(GOOD), GOOD.replace(b'"x"', b'"y"'), "does not match", id="tampered"),
        pytest.param(_hex_signature(GOOD), GOOD, "does not match", id="pusher-style-hex"),
        pytest.param(
            sign(b"{not json"), b"{not json!", "does not match", id="bad-signature-before-parsing"
        ),
    ],
)
def test_forged_deliveries_are_unauthorized(
    broadcast: Broadcast, headers: dict[str, str], body: bytes, said: str
) -> None:
    with pytest.raises(UnauthorizedError, match=said) as caught:
        broadcast.webhook(headers, body)
    assert caught.value.http_status == 401
    assert KEY_SECRET not in str(caught.value) + repr(caught.value)


@pytest.mark.parametrize("offset", [-301, -3600, 301], ids=["just-old", "an-hour-old", "future"])
def test_a_stale_delivery_is_unauthorized(broadcast: Broadcast, offset: int) -> None:
    body = delivery(lifecycle("channel.opened", "x", "s1", stamp=now_ms(offset)))
    with pytest.raises(UnauthorizedError, match="are refused"):
        broadcast.webhook(sign(body), body)


def test_the_newest_item_dates_a_delivery(broadcast: Broadcast) -> None:
    # Ably keeps retrying a batch for up to five minutes: an older item with a fresh one is fine
    body = delivery(
        lifecycle("channel.opened", "x", "s1", stamp=now_ms(-400)),
        lifecycle("channel.closed", "x", "s2"),
    )
    assert [e.time_ms > 0 for e in broadcast.webhook(sign(body), body)] == [True, True]


@pytest.mark.parametrize(
    ("body", "said"),
    [
        pytest.param(b"{not json", "not JSON", id="not-json"),
        pytest.param(b"\xff\xfe", "not JSON", id="not-utf8"),
        pytest.param(b"[]", "must be", id="a-list"),
        pytest.param(b'{"items": {}}', "must be", id="items-not-a-list"),
        pytest.param(b'{"items": [1]}', "must be", id="item-not-an-object"),
        pytest.param(
            json.dumps({"items": [{"source": "channel.lifecycle", "data": {}}]}).encode(),
            "timestamp",
            id="no-timestamp",
        ),
        pytest.param(
            delivery({**lifecycle("channel.opened", "x", "s1"), "data": "text"}),
            "'data' must be an object",
            id="data-not-an-object",
        ),
        pytest.param(
            delivery({**presence("p", "s1"), "data": {"channelId": "p", "presence": "x"}}),
            "data.presence must be a list",
            id="presence-not-a-list",
        ),
    ],
)
def test_signed_but_malformed_deliveries_are_bad_requests(
    broadcast: Broadcast, body: bytes, said: str
) -> None:
    with pytest.raises(BadRequestError, match=said) as caught:
        broadcast.webhook(sign(body), body)
    assert caught.value.http_status == 400


def test_the_driver_takes_the_raw_bytes(broadcast: Broadcast) -> None:
    driver = broadcast.driver("ably").driver
    with pytest.raises(BadRequestError, match="raw bytes"):
        driver.verify_webhook(sign(GOOD), GOOD.decode())  # type: ignore[arg-type]
    assert [e.name for e in broadcast.webhook(sign(GOOD), GOOD.decode())] == ["channel_occupied"]


# -- through the library's web endpoint -------------------------------------------------


def test_the_webhook_endpoint_verifies_ably_deliveries(
    broadcast: Broadcast, serve: Callable[[Any], Any]
) -> None:
    import httpx
    from starlette.applications import Starlette

    from broadcasting.web.starlette import broadcasting_routes

    received: list[str] = []
    broadcast.on_webhook("*")(lambda event: received.append(event.id))
    app = Starlette(routes=broadcasting_routes(broadcast, user=lambda request: None))
    server = serve(app)
    url = f"{server.url}/broadcasting/webhook"
    body = delivery(presence("presence:chat.1", "s1", member(2, "7", {"id": "7"}, "A:1:0")))
    with httpx.Client() as client:
        ok = client.post(
            url, content=body, headers={**sign(body), "Content-Type": "application/json"}
        )
        forged = client.post(url, content=body, headers=sign(body, LIMITED_KEY))
        stale_body = delivery(lifecycle("channel.opened", "x", "s1", stamp=now_ms(-600)))
        stale = client.post(url, content=stale_body, headers=sign(stale_body))
    assert (ok.status_code, ok.json()) == (200, {"ok": True, "events": 1})
    assert forged.status_code == 401 and stale.status_code == 401
    assert KEY_SECRET not in forged.text + stale.text
    assert received == ["s1:A:1:0"]


def _frames(error: BaseException) -> list[Any]:
    found = []
    current: BaseException | None = error
    while current is not None:
        tb = current.__traceback__
        while tb is not None:
            found.append(tb.tb_frame)
            tb = tb.tb_next
        current = current.__cause__ or current.__context__
    return found


def test_no_frame_of_a_refusal_holds_the_secret_or_the_valid_signature(
    broadcast: Broadcast,
) -> None:
    valid = sign(GOOD)["X-Ably-Signature"]
    stale = delivery(lifecycle("channel.opened", "x", "s1", stamp=now_ms(-900)))
    forged = {**sign(GOOD), "X-Ably-Signature": base64.b64encode(b"x" * 32).decode()}
    cases = [(forged, GOOD), (sign(stale), stale), (sign(b"[]"), b"[]")]
    for headers, body in cases:
        with pytest.raises((UnauthorizedError, BadRequestError)) as caught:
            broadcast.webhook(headers, body)
        error = caught.value
        for frame in _frames(error):
            if frame.f_code.co_filename == __file__:
                continue
            for name, value in frame.f_locals.items():
                shown = value if isinstance(value, str) else repr(value)
                assert KEY_SECRET not in shown, f"{frame.f_code.co_name}.{name} holds the secret"
                if body is GOOD:
                    assert valid not in shown, f"{frame.f_code.co_name}.{name} holds the signature"


def test_a_msgpack_encoded_delivery(broadcast: Broadcast) -> None:
    """A rule whose encoding is MsgPack posts the same items as MessagePack."""
    import msgpack

    body = msgpack.packb(
        {"items": [presence("presence:chat.1", "s1", member(2, "7", {"id": "7"}, "A:1:0"))]}
    )
    headers = {**sign(body), "Content-Type": "application/x-msgpack"}
    events = broadcast.webhook(headers, body)
    assert [(e.name, e.user_id, e.data) for e in events] == [("member_added", "7", {"id": "7"})]
    garbage = b"\xc1\xc1"
    with pytest.raises(BadRequestError, match="not MessagePack"):
        broadcast.webhook({**sign(garbage), "Content-Type": "application/x-msgpack"}, garbage)
