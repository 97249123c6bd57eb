"""Issue 17, item 7: a correctly signed webhook with malformed content is a 400, never a 500.

The signature proves who sent a delivery, not that its content is sane: a
``time_ms`` of ``1e999`` (infinity to JSON), ``NaN``, or a 400-digit integer
made the Pusher and memory verifiers fail converting it (OverflowError,
ValueError) and the Ably one likewise for an item's ``timestamp``: a 500 with
an ERROR traceback, and the service retrying. Each is a 400 now, after the
signature checks (an unsigned one is still a 401), on every adapter.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from web_support import (
    FRAMEWORKS,
    WebClient,
    make_broadcast,
    open_client,
    sign_webhook,
)

from broadcasting import BadRequestError, Broadcast

WEBHOOK = "/broadcasting/webhook"

#: What a sender can write where a number belongs, as JSON text.
ODD_NUMBERS = [
    "1e999",
    "-1e999",
    "NaN",
    "Infinity",
    "-Infinity",
    "1" + "0" * 400,
    "-1" + "0" * 400,
    "1.5e308",
    '"1700000000000"',
]


def _client(framework: str, driver: str) -> Iterator[WebClient]:
    broadcast = make_broadcast(driver=driver)
    try:
        with open_client(framework, broadcast) as client:
            yield client
    finally:
        broadcast.close()


@pytest.fixture(params=[(f, d) for d in ("pusher", "memory") for f in FRAMEWORKS], ids=str)
def pusher_like(request: pytest.FixtureRequest) -> Iterator[WebClient]:
    """The drivers whose deliveries are ``{"time_ms", "events"}``, on every adapter."""
    yield from _client(*request.param)


@pytest.fixture(params=FRAMEWORKS)
def ably(request: pytest.FixtureRequest) -> Iterator[WebClient]:
    yield from _client(request.param, "ably")


def _post(web: WebClient, body: bytes, caplog: pytest.LogCaptureFixture) -> Any:
    caplog.clear()
    reply = web.post(WEBHOOK, content=body, headers=sign_webhook(web.broadcast, body))
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], errors
    return reply


def _now_ms() -> int:
    return int(time.time() * 1000)


@pytest.mark.parametrize("number", ODD_NUMBERS)
def test_a_signed_delivery_whose_time_ms_is_no_time_is_400(
    pusher_like: WebClient, number: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = f'{{"time_ms": {number}, "events": [{{"name": "channel_occupied"}}]}}'.encode()
    reply = _post(pusher_like, body, caplog)
    assert reply.status == 400, reply.text
    unsigned = pusher_like.post(WEBHOOK, content=body, content_type="application/json")
    assert unsigned.status == 401


def _ably_item(**overrides: Any) -> dict[str, Any]:
    item = {
        "webhookId": "W",
        "source": "channel.lifecycle",
        "serial": "s1",
        "timestamp": _now_ms(),
        "name": "channel.opened",
        "data": {"channelId": "orders", "status": {}},
    }
    item.update(overrides)
    return item


@pytest.mark.parametrize("number", [*ODD_NUMBERS, "9223372036854775808", "0", "-5"])
def test_a_signed_ably_delivery_whose_timestamp_is_no_time_is_400(
    ably: WebClient, number: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    text = json.dumps({"items": [_ably_item(timestamp="@")]}).replace('"@"', number)
    reply = _post(ably, text.encode(), caplog)
    assert reply.status == 400, reply.text


def test_an_ably_entry_timestamp_that_is_no_time_falls_back_to_the_items(
    ably: WebClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stamp = _now_ms()
    entries = [{"id": f"e{i}", "clientId": "7", "action": 2, "timestamp": "@"} for i in range(4)]
    item = _ably_item(
        source="channel.presence",
        name="presence.message",
        timestamp=stamp,
        data={"channelId": "presence:chat", "presence": entries},
    )
    text = json.dumps({"items": [item]})
    for number in ("1e999", "NaN", "-Infinity", "1" + "0" * 400):
        text = text.replace('"@"', number, 1)
    seen: list[int] = []
    ably.broadcast.on_webhook("member_added")(lambda event: seen.append(event.time_ms))
    reply = _post(ably, text.encode(), caplog)
    assert reply.status == 200, reply.text
    assert seen == [stamp] * 4


def test_ably_message_data_too_deep_to_decode_stays_text(
    ably: WebClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    deep = "[" * 3000
    message = {"id": "m1", "name": "said", "data": deep, "encoding": "json"}
    item = _ably_item(
        source="channel.message",
        name="channel.message",
        data={"channelId": "room", "messages": [message]},
    )
    seen: list[Any] = []
    ably.broadcast.on_webhook("message")(lambda event: seen.append(event.data))
    reply = _post(ably, json.dumps({"items": [item]}).encode(), caplog)
    assert reply.status == 200, reply.text
    assert seen == [deep]


def test_an_ably_msgpack_item_with_bytes_keys_and_no_serial_gets_an_id(
    ably: WebClient, caplog: pytest.LogCaptureFixture
) -> None:
    """JSON cannot hash such an item for its id (bytes keys): it is hashed another way."""
    import msgpack

    caplog.set_level(logging.DEBUG)
    item: dict[Any, Any] = _ably_item(source="channel.future")
    del item["serial"]
    item[b"extra"] = 1
    body = msgpack.packb({"items": [item, dict(item)]}, use_bin_type=True)
    headers = {**sign_webhook(ably.broadcast, body), "Content-Type": "application/x-msgpack"}
    caplog.clear()
    seen: list[str] = []
    ably.broadcast.on_webhook()(lambda event: seen.append(event.id))
    reply = ably.post(WEBHOOK, content=body, headers=headers)
    assert reply.status == 200, reply.text
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert len(seen) == 2 and seen[0] == seen[1] and seen[0].startswith("sha256-")


# -- the same through Broadcast.webhook: the typed error, for every driver ------------------


@pytest.fixture(params=["pusher", "memory", "ably"])
def broadcast(request: pytest.FixtureRequest) -> Iterator[Broadcast]:
    b = make_broadcast(driver=request.param)
    yield b
    b.close()


@pytest.mark.parametrize("number", ["1e999", "NaN", "1" + "0" * 400])
def test_broadcast_webhook_raises_invalid_auth_request_for_them(
    broadcast: Broadcast, number: str
) -> None:
    if broadcast.driver().name == "ably":
        text = json.dumps({"items": [_ably_item(timestamp="@")]}).replace('"@"', number)
    else:
        text = f'{{"time_ms": {number}, "events": []}}'
    body = text.encode()
    with pytest.raises(BadRequestError):
        broadcast.webhook(sign_webhook(broadcast, body), body)


def test_the_core_turns_a_drivers_overflow_or_recursion_into_invalid_auth_request() -> None:
    """A third-party driver that fails converting a signed body: 400, not the application's 500."""
    from broadcasting.plugin import Driver

    broadcast = make_broadcast(driver="memory")
    try:
        driver = broadcast.driver().driver
        for error in (OverflowError("int too large"), RecursionError("too deep")):

            def fails(headers: Any, body: bytes, error: BaseException = error) -> Any:
                raise error

            assert isinstance(driver, Driver)
            driver.verify_webhook = fails  # type: ignore[method-assign]
            with pytest.raises(BadRequestError):
                broadcast.webhook({}, b"{}")
    finally:
        broadcast.close()
