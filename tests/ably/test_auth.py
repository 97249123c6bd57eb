"""Authorizing Ably subscriptions: a JWT per channel, proved with the ``ably`` SDK as the client.

The tokens are checked two ways: taken apart here (header, claims, the
capability's exact operations, the signature recomputed with the key's
secret), and used by the real ``ably`` SDK against the HTTPS emulator, which
verifies the signature and expiry and enforces the capability on every
channel (tests/servers/ably_emulator.py). The end-to-end tests serve
``/broadcasting/auth`` with the library's own Starlette routes on a real
uvicorn, and the SDK fetches its token from there through ``auth_url``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from broadcasting import (
    BadRequestError,
    Broadcast,
    EncryptedPrivateChannel,
    ForbiddenError,
    InputError,
    NotSupportedError,
    PresenceChannel,
    PrivateChannel,
)
from broadcasting.plugin import AuthRequest
from broadcasting_ably import _auth
from servers.ably_emulator import LIMITED_KEY, TEST_KEY, AblyEmulator

KEY_NAME, KEY_SECRET = TEST_KEY.split(":", 1)
SOCKET = "1234.5678"


@dataclass
class User:
    id: int
    name: str


ALICE = User(7, "Alice")
BOB = User(8, "Bob")


def _part(text: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def decode(token: str, secret: str = KEY_SECRET) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a JWT, after checking its HS256 signature with ``secret``."""
    head, body, signature = token.split(".")
    expected = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64encode(expected).rstrip(b"=").decode() == signature
    return _part(head), _part(body)


#: What every client token grants besides its channels (Echo's public channels).
PUBLIC = {"public:*": ["history", "subscribe"]}


def capability(body: dict[str, Any]) -> dict[str, list[str]]:
    _, claims = decode(body["token"])
    assert claims["x-ably-capability"] == body["capability"]
    result: dict[str, list[str]] = json.loads(body["capability"])
    return result


def with_rules(broadcast: Broadcast) -> Broadcast:
    @broadcast.rule("orders.{order_id}")
    def order_owner(user: User, order_id: str) -> bool:
        return order_id in ("1", "2", "3")

    @broadcast.rule("chat.{room}")
    def chat_member(user: User, room: str) -> dict[str, Any] | None:
        return {"id": str(user.id), "name": user.name} if room != "closed" else None

    return broadcast


# -- channel names ------------------------------------------------------------------


def test_channels_are_named_as_ably_laravel_broadcaster_names_them(broadcast: Broadcast) -> None:
    driver = broadcast.driver("ably").driver
    assert driver.channel_name(PrivateChannel("orders.1")) == "private:orders.1"
    assert driver.channel_name(PresenceChannel("chat.1")) == "presence:chat.1"
    assert driver.parse_channel("private:orders.1") == ("private", "orders.1")
    assert driver.parse_channel("presence:chat.1") == ("presence", "chat.1")
    assert driver.parse_channel("private-orders.1") == ("public", "private-orders.1")
    with pytest.raises(
        NotSupportedError, match="'ably' driver does not support encrypted channels"
    ):
        driver.channel_name(EncryptedPrivateChannel("orders.1"))


def test_pusher_style_and_public_names_need_no_token(broadcast: Broadcast) -> None:
    with_rules(broadcast)
    for channel in ("private-orders.1", "private-encrypted-orders.1", "orders.1"):
        with pytest.raises(BadRequestError, match="public channel"):
            broadcast.authorize(ALICE, socket_id=SOCKET, channel_name=channel)


# -- what a token holds -------------------------------------------------------------


def test_a_private_token_grants_that_channel_to_the_user(broadcast: Broadcast) -> None:
    with_rules(broadcast)
    before = int(time.time())
    body = broadcast.authorize(ALICE, socket_id=SOCKET, channel_name="private:orders.1")
    header, claims = decode(body["token"])
    assert header == {"typ": "JWT", "alg": "HS256", "kid": KEY_NAME}
    assert json.loads(claims["x-ably-capability"]) == {
        "private:orders.1": ["history", "subscribe"],
        **PUBLIC,
    }
    assert claims["x-ably-clientId"] == "7" == body["clientId"]
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] - claims["iat"] == 3600
    assert (body["issued"], body["expires"]) == (claims["iat"] * 1000, claims["exp"] * 1000)
    assert "info" not in body
    json.dumps(body)  # JSON-ready


