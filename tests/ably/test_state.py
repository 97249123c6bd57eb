"""Channel state on Ably: occupancy, presence members and channel enumeration, sync and async.

The queries go through the real driver and the real ``ably`` SDK (JSON and
msgpack) to the HTTPS emulator (tests/servers/ably_emulator.py), whose state
the tests set: the presence set (Ably's REST API only reads it, so the
emulator's ``enter_presence`` stands in for clients entering) and each
channel's occupancy. The emulator serves Ably's pagination (``limit`` and a
``Link`` header), so the multi-page tests prove the driver follows it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from broadcasting import (
    Broadcast,
    ChannelInfo,
    Member,
    PresenceChannel,
    PrivateChannel,
    PublishError,
    QueryError,
)
from servers.ably_emulator import LIMITED_KEY, TEST_KEY, AblyEmulator

SECRET = TEST_KEY.split(":", 1)[1]


@pytest.fixture(params=[True, False], ids=["msgpack", "json"])
def binary(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_channel_info_reports_occupancy_and_presence_members(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast], binary: bool
) -> None:
    broadcast = make_broadcast(use_binary_protocol=binary)
    emulator.set_occupancy("presence:chat.1", connections=3, subscribers=3, publishers=1)
    emulator.enter_presence("presence:chat.1", "7", {"id": "7", "name": "Alice"})
    emulator.enter_presence("presence:chat.1", "8", {"id": "8", "name": "Bob"})
    emulator.set_occupancy("private:orders.1", connections=2, subscribers=2)

    info = broadcast.channel_info(PresenceChannel("chat.1"))
    assert info == ChannelInfo("presence:chat.1", True, subscription_count=3, user_count=2)
    assert broadcast.channel_info(PrivateChannel("orders.1")) == ChannelInfo(
        "private:orders.1", True, subscription_count=2, user_count=None
    )
    assert broadcast.channel_info("nobody-here") == ChannelInfo(
        "nobody-here", False, subscription_count=0, user_count=None
    )
    paths = [r.path for r in emulator.state_requests]
    assert paths == [
        "/channels/presence%3Achat.1",
        "/channels/private%3Aorders.1",
        "/channels/nobody-here",
    ]
    assert emulator.violations == []


def test_a_channel_name_with_slashes_and_spaces_is_one_path_segment(
    emulator: AblyEmulator, broadcast: Broadcast
) -> None:
    emulator.set_occupancy("a/b c?d", connections=1, subscribers=1)
    assert broadcast.channel_info("a/b c?d").occupied
    assert emulator.state_requests[0].path == "/channels/a%2Fb%20c%3Fd"


def test_members_one_per_client_id_with_their_info(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast], binary: bool
) -> None:
    broadcast = make_broadcast(use_binary_protocol=binary)
    emulator.enter_presence(
        "presence:chat.1", "7", {"id": "7", "name": "Alice"}, connection_id="c1"
    )
    emulator.enter_presence(
        "presence:chat.1", "7", {"id": "7", "name": "Alice"}, connection_id="c2"
    )
    emulator.enter_presence("presence:chat.1", "8", "plain text")
    emulator.enter_presence("presence:chat.1", "9")
    members = broadcast.members(PresenceChannel("chat.1"))
    assert members == [Member("7"), Member("8"), Member("9")]
    assert [m.info for m in members] == [
        {"id": "7", "name": "Alice"},
        {"data": "plain text"},
        None,
    ]
    emulator.leave_presence("presence:chat.1", "7")
    assert [m.id for m in broadcast.members("presence:chat.1")] == ["8", "9"]
    assert broadcast.members("presence:empty") == []
    assert emulator.violations == []


def test_members_follow_every_page(emulator: AblyEmulator, broadcast: Broadcast) -> None:
    for n in range(2150):
        emulator.enter_presence("presence:big", f"user-{n}", {"n": n})
    members = broadcast.members("presence:big")
    assert [m.id for m in members] == [f"user-{n}" for n in range(2150)]
    assert members[-1].info == {"n": 2149}
    pages = [r.path for r in emulator.state_requests]
    assert len(pages) == 3 and "start=1000" in pages[1] and "start=2000" in pages[2]


def test_channels_lists_the_occupied_ones_by_name_with_a_prefix(
    emulator: AblyEmulator, broadcast: Broadcast
) -> None:
    emulator.set_occupancy("private:orders.2", connections=1, subscribers=1)
    emulator.set_occupancy("private:orders.1", connections=2, subscribers=2)
    emulator.enter_presence("presence:chat.1", "7", {"id": "7"})
    emulator.set_occupancy("idle", connections=0)
    broadcast.channel("published-only", "x")  # active for a while, but nobody is connected

    assert broadcast.occupied_channels() == [
        ChannelInfo("presence:chat.1", True, subscription_count=0, user_count=1),
        ChannelInfo("private:orders.1", True, subscription_count=2),
        ChannelInfo("private:orders.2", True, subscription_count=1),
    ]
    assert [c.name for c in broadcast.occupied_channels(prefix="private:")] == [
        "private:orders.1",
        "private:orders.2",
    ]
    assert broadcast.occupied_channels(prefix="nothing") == []
    query = emulator.state_requests[1].path
    assert query.startswith("/channels?") and "prefix=private%3A" in query and "by=value" in query


def test_channels_follow_every_page(emulator: AblyEmulator, broadcast: Broadcast) -> None:
    for n in range(1500):
        emulator.set_occupancy(f"room-{n:04d}", connections=1, subscribers=1)
    listed = broadcast.occupied_channels(prefix="room-")
    assert [c.name for c in listed] == [f"room-{n:04d}" for n in range(1500)]
    assert len(emulator.state_requests) == 2


async def test_the_async_twins(emulator: AblyEmulator, abroadcast: Broadcast) -> None:
    emulator.set_occupancy("presence:chat.1", connections=1, subscribers=1)
    emulator.enter_presence("presence:chat.1", "7", {"id": "7"})
    assert await abroadcast.achannel_info(PresenceChannel("chat.1")) == ChannelInfo(
        "presence:chat.1", True, subscription_count=1, user_count=1
    )
    assert await abroadcast.amembers(PresenceChannel("chat.1")) == [Member("7")]
    assert [c.name for c in await abroadcast.aoccupied_channels("presence:")] == ["presence:chat.1"]
    assert emulator.violations == []


async def test_the_async_twins_follow_every_page(
    emulator: AblyEmulator, abroadcast: Broadcast
) -> None:
    for n in range(1100):
        emulator.enter_presence("presence:big", f"user-{n}")
        emulator.set_occupancy(f"room-{n:04d}", connections=1)
    assert len(await abroadcast.amembers("presence:big")) == 1100
    assert len(await abroadcast.aoccupied_channels("room-")) == 1100
    assert len(emulator.state_requests) == 4  # two pages each


# -- errors ---------------------------------------------------------------------------------


def _no_key(error: BaseException) -> None:
    text = str(error) + repr(error) + repr(error.args)
    assert SECRET not in text and LIMITED_KEY.split(":", 1)[1] not in text


def test_a_key_without_the_capability_gets_ablys_40160(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    broadcast = make_broadcast(key=LIMITED_KEY)  # may touch allowed:* only
    emulator.set_occupancy("allowed:room", connections=1, subscribers=1)
    assert broadcast.channel_info("allowed:room").occupied
    for query in (
        lambda: broadcast.channel_info("private:orders.1"),
        lambda: broadcast.members("presence:chat.1"),
    ):
        with pytest.raises(QueryError) as refused:
            query()
        error = refused.value
        assert not isinstance(error, PublishError)  # nothing was published
        assert (error.status, error.code, error.retryable) == (401, 40160, False)
        assert error.kind == "permission"  # Ably's 401, but the key is fine: its capability is not
        assert "Ably refused the" in str(error)
        _no_key(error)


def test_service_errors_are_typed_and_say_whether_to_retry(
    emulator: AblyEmulator, broadcast: Broadcast
) -> None:
    emulator.fail_next(500, 50000, "Internal error")
    with pytest.raises(QueryError) as server_error:
        broadcast.channel_info("x")
    assert (server_error.value.status, server_error.value.code) == (500, 50000)
    assert server_error.value.retryable and server_error.value.kind == "unavailable"

    emulator.fail_next(429, 42911, "Rate limit exceeded")
    with pytest.raises(QueryError) as limited:
        broadcast.members("presence:x")
    assert (limited.value.status, limited.value.retryable, limited.value.kind) == (
        429,
        True,
        "limit",
    )

    emulator.fail_next(401, 40101, "Invalid credentials")
    with pytest.raises(QueryError) as bad_key:
        broadcast.occupied_channels()
    assert (bad_key.value.code, bad_key.value.retryable, bad_key.value.kind) == (
        40101,
        False,
        "auth",
    )
    assert "check the API key" in str(bad_key.value)
    for error in (server_error.value, limited.value, bad_key.value):
        _no_key(error)


def test_a_proxys_html_page_is_a_typed_error(emulator: AblyEmulator, broadcast: Broadcast) -> None:
    emulator.html_next(502)
    with pytest.raises(QueryError) as caught:
        broadcast.channel_info("x")
    assert caught.value.driver == "ably"
    _no_key(caught.value)


def test_no_answer_at_all_is_a_retryable_error(
    make_broadcast: Callable[..., Broadcast], unused_port: int
) -> None:
    broadcast = make_broadcast(tls_port=unused_port, fallback_hosts=[])
    with pytest.raises(QueryError) as caught:
        broadcast.channel_info("x")
    assert caught.value.retryable and caught.value.status is None
    assert caught.value.kind == "unavailable"
    assert "could not reach Ably (127.0.0.1) for the status of channel 'x'" in str(caught.value)
    _no_key(caught.value)


@pytest.fixture
def unused_port() -> Any:
    import socket

    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# -- terminate_user: Ably's token revocation -------------------------------------------------


def _rules(broadcast: Broadcast) -> Broadcast:
    broadcast.rule("orders.{order_id}")(lambda user, order_id: True)
    return broadcast


async def _history_code(emulator: AblyEmulator, token: str) -> int | None:
    """Ably's error code for reading private:orders.1 with ``token`` (None when allowed)."""
    from ably import AblyRest
    from ably.util.exceptions import AblyException

    client = AblyRest(
        token=token, endpoint=emulator.host, tls_port=emulator.port, fallback_hosts=[]
    )
    try:
        await client.channels.get("private:orders.1").history()
    except AblyException:
        answered = [r.answer for r in emulator.requests if r.method == "GET"][-1]
        code: int = answered["error"]["code"]
        return code
    finally:
        await client.close()
    return None


