"""Issue 17, items 1, 3 and 11, Ably side: what a client's held token can and cannot carry.

The attacks are made as the issue describes them: over HTTP, against the
library's own Starlette routes (``/broadcasting/auth``, driven by Starlette's
test client), and the tokens they yield are then used with the real ``ably``
SDK against the HTTPS emulator (tests/servers/ably_emulator.py), which
verifies every JWT, enforces its capability and refuses revoked tokens.

1. A held token's channels are carried over only for the signed-in user
   whose id is the token's client id, only when the driver signed it for a
   client (no wildcard, no operation clients never get, not the publishing
   token), not after this process's ``terminate_user``, and each only when the
   channel rules allow it again now.
3. A channel name that Ably would read as a wildcard (``*``, or ``[``/``:``
   right after the prefix) is a 400 before any rule or signing, and a rule's
   ``{param}`` never matches Ably's special characters.
11. The held token reaches the driver as a ``Secret``; no frame of the driver
   holds its text when something fails.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from broadcasting import BadRequestError, Broadcast, InputError  # noqa: E402
from broadcasting.plugin import AuthRequest, Secret  # noqa: E402
from broadcasting_ably import _auth  # noqa: E402
from servers.ably_emulator import TEST_KEY, AblyEmulator  # noqa: E402

KEY = Secret(TEST_KEY)
#: What every client token grants besides its channels (Echo's public channels).
PUBLIC = {"public:*": ["history", "subscribe"]}
PRIVATE = ["history", "subscribe"]
PRESENCE = ["history", "presence", "subscribe"]
#: Starlette's test client warns that it will want httpx2; httpx is what is installed
pytestmark = pytest.mark.filterwarnings(
    "ignore:Using `httpx` with `starlette.testclient` is deprecated"
)
USERS: dict[str, dict[str, Any]] = {
    "alice": {"id": 7, "name": "Alice"},
    "bob": {"id": 8, "name": "Bob"},
}


# -- the application: rules, its auth endpoint, the emulator ------------------------------


@pytest.fixture(scope="module")
def emulator_server() -> Iterator[AblyEmulator]:
    with AblyEmulator() as server:
        yield server


@pytest.fixture
def emulator(emulator_server: AblyEmulator, monkeypatch: pytest.MonkeyPatch) -> AblyEmulator:
    """The emulator, reset, its CA handed to the SDK's httpx clients (read when one is made)."""
    emulator_server.reset()
    monkeypatch.setenv("SSL_CERT_FILE", emulator_server.ca_path)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    return emulator_server


@pytest.fixture(autouse=True)
def _forget_revocations() -> Iterator[None]:
    """terminate_user's record is per process: keep it from reaching other tests."""
    yield
    _auth.REVOKED.clear()


@dataclass
class App:
    """An application with channel rules and the library's Starlette auth routes."""

    broadcast: Broadcast
    #: user id -> the order ids the ``orders.{order_id}`` rule allows now
    orders: dict[str, set[str]] = field(default_factory=dict)
    client: Any = None

    def post(self, who: str | None, **fields: Any) -> Any:
        """POST JSON to ``/broadcasting/auth`` as Ably's Echo connector does (no socket id)."""
        headers = {"X-User": who} if who else {}
        return self.client.post("/broadcasting/auth", json=fields, headers=headers)

    def token(self, who: str | None, **fields: Any) -> dict[str, Any]:
        """The answer's body, which must be a 200."""
        reply = self.post(who, **fields)
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body


