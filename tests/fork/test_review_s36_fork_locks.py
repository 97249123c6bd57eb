"""Locks of a Broadcast's parts across ``os.fork()``: a child of a process one of whose threads
held the lock at the fork (building the pusher SDK's client behind ``driver.pusher``, adding
or looking up webhook handlers) must not wait for ever on it, as no thread of the child will
release it. The fork is made while a thread holds the lock, the way a threaded application
that forks (``multiprocessing`` with the fork start method) may catch it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from broadcasting import Broadcast

sys.path.insert(0, str(Path(__file__).resolve().parent))

from forking import fork_while_held

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() only"),
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

PUSHER = {
    "DRIVER": "pusher",
    "DRIVERS": {
        "pusher": {"app_id": "1", "key": "key", "secret": "secret", "host": "127.0.0.1"},
    },
}


def test_a_child_gets_the_pusher_sdk_client_its_parent_was_building() -> None:
    with Broadcast(PUSHER) as broadcast:
        driver = broadcast.driver("pusher").driver

        def work() -> bool:
            return driver.pusher is not None and driver.apusher is not None

        assert fork_while_held(driver._lock, work) == 0
        assert driver.pusher is driver.pusher  # the parent's still works, made once


def test_a_child_answers_webhooks_while_its_parent_was_adding_a_handler() -> None:
    with Broadcast({"DRIVER": "memory"}) as broadcast:
        heard: list[str] = []
        broadcast.on_webhook("channel_occupied")(lambda event: heard.append(event.name))
        memory = broadcast.driver("memory").driver
        headers, body = memory.webhook_delivery([{"name": "channel_occupied", "channel": "a"}])

        def work() -> bool:
            events = broadcast.webhook(headers, body)
            broadcast.on_webhook("channel_vacated")(lambda event: None)
            return [e.name for e in events] == heard == ["channel_occupied"]

        assert fork_while_held(broadcast.webhook_handlers._lock, work) == 0
        assert heard == []  # the child's handler ran in the child
