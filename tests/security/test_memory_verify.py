"""Issue 17, item 15: the memory driver's ``verify()`` refuses a relabelled answer.

Its signatures joined their parts with ``:``, and a memory channel name may
hold ``:``: an answer signed for ``private-a:{"user_id":"admin",...}`` then
verified for channel ``private-a`` with that JSON as forged ``channel_data``.
Each part is now bound on its own, and the kind of answer with them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from broadcasting import Broadcast
from broadcasting.drivers.memory import BroadcastMemoryDriver

SOCKET = "1234.5678"
ADMIN = json.dumps({"user_id": "admin", "user_info": {"id": "admin"}}, separators=(",", ":"))


@pytest.fixture
def broadcast() -> Iterator[Broadcast]:
    with Broadcast({"DRIVER": "memory"}) as broadcast:

        @broadcast.rule("{anything}")
        def anyone(user: Any, anything: str) -> Any:
            return {"id": str(user)}  # private: truthy; presence: the member

        yield broadcast


@pytest.fixture
def memory(broadcast: Broadcast) -> BroadcastMemoryDriver:
    return broadcast.driver(BroadcastMemoryDriver).driver


def test_a_private_answer_cannot_become_a_presence_answer(
    broadcast: Broadcast, memory: BroadcastMemoryDriver
) -> None:
    """The issue's case: the channel name carries the forged channel_data after a ':'."""
    channel = f"private-a:{ADMIN}"
    answer = broadcast.authorize("mallory", socket_id=SOCKET, channel_name=channel)
    assert memory.verify(answer, socket_id=SOCKET, channel=channel)
    forged = {"auth": answer["auth"], "channel_data": ADMIN}
    assert not memory.verify(forged, socket_id=SOCKET, channel="private-a")


def test_a_presence_answer_cannot_be_cut_elsewhere(
    broadcast: Broadcast, memory: BroadcastMemoryDriver
) -> None:
    """Moving the boundary between channel and channel_data (at a ':' inside the JSON)."""
    answer = broadcast.authorize("7", socket_id=SOCKET, channel_name="presence-room")
    data = answer["channel_data"]
    assert memory.verify(answer, socket_id=SOCKET, channel="presence-room")
    cut = data.index(":")
    forged = {"auth": answer["auth"], "channel_data": data[cut + 1 :]}
    assert not memory.verify(forged, socket_id=SOCKET, channel=f"presence-room:{data[:cut]}")


def test_a_socket_id_and_channel_cannot_trade_characters(
    broadcast: Broadcast, memory: BroadcastMemoryDriver
) -> None:
    answer = broadcast.authorize("7", socket_id=SOCKET, channel_name="private-a:b")
    assert memory.verify(answer, socket_id=SOCKET, channel="private-a:b")
    assert not memory.verify(answer, socket_id=f"{SOCKET}:private-a", channel="b")
    assert not memory.verify(answer, socket_id="1234", channel="5678:private-a:b")


def test_a_sign_in_answer_and_a_channel_answer_do_not_verify_for_each_other(
    broadcast: Broadcast, memory: BroadcastMemoryDriver
) -> None:
    signin = broadcast.authenticate_user(SOCKET, {"id": "7"})
    assert memory.verify(signin, socket_id=SOCKET, channel=None)
    assert not memory.verify({"auth": signin["auth"]}, socket_id=SOCKET, channel=None)
    # the old format made "<socket>::user::<data>" a channel answer's subject
    # for channel ":user::<data>"; the kinds are now bound too
    as_channel = {"auth": signin["auth"]}
    assert not memory.verify(as_channel, socket_id=SOCKET, channel=f":user::{signin['user_data']}")
    private = broadcast.authorize("7", socket_id=SOCKET, channel_name="private-x")
    assert not memory.verify(
        {"auth": private["auth"], "user_data": "private-x"}, socket_id=SOCKET, channel=None
    )


def test_a_presence_answer_without_its_channel_data_is_refused(
    broadcast: Broadcast, memory: BroadcastMemoryDriver
) -> None:
    answer = broadcast.authorize("7", socket_id=SOCKET, channel_name="presence-room")
    assert not memory.verify({"auth": answer["auth"]}, socket_id=SOCKET, channel="presence-room")


@pytest.mark.parametrize(
    "answer",
    [
        {},
        {"auth": None},
        {"auth": 42},
        {"auth": "memory:é"},  # not ASCII: compare_digest would raise on such a str
        {"auth": "memory:\ud800"},
        {"auth": "memory:00", "channel_data": {"user_id": "7"}},  # not a string
    ],
)
def test_malformed_answers_are_false_not_errors(
    memory: BroadcastMemoryDriver, answer: dict[str, Any]
) -> None:
    assert memory.verify(answer, socket_id=SOCKET, channel="presence-room") is False
    assert memory.verify(answer, socket_id=SOCKET, channel=None) is False


def test_another_memory_driver_does_not_verify_it(broadcast: Broadcast) -> None:
    answer = broadcast.authorize("7", socket_id=SOCKET, channel_name="private-x")
    other = Broadcast({"DRIVER": "memory"}).driver(BroadcastMemoryDriver).driver
    assert not other.verify(answer, socket_id=SOCKET, channel="private-x")
