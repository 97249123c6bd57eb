"""Laravel Echo receives this library's events under both of its naming conventions.

Real parts only: soketi, the pusher driver, and Laravel Echo 2.5 on pusher-js
(tests/js, run by Node) subscribed with ``Echo.channel('orders')`` (a public
channel: no auth endpoint involved). Each Echo listens for names as a page
writes them; the test publishes events named each way and checks which
listener fired for which event, and that none fired for another's.

- an event's default name (its class name) arrives on ``listen('.OrderShipped')``;
- a ``LaravelEvent`` (``App\\Events\\OrderShipped``) on ``listen('OrderShipped')``;
- ``echo_namespace`` follows an Echo created with another ``namespace``, and
  ``echo_event_name(name, None)`` one created with ``namespace: false``;
- ``broadcast_as()`` names arrive on ``listen('.the.name')``, and
  ``echo_event_name('Orders.Shipped')`` on ``listen('Orders.Shipped')``.

Events on one connection arrive in publish order, so once the last event
(``done``) has arrived, an event that did not arrive never will: no waiting on time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from node_clients import NodeClient, start_client
from soketi_server import SoketiServer

from broadcasting import Broadcast, BroadcastEvent, Channel, LaravelEvent, echo_event_name

SCRIPT = "../e2e_events/echo_public.mjs"  # node_clients runs scripts from tests/js

#: The names each Echo listens for, as a page writes them, by Echo ``namespace`` option.
LISTENERS: dict[str, dict[str, Any]] = {
    "default": {"listen": [".OrderShipped", "OrderShipped", ".order.shipped", "Orders.Shipped"]},
    "shop": {"namespace": "Shop.Events", "listen": ["OrderShipped", ".OrderShipped"]},
    "none": {"namespace": None, "listen": ["OrderShipped", "App.Events.OrderShipped"]},
}


@dataclass
class OrderShipped(BroadcastEvent):
    which: str

    def broadcast_on(self) -> Channel:
        return Channel("orders")


class Laravel:
    @dataclass
    class OrderShipped(LaravelEvent):
        which: str

        def broadcast_on(self) -> Channel:
            return Channel("orders")


class Shop:
    @dataclass
    class OrderShipped(BroadcastEvent):
        echo_namespace = "Shop.Events"
        which: str

        def broadcast_on(self) -> Channel:
            return Channel("orders")


@dataclass
class Renamed(BroadcastEvent):
    which: str

    def broadcast_on(self) -> Channel:
        return Channel("orders")

    def broadcast_as(self) -> str:
        return "order.shipped"


@pytest.fixture
def echoes(soketi: SoketiServer) -> Any:
    started: dict[str, NodeClient] = {}
    try:
        for label, options in LISTENERS.items():
            config = {
                "key": soketi.key,
                "wsHost": soketi.host,
                "wsPort": soketi.port,
                "channel": "orders",
                **options,
                "listen": [*options["listen"], ".done"],
            }
            started[label] = start_client(SCRIPT, config)
        for client in started.values():
            client.expect("subscribed", channel="orders")
        yield started
    finally:
        for client in started.values():
            client.close()


#: The ``which`` of each publish below, in order.
WHICH = ("class name", "laravel", "shop namespace", "broadcast_as", "helper", "done")


def test_echo_receives_both_naming_conventions(
    broadcast: Broadcast, echoes: dict[str, NodeClient]
) -> None:
    published = [
        broadcast.channel(OrderShipped("class name")).event,
        broadcast.channel(Laravel.OrderShipped("laravel")).event,
        broadcast.channel(Shop.OrderShipped("shop namespace")).event,
        broadcast.channel(Renamed("broadcast_as")).event,
        broadcast.channel("orders", {"which": "helper"}, echo_event_name("Orders.Shipped")).event,
        broadcast.channel("orders", {"which": "done"}, "done").event,
    ]
    assert published == [
        "OrderShipped",
        "App\\Events\\OrderShipped",
        "Shop\\Events\\OrderShipped",
        "order.shipped",
        "App\\Events\\Orders\\Shipped",
        "done",
    ]
    for client in echoes.values():
        client.expect("event", listen=".done")

    def fired(label: str) -> list[tuple[str, str]]:
        return [(line["listen"], line["data"]["which"]) for line in echoes[label].seen("event")]

    assert fired("default") == [
        (".OrderShipped", "class name"),
        ("OrderShipped", "laravel"),
        (".order.shipped", "broadcast_as"),
        ("Orders.Shipped", "helper"),
        (".done", "done"),
    ]
    assert fired("shop") == [
        (".OrderShipped", "class name"),
        ("OrderShipped", "shop namespace"),
        (".done", "done"),
    ]
    assert fired("none") == [
        ("OrderShipped", "class name"),
        ("App.Events.OrderShipped", "laravel"),
        (".done", "done"),
    ]
    # every event reached every Echo on the wire, under the name it was published as
    for client in echoes.values():
        assert [line["event"] for line in client.seen("raw")] == published

    # and echo_event_name() says what each listen() bound, for each namespace option
    name_of = dict(zip(WHICH, published, strict=True))
    for label, options in LISTENERS.items():
        namespace = options.get("namespace", "App.Events")
        for listen, which in fired(label):
            assert echo_event_name(listen, namespace) == name_of[which], (label, listen)
