"""Locks of a Broadcast's parts across ``os.fork()``: a child of a process one of whose threads
held the lock at the fork (building the pusher SDK's client behind ``driver.pusher``, adding
or looking up webhook handlers) must not wait for ever on it, as no thread of the child will
release it. The fork is made while a thread holds the lock, the way a threaded application
that forks (``multiprocessing`` with the fork start method) may catch it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest

from broadcasting import Broadcast

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


def fork_while_held(lock: AbstractContextManager[object], work: Callable[[], bool]) -> int:
    """Fork while another thread holds ``lock``; the child's exit code (``work()`` true: 0).
    Fails if the child is still waiting after 10 s."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            code = 0 if work() else 2
        finally:
            os._exit(code)
    release.set()
    thread.join()
    deadline = time.monotonic() + 10
    while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.02)
    if done == (0, 0):
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the child waited for ever on a lock its parent's thread held at the fork")
    return os.waitstatus_to_exitcode(done[1])


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
