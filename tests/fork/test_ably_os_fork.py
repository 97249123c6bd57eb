"""The ably driver's sync client across ``os.fork()``, against the local Ably emulator.

No Ably server can run here: the real ``ably`` SDK (its real httpx client and
TLS) talks to ``tests/servers/ably_emulator.py``, which keeps connections
alive as Ably does. The parent publishes (its ``AblyRestSync`` keeps a
connection), forks children that publish at the same time, then publishes
again. Connections are counted where the SDK makes them (the ``socket.connect``
audit event, :class:`http_proxy.ConnectAttempts`): each child must open its
own, and the parent must reuse its connection afterwards, undisturbed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from ably_emulator import AblyEmulator
from forking import fork, result
from http_proxy import ConnectAttempts

from broadcasting import Broadcast
from broadcasting_ably import BroadcastAblyDriver

pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)

CHILDREN = 3


@pytest.fixture
def broadcast(ably_broadcast: Callable[..., Broadcast]) -> Broadcast:
    return ably_broadcast()


def publish_in_child(broadcast: Broadcast, emulator: AblyEmulator, channel: str) -> Any:
    """A child's work: one publish; the connections it made and what the driver let go of."""
    connects = ConnectAttempts(emulator.port)  # this process's own count from here on
    receipt = broadcast.channel(channel, {"pid": os.getpid()})
    clients = broadcast.driver(BroadcastAblyDriver).driver._clients
    return {"id": receipt.message_id, "connects": connects.count, "inherited": clients.inherited}


def test_children_open_their_own_and_leave_the_parents_alone(
    broadcast: Broadcast, emulator: AblyEmulator
) -> None:
    channel = f"os-fork-{uuid.uuid4().hex}"
    connects = ConnectAttempts(emulator.port)
    try:
        first = broadcast.channel(channel, {"pid": os.getpid()})
        assert connects.count == 1

        children = [
            fork(lambda: publish_in_child(broadcast, emulator, channel)) for _ in range(CHILDREN)
        ]
        reports = [result(child) for child in children]

        last = broadcast.channel(channel, {"pid": os.getpid()})
        assert connects.count == 1, "the parent reused its own connection, undisturbed"
    finally:
        connects.stop()
    assert [(r["connects"], r["inherited"]) for r in reports] == [(1, 1)] * CHILDREN

    stored = emulator.messages(channel)
    ids = [first.message_id, last.message_id, *(r["id"] for r in reports)]
    assert len(set(ids)) == len(ids), "every process draws ids of its own"
    # one message per publish, with the publish's id + ":0" (its index), each stored once
    assert sorted(str(m.id) for m in stored) == sorted(f"{i}:0" for i in ids)
    assert emulator.violations == []