def test_a_presence_token_lets_the_member_enter_with_the_rules_info(
    broadcast: Broadcast,
) -> None:
    with_rules(broadcast)
    body = broadcast.authorize(ALICE, socket_id=SOCKET, channel_name="presence:chat.1")
    assert capability(body) == {"presence:chat.1": ["history", "presence", "subscribe"], **PUBLIC}
    assert decode(body["token"])[1]["x-ably-clientId"] == "7" == body["clientId"]
    assert body["info"] == {"id": "7", "name": "Alice"}


def test_a_user_without_an_id_gets_a_token_without_client_id(broadcast: Broadcast) -> None:
    @broadcast.rule("orders.{order_id}")
    def anyone(user: object, order_id: str) -> bool:
        return True

    body = broadcast.authorize("someone", socket_id=SOCKET, channel_name="private:orders.1")
    assert "x-ably-clientId" not in decode(body["token"])[1]
    assert "clientId" not in body


def test_token_ttl_is_an_option(make_broadcast: Callable[..., Broadcast]) -> None:
    broadcast = with_rules(make_broadcast(token_ttl=120))
    body = broadcast.authorize(ALICE, socket_id=SOCKET, channel_name="private:orders.1")
    _, claims = decode(body["token"])
    assert claims["exp"] - claims["iat"] == 120


@pytest.mark.parametrize("ttl", [0, 59, 86401, "3600", True, 1.5])
def test_a_bad_token_ttl_is_a_configuration_error(
    make_broadcast: Callable[..., Broadcast], ttl: object
) -> None:
    from broadcasting import ConfigurationError

    with pytest.raises(ConfigurationError, match="token_ttl"):
        make_broadcast(token_ttl=ttl).driver("ably")


# -- the client's current token: kept when it is ours, ignored otherwise ------------------


def test_the_current_token_keeps_its_channels(broadcast: Broadcast) -> None:
    with_rules(broadcast)
    first = broadcast.authorize(ALICE, socket_id=SOCKET, channel_name="private:orders.1")
    second = broadcast.authorize(
        ALICE,
        socket_id=SOCKET,
        channel_name="presence:chat.1",
        extra={"token": first["token"]},
    )
    assert capability(second) == {
        "presence:chat.1": ["history", "presence", "subscribe"],
        "private:orders.1": ["history", "subscribe"],
        **PUBLIC,
    }
    third = broadcast.authorize(
        ALICE, socket_id=SOCKET, channel_name="private:orders.2", extra={"token": second["token"]}
    )
    assert set(capability(third)) == {
        "private:orders.1",
        "private:orders.2",
        "presence:chat.1",
        "public:*",
    }
    assert third["clientId"] == "7"


def _tampered(token: str) -> str:
    head, body, signature = token.split(".")
    claims = _part(body)
    claims["x-ably-capability"] = json.dumps({"*": ["*"]})
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{signature}"


def _signed_with(key: str, claims: dict[str, Any]) -> str:
    from broadcasting.plugin import Secret

    return _auth.encode_jwt(Secret(key), claims)


