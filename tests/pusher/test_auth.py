"""Pusher's subscription and sign-in signatures, checked byte for byte.

Each body is checked twice: against the formats of Pusher's auth-signature
reference, computed here independently with :mod:`hmac`, and against the
official SDK's own ``authenticate``/``authenticate_user`` for the same input.
Signing is local: the driver points at a loopback port where nothing listens
and every test checks that no connection was opened.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import pusher
import pytest

from broadcasting import (
    Broadcast,
    BroadcastError,
    ForbiddenError,
    InputError,
    NotSupportedError,
    PayloadTooLargeError,
)
from broadcasting.drivers import BroadcastPusherDriver
from broadcasting.plugin import AuthRequest
from broadcasting_pusher import _auth

KEY = "app-key-7"
SECRET = "s3cr3t-b1c2d3e4f5a6"
MASTER_BYTES = bytes(range(100, 132))
MASTER = base64.b64encode(MASTER_BYTES).decode()
SOCKET = "123456.7890123"


def options(**extra: Any) -> dict[str, Any]:
    return {
        "app_id": "1",
        "key": KEY,
        "secret": SECRET,
        "host": "127.0.0.1",
        "port": 9,
        "ssl": False,
        "retries": 0,
        **extra,
    }


class User:
    def __init__(self, ident: int, name: str) -> None:
        self.id = ident
        self.name = name


def with_rules(broadcast: Broadcast) -> Broadcast:
    @broadcast.rule("orders.{order_id}")
    def order_owner(user: User | None, order_id: str) -> bool:
        return user is not None and order_id == str(user.id)

    @broadcast.rule("chat.{room}")
    def chat_member(user: User, room: str) -> dict[str, Any]:
        return {"id": user.id, "name": user.name, "room": room}

    @broadcast.rule("big.{size}")
    def big_member(user: User, size: str) -> dict[str, Any]:
        # {"id": 42, "pad": ""} is 21 characters of JSON besides the padding
        return {"id": user.id, "pad": "x" * (int(size) - 21)}

    @broadcast.rule("shared.{anything}")
    def anyone(user: User | None, anything: str) -> bool:
        return user is not None

    @broadcast.rule("long-id.{size}")
    def long_id(user: User, size: str) -> dict[str, Any]:
        return {"id": "u" * int(size)}

    return broadcast


@pytest.fixture
def broadcast() -> Iterator[Broadcast]:
    config = {
        "DRIVER": "pusher",
        "DRIVERS": {"pusher": options(encryption_master_key_base64=MASTER)},
    }
    with Broadcast(config) as broadcast:
        yield with_rules(broadcast)
        assert broadcast.driver(BroadcastPusherDriver).driver._pool.opened == 0, (
            "a request was made"
        )


@pytest.fixture
def sdk() -> pusher.Pusher:
    return pusher.Pusher(app_id="1", key=KEY, secret=SECRET, encryption_master_key_base64=MASTER)


def signature(text: str) -> str:
    """Pusher's auth signature, from the reference: key ':' hex HMAC-SHA256(secret, text)."""
    digest = hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).hexdigest()
    return f"{KEY}:{digest}"


ANN = User(42, "Ann")


# -- private ----------------------------------------------------------------------


def test_private_channel_is_key_colon_hmac_of_socket_and_channel(
    broadcast: Broadcast, sdk: pusher.Pusher
) -> None:
    body = broadcast.authorize(ANN, socket_id=SOCKET, channel_name="private-orders.42")
    assert body == {"auth": signature(f"{SOCKET}:private-orders.42")}
    assert body == sdk.authenticate("private-orders.42", SOCKET)


def test_signatures_depend_on_socket_and_channel(broadcast: Broadcast) -> None:
    one = broadcast.authorize(ANN, socket_id="1.1", channel_name="private-orders.42")
    other_socket = broadcast.authorize(ANN, socket_id="1.2", channel_name="private-orders.42")
    other_secret = hmac.new(b"other", b"1.1:private-orders.42", hashlib.sha256)
    assert one["auth"] != other_socket["auth"]
    assert one["auth"] != f"{KEY}:{other_secret.hexdigest()}"


