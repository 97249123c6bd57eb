"""The driver's record of revoked client ids across ``os.fork()``: a child of a process one
of whose threads was noting a revocation at the fork can still authorize.

The fork is made while a thread holds the record's lock (as one inside ``terminate_user()``
or a token check would), the way a pre-forking server forks a busy parent.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from broadcasting_ably._auth import REVOKED

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() only"),
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]


def test_a_child_forked_while_the_revocation_record_was_locked_can_use_it() -> None:
    REVOKED.note("appid.keyid", "7")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with REVOKED._lock:
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            # what it inherited is kept: the parent's revocations still hold here
            code = 0 if REVOKED.at("appid.keyid", "7") is not None else 2
            REVOKED.note("appid.keyid", "8")
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
    assert os.waitstatus_to_exitcode(done[1]) == 0
    assert REVOKED.at("appid.keyid", "8") is None  # the child's note stayed in the child