@pytest.mark.parametrize(
    "held",
    [
        pytest.param(lambda good: _tampered(good), id="tampered-claims"),
        pytest.param(
            lambda good: good[:-4] + ("AAAA" if good[-4:] != "AAAA" else "BBBB"), id="bad-signature"
        ),
        pytest.param(
            lambda good: _signed_with(
                "appid.keyid:AnotherSecret",
                {"iat": 1, "exp": int(time.time()) + 60, "x-ably-capability": '{"*":["*"]}'},
            ),
            id="signed-with-another-secret",
        ),
        pytest.param(
            lambda good: _signed_with(
                LIMITED_KEY,
                {"iat": 1, "exp": int(time.time()) + 60, "x-ably-capability": '{"*":["*"]}'},
            ),
            id="another-key",
        ),
        pytest.param(
            lambda good: _signed_with(
                TEST_KEY,
                {"iat": 1, "exp": int(time.time()) - 1, "x-ably-capability": '{"*":["*"]}'},
            ),
            id="expired",
        ),
        pytest.param(
            lambda good: _signed_with(
                TEST_KEY,
                {
                    "iat": 1,
                    "exp": int(time.time()) + 60,
                    "x-ably-capability": '{"private:orders.9":["*"]}',
                    "x-ably-clientId": "8",
                },
            ),
            id="another-users-token",
        ),
        pytest.param(lambda good: "not-a-jwt", id="garbage"),
        pytest.param(lambda good: "a.b.c", id="three-garbage-parts"),
    ],
)
def test_a_current_token_that_is_not_ours_or_not_valid_is_ignored(
    broadcast: Broadcast, held: Callable[[str], str]
) -> None:
    with_rules(broadcast)
    good = broadcast.authorize(ALICE, socket_id=SOCKET, channel_name="private:orders.1")
    body = broadcast.authorize(
        ALICE,
        socket_id=SOCKET,
        channel_name="presence:chat.1",
        extra={"token": held(good["token"])},
    )
    assert capability(body) == {"presence:chat.1": ["history", "presence", "subscribe"], **PUBLIC}
    assert body["clientId"] == "7"


# -- refusals -----------------------------------------------------------------------


def test_a_refused_rule_no_rule_and_no_user_are_forbidden(broadcast: Broadcast) -> None:
    with_rules(broadcast)
    for user, channel in [
        (ALICE, "private:orders.99"),
        (ALICE, "presence:chat.closed"),
        (ALICE, "private:invoices.1"),
        (None, "private:orders.1"),
    ]:
        with pytest.raises(ForbiddenError) as caught:
            broadcast.authorize(user, socket_id=SOCKET, channel_name=channel)
        assert caught.value.http_status == 403


def test_presence_info_ably_would_refuse_is_an_error_before_signing(broadcast: Broadcast) -> None:
    @broadcast.rule("big.{room}")
    def big(user: User, room: str) -> dict[str, Any]:
        return {"id": "7", "bio": "x" * (64 * 1024)}

    with pytest.raises(InputError, match="Ably accepts at most 65536"):
        broadcast.authorize(ALICE, socket_id=SOCKET, channel_name="presence:big.1")


def test_presence_info_with_a_lone_surrogate_is_an_input_error_not_a_crash(
    broadcast: Broadcast,
) -> None:
    """No UTF-8 carries it: the core refuses it before signing, and the driver itself refuses
    a request that reaches it (a UnicodeEncodeError, a 500, before)."""

    @broadcast.rule("odd.{room}")
    def odd(user: User, room: str) -> dict[str, Any]:
        return {"id": "7", "name": "Ada\ud800"}

    with pytest.raises(InputError, match="lone surrogate"):
        broadcast.authorize(ALICE, socket_id=SOCKET, channel_name="presence:odd.1")
    driver = broadcast.driver("ably").driver
    member = {"id": "7", "name": "Ada\ud800"}
    request = AuthRequest("presence", SOCKET, "presence:odd.1", "odd.1", ALICE, member=member)
    with pytest.raises(InputError, match="is not JSON"):
        driver.sign_channel(request)


def test_sign_in_and_sending_to_a_user_are_not_supported(broadcast: Broadcast) -> None:
    with pytest.raises(NotSupportedError, match="does not support user sign-in") as caught:
        broadcast.authenticate_user(SOCKET, {"id": "7"})
    assert caught.value.http_status == 501
    with pytest.raises(NotSupportedError, match="sending to a user"):
        broadcast.send_to_user("7", "hello", {})


def test_an_encrypted_request_reaching_the_driver_is_not_supported(broadcast: Broadcast) -> None:
    driver = broadcast.driver("ably").driver
    request = AuthRequest("encrypted", SOCKET, "private-encrypted-x", "x", ALICE)
    with pytest.raises(NotSupportedError, match="encrypted channels"):
        driver.sign_channel(request)