def test_a_refused_private_channel_is_forbidden(broadcast: Broadcast) -> None:
    with pytest.raises(ForbiddenError) as refused:
        broadcast.authorize(ANN, socket_id=SOCKET, channel_name="private-orders.7")
    assert refused.value.http_status == 403


# -- presence ---------------------------------------------------------------------


def test_presence_channel_data_is_the_exact_signed_json(
    broadcast: Broadcast, sdk: pusher.Pusher
) -> None:
    body = broadcast.authorize(ANN, socket_id=SOCKET, channel_name="presence-chat.lobby")
    member = {"id": 42, "name": "Ann", "room": "lobby"}
    assert json.loads(body["channel_data"]) == {"user_id": "42", "user_info": member}
    assert body["channel_data"] == json.dumps({"user_id": "42", "user_info": member})
    assert body["auth"] == signature(f"{SOCKET}:presence-chat.lobby:{body['channel_data']}")
    assert body == sdk.authenticate(
        "presence-chat.lobby", SOCKET, {"user_id": "42", "user_info": member}
    )


def test_presence_info_with_non_ascii_text_matches_the_sdk(
    broadcast: Broadcast, sdk: pusher.Pusher
) -> None:
    zoe = User(7, "Zoë 🚀")
    body = broadcast.authorize(zoe, socket_id=SOCKET, channel_name="presence-chat.x")
    info = {"id": 7, "name": "Zoë 🚀", "room": "x"}
    assert body == sdk.authenticate("presence-chat.x", SOCKET, {"user_id": "7", "user_info": info})
    assert json.loads(body["channel_data"])["user_info"]["name"] == "Zoë 🚀"


async def test_async_presence_signs_the_same(broadcast: Broadcast) -> None:
    sync = broadcast.authorize(ANN, socket_id=SOCKET, channel_name="presence-chat.lobby")
    body = await broadcast.aauthorize(ANN, socket_id=SOCKET, channel_name="presence-chat.lobby")
    assert body == sync


# Pusher's limits: at most 1 KB of user info and 128 characters of user id per
# presence member (https://pusher.com/docs/channels/using_channels/presence-channels/#limits).


def test_presence_info_at_the_limit_is_signed(broadcast: Broadcast) -> None:
    body = broadcast.authorize(ANN, socket_id=SOCKET, channel_name="presence-big.1024")
    info = json.loads(body["channel_data"])["user_info"]
    assert len(json.dumps(info)) == _auth.MAX_USER_INFO_BYTES == 1024


def test_presence_info_over_1kb_is_refused_before_signing(
    broadcast: Broadcast, monkeypatch: pytest.MonkeyPatch
) -> None:
    signed: list[str] = []
    real = _auth._signature
    monkeypatch.setattr(_auth, "_signature", lambda d, text: signed.append(text) or real(d, text))
    with pytest.raises(PayloadTooLargeError) as too_big:
        broadcast.authorize(ANN, socket_id=SOCKET, channel_name="presence-big.1025")
    assert isinstance(too_big.value, InputError)
    assert (too_big.value.size, too_big.value.limit) == (1025, 1024)
    assert "1025 bytes" in str(too_big.value) and "presence-big.1025" in str(too_big.value)
    assert signed == []  # nothing was signed
    broadcast.authorize(ANN, socket_id=SOCKET, channel_name="presence-big.1000")
    assert len(signed) == 1  # the spy does see a signing


def test_non_ascii_info_counts_as_sent(broadcast: Broadcast) -> None:
    # "é" travels as the 6-character escape \u00e9 in channel_data
    @broadcast.rule("accents.{n}")
    def accents(user: User, n: str) -> dict[str, Any]:
        return {"id": 1, "pad": "é" * int(n)}

    broadcast.authorize(ANN, socket_id=SOCKET, channel_name="presence-accents.167")
    with pytest.raises(PayloadTooLargeError):
        broadcast.authorize(ANN, socket_id=SOCKET, channel_name="presence-accents.168")


