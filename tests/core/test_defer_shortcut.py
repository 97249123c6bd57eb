"""A deferred publish skips pluggy only while the core alone implements ``broadcasting_defer``
and nothing watches: a wrapper, another plugin or a hook-call monitor still sees every call,
sync and async (the same rule as the publish hook's, ``_plugins.core_alone``)."""

from __future__ import annotations

from typing import Any

import pytest

from broadcasting import Broadcast, Receipt
from broadcasting.plugin import Message, hookimpl


class Watch:
    """A new-style wrapper around the core's ``broadcasting_defer``."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bool]] = []

    @hookimpl(wrapper=True)
    def broadcasting_defer(self, message: Message) -> Any:
        receipt: Receipt = yield
        self.seen.append((message.via, receipt.event, receipt.pending))
        return receipt


def _sent(broadcast: Broadcast) -> list[str]:
    return [m.event for m in broadcast.driver("memory").driver.messages]


def test_without_other_plugins_the_core_sends_it() -> None:
    broadcast = Broadcast({"DRIVER": "memory"})
    receipt = broadcast.channel("orders", {"id": 1}, "shipped", send="after_commit")
    assert (receipt.via, receipt.pending, _sent(broadcast)) == ("after_commit", False, ["shipped"])


def test_a_wrapper_sees_a_blocking_deferred_publish() -> None:
    watch = Watch()
    broadcast = Broadcast({"DRIVER": "memory"}, plugins=[watch])
    broadcast.channel("orders", {"id": 1}, "shipped", send="after_commit")
    assert watch.seen == [("after_commit", "shipped", False)]
    assert _sent(broadcast) == ["shipped"]


async def test_a_wrapper_sees_an_awaited_deferred_publish() -> None:
    watch = Watch()
    broadcast = Broadcast({"DRIVER": "memory"}, plugins=[watch])
    await broadcast.achannel("orders", {"id": 2}, "packed", send="after_commit")
    assert watch.seen == [("after_commit", "packed", False)]
    assert _sent(broadcast) == ["packed"]


@pytest.mark.parametrize("awaited", [False, True])
async def test_a_hook_call_monitor_sees_it(awaited: bool) -> None:
    broadcast = Broadcast({"DRIVER": "memory"})
    called: list[str] = []
    undo = broadcast.plugin_manager.add_hookcall_monitoring(
        lambda name, impls, kwargs: called.append(name), lambda *args: None
    )
    try:
        if awaited:
            await broadcast.achannel("orders", {"id": 3}, "paid", send="after_commit")
        else:
            broadcast.channel("orders", {"id": 3}, "paid", send="after_commit")
    finally:
        undo()
    assert "broadcasting_defer" in called
    assert _sent(broadcast) == ["paid"]