def test_the_key_appears_in_no_answer_error_or_repr(broadcast: Broadcast) -> None:
    with_rules(broadcast)
    shown = [
        json.dumps(broadcast.authorize(ALICE, socket_id=SOCKET, channel_name="presence:chat.1")),
        repr(broadcast.driver("ably")) + repr(broadcast.driver("ably").driver),
    ]
    for user, channel in [(ALICE, "private:orders.99"), (ALICE, "private-x")]:
        try:
            broadcast.authorize(user, socket_id=SOCKET, channel_name=channel)
        except Exception as exc:
            shown.append(str(exc) + repr(exc))
    token_claims = json.dumps(decode(json.loads(shown[0])["token"]))
    for text in [*shown, token_claims]:
        assert KEY_SECRET not in text and TEST_KEY not in text


async def test_aauthenticate_with_an_async_rule(abroadcast: Broadcast) -> None:
    @abroadcast.rule("orders.{order_id}")
    async def owner(user: User, order_id: str) -> bool:
        return order_id == "1"

    body = await abroadcast.aauthorize(ALICE, socket_id=SOCKET, channel_name="private:orders.1")
    assert capability(body) == {"private:orders.1": ["history", "subscribe"], **PUBLIC}
    with pytest.raises(ForbiddenError):
        await abroadcast.aauthorize(ALICE, socket_id=SOCKET, channel_name="private:orders.2")


# -- the ably SDK as the client, through our endpoint, against the emulator ----------------


USERS = {"alice": ALICE, "bob": BOB}


def auth_app(broadcast: Broadcast) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request

    from broadcasting.web.starlette import broadcasting_routes

    def current_user(request: Request) -> User | None:
        return USERS.get(request.headers.get("x-user", ""))

    return Starlette(routes=broadcasting_routes(broadcast, user=current_user))


def sdk_client(emulator: AblyEmulator, server_url: str, user: str, **auth_params: str) -> Any:
    from ably import AblyRest

    return AblyRest(
        auth_url=f"{server_url}/broadcasting/auth",
        auth_headers={"X-User": user},
        auth_params={"socket_id": SOCKET, **auth_params},
        endpoint=emulator.host,
        tls_port=emulator.port,
        use_binary_protocol=False,
        fallback_hosts=[],
    )


async def test_the_sdk_gets_a_token_from_our_endpoint_and_reads_only_that_channel(
    emulator: AblyEmulator, abroadcast: Broadcast, serve: Callable[[Any], Any]
) -> None:
    from ably.util.exceptions import AblyException

    with_rules(abroadcast)
    await abroadcast.achannel("private:orders.1", {"id": 1}, "shipped")
    await abroadcast.achannel("private:orders.2", {"id": 2}, "shipped")
    before = len(emulator.requests)  # the driver's own publishes (with its own token)
    server = serve(auth_app(abroadcast))
    client = sdk_client(emulator, server.url, "alice", channel_name="private:orders.1")
    try:
        history = await client.channels.get("private:orders.1").history()
        assert [(m.name, m.data) for m in history.items] == [("shipped", {"id": 1})]
        assert client.auth.client_id == "7"

        with pytest.raises(AblyException) as denied:
            await client.channels.get("private:orders.2").history()
        assert (denied.value.status_code, denied.value.code) == (401, 40160)

        with pytest.raises(AblyException) as publish:
            await client.channels.get("private:orders.1").publish("forged", {"id": 1})
        assert publish.value.code == 40160  # the token grants no publish
    finally:
        await client.close()
    token_uses = [
        r
        for r in emulator.requests[before:]
        if r.headers.get("authorization", "").startswith("Bearer ")
    ]
    assert len(token_uses) == 3
    assert [m.data for m in emulator.messages("private:orders.1")] == [{"id": 1}]
    assert emulator.violations == []


async def test_the_sdk_reads_the_presence_set_with_a_presence_token(
    emulator: AblyEmulator, abroadcast: Broadcast, serve: Callable[[Any], Any]
) -> None:
    with_rules(abroadcast)
    emulator.enter_presence("presence:chat.1", "7", {"id": "7", "name": "Alice"})
    emulator.enter_presence("presence:chat.1", "8", {"id": "8", "name": "Bob"})
    server = serve(auth_app(abroadcast))
    client = sdk_client(emulator, server.url, "alice", channel_name="presence:chat.1")
    try:
        present = await client.channels.get("presence:chat.1").presence.get()
        assert sorted((m.client_id, m.data["name"]) for m in present.items) == [
            ("7", "Alice"),
            ("8", "Bob"),
        ]
        token = await client.auth.authorize()
        assert token.client_id == "7"
    finally:
        await client.close()
    assert emulator.violations == []


