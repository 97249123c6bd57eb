"""Run a function in children made by ``os.fork()``, the way a pre-forking server does.

Each child runs its function, writes the JSON of what it returned (or of the
error it raised) to a pipe, and leaves with ``os._exit`` at once: nothing of
the test process (pytest, fixtures, atexit handlers) ever runs in it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import pytest

#: Seconds a child gets to do its work and exit.
CHILD_TIMEOUT = 30.0


@dataclass
class Child:
    """A forked child: its pid and the read end of its result pipe."""

    pid: int
    fd: int


def fork(work: Callable[[], Any]) -> Child:
    """Fork; the child runs ``work()`` and exits. The parent gets a :class:`Child`."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.close(read_fd)
            try:
                result = {"result": work()}
            except BaseException as exc:
                result = {"error": f"{type(exc).__name__}: {exc}"}
            os.write(write_fd, json.dumps(result).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    return Child(pid, read_fd)


def result(child: Child) -> Any:
    """Wait (bounded) for ``child``; what its work returned. Fails on its error or a hang."""
    deadline = time.monotonic() + CHILD_TIMEOUT
    chunks = []
    status: int | None = None
    try:
        while True:
            left = deadline - time.monotonic()
            readable, _, _ = select.select([child.fd], [], [], max(left, 0))
            if not readable:
                os.kill(child.pid, signal.SIGKILL)
                raise AssertionError(f"child {child.pid} hung for {CHILD_TIMEOUT:g} s (killed)")
            chunk = os.read(child.fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(child.fd)
        with contextlib.suppress(ChildProcessError):
            _, status = os.waitpid(child.pid, 0)
    assert chunks, f"child {child.pid} died without a result (status {status})"
    outcome = json.loads(b"".join(chunks))
    assert "error" not in outcome, f"child {child.pid} failed: {outcome['error']}"
    return outcome["result"]


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
