"""Channel and presence queries against a real soketi, with real WebSocket clients connected.

The clients are Pusher-protocol WebSocket connections (tests/servers/pusher_ws.py)
that subscribe to public, private and presence channels, signed here the way
Pusher documents it (facts.md): ``key:hex(HMAC-SHA256(secret, socket_id:channel[:channel_data]))``.
``terminate_user`` runs against a soketi of its own with user authentication
on, where a connection signs in (``pusher:signin``) and is disconnected.
The counting proxy in front of soketi shows what went on the wire and plays
Pusher's refusal of ``subscription_count`` (an app without subscription
counting), which soketi never gives.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from http_proxy import ConnectAttempts, CountingProxy
from pusher_ws import PusherSubscriber
from soketi_pytest import start_soketi
from soketi_server import APP_KEY, APP_SECRET, SoketiServer

from broadcasting import (
    Broadcast,
    ChannelInfo,
    InputError,
    InvalidChannelError,
    Member,
    PresenceChannel,
    PrivateChannel,
    QueryError,
)

pytestmark = pytest.mark.soketi


def signature(text: str, secret: str = APP_SECRET) -> str:
    return f"{APP_KEY}:" + hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


class Client(PusherSubscriber):
    """A WebSocket client that also joins presence channels and signs in, like pusher-js."""

    async def join(self, channel: str, user_id: str, info: dict[str, Any]) -> None:
        data = json.dumps({"user_id": user_id, "user_info": info})
        auth = signature(f"{self.socket_id}:{channel}:{data}")
        future = self._subscribed[channel] = asyncio.get_running_loop().create_future()
        frame = {"channel": channel, "auth": auth, "channel_data": data}
        await self._ws.send(json.dumps({"event": "pusher:subscribe", "data": frame}))
        await asyncio.wait_for(future, 10)

    async def private(self, channel: str) -> None:
        await self.subscribe(channel, auth={channel: signature(f"{self.socket_id}:{channel}")})

    async def leave(self, channel: str) -> None:
        frame = {"event": "pusher:unsubscribe", "data": {"channel": channel}}
        await self._ws.send(json.dumps(frame))
        await self.flush()  # soketi answered a ping after handling the unsubscribe

    async def sign_in(self, user_id: str) -> None:
        data = json.dumps({"id": user_id})
        auth = signature(f"{self.socket_id}::user::{data}")
        await self._ws.send(
            json.dumps({"event": "pusher:signin", "data": {"auth": auth, "user_data": data}})
        )
        # soketi answers pusher:signin_success, which the reader does not queue: round-trip
        await self.flush()


@pytest.fixture
async def clients(soketi: SoketiServer) -> AsyncIterator[list[Client]]:
    opened: list[Client] = []
    yield opened
    for client in opened:
        await client.close()


async def connect(server: SoketiServer, opened: list[Client]) -> Client:
    client = await Client(server.ws_url()).connect()
    opened.append(client)
    return client


@pytest.fixture
def via_proxy(soketi: SoketiServer, proxy: CountingProxy) -> Iterator[Broadcast]:
    options = soketi.driver_options(port=proxy.port)
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}) as broadcast:
        yield broadcast


async def test_queries_report_what_connected_clients_subscribed_to(
    broadcast: Broadcast, clients: list[Client], soketi: SoketiServer
) -> None:
    ann, ann_again, bob = [await connect(soketi, clients) for _ in range(3)]
    await ann.subscribe("state-orders")
    await bob.subscribe("state-orders")
    await ann.private("private-state-orders.1")
    await ann.join("presence-state-room", "ann", {"name": "Ann"})
    await ann_again.join("presence-state-room", "ann", {"name": "Ann"})  # a second tab
    await bob.join("presence-state-room", "bob", {"name": "Bob"})

    mine = [c for c in broadcast.occupied_channels() if "state-" in c.name]
    assert [c.name for c in mine] == [
        "presence-state-room",
        "private-state-orders.1",
        "state-orders",
    ]
    assert all(c.occupied for c in mine)
    assert [c.name for c in broadcast.occupied_channels(prefix="presence-state")] == [
        "presence-state-room"
    ]
    assert broadcast.channel_info("state-orders") == ChannelInfo("state-orders", True, 2, None)
    assert broadcast.channel_info(PrivateChannel("state-orders.1")).subscription_count == 1
    room = broadcast.channel_info(PresenceChannel("state-room"))
    assert room == ChannelInfo("presence-state-room", True, 3, 2)
    assert broadcast.channel_info("state-nobody") == ChannelInfo("state-nobody", False, 0, None)
    assert broadcast.members(PresenceChannel("state-room")) == [Member("ann"), Member("bob")]

    # the async twins, on the driver's aiohttp session
    assert await broadcast.achannel_info("state-orders") == ChannelInfo("state-orders", True, 2)
    assert sorted(m.id for m in await broadcast.amembers("presence-state-room")) == ["ann", "bob"]
    assert "state-orders" in [c.name for c in await broadcast.aoccupied_channels("state-")]

    # leaving is seen at once
    await bob.leave("presence-state-room")
    await bob.leave("state-orders")
    assert broadcast.members("presence-state-room") == [Member("ann")]
    assert broadcast.channel_info("state-orders").subscription_count == 1
    await ann.leave("state-orders")
    assert broadcast.channel_info("state-orders") == ChannelInfo("state-orders", False, 0, None)
    assert "state-orders" not in [c.name for c in broadcast.occupied_channels()]


async def test_queries_go_out_as_documented_and_bad_input_sends_nothing(
    via_proxy: Broadcast, proxy: CountingProxy
) -> None:
    via_proxy.occupied_channels("presence-")
    via_proxy.channel_info("presence-room")
    via_proxy.members("presence-room")
    via_proxy.terminate_user("7")
    await via_proxy.aoccupied_channels()
    paths = [(seen.method, seen.path.split("&auth_key")[0]) for seen in proxy.requests]
    assert [(m, p.split("?")[0]) for m, p in paths] == [
        ("GET", "/apps/424242/channels"),
        ("GET", "/apps/424242/channels/presence-room"),
        ("GET", "/apps/424242/channels/presence-room/users"),
        # with the /apps/{id} prefix that the SDK's terminate_user_connections leaves out
        ("POST", "/apps/424242/users/7/terminate_connections"),
        ("GET", "/apps/424242/channels"),
    ]
    assert "filter_by_prefix=presence-" in proxy.requests[0].path
    assert "info=user_count" in proxy.requests[0].path
    assert "info=subscription_count%2Cuser_count" in proxy.requests[1].path

    proxy.clear()
    bad: list[tuple[Any, type[Exception]]] = [
        (lambda: via_proxy.channel_info("no spaces allowed"), InvalidChannelError),
        (lambda: via_proxy.channel_info("x" * 165), InvalidChannelError),
        (lambda: via_proxy.members("private-orders"), InvalidChannelError),
        (lambda: via_proxy.occupied_channels("bad prefix!"), InputError),
        (lambda: via_proxy.terminate_user(""), InputError),
        (lambda: via_proxy.terminate_user("a/b"), InputError),
        (lambda: via_proxy.terminate_user("u" * 129), InputError),  # sign-in's limit: 128
    ]
    for call, error in bad:
        with pytest.raises(error):
            call()
    with pytest.raises(InvalidChannelError, match="only presence channels"):
        await via_proxy.amembers("orders")
    assert proxy.requests == []


def test_bad_input_is_refused_before_connecting(refusing: ConnectAttempts) -> None:
    options = {"app_id": "1", "key": "k", "secret": "s", "host": "127.0.0.1"}
    config = {"DRIVER": "pusher", "DRIVERS": {"pusher": {**options, "port": refusing.port}}}
    with Broadcast(config) as broadcast:
        with pytest.raises(InvalidChannelError):
            broadcast.members("orders")
        with pytest.raises(QueryError, match="could not reach") as error:
            broadcast.occupied_channels()  # the port really refuses: this one tried
        assert (error.value.kind, error.value.status) == ("unavailable", None)
    assert refusing.count == 1


@pytest.mark.parametrize("path", ["sync", "async"])
async def test_service_errors_are_typed_including_soketis_http_200_with_an_error_body(
    soketi: SoketiServer, path: str
) -> None:
    wrong = {"DRIVER": "pusher", "DRIVERS": {"pusher": soketi.driver_options(secret="nope")}}
    unknown = {"DRIVER": "pusher", "DRIVERS": {"pusher": soketi.driver_options(app_id="999")}}
    for config, status, kind, said in (
        (wrong, 401, "auth", "secret"),
        (unknown, 404, "invalid", "999"),
    ):
        with Broadcast(config) as broadcast:
            calls: list[tuple[str, tuple[str, ...]]] = [
                ("occupied_channels", ()),
                ("channel_info", ("orders",)),
                ("members", ("presence-room",)),
                ("terminate_user", ("7",)),
            ]
            for name, args in calls:

                async def query(name: str = name, args: tuple[str, ...] = args) -> object:
                    if path == "sync":
                        return getattr(broadcast, name)(*args)
                    return await getattr(broadcast, f"a{name}")(*args)

                with pytest.raises(QueryError) as error:
                    await query()
                assert (error.value.status, error.value.kind) == (status, kind), name
                assert said in str(error.value)
                assert "nope" not in str(error.value)


@pytest.mark.parametrize("path", ["sync", "async"])
async def test_no_answer_to_a_query_is_an_unavailable_query_error(
    soketi: SoketiServer, proxy: CountingProxy, path: str
) -> None:
    proxy.delay(2.0, times=None)
    options = soketi.driver_options(port=proxy.port, timeout=0.3)
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}) as broadcast:

        async def terminate() -> None:
            if path == "sync":
                broadcast.terminate_user("7")
            else:
                await broadcast.aterminate_user("7")

        with pytest.raises(QueryError) as error:
            await terminate()
    assert (error.value.kind, error.value.status, error.value.retryable) == (
        "unavailable",
        None,
        True,
    )
    assert "no answer from" in str(error.value) and "delivered" not in str(error.value)
    assert len(proxy.requests) == 1, "a query is never retried"


async def test_channel_info_asks_again_without_subscription_count_when_the_app_refuses_it(
    via_proxy: Broadcast, proxy: CountingProxy, clients: list[Client], soketi: SoketiServer
) -> None:
    client = await connect(soketi, clients)
    await client.subscribe("counting-off")
    # what Pusher answers an app without subscription counting (soketi always counts)
    proxy.fail(
        400,
        "subscription_count is not enabled for this app",
        times=None,
        when=lambda seen: "subscription_count" in seen.path,
    )
    assert via_proxy.channel_info("counting-off").occupied
    assert (await via_proxy.achannel_info("counting-off")).occupied
    asked = [seen.path for seen in proxy.requests]
    assert len(asked) == 3  # refused, asked without it; then never asked for it again
    assert "subscription_count" in asked[0]
    assert not any("subscription_count" in p for p in asked[1:])


async def test_an_empty_channel_reports_no_count_when_the_app_does_not_count_subscriptions(
    via_proxy: Broadcast, proxy: CountingProxy
) -> None:
    # the first call (refused, then asked without the count) and later ones agree: not counted
    proxy.fail(
        400,
        "subscription_count is not enabled for this app",
        times=None,
        when=lambda seen: "subscription_count" in seen.path,
    )
    # and what it answers for an empty channel asked without it (soketi would add a count)
    proxy.fail(200, {"occupied": False}, times=None, when=lambda seen: "nobody" in seen.path)
    first = via_proxy.channel_info("nobody-here")
    later = await via_proxy.achannel_info("nobody-here")
    assert first == later
    assert (first.occupied, first.subscription_count) == (False, None)


async def test_a_refusal_that_is_not_about_counting_is_raised(
    via_proxy: Broadcast, proxy: CountingProxy
) -> None:
    proxy.fail(400, {"error": "bad request", "code": 400}, times=None)
    with pytest.raises(QueryError) as error:
        via_proxy.channel_info("orders")
    assert (error.value.status, error.value.kind) == (400, "invalid")
    assert len(proxy.requests) == 2  # asked once more without the attribute, refused again
    proxy.clear()
    proxy.fail(400, {"error": "bad request", "code": 400}, times=None)
    with pytest.raises(QueryError):
        via_proxy.channel_info("orders")
    assert "subscription_count" in proxy.requests[0].path  # still asked for: not learned


@pytest.fixture(scope="module")
def user_soketi() -> Iterator[SoketiServer]:
    """A soketi whose app has user authentication on (``pusher:signin``)."""
    from soketi_server import _app

    app = {**_app(), "enableUserAuthentication": True}
    server = start_soketi(**{"appManager.array.apps": [app]})
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("path", ["sync", "async"])
async def test_terminate_user_disconnects_the_signed_in_user_only(
    user_soketi: SoketiServer, clients: list[Client], path: str
) -> None:
    ann_phone, ann_laptop, bob = [await connect(user_soketi, clients) for _ in range(3)]
    await ann_phone.sign_in("ann")
    await ann_laptop.sign_in("ann")
    await bob.sign_in("bob")
    await bob.subscribe("after-terminate")
    config = {"DRIVER": "pusher", "DRIVERS": {"pusher": user_soketi.driver_options()}}
    with Broadcast(config) as broadcast:
        if path == "sync":
            broadcast.terminate_user("ann")
        else:
            await broadcast.aterminate_user("ann")
        assert await ann_phone.closed()
        assert await ann_laptop.closed()
        # bob is still connected: a publish reaches him after ann's connections closed
        await broadcast.achannel("after-terminate", "still here", "ping")
        assert (await bob.next_event()).data == "still here"


async def test_the_sdks_own_terminate_path_is_not_routed_by_soketi(
    user_soketi: SoketiServer, clients: list[Client]
) -> None:
    """Why the driver builds its own request: the SDK posts to /users/{id}/... (no /apps/{id})."""
    client = await connect(user_soketi, clients)
    await client.sign_in("carol")
    await client.subscribe("sdk-terminate")
    config = {"DRIVER": "pusher", "DRIVERS": {"pusher": user_soketi.driver_options()}}
    with Broadcast(config) as broadcast:
        with pytest.raises(Exception, match="404"):
            broadcast.driver().driver.pusher.terminate_user_connections("carol")
        # still connected: a publish after it arrives
        await broadcast.achannel("sdk-terminate", "still here", "ping")
        assert (await client.next_event()).data == "still here"
        broadcast.terminate_user("carol")
        assert await client.closed()