async def test_terminate_user_revokes_that_users_tokens(
    emulator: AblyEmulator, abroadcast: Broadcast
) -> None:
    _rules(abroadcast)
    alice = await abroadcast.aauthorize({"id": 7}, socket_id="1.1", channel_name="private:orders.1")
    bob = await abroadcast.aauthorize({"id": 8}, socket_id="1.2", channel_name="private:orders.1")
    assert await _history_code(emulator, alice["token"]) is None

    await abroadcast.aterminate_user("7")
    assert await _history_code(emulator, alice["token"]) == 40141  # Ably's "token revoked"
    assert await _history_code(emulator, bob["token"]) is None
    revoke = [r for r in emulator.requests if r.path.endswith("/revokeTokens")]
    assert [(r.path, r.decoded, r.headers["authorization"][:6]) for r in revoke] == [
        ("/keys/appid.keyid/revokeTokens", {"targets": ["clientId:7"]}, "Basic ")
    ]
    assert emulator.violations == []


def test_terminate_user_sync_and_its_errors(emulator: AblyEmulator, broadcast: Broadcast) -> None:
    broadcast.terminate_user(8)
    assert emulator.requests[-1].decoded == {"targets": ["clientId:8"]}

    emulator.fail_next(401, 40160, "Revoking tokens is not enabled for this key")
    with pytest.raises(QueryError) as refused:
        broadcast.terminate_user("7")
    assert (refused.value.status, refused.value.code, refused.value.kind) == (
        401,
        40160,
        "permission",
    )
    assert "revoke the tokens of client id '7'" in str(refused.value)
    _no_key(refused.value)

    from broadcasting import InputError

    sent = len(emulator.requests)
    with pytest.raises(InputError, match="non-empty user id"):
        broadcast.terminate_user("")
    assert len(emulator.requests) == sent  # refused before any request


def test_a_query_fails_over_to_a_fallback_host(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    """A read is safe to send again: the SDK tries its fallback hosts (``localhost`` and
    ``127.0.0.1`` are two names of the emulator), as it does by default."""
    broadcast = make_broadcast(endpoint="localhost", fallback_hosts=["127.0.0.1"])
    emulator.set_occupancy("room", connections=1, subscribers=1)
    emulator.fail_next(500, 50000, "Emulated")
    assert broadcast.channel_info("room").occupied
    hosts = [r.headers["host"].split(":")[0] for r in emulator.state_requests]
    assert hosts == ["localhost", "127.0.0.1"]
