"""A sync publish interrupted (Ctrl-C, a signal handler's exception) just as it took its SDK
client: the client was on the driver's list of held clients, but no ``try`` of the caller
held it yet, so nothing gave it back. The list kept it alive for good, never closed, not even
by the driver's ``close()`` (which leaves held clients to their holders). Python runs a
pending signal's handler where ``_take_one`` lets go of its lock (a call's end), after the
client went on the list and before the caller's ``try``: that is where this test raises.

The held list now keeps its clients weakly: the client a frame dropped is collected, its
sockets closed as it goes, and its entry goes with it. A client a thread uses is kept by that
thread's frames.

Real parts: the HTTPS Ably emulator, the real SDK and httpx. The interruption is raised by a
trace function at the end of ``_take_one`` (a signal cannot be made to land there on demand).
"""

from __future__ import annotations

import gc
import sys
import uuid
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest
from ably_emulator import AblyEmulator

from broadcasting import Broadcast
from broadcasting_ably import BroadcastAblyDriver


def test_a_client_taken_as_the_publish_is_interrupted_is_not_kept_for_good(
    make_broadcast: Callable[..., Broadcast],
    emulator: AblyEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broadcast = make_broadcast(retries=0, batch=False)
    driver = broadcast.driver(BroadcastAblyDriver).driver
    clients = driver._clients
    made: list[weakref.ref[Any]] = []
    new = clients._new

    def recorded(hosts: int, aio: bool) -> Any:
        client = new(hosts, aio)
        made.append(weakref.ref(client))
        return client

    monkeypatch.setattr(clients, "_new", recorded)

    def interrupt_at_return(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "return":
            raise KeyboardInterrupt  # as a signal's handler would, at the lock's __exit__
        return interrupt_at_return

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "call" and frame.f_code is type(clients)._take_one.__code__:
            return interrupt_at_return
        return None

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        with pytest.raises(KeyboardInterrupt):
            broadcast.channel(f"interrupted-{uuid.uuid4().hex}", "lost")
    finally:
        sys.settrace(previous)
    assert len(made) == 1, "the publish took (made) its client before the interruption"

    gc.collect()  # the SDK client is in reference cycles: the collector frees it
    assert clients._out == {}, "no client is held by a publish that is over"
    assert made[0]() is None, "the client nobody can give back is not kept alive"

    channel = f"after-{uuid.uuid4().hex}"
    receipt = broadcast.channel(channel, "next")
    assert receipt.requests == 1
    assert [m.data for m in emulator.messages(channel)] == ["next"]
    assert clients._out == {}
    assert emulator.violations == []