@pytest.fixture
def app(emulator: AblyEmulator) -> Iterator[App]:
    options = emulator.options(retry_backoff=0.01, retry_max_backoff=0.05)
    with Broadcast({"DRIVER": "ably", "DRIVERS": {"ably": options}}) as broadcast:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.testclient import TestClient

        from broadcasting.web.starlette import broadcasting_routes

        def current_user(request: Request) -> dict[str, Any] | None:
            return USERS.get(request.headers.get("x-user", ""))

        routes = broadcasting_routes(broadcast, user=current_user)
        made = App(broadcast, {"7": {"1", "2"}, "8": {"2"}}, TestClient(Starlette(routes=routes)))

        @broadcast.rule("orders.{order_id}")
        def order_owner(user: dict[str, Any], order_id: str) -> bool:
            return order_id in made.orders.get(str(user.get("id")), set())

        @broadcast.rule("chat.{room}")
        def anyone_signed_in(user: dict[str, Any], room: str) -> bool:
            return True  # permissive on purpose: item 3's rule

        @broadcast.rule("lobby.{room}")
        def lobby_member(user: dict[str, Any], room: str) -> dict[str, Any]:
            return {"id": str(user["id"]), "name": user["name"]}

        yield made


def capability(body: dict[str, Any]) -> dict[str, list[str]]:
    """The capability of an answer's token, after verifying it with the key."""
    claims = _auth.decode_jwt(KEY, body["token"])
    assert claims is not None, "not a valid token of the test key"
    assert claims["x-ably-capability"] == body["capability"]
    assert claims.get("x-ably-clientId") == body.get("clientId")
    granted: dict[str, list[str]] = json.loads(body["capability"])
    return granted


