"""pusher-js (the official npm client, in Node) against soketi, authorized by our endpoints.

Each test runs twice: with the endpoints served by uvicorn (Starlette, ASGI)
and by wsgiref (Flask, WSGI). Nothing here is mocked: pusher-js posts its
form to our server, the server runs the channel rules and signs with the
``pusher`` driver, soketi checks the signature, and the library publishes
through soketi's HTTP API. Every wait is on a line the client prints when
something happened; the timeouts only bound a failure.
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e_app import Uvicorn, WsgiRef
from node_clients import NodeClient, Start
from soketi_server import SoketiServer

from broadcasting import Broadcast


def pusher_js(
    clients: Start, soketi: SoketiServer, server: Uvicorn | WsgiRef, user: int | None
) -> NodeClient:
    """A connected pusher-js client for ``user`` (``None``: nobody signed in)."""
    headers = {} if user is None else {"X-User": str(user)}
    client = clients(
        "pusher_client.mjs",
        {
            "key": soketi.key,
            "wsHost": soketi.host,
            "wsPort": soketi.port,
            "authEndpoint": f"{server.url}/broadcasting/auth",
            "userAuthEndpoint": f"{server.url}/broadcasting/user-auth",
            "headers": headers,
        },
    )
    client.expect("connected")
    return client


def subscribe(client: NodeClient, channel: str) -> dict[str, Any]:
    client.send({"cmd": "subscribe", "channel": channel})
    return client.expect(
        where=lambda line: (
            line.get("channel") == channel and line["type"] in ("subscribed", "subscription_error")
        )
    )


def tag(server: Uvicorn | WsgiRef) -> str:
    """A channel-name suffix of this server, so the two runs never share a channel."""
    return "asgi" if isinstance(server, Uvicorn) else "wsgi"


def test_an_allowed_private_subscription_receives_the_librarys_publish(
    clients: Start, soketi: SoketiServer, server: Uvicorn | WsgiRef, broadcast: Broadcast
) -> None:
    ann = pusher_js(clients, soketi, server, user=1)
    assert subscribe(ann, "private-orders.1")["type"] == "subscribed"

    broadcast.channel("private-orders.1", {"order": 1, "via": tag(server)}, "shipped")

    event = ann.expect("event", channel="private-orders.1")
    assert event["event"] == "shipped"
    assert event["data"] == {"order": 1, "via": tag(server)}


@pytest.mark.parametrize(("user", "why"), [(2, "not the owner"), (None, "nobody signed in")])
def test_a_denied_private_subscription_gets_pusher_js_auth_error_403(
    clients: Start,
    soketi: SoketiServer,
    server: Uvicorn | WsgiRef,
    broadcast: Broadcast,
    user: int | None,
    why: str,
) -> None:
    client = pusher_js(clients, soketi, server, user=user)
    refused = subscribe(client, "private-orders.1")
    assert refused["type"] == "subscription_error", why
    assert refused["error_type"] == "AuthError"
    assert refused["status"] == 403
    # the client is still connected and can subscribe where the rules allow
    if user is not None:
        assert subscribe(client, f"private-orders.{user}")["type"] == "subscribed"


def test_presence_members_and_their_arrivals_carry_the_rules_info(
    clients: Start, soketi: SoketiServer, server: Uvicorn | WsgiRef
) -> None:
    room = f"presence-chat.lobby-{tag(server)}"
    info = {
        "1": {"id": "1", "name": "Ann", "room": f"lobby-{tag(server)}"},
        "2": {"id": "2", "name": "Bob", "room": f"lobby-{tag(server)}"},
    }
    ann = pusher_js(clients, soketi, server, user=1)
    joined = subscribe(ann, room)
    assert joined["type"] == "subscribed"
    assert joined["members"] == [{"id": "1", "info": info["1"]}]
    assert joined["me"] == {"id": "1", "info": info["1"]}

    bob = pusher_js(clients, soketi, server, user=2)
    seen_by_bob = subscribe(bob, room)
    assert seen_by_bob["members"] == [
        {"id": "1", "info": info["1"]},
        {"id": "2", "info": info["2"]},
    ]
    added = ann.expect("member_added", channel=room)
    assert (added["id"], added["info"]) == ("2", info["2"])

    bob.send({"cmd": "disconnect"})
    removed = ann.expect("member_removed", channel=room)
    assert (removed["id"], removed["info"]) == ("2", info["2"])


def test_presence_info_too_large_for_pusher_is_refused_before_signing(
    clients: Start, soketi: SoketiServer, server: Uvicorn | WsgiRef
) -> None:
    ann = pusher_js(clients, soketi, server, user=1)
    assert subscribe(ann, "presence-crowd.500")["type"] == "subscribed"
    refused = subscribe(ann, "presence-crowd.2000")  # over Pusher's 1 KB per member
    assert refused["type"] == "subscription_error"
    assert refused["status"] == 400  # a InputError: nothing was signed


def test_pusher_js_decrypts_what_the_driver_encrypted(
    clients: Start, soketi: SoketiServer, server: Uvicorn | WsgiRef, broadcast: Broadcast
) -> None:
    channel = f"private-encrypted-vault.{tag(server)}"
    ann = pusher_js(clients, soketi, server, user=1)
    assert subscribe(ann, channel)["type"] == "subscribed"
    cy = pusher_js(clients, soketi, server, user=3)  # the vault rule refuses user 3
    assert subscribe(cy, channel)["status"] == 403

    secret = {"plans": "under the floor", "ünï": "cödé ✓"}
    broadcast.channel(channel, secret, "opened")

    event = ann.expect("event", channel=channel)
    assert (event["event"], event["data"]) == ("opened", secret)


def test_sign_in_succeeds_and_send_to_user_arrives(
    clients: Start, soketi: SoketiServer, server: Uvicorn | WsgiRef, broadcast: Broadcast
) -> None:
    ann = pusher_js(clients, soketi, server, user=1)
    ann.send({"cmd": "signin"})
    assert ann.expect("signed_in")["user_data"] == {"id": "1", "name": "Ann"}
    assert ann.expect("user_subscribed")["channel"] == "#server-to-user-1"

    broadcast.send_to_user("1", "notice", {"text": f"hello from {tag(server)}"})

    notice = ann.expect("user_event", event="notice")
    assert notice["data"] == {"text": f"hello from {tag(server)}"}


def test_sign_in_without_a_user_is_refused_with_403(
    clients: Start, soketi: SoketiServer, server: Uvicorn | WsgiRef
) -> None:
    nobody = pusher_js(clients, soketi, server, user=None)
    nobody.send({"cmd": "signin"})
    refused = nobody.expect("signin_error")
    assert (refused["error_type"], refused["status"]) == ("AuthError", 403)