async def test_a_merged_token_works_for_both_channels_and_no_third(
    emulator: AblyEmulator, abroadcast: Broadcast
) -> None:
    from ably import AblyRest
    from ably.util.exceptions import AblyException

    with_rules(abroadcast)
    first = await abroadcast.aauthorize(ALICE, socket_id=SOCKET, channel_name="private:orders.1")
    merged = await abroadcast.aauthorize(
        ALICE, socket_id=SOCKET, channel_name="private:orders.2", extra={"token": first["token"]}
    )
    client = AblyRest(
        token=merged["token"],
        endpoint=emulator.host,
        tls_port=emulator.port,
        fallback_hosts=[],
    )
    try:
        for channel in ("private:orders.1", "private:orders.2"):
            assert (await client.channels.get(channel).history()).items == []
        with pytest.raises(AblyException) as denied:
            await client.channels.get("private:orders.3").history()
        assert denied.value.code == 40160
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("forge", "code"),
    [
        pytest.param(lambda good: _tampered(good), 40144, id="tampered"),
        pytest.param(
            lambda good: _signed_with(
                TEST_KEY,
                {"iat": 1, "exp": int(time.time()) - 5, "x-ably-capability": '{"*":["*"]}'},
            ),
            40142,
            id="expired",
        ),
        pytest.param(
            lambda good: _signed_with(
                "otherapp.otherkey:OtherSecret",
                {"iat": 1, "exp": int(time.time()) + 60, "x-ably-capability": '{"*":["*"]}'},
            ),
            40101,
            id="unknown-key",
        ),
        pytest.param(
            lambda good: ".".join(
                [
                    base64.urlsafe_b64encode(b'{"typ":"JWT","alg":"none","kid":"appid.keyid"}')
                    .rstrip(b"=")
                    .decode(),
                    good.split(".")[1],
                    "",
                ]
            ),
            40140,
            id="alg-none",
        ),
    ],
)
async def test_the_emulator_refuses_forged_and_expired_tokens(
    emulator: AblyEmulator,
    abroadcast: Broadcast,
    forge: Callable[[str], str],
    code: int,
) -> None:
    from ably import AblyRest
    from ably.util.exceptions import AblyException

    with_rules(abroadcast)
    good = await abroadcast.aauthorize(ALICE, socket_id=SOCKET, channel_name="private:orders.1")
    client = AblyRest(
        token=forge(good["token"]),
        endpoint=emulator.host,
        tls_port=emulator.port,
        fallback_hosts=[],
    )
    try:
        with pytest.raises(AblyException):
            await client.channels.get("private:orders.1").history()
    finally:
        await client.close()
    answered = [r.answer for r in emulator.requests if r.path.endswith("/messages")]
    assert answered and answered[0]["error"]["code"] == code


async def test_a_refused_rule_reaches_the_sdk_as_the_endpoints_403(
    emulator: AblyEmulator, abroadcast: Broadcast, serve: Callable[[Any], Any]
) -> None:
    from ably.util.exceptions import AblyException

    with_rules(abroadcast)
    server = serve(auth_app(abroadcast))  # the endpoints answer errors in Ably's own shape
    for user, channel in [("alice", "private:orders.99"), ("nobody", "private:orders.1")]:
        client = sdk_client(emulator, server.url, user, channel_name=channel)
        try:
            with pytest.raises(AblyException) as refused:
                await client.channels.get(channel).history()
            assert (refused.value.status_code, refused.value.code) == (403, 40300)
        finally:
            await client.close()
    assert [r for r in emulator.requests if r.method == "GET"] == []  # no token, no request