def signed(capability: dict[str, list[str]], client_id: str | None = "7") -> str:
    """A valid JWT of the test key (what the driver would accept as its own signature)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iat": now,
        "exp": now + 600,
        "x-ably-capability": json.dumps(capability, separators=(",", ":")),
    }
    if client_id is not None:
        claims["x-ably-clientId"] = client_id
    return _auth.encode_jwt(KEY, claims)


def sdk(emulator: AblyEmulator, token: str) -> Any:
    from ably.sync import AblyRestSync

    return AblyRestSync(
        token=token,
        endpoint=emulator.host,
        tls_port=emulator.port,
        fallback_hosts=[],
        use_binary_protocol=False,
    )


def refusal(emulator: AblyEmulator, token: str, read: str) -> int | None:
    """The emulator's error code when ``token`` reads ``read``'s history; ``None`` if it may.

    The code is the emulator's answer: the SDK turns a revoked token (40141) into
    its own 40171 when it has no way to get another.
    """
    from ably.sync.util.exceptions import AblyException

    client = sdk(emulator, token)
    try:
        client.channels.get(read).history()
    except AblyException:
        code: int = emulator.requests[-1].answer["error"]["code"]
        return code
    finally:
        client.close()
    return None


# -- item 1: renewing a held token ----------------------------------------------------


def test_renewal_without_a_session_gives_public_channels_only_and_no_client_id(
    app: App, emulator: AblyEmulator
) -> None:
    app.broadcast.channel("private:orders.1", {"total": 42}, "placed")
    held = app.token("alice", channel_name="private:orders.1")["token"]
    assert refusal(emulator, held, "private:orders.1") is None  # what is at stake

    renewed = app.token(None, token=held)  # no channel_name, nobody signed in
    assert capability(renewed) == PUBLIC
    assert "clientId" not in renewed
    assert refusal(emulator, renewed["token"], "private:orders.1") == 40160
    again = app.token(None, token=renewed["token"])  # and it stays that way
    assert capability(again) == PUBLIC and "clientId" not in again


def test_another_users_token_is_not_merged(app: App) -> None:
    alices = app.token("alice", channel_name="private:orders.1")["token"]
    bobs = app.token("bob", token=alices)
    assert capability(bobs) == PUBLIC and bobs["clientId"] == "8"
    bobs = app.token("bob", channel_name="private:orders.2", token=alices)
    assert capability(bobs) == {"private:orders.2": PRIVATE, **PUBLIC}
    assert bobs["clientId"] == "8"


def test_a_token_without_a_client_id_is_not_merged(app: App) -> None:
    anonymous = signed({"private:orders.1": PRIVATE, **PUBLIC}, client_id=None)
    body = app.token("alice", token=anonymous)
    assert capability(body) == PUBLIC and body["clientId"] == "7"
    body = app.token("alice", channel_name="private:orders.2", token=anonymous)
    assert capability(body) == {"private:orders.2": PRIVATE, **PUBLIC}
    # the same token with alice's client id is carried: the refusal above is the client id's
    assert capability(app.token("alice", token=signed({"private:orders.1": PRIVATE}))) == {
        "private:orders.1": PRIVATE,
        **PUBLIC,
    }


def test_the_drivers_publishing_token_is_not_merged(app: App, emulator: AblyEmulator) -> None:
    """The JWT the driver publishes with (``{"*": ["*"]}``) never becomes a client token."""
    from ably.sync.util.exceptions import AblyException

    app.broadcast.channel("news", "hello")
    header = emulator.requests[-1].headers["authorization"]
    publisher = base64.b64decode(header.removeprefix("Bearer ")).decode()
    assert _auth.decode_jwt(KEY, publisher)["x-ably-capability"] == '{"*":["*"]}'  # type: ignore[index]

    for who, channel in [(None, None), ("alice", None), ("alice", "private:orders.1")]:
        body = app.token(who, channel_name=channel, token=publisher)
        own = {channel: PRIVATE} if channel else {}
        assert capability(body) == {**own, **PUBLIC}, who
        client = sdk(emulator, body["token"])
        try:
            with pytest.raises(AblyException) as refused:
                client.channels.get("news").publish("forged", "x")
            assert refused.value.code == 40160
        finally:
            client.close()
    assert [m.data for m in emulator.messages("news")] == ["hello"]


@pytest.mark.parametrize(
    "held",
    [
        pytest.param({"private:*": PRIVATE}, id="private-wildcard"),
        pytest.param({"private:orders.*": PRIVATE}, id="segment-wildcard"),
        pytest.param({"private:orders.1": PRIVATE, "presence:*": PRESENCE}, id="one-wildcard"),
        pytest.param({"private:orders.1": PRIVATE, "private:chat.x:*": PRIVATE}, id="namespace"),
        pytest.param({"*": ["subscribe"]}, id="everything"),
        pytest.param({"[*]private:orders.1": PRIVATE}, id="qualifier"),
        pytest.param({"private:orders.1": ["history", "publish", "subscribe"]}, id="publish"),
        pytest.param({"private:orders.1": ["*"]}, id="every-operation"),
        pytest.param({"private:orders.1": PRESENCE}, id="presence-on-private"),
        pytest.param({"private:orders.1": PRIVATE, "public:*": ["publish"]}, id="public-publish"),
        pytest.param({"private:orders.1": PRIVATE, "news": ["subscribe"]}, id="unprefixed"),
    ],
)
def test_a_token_the_driver_would_not_sign_for_a_client_is_not_merged(
    app: App, held: dict[str, list[str]]
) -> None:
    """Alice may have ``private:orders.1``: a well-formed token of hers carries it (the
    control below), but one that also holds anything the driver never signs for a
    client carries nothing."""
    for channel, expected in [(None, PUBLIC), ("private:orders.2", {"private:orders.2": PRIVATE})]:
        body = app.token("alice", channel_name=channel, token=signed(held))
        assert capability(body) == {**expected, **PUBLIC}
        assert body["clientId"] == "7"
    control = app.token("alice", token=signed({"private:orders.1": PRIVATE, **PUBLIC}))
    assert capability(control) == {"private:orders.1": PRIVATE, **PUBLIC}


def test_a_carried_channel_the_rules_now_refuse_is_dropped(
    app: App, emulator: AblyEmulator
) -> None:
    app.broadcast.channel("private:orders.1", {"total": 42}, "placed")
    first = app.token("alice", channel_name="private:orders.1")
    both = app.token("alice", channel_name="private:orders.2", token=first["token"])
    assert capability(both) == {"private:orders.1": PRIVATE, "private:orders.2": PRIVATE, **PUBLIC}

    app.orders["7"] = {"2"}  # alice loses order 1
    renewed = app.token("alice", token=both["token"])
    assert capability(renewed) == {"private:orders.2": PRIVATE, **PUBLIC}
    assert refusal(emulator, renewed["token"], "private:orders.1") == 40160
    grown = app.token("alice", channel_name="presence:lobby.1", token=both["token"])
    assert capability(grown) == {
        "presence:lobby.1": PRESENCE,
        "private:orders.2": PRIVATE,
        **PUBLIC,
    }


def test_a_carried_presence_channel_keeps_working(app: App, emulator: AblyEmulator) -> None:
    emulator.enter_presence("presence:lobby.1", "8", {"id": "8", "name": "Bob"})
    lobby = app.token("alice", channel_name="presence:lobby.1")
    assert lobby["clientId"] == "7" and lobby["info"] == {"id": "7", "name": "Alice"}
    merged = app.token("alice", channel_name="private:orders.1", token=lobby["token"])
    renewed = app.token("alice", token=merged["token"])
    for body in (merged, renewed):
        assert capability(body) == {
            "presence:lobby.1": PRESENCE,
            "private:orders.1": PRIVATE,
            **PUBLIC,
        }
        assert body["clientId"] == "7"
    client = sdk(emulator, renewed["token"])
    try:
        members = client.channels.get("presence:lobby.1").presence.get()
        assert [m.client_id for m in members.items] == ["8"]
        assert client.channels.get("private:orders.1").history().items == []
    finally:
        client.close()
    assert emulator.violations == []


def test_a_carried_presence_channel_is_dropped_when_its_member_is_not_the_tokens_client(
    app: App,
) -> None:
    """A token has one client id: a presence channel whose member id is another is not kept."""
    driver = app.broadcast.driver().driver
    alice = USERS["alice"]
    lobby = AuthRequest("presence", "", "presence:lobby.1", "lobby.1", alice, member={"id": "9"})
    request = AuthRequest("private", "", "private:orders.1", "orders.1", alice, carried=(lobby,))
    assert capability(driver.sign_channel(request)) == {"private:orders.1": PRIVATE, **PUBLIC}


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_a_token_revoked_by_terminate_user_is_not_renewed(
    app: App, emulator: AblyEmulator, use_async: bool
) -> None:
    """The issue's attack: after terminate_user the old token is refused, and renewing it
    must not give a token that still reads the private channel's history."""
    app.broadcast.channel("private:orders.1", {"total": 42}, "placed")
    held = app.token("alice", channel_name="private:orders.1")["token"]
    assert refusal(emulator, held, "private:orders.1") is None

    if use_async:
        asyncio.run(app.broadcast.aterminate_user("7"))
    else:
        app.broadcast.terminate_user("7")
    assert refusal(emulator, held, "private:orders.1") == 40141  # Ably revoked it
    time.sleep(1.1)  # tokens signed from now on are past the revocation, valid at Ably

    for who, channel in [("alice", None), (None, None), ("alice", "private:orders.2")]:
        renewed = app.token(who, channel_name=channel, token=held)
        own = {channel: PRIVATE} if channel else {}
        assert capability(renewed) == {**own, **PUBLIC}, (who, channel)
        assert refusal(emulator, renewed["token"], "private:orders.1") == 40160
        assert refusal(emulator, renewed["token"], "public:news") is None  # a working token

    # alice may come back: the rules decide, and her new token is carried as usual
    fresh = app.token("alice", channel_name="private:orders.1")["token"]
    assert capability(app.token("alice", token=fresh)) == {"private:orders.1": PRIVATE, **PUBLIC}
    assert refusal(emulator, fresh, "private:orders.1") is None


