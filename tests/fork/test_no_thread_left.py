"""Publishing leaves no thread behind, so an application forked after it publishes (gunicorn
with ``--preload``, a task queue's prefork pool) forks a single-threaded process: Python
3.12+ warns "This process is multi-threaded, use of fork() may lead to deadlocks" otherwise,
and a lock held by a thread at the fork would stay held in the child.

Checked in a fresh interpreter (a pytest-xdist worker has threads of its own), with every
warning recorded around the fork: sync and async publishes through the pusher driver to a
real soketi (its sync pool, aiohttp) and through the core alone, then ``os.fork()``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from soketi_server import SoketiServer

pytestmark = [pytest.mark.soketi, pytest.mark.skipif(os.name != "posix", reason="os.fork()")]

SCRIPT = """
import asyncio, json, os, sys, threading, warnings

from broadcasting import Broadcast

options = json.loads(sys.argv[1])
broadcast = Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}})
broadcast.channel("orders", {"id": 1}, "shipped")
broadcast.driver("null").channel("orders", {"id": 2}, "shipped")


async def main() -> None:
    await broadcast.achannel("orders", {"id": 3}, "shipped")
    await broadcast.driver("null").achannel("orders", {"id": 4}, "shipped")


asyncio.run(main())
names = [thread.name for thread in threading.enumerate()]
try:  # every thread of the process, those started outside threading too (Linux)
    with open("/proc/self/status") as status:
        counted = next(int(line.split()[1]) for line in status if line.startswith("Threads:"))
except OSError:
    counted = len(names)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    pid = os.fork()  # on 3.12+, a DeprecationWarning if other threads run
    if pid == 0:
        os._exit(0)
_, status = os.waitpid(pid, 0)
broadcast.close()
said = [str(warning.message) for warning in caught]
child = os.waitstatus_to_exitcode(status)
print(json.dumps({"threads": names, "counted": counted, "warnings": said, "child": child}))
"""


def test_publishing_leaves_only_the_main_thread_to_fork(soketi: SoketiServer) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(soketi.driver_options(retries=0))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == {
        "threads": ["MainThread"],
        "counted": 1,
        "warnings": [],
        "child": 0,
    }
