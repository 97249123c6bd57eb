"""``socket_id_from`` gives a ClientSocketId: the client's wish to be left out. A driver that
can leave a connection out does so; one that cannot sends to everyone instead of refusing
(a header any client may send must not make a view's publish fail). A plain str socket id,
the application's own, is checked as strictly as before."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from broadcasting import Broadcast, BroadcastEvent, InputError
from broadcasting.web import ClientSocketId, socket_id_from

HEADERS = {"X-Socket-ID": "1234.5678"}


def test_the_memory_driver_leaves_the_client_out_and_keeps_plain_text() -> None:
    with Broadcast({"DRIVER": "memory"}) as broadcast:
        broadcast.channel("orders", {"id": 1}, "shipped", socket_id=socket_id_from(HEADERS))
        [sent] = broadcast.driver("memory").driver.received("orders")
    assert sent.socket_id == "1234.5678"
    assert type(sent.socket_id) is str  # what reaches a driver, an outbox row or a queue


@pytest.mark.parametrize("driver", ["log", "null"])
def test_a_driver_that_cannot_leave_one_out_sends_to_everyone(driver: str) -> None:
    with Broadcast({"DRIVER": driver}) as broadcast:
        receipt = broadcast.channel(
            "orders", {"id": 1}, "shipped", socket_id=socket_id_from(HEADERS)
        )
        assert receipt.driver == driver
        with pytest.raises(InputError, match="this driver cannot exclude a socket_id"):
            broadcast.channel("orders", {"id": 1}, "shipped", socket_id="1234.5678")


def test_a_wish_of_another_shape_than_the_driver_s_ids_is_dropped_not_refused() -> None:
    with Broadcast({"DRIVER": "memory"}) as broadcast:
        broadcast.channel("orders", {"id": 1}, "shipped", socket_id=ClientSocketId("abc"))
        [sent] = broadcast.driver("memory").driver.received("orders")
        assert sent.socket_id is None
        with pytest.raises(InputError, match="is not a connection id"):
            broadcast.channel("orders", {"id": 1}, "shipped", socket_id="abc")


@dataclass
class Shipped(BroadcastEvent):
    order_id: int

    def broadcast_on(self) -> str:
        return f"orders.{self.order_id}"


def test_an_event_sent_to_others_under_log_is_sent() -> None:
    with Broadcast({"DRIVER": "log"}) as broadcast:
        receipt = broadcast.channel(Shipped(7).to_others(socket_id_from(HEADERS)))
    assert receipt.channels == ("orders.7",)


@pytest.mark.asyncio
async def test_the_async_path_too() -> None:
    async with Broadcast({"DRIVER": "null"}) as broadcast:
        receipt = await broadcast.achannel(
            "orders", {"id": 1}, "shipped", socket_id=socket_id_from(HEADERS)
        )
    assert receipt.driver == "null"