def test_the_revocation_record_is_per_key_and_client_id(app: App) -> None:
    held = app.token("alice", channel_name="private:orders.1")["token"]
    _auth.REVOKED.note("otherapp.otherkey", "7")
    _auth.REVOKED.note(TEST_KEY.split(":")[0], "8")
    assert capability(app.token("alice", token=held)) == {"private:orders.1": PRIVATE, **PUBLIC}
    _auth.REVOKED.note(TEST_KEY.split(":")[0], "7")
    assert capability(app.token("alice", token=held)) == PUBLIC


# -- item 3: Ably's wildcards through a rule's parameters ---------------------------------


@pytest.mark.parametrize(
    "channel",
    [
        "private:chat.x:*",
        "private:chat.*",
        "private:*",
        "private:chat.x*",
        "presence:lobby.*",
        "private::chat.x",
        "private:[*]chat.x",
        "presence:[?rewind=1]lobby.1",
    ],
)
def test_a_name_ably_reads_as_a_wildcard_is_400_before_any_signing(
    app: App, emulator: AblyEmulator, channel: str
) -> None:
    held = app.token("alice", channel_name="private:chat.x")["token"]
    for token in (None, held):
        reply = app.post("alice", channel_name=channel, token=token)
        assert reply.status_code == 400, reply.text
        assert "token" not in reply.text
    with pytest.raises(BadRequestError):
        app.broadcast.authorize(USERS["alice"], channel_name=channel)
    # and no token that was signed covers a channel of that "room"
    assert refusal(emulator, held, "private:chat.x:y.mods") == 40160
    assert refusal(emulator, held, "private:chat.x") is None