def test_presence_user_id_over_128_characters_is_refused(broadcast: Broadcast) -> None:
    body = broadcast.authorize(ANN, socket_id=SOCKET, channel_name="presence-long-id.128")
    assert json.loads(body["channel_data"])["user_id"] == "u" * 128
    with pytest.raises(InputError, match="129 characters; Pusher accepts at most 128"):
        broadcast.authorize(ANN, socket_id=SOCKET, channel_name="presence-long-id.129")


def test_presence_info_that_is_not_json_is_a_validation_error(broadcast: Broadcast) -> None:
    @broadcast.rule("odd.{x}")
    def odd(user: User, x: str) -> dict[str, Any]:
        return {"id": 1, "when": object()}

    with pytest.raises(InputError, match="JSON-serializable"):
        broadcast.authorize(ANN, socket_id=SOCKET, channel_name="presence-odd.1")


# -- encrypted --------------------------------------------------------------------


def test_encrypted_channel_adds_the_shared_secret_as_text(
    broadcast: Broadcast, sdk: pusher.Pusher
) -> None:
    channel = "private-encrypted-orders.42"
    body = broadcast.authorize(ANN, socket_id=SOCKET, channel_name=channel)
    expected = base64.b64encode(hashlib.sha256(channel.encode() + MASTER_BYTES).digest()).decode()
    assert body == {"auth": signature(f"{SOCKET}:{channel}"), "shared_secret": expected}
    assert isinstance(body["shared_secret"], str)
    json.dumps(body)  # the SDK's bytes would fail here
    theirs = sdk.authenticate(channel, SOCKET)
    assert isinstance(theirs["shared_secret"], bytes)
    assert body == {**theirs, "shared_secret": theirs["shared_secret"].decode()}


def test_each_encrypted_channel_has_its_own_shared_secret(broadcast: Broadcast) -> None:
    one = broadcast.authorize(ANN, socket_id=SOCKET, channel_name="private-encrypted-shared.a")
    two = broadcast.authorize(ANN, socket_id=SOCKET, channel_name="private-encrypted-shared.b")
    assert one["shared_secret"] != two["shared_secret"]
    assert len(base64.b64decode(one["shared_secret"])) == 32


def test_encrypted_channel_without_a_master_key_names_the_setting() -> None:
    """A NotSupportedError (a 501 at the endpoints, logged at WARNING), not the
    ConfigurationError it was: a client chooses to ask for the encrypted form of a channel,
    and so chose when a 500 and an ERROR traceback were written."""
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options()}}) as broadcast:
        with_rules(broadcast)
        with pytest.raises(NotSupportedError) as missing:
            broadcast.authorize(ANN, socket_id=SOCKET, channel_name="private-encrypted-orders.42")
        assert "encryption_master_key_base64" in str(missing.value)
        assert "private-encrypted-orders.42" in str(missing.value)
        # a plain private channel still signs
        assert "auth" in broadcast.authorize(
            ANN, socket_id=SOCKET, channel_name="private-orders.42"
        )


# -- user sign-in -----------------------------------------------------------------


def test_user_sign_in_signs_socket_user_and_user_data(
    broadcast: Broadcast, sdk: pusher.Pusher
) -> None:
    body = broadcast.authenticate_user(SOCKET, {"id": "42", "name": "Ann"})
    assert body["user_data"] == json.dumps({"id": "42", "name": "Ann"})
    assert body["auth"] == signature(f"{SOCKET}::user::{body['user_data']}")
    assert body == sdk.authenticate_user(SOCKET, {"id": "42", "name": "Ann"})


def test_user_sign_in_sends_the_id_as_text(broadcast: Broadcast, sdk: pusher.Pusher) -> None:
    # pusher-js drops a sign-in whose user_data id is not a string
    body = broadcast.authenticate_user(SOCKET, {"id": 42, "watchlist": ["7"]})
    assert json.loads(body["user_data"]) == {"id": "42", "watchlist": ["7"]}
    assert body == sdk.authenticate_user(SOCKET, {"id": "42", "watchlist": ["7"]})


async def test_async_user_sign_in_signs_the_same(broadcast: Broadcast) -> None:
    body = await broadcast.aauthenticate_user(SOCKET, {"id": "42"})
    assert body == broadcast.authenticate_user(SOCKET, {"id": "42"})