def test_the_endpoint_merges_the_token_an_echo_style_client_posts_back(
    broadcast: Broadcast, serve: Callable[[Any], Any]
) -> None:
    """Posted the way Ably's Echo connector posts (JSON: channel_name and its current token,
    no socket_id), the second answer grants both channels."""
    import httpx

    with_rules(broadcast)
    server = serve(auth_app(broadcast))
    url = f"{server.url}/broadcasting/auth"
    with httpx.Client(headers={"X-User": "alice"}) as client:
        # the connector's first request names no channel: a connection token
        connect = client.post(url, json={"channel_name": None, "token": None})
        first = client.post(
            url, json={"channel_name": "private:orders.1", "token": connect.json()["token"]}
        )
        second = client.post(
            url, json={"channel_name": "presence:chat.1", "token": first.json()["token"]}
        )
    assert connect.status_code == first.status_code == second.status_code == 200
    assert capability(connect.json()) == {"public:*": ["history", "subscribe"]}
    assert first.headers["content-type"].startswith("application/json")
    assert capability(second.json()) == {
        "presence:chat.1": ["history", "presence", "subscribe"],
        "private:orders.1": ["history", "subscribe"],
        **PUBLIC,
    }
    assert second.json()["info"] == {"id": "7", "name": "Alice"}


def test_no_frame_of_a_refused_authorization_holds_the_key(broadcast: Broadcast) -> None:
    @broadcast.rule("big.{room}")
    def big(user: User, room: str) -> dict[str, Any]:
        return {"id": "7", "bio": "x" * (64 * 1024)}

    with_rules(broadcast)
    held = broadcast.authorize(ALICE, socket_id=SOCKET, channel_name="private:orders.1")
    for channel, extra in [
        ("presence:big.1", {"token": held["token"]}),
        ("private:orders.99", {"token": _tampered(held["token"])}),
    ]:
        with pytest.raises((InputError, ForbiddenError)) as caught:
            broadcast.authorize(ALICE, socket_id=SOCKET, channel_name=channel, extra=extra)
        current: BaseException | None = caught.value
        while current is not None:
            tb = current.__traceback__
            while tb is not None:
                frame = tb.tb_frame
                if frame.f_code.co_filename != __file__:
                    for name, value in frame.f_locals.items():
                        shown = value if isinstance(value, str) else repr(value)
                        assert KEY_SECRET not in shown, f"{frame.f_code.co_name}.{name}"
                tb = tb.tb_next
            current = current.__cause__ or current.__context__


async def test_a_connection_token_reads_public_channels_and_grows_per_channel(
    emulator: AblyEmulator, abroadcast: Broadcast
) -> None:
    """The token Ably's Echo connector asks for before any channel: ``public:*`` only; the
    channel tokens signed on top of it keep it."""
    from ably import AblyRest
    from ably.util.exceptions import AblyException

    with_rules(abroadcast)
    connect = await abroadcast.aauthorize(ALICE)  # no channel_name: Echo's first request
    assert capability(connect) == PUBLIC
    assert connect["clientId"] == "7"
    assert "clientId" not in abroadcast.authorize(None)
    await abroadcast.achannel("public:orders", {"id": 1}, "listed")

    client = AblyRest(
        token=connect["token"], endpoint=emulator.host, tls_port=emulator.port, fallback_hosts=[]
    )
    try:
        history = await client.channels.get("public:orders").history()
        assert [m.data for m in history.items] == [{"id": 1}]
        with pytest.raises(AblyException) as denied:
            await client.channels.get("private:orders.1").history()
        assert denied.value.code == 40160
    finally:
        await client.close()

    grown = await abroadcast.aauthorize(
        ALICE, socket_id=SOCKET, channel_name="private:orders.1", extra={"token": connect["token"]}
    )
    assert capability(grown) == {"private:orders.1": ["history", "subscribe"], **PUBLIC}
    again = abroadcast.authorize(ALICE, extra={"token": grown["token"]})  # renewal keeps them
    assert capability(again) == capability(grown)
    other_user = abroadcast.authorize(BOB, extra={"token": grown["token"]})
    assert capability(other_user) == PUBLIC
    guest = abroadcast.authorize(None, extra={"token": grown["token"]})
    assert capability(guest) == PUBLIC and "clientId" not in guest


