"""``call_after_fork(obj)`` refuses, at once, an object without an ``_after_fork()`` method:
before, it was accepted and every child ``os.fork()`` made printed "Exception ignored ...
AttributeError" (found by h124, writing a driver from docs/writing-a-driver.md)."""

from __future__ import annotations

import os

import pytest

from broadcasting.plugin import call_after_fork


class Forgot:
    """A driver's connection holder that never wrote ``_after_fork``."""


class Kept:
    def __init__(self) -> None:
        self.resets = 0
        call_after_fork(self)

    def _after_fork(self) -> None:
        self.resets += 1


def test_an_object_without_after_fork_is_refused_at_once() -> None:
    with pytest.raises(TypeError, match=r"needs an object with an _after_fork\(\) method, not a "):
        call_after_fork(Forgot())
    with pytest.raises(TypeError, match=r"test_call_after_fork_checks\.Forgot"):
        call_after_fork(Forgot())


def test_an_object_with_it_is_reset_in_the_child() -> None:
    kept = Kept()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: says how many resets it saw
        os.write(write, str(kept.resets).encode())
        os._exit(0)
    os.close(write)
    said = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert (said, kept.resets) == (b"1", 0)