def test_a_parameter_never_matches_ablys_special_characters(app: App) -> None:
    """``chat.{room}`` allows ``chat.x``; ``chat.x:y`` is not a room (403), and the driver
    itself refuses to sign a wildcard name that reaches it some other way."""
    assert app.broadcast.driver().driver.special_characters == "*:[]"
    for channel in ("private:chat.x:y", "private:chat.x]", "presence:lobby.a:b"):
        assert app.post("alice", channel_name=channel).status_code == 403, channel
    driver = app.broadcast.driver().driver
    for channel in ("private:chat.x:*", "private:*", "private:[*]x"):
        name = channel.partition(":")[2]
        with pytest.raises(BadRequestError, match="wildcard"):
            driver.sign_channel(AuthRequest("private", "", channel, name, USERS["alice"]))
    carried = AuthRequest("private", "", "private:chat.*", "chat.*", USERS["alice"])
    request = AuthRequest(
        "private", "", "private:chat.x", "chat.x", USERS["alice"], carried=(carried,)
    )
    assert capability(driver.sign_channel(request)) == {"private:chat.x": PRIVATE, **PUBLIC}


def test_a_presence_member_id_of_star_is_refused(app: App) -> None:
    """Ably reads a ``*`` client id as "any client": a rule cannot hand it out."""

    @app.broadcast.rule("stage.{room}")
    def stage(user: dict[str, Any], room: str) -> dict[str, Any]:
        return {"id": "*"}

    with pytest.raises(InputError, match="wildcard"):
        app.broadcast.authorize(USERS["alice"], channel_name="presence:stage.1")


# -- item 11: the held token stays wrapped -----------------------------------------------


def test_the_held_token_reaches_the_driver_as_a_secret_and_no_frame_holds_its_text(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = app.token("alice", channel_name="private:orders.1")["token"]
    driver = app.broadcast.driver().driver
    seen: list[AuthRequest] = []
    original = type(driver).held_channels

    def spy(self: Any, request: AuthRequest) -> Any:
        seen.append(request)
        return original(self, request)

    monkeypatch.setattr(type(driver), "held_channels", spy)
    app.token("alice", token=held)
    assert isinstance(seen[0].extra["token"], Secret)
    assert held not in repr(seen[0])

    def fail(key: str, client_id: str) -> float | None:
        raise RuntimeError("the revocation record failed")

    # a failure inside the driver's own reading of the token, after it was decoded
    monkeypatch.setattr(_auth.REVOKED, "at", fail)
    with pytest.raises(RuntimeError) as caught:
        app.broadcast.authorize(USERS["alice"], extra={"token": Secret(held)})
    signature = held.rsplit(".", 1)[1]
    frames = 0
    current: BaseException | None = caught.value
    while current is not None:
        tb = current.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if frame.f_code.co_filename != __file__:
                frames += 1
                for name, value in frame.f_locals.items():
                    shown = value if isinstance(value, str) else repr(value)
                    assert signature not in shown, f"{frame.f_code.co_name}.{name}"
            tb = tb.tb_next
        current = current.__cause__ or current.__context__
    assert frames >= 3  # the core's and the driver's frames were looked at
