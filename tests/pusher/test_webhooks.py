"""Pusher/soketi webhook verification: key, signature, age, body; typed events with stable ids.

These deliveries are built here, signed the way Pusher and soketi sign them
(hex HMAC-SHA256 of the raw body under the app secret, ``X-Pusher-Key``,
``X-Pusher-Signature``): verification is local, no server involved. The
deliveries soketi really sends are received and checked end to end in
tests/e2e_hearing/.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

from broadcasting import BadRequestError, Broadcast, UnauthorizedError, WebhookEvent
from broadcasting_pusher import _webhooks

KEY = "webhook-test-key"
SECRET = "webhook-test-secret-7d1"
OPTIONS = {"app_id": "4242", "key": KEY, "secret": SECRET, "host": "127.0.0.1", "port": 9}


@pytest.fixture
def broadcast() -> Iterator[Broadcast]:
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": OPTIONS}}) as broadcast:
        yield broadcast


def body_of(events: list[dict[str, Any]], time_ms: int | None = None) -> bytes:
    now = int(time.time() * 1000) if time_ms is None else time_ms
    return json.dumps({"time_ms": now, "events": events}).encode()


def signed(body: bytes, secret: str = SECRET, key: str = KEY) -> dict[str, str]:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Pusher-Key": key, "X-Pusher-Signature": signature}


EVERY_KIND = [
    {"name": "channel_occupied", "channel": "orders"},
    {"name": "member_added", "channel": "presence-room", "user_id": "7"},
    {
        "name": "client_event",
        "channel": "private-chat",
        "event": "client-typing",
        "data": '{"on":true}',
        "socket_id": "123.456",
        "user_id": "7",
    },
    {"name": "member_removed", "channel": "presence-room", "user_id": "7"},
    {"name": "cache_miss", "channel": "cache-prices"},
    {"name": "channel_vacated", "channel": "orders"},
]


def test_every_kind_of_event_is_parsed_into_a_webhook_event(broadcast: Broadcast) -> None:
    body = body_of(EVERY_KIND, time_ms=int(time.time() * 1000))
    events = broadcast.webhook(signed(body), body)
    assert [e.name for e in events] == [k["name"] for k in EVERY_KIND]
    assert all(isinstance(e, WebhookEvent) and e.driver == "pusher" for e in events)
    occupied, added, client, removed, miss, vacated = events
    assert (occupied.channel, occupied.user_id) == ("orders", None)
    assert (added.channel, added.user_id) == ("presence-room", "7")
    assert (client.event, client.data, client.socket_id, client.user_id) == (
        "client-typing",
        '{"on":true}',
        "123.456",
        "7",
    )
    assert (removed.name, removed.user_id) == ("member_removed", "7")
    assert miss.channel == "cache-prices"
    assert vacated.channel == "orders"
    assert client.raw == EVERY_KIND[2]
    assert {e.time_ms for e in events} == {json.loads(body)["time_ms"]}


def test_a_retried_delivery_gives_the_same_ids_and_every_event_its_own(
    broadcast: Broadcast,
) -> None:
    # two identical events in one delivery (a member joining twice, say) stay apart
    items = [*EVERY_KIND, EVERY_KIND[0]]
    body = body_of(items)
    first = broadcast.webhook(signed(body), body)
    retried = broadcast.webhook(signed(body), body)
    assert [e.id for e in first] == [e.id for e in retried]
    assert len({e.id for e in first}) == len(items)
    # the same events at another time are other events
    later = body_of(items, json.loads(body)["time_ms"] + 1)
    assert not {e.id for e in first} & {e.id for e in broadcast.webhook(signed(later), later)}


def test_header_names_in_any_case_and_a_str_body_are_accepted(broadcast: Broadcast) -> None:
    body = body_of(EVERY_KIND[:1])
    lowered = {k.lower(): v for k, v in signed(body).items()}
    assert [e.name for e in broadcast.webhook(lowered, body)] == ["channel_occupied"]
    upper = {k.upper(): v.upper() for k, v in signed(body).items() if "SIGNATURE" in k.upper()}
    upper["X-PUSHER-KEY"] = KEY  # the key is case-sensitive; the hex signature is not
    assert len(broadcast.webhook(upper, body.decode())) == 1
    # the driver itself reads headers in any case too
    assert len(_webhooks.verify(broadcast.driver().driver, lowered, body)) == 1


def test_unknown_event_names_are_passed_through_by_name(broadcast: Broadcast) -> None:
    body = body_of([{"name": "subscription_count", "channel": "orders", "subscription_count": 3}])
    (event,) = broadcast.webhook(signed(body), body)
    assert event.name == "subscription_count"
    assert event.raw["subscription_count"] == 3


def refused(broadcast: Broadcast, headers: dict[str, str], body: bytes) -> Exception:
    with pytest.raises((UnauthorizedError, BadRequestError)) as caught:
        broadcast.webhook(headers, body)
    return caught.value


@pytest.mark.parametrize(
    ("case", "status", "said"),
    [
        ("no key", 401, "no X-Pusher-Key"),
        ("unknown key", 401, "not this app's key"),
        ("no signature", 401, "no X-Pusher-Signature"),
        ("wrong secret", 401, "does not match"),
        ("tampered body", 401, "does not match"),
        ("not hex", 401, "does not match"),
        ("old", 401, "old"),
        ("future", 401, "future"),
        ("not json", 400, "not JSON"),
        ("not an object", 400, "not a JSON object"),
        ("no time_ms", 400, "time_ms"),
        ("no events", 400, "events"),
        ("nameless event", 400, "name"),
    ],
)
def test_bad_deliveries_are_refused_with_typed_errors(
    broadcast: Broadcast, case: str, status: int, said: str
) -> None:
    body = body_of(EVERY_KIND[:2])
    headers = signed(body)
    now_ms = int(time.time() * 1000)
    if case == "no key":
        del headers["X-Pusher-Key"]
    elif case == "unknown key":
        headers = signed(body, key="someone-elses-key")
    elif case == "no signature":
        del headers["X-Pusher-Signature"]
    elif case == "wrong secret":
        headers = signed(body, secret="not-the-secret")
    elif case == "tampered body":
        body = body.replace(b'"7"', b'"8"')
    elif case == "not hex":
        headers["X-Pusher-Signature"] = "é" * 64
    elif case in ("old", "future"):
        shift = -301_000 if case == "old" else 301_000
        body = body_of(EVERY_KIND[:2], now_ms + shift)
        headers = signed(body)
    else:
        body = {
            "not json": b"{not json",
            "not an object": b"[1, 2]",
            "no time_ms": json.dumps({"events": []}).encode(),
            "no events": json.dumps({"time_ms": now_ms}).encode(),
            "nameless event": json.dumps({"time_ms": now_ms, "events": [{"x": 1}]}).encode(),
        }[case]
        headers = signed(body)
    error = refused(broadcast, headers, body)
    assert getattr(error, "http_status", None) == status
    assert said in str(error)
    assert SECRET not in str(error)


def test_a_delivery_within_five_minutes_either_way_is_accepted(broadcast: Broadcast) -> None:
    now = time.time()
    for shift in (-299.0, 299.0):
        body = body_of(EVERY_KIND[:1], int((now + shift) * 1000))
        assert _webhooks.verify(broadcast.driver().driver, signed(body), body, now=now)


def test_nothing_is_parsed_before_the_signature_is_checked(broadcast: Broadcast) -> None:
    # a body that is not even JSON, signed with the wrong secret: 401, not 400
    body = b"{not json"
    error = refused(broadcast, signed(body, secret="wrong"), body)
    assert isinstance(error, UnauthorizedError)


def _frame_values(error: BaseException) -> Iterator[str]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for frame, _ in traceback.walk_tb(current.__traceback__):
            for value in frame.f_locals.values():
                yield repr(value)
                if isinstance(value, (str, bytes)):
                    yield value.decode("latin-1") if isinstance(value, bytes) else value
        current = current.__cause__ or current.__context__


def test_a_refusal_holds_neither_the_secret_nor_the_valid_signature(broadcast: Broadcast) -> None:
    body = body_of(EVERY_KIND[:1]).replace(b"orders", b"ordurs")
    valid = signed(body)["X-Pusher-Signature"]
    headers = signed(body_of(EVERY_KIND[:1]))  # the signature of the untampered body
    error = refused(broadcast, headers, body)
    texts = list(_frame_values(error))
    assert texts, "the traceback has frames to look into"
    assert not [t for t in texts if SECRET in t]
    assert not [t for t in texts if valid in t]  # it would let the attacker in
    assert SECRET not in repr(broadcast.driver().driver)


async def test_awebhook_verifies_the_same_way(broadcast: Broadcast) -> None:
    body = body_of(EVERY_KIND)
    events = await broadcast.awebhook(signed(body), body)
    assert [e.name for e in events] == [k["name"] for k in EVERY_KIND]
    with pytest.raises(UnauthorizedError):
        await broadcast.awebhook(signed(body, secret="nope"), body)


def test_sign_gives_what_the_verifier_accepts(broadcast: Broadcast) -> None:
    driver = broadcast.driver().driver
    body = body_of(EVERY_KIND[:1])
    headers = {
        "X-Pusher-Key": KEY,
        "X-Pusher-Signature": _webhooks.sign(driver.settings.secret, body),
    }
    assert headers == signed(body)
    assert len(driver.verify_webhook(headers, body)) == 1