def test_the_client_id_of_a_private_token_comes_from_the_users_id(broadcast: Broadcast) -> None:
    import uuid

    broadcast.rule("orders.{order_id}")(lambda user, order_id: True)

    class DjangoUser:
        pk = 12

    class FlaskLoginUser:
        def get_id(self) -> str:
            return "u-13"

    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    for user, expected in [
        ({"id": 11}, "11"),
        (DjangoUser(), "12"),
        (FlaskLoginUser(), "u-13"),
        (User(id=ident, name="x"), str(ident)),  # type: ignore[arg-type]
        ({"id": "*"}, None),
        ({"id": True}, None),
        ("just a name", None),
    ]:
        body = broadcast.authorize(user, socket_id=SOCKET, channel_name="private:orders.1")
        assert body.get("clientId") == expected, user
        assert decode(body["token"])[1].get("x-ably-clientId") == expected


def test_a_merged_token_stays_small_enough_to_send_back(broadcast: Broadcast) -> None:
    """Each authorization adds a channel; past 4 KiB of capability (or 100 channels) the
    carried channels that do not fit are left out (never the requested one), so the token
    the client posts back stays under the web endpoints' 8 KiB body limit."""
    from broadcasting.web import MAX_AUTH_BODY

    broadcast.rule("room.{name}")(lambda user, name: True)
    token = None
    longest = 0
    most = 0
    for n in range(150):
        channel = f"private:room.{n:03d}-{'x' * 60}"
        extra = {"token": token} if token else None
        body = broadcast.authorize(ALICE, socket_id=SOCKET, channel_name=channel, extra=extra)
        granted = capability(body)
        assert channel in granted and "public:*" in granted
        assert len(json.dumps(granted, separators=(",", ":"))) <= 4096
        token = body["token"]
        longest = max(longest, len(token))
        most = max(most, len(granted))
        if n == 1:
            assert len(granted) == 3  # it did merge
    assert most >= 35  # it kept as many as fit
    assert len(json.dumps({"channel_name": "x" * 200, "token": token})) < MAX_AUTH_BODY
    assert longest < MAX_AUTH_BODY - 512


async def test_the_emulator_attributes_a_tokens_publishes_to_its_client_id(
    emulator: AblyEmulator,
) -> None:
    """What Ably does with a token that may publish: its messages carry the token's client
    id, and a message claiming another client id is refused (40012)."""
    from ably import AblyRest
    from ably.types.message import Message
    from ably.util.exceptions import AblyException

    token = _signed_with(
        TEST_KEY,
        {
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
            "x-ably-capability": '{"room":["publish"]}',
            "x-ably-clientId": "7",
        },
    )
    client = AblyRest(
        token=token,
        endpoint=emulator.host,
        tls_port=emulator.port,
        fallback_hosts=[],
        use_binary_protocol=False,
    )
    try:
        await client.channels.get("room").publish("said", "hi")
        with pytest.raises(AblyException):
            await client.channels.get("room").publish(
                messages=[Message(name="said", data="forged", client_id="8")]
            )
    finally:
        await client.close()
    assert [(m.data, m.client_id) for m in emulator.messages("room")] == [("hi", "7")]
    assert emulator.requests[-1].answer["error"]["code"] == 40012


def test_ably_clients_need_not_send_a_socket_id(broadcast: Broadcast) -> None:
    """Ably's Echo connector posts only channel_name and its token: no socket id."""
    with_rules(broadcast)
    body = broadcast.authorize(ALICE, channel_name="private:orders.1")
    assert capability(body) == {"private:orders.1": ["history", "subscribe"], **PUBLIC}
    # one that is sent must look like an Ably connection id (or connection key)
    for socket_id in ("hd9fMBWlAT", "hd9fMBWlAT!x-1", "A:1:0"):
        assert broadcast.authorize(ALICE, socket_id=socket_id, channel_name="private:orders.1")
    for socket_id in ("no spaces", "x" * 65, "a/b"):
        with pytest.raises(BadRequestError, match="the ably driver's connection ids"):
            broadcast.authorize(ALICE, socket_id=socket_id, channel_name="private:orders.1")


def test_the_endpoints_answer_errors_in_ablys_shape(broadcast: Broadcast) -> None:
    """The ably SDK and ably-js parse an authUrl's error body as Ably's, and fail on others
    (the SDK's reading of it, end to end: test_a_refused_rule_reaches_the_sdk_as_...)."""
    assert broadcast.driver().driver.error_body(403, "forbidden") == {
        "error": {"message": "forbidden", "statusCode": 403, "code": 40300}
    }
