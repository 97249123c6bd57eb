"""A relay made before a fork and run in the children (a preforking server, a worker pool):
each child is a relay of its own, under an owner of its own (a SQLite outbox file)."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from broadcasting import Broadcast
from broadcasting.drivers.memory import BroadcastMemoryDriver
from broadcasting.outbox import Relay

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX's")

ROWS = 120


def _relay_in_child(relay: Relay, broadcast: Broadcast, barrier: Any, out: Any) -> None:
    """Both children claim before either fetches: the moment two relays under one owner
    would both hold every partition."""
    claim = relay.store.claim
    waited = []

    def claim_together(*args: Any, **kwargs: Any) -> Any:
        if not waited:
            waited.append(barrier.wait(timeout=20))
        return claim(*args, **kwargs)

    relay.store.claim = claim_together  # type: ignore[method-assign]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        relay.run_once()
        backlog = relay.stats().store.backlog
        if not backlog.get("pending") and not backlog.get("sending"):
            break
    sent = broadcast.driver(BroadcastMemoryDriver).driver.messages
    out.put((os.getpid(), relay.owner, [m.data["n"] for m in sent], dict(backlog)))


@pytest.mark.parametrize("given", [None, "relay-1"])
def test_each_forked_child_relays_under_its_own_owner_and_no_row_goes_twice(
    tmp_path: Path, given: str | None
) -> None:
    """A relay made in the parent kept its owner in the children: each child claimed every
    partition under that one name, fetched the same rows and sent them (a review found 111
    of 300 rows delivered twice). Now a child takes an owner of its own: a new default, or
    the given one with its pid."""
    url = f"sqlite:///{tmp_path / 'outbox.sqlite3'}"
    broadcast = Broadcast({"DRIVER": "memory", "OUTBOX": {"url": url}})
    for n in range(ROWS):
        broadcast.channel(f"orders.{n % 8}", {"n": n}, "shipped", send="outbox")
    relay = Relay(broadcast, owner=given)
    parent_owner = relay.owner
    fork = multiprocessing.get_context("fork")
    barrier, out = fork.Barrier(2), fork.Queue()
    children = [
        fork.Process(target=_relay_in_child, args=(relay, broadcast, barrier, out))
        for _ in range(2)
    ]
    for child in children:
        child.start()
    results = [out.get(timeout=60) for _ in children]
    for child in children:
        child.join(10)
        assert child.exitcode == 0
    owners = {owner for _, owner, _, _ in results}
    assert len(owners) == 2 and parent_owner not in owners
    if given is not None:
        assert owners == {f"relay-1:{pid}" for pid, _, _, _ in results}
    sent = Counter(n for _, _, numbers, _ in results for n in numbers)
    assert sorted(sent) == list(range(ROWS))
    assert [n for n, times in sent.items() if times > 1] == []
    assert results[-1][3].get("delivered") == ROWS
    assert relay.owner == parent_owner  # the parent's own relay is as it was
