"""Laravel Echo (broadcaster ``pusher``) on pusher-js, against soketi and our endpoints.

A page written for a Laravel backend keeps working: Echo posts to
``/broadcasting/auth`` (here served by uvicorn and by wsgiref), ``private()``,
``join()`` and ``encryptedPrivate()`` subscribe through our channel rules, and
``toOthers`` works through the ``X-Socket-Id`` header Echo's own interceptor
adds to the application's requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from e2e_app import Uvicorn, WsgiRef
from node_clients import NodeClient, Start
from soketi_server import SoketiServer

from broadcasting import Broadcast, LaravelEvent, PrivateChannel


def echo(
    clients: Start, soketi: SoketiServer, server: Uvicorn | WsgiRef, user: int | None
) -> NodeClient:
    """A connected Echo client for ``user``, authorizing at ``/broadcasting/auth``."""
    client = clients(
        "echo_client.mjs",
        {
            "key": soketi.key,
            "wsHost": soketi.host,
            "wsPort": soketi.port,
            "authEndpoint": f"{server.url}/broadcasting/auth",
            "headers": {} if user is None else {"X-User": str(user)},
        },
    )
    client.expect("connected")
    return client


def tag(server: Uvicorn | WsgiRef) -> str:
    return "asgi" if isinstance(server, Uvicorn) else "wsgi"


def subscribed(client: NodeClient, channel: str) -> dict[str, Any]:
    return client.expect(
        where=lambda line: (
            line.get("channel") == channel and line["type"] in ("subscribed", "subscription_error")
        )
    )


@dataclass
class OrderShipped(LaravelEvent):
    order_id: int
    carrier: str

    def broadcast_on(self) -> PrivateChannel:
        return PrivateChannel(f"orders.{self.order_id}")


def test_private_listen_dot_name_and_laravel_event_names(
    clients: Start, soketi: SoketiServer, server: Uvicorn | WsgiRef, broadcast: Broadcast
) -> None:
    ann = echo(clients, soketi, server, user=1)
    # Echo.private('orders.1').listen('.shipped', ...).listen('OrderShipped', ...)
    ann.send({"cmd": "private", "channel": "orders.1", "event": [".shipped", "OrderShipped"]})
    assert subscribed(ann, "private-orders.1")["type"] == "subscribed"

    broadcast.channel("private-orders.1", {"order": 1, "via": tag(server)}, "shipped")
    raw = ann.expect("event", event=".shipped")
    assert raw["data"] == {"order": 1, "via": tag(server)}

    broadcast.channel(OrderShipped(1, "DHL"))  # published as App\Events\OrderShipped
    named = ann.expect("event", event="OrderShipped")
    assert named["data"] == {"order_id": 1, "carrier": "DHL"}


def test_private_refused_by_the_rule_is_echos_error_with_403(
    clients: Start, soketi: SoketiServer, server: Uvicorn | WsgiRef
) -> None:
    bob = echo(clients, soketi, server, user=2)
    bob.send({"cmd": "private", "channel": "orders.1", "event": ".shipped"})
    refused = subscribed(bob, "private-orders.1")
    assert (refused["type"], refused["status"]) == ("subscription_error", 403)


def test_join_here_joining_leaving_carry_the_rules_info(
    clients: Start, soketi: SoketiServer, server: Uvicorn | WsgiRef
) -> None:
    room = f"chat.echo-{tag(server)}"
    ann_info = {"id": "1", "name": "Ann", "room": f"echo-{tag(server)}"}
    bob_info = {"id": "2", "name": "Bob", "room": f"echo-{tag(server)}"}

    ann = echo(clients, soketi, server, user=1)
    ann.send({"cmd": "join", "channel": room})
    assert ann.expect("here", channel=f"presence-{room}")["users"] == [ann_info]

    bob = echo(clients, soketi, server, user=2)
    bob.send({"cmd": "join", "channel": room})
    assert bob.expect("here", channel=f"presence-{room}")["users"] == [ann_info, bob_info]
    assert ann.expect("joining", channel=f"presence-{room}")["user"] == bob_info

    bob.send({"cmd": "leave", "channel": room})  # Echo.leave(): unsubscribes
    assert ann.expect("leaving", channel=f"presence-{room}")["user"] == bob_info


def test_encrypted_private_is_decrypted_by_echo(
    clients: Start, soketi: SoketiServer, server: Uvicorn | WsgiRef, broadcast: Broadcast
) -> None:
    name = f"vault.echo-{tag(server)}"
    ann = echo(clients, soketi, server, user=1)
    ann.send({"cmd": "encryptedPrivate", "channel": name, "event": ".opened"})
    assert subscribed(ann, f"private-encrypted-{name}")["type"] == "subscribed"

    broadcast.channel(f"private-encrypted-{name}", {"code": 1234}, "opened")
    assert ann.expect("event", channel=f"private-encrypted-{name}")["data"] == {"code": 1234}


def test_to_others_through_echos_x_socket_id_header(
    clients: Start, soketi: SoketiServer, server: Uvicorn | WsgiRef, broadcast: Broadcast
) -> None:
    # two tabs of the same user; the first one ships the order
    sender = echo(clients, soketi, server, user=1)
    other = echo(clients, soketi, server, user=1)
    for tab in (sender, other):
        tab.send({"cmd": "private", "channel": "orders.1", "event": [".shipped", ".marker"]})
        assert subscribed(tab, "private-orders.1")["type"] == "subscribed"
    sender_socket = sender.lines[0]["socket_id"]

    sender.send({"cmd": "post", "url": f"{server.url}/orders/1/ship", "headers": {"X-User": "1"}})
    response = sender.expect("response")
    assert response["status"] == 200
    assert response["sent_socket_id"] == sender_socket  # added by Echo's interceptor
    assert response["body"]["socket_id"] == sender_socket  # read by socket_id_from()

    shipped = other.expect("event", event=".shipped")
    assert shipped["data"] == {"order": "1", "by": "1"}

    # frames on one connection arrive in order: once the marker (published after
    # the ship) reaches the sender, a 'shipped' it was going to get would be there
    broadcast.channel("private-orders.1", {"marker": True}, "marker")
    sender.expect("event", event=".marker")
    assert sender.seen("event", event=".shipped") == []