def test_user_channel_is_the_reserved_server_to_user_channel(broadcast: Broadcast) -> None:
    driver = broadcast.driver(BroadcastPusherDriver).driver
    assert driver.user_channel("42") == "#server-to-user-42"
    with pytest.raises(InputError):
        driver.user_channel("")
    with pytest.raises(InputError, match="at most 128"):
        driver.user_channel("u" * 129)


# -- what the driver refuses to sign -------------------------------------------------


def test_sign_channel_refuses_requests_it_cannot_sign(broadcast: Broadcast) -> None:
    driver = broadcast.driver(BroadcastPusherDriver).driver
    with pytest.raises(InputError, match="needs a channel name"):
        driver.sign_channel(AuthRequest("private", SOCKET))
    with pytest.raises(InputError, match="needs an 'id'"):
        driver.sign_channel(AuthRequest("presence", SOCKET, "presence-x", "x", ANN, member={}))
    with pytest.raises(InputError, match="needs no authorization"):
        driver.sign_channel(AuthRequest("public", SOCKET, "orders", "orders"))  # type: ignore[arg-type]


# -- secrets ----------------------------------------------------------------------


def frames(error: BaseException) -> Iterator[Any]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        tb: TracebackType | None = current.__traceback__
        while tb is not None:
            yield tb.tb_frame
            tb = tb.tb_next
        current = current.__cause__ or current.__context__


def shows_a_secret(value: object) -> bool:
    shown = value if isinstance(value, (str, bytes)) else repr(value)
    text = shown.decode("latin-1") if isinstance(shown, bytes) else shown
    return SECRET in text or MASTER in text or MASTER_BYTES.decode("latin-1") in text


def test_secrets_are_absent_from_errors_and_their_tracebacks(broadcast: Broadcast) -> None:
    errors: list[BroadcastError] = []
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options()}}) as no_master:
        with_rules(no_master)
        for target, channel in [
            (no_master, "private-encrypted-orders.42"),
            (broadcast, "presence-big.2000"),
            (broadcast, "presence-long-id.500"),
            (broadcast, "private-orders.1"),
        ]:
            with pytest.raises(BroadcastError) as caught:
                target.authorize(ANN, socket_id=SOCKET, channel_name=channel)
            errors.append(caught.value)
    for error in errors:
        assert not shows_a_secret(str(error)) and not shows_a_secret(repr(error))
        assert not any(shows_a_secret(arg) for arg in error.args)
        assert not any(shows_a_secret(v) for v in vars(error).values())
        for frame in frames(error):
            if frame.f_code.co_filename == __file__:
                continue
            leaked = [name for name, value in frame.f_locals.items() if shows_a_secret(value)]
            assert leaked == [], f"{frame.f_code.co_name} holds a secret in {leaked}"


def test_answers_carry_no_secret(broadcast: Broadcast) -> None:
    driver = broadcast.driver(BroadcastPusherDriver).driver
    for channel in ("private-orders.42", "presence-chat.1", "private-encrypted-orders.42"):
        body = broadcast.authorize(ANN, socket_id=SOCKET, channel_name=channel)
        assert not shows_a_secret(json.dumps(body))
    assert not shows_a_secret(broadcast.authenticate_user(SOCKET, {"id": "42"}))
    assert not shows_a_secret(repr(driver)) and not shows_a_secret(repr(driver.settings))
    assert not any(shows_a_secret(v) for v in vars(_auth).values())


def test_concurrent_async_authorizations_each_get_their_own_signature(
    broadcast: Broadcast,
) -> None:
    async def storm() -> list[dict[str, Any]]:
        return await asyncio.gather(
            *(
                broadcast.aauthorize(
                    User(i, f"u{i}"), socket_id=f"{i}.{i}", channel_name=f"private-orders.{i}"
                )
                for i in range(200)
            )
        )

    bodies = asyncio.run(storm())
    assert [b["auth"] for b in bodies] == [
        signature(f"{i}.{i}:private-orders.{i}") for i in range(200)
    ]
