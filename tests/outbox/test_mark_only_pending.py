"""A row a relay fetched as pending is not marked ``sending`` (and so not sent) once another
relay has marked it since: it is that relay's attempt, which may have delivered it.

Found by the MariaDB crash soak on a loaded machine (`tests/outbox/test_relay_benchmarks.py`,
with the outbox's 1 s leases): 16 rows, one per partition, arrived twice and ended
``unknown``. A relay's queued rows were fetched as pending; it paused past its lease; another
relay took the partitions, marked and sent the rows; it paused past its lease in turn; the
first relay took the partitions back and its wave marked the rows it had fetched long before,
for the mark step took any open row (pending *or* sending) in a partition the relay held,
and sent them again. The interleaving here is the soak's, step by step with explicit clocks,
against a real SQLite file, PostgreSQL table and MariaDB table.
"""

from __future__ import annotations

import pytest

from broadcasting._types import Message
from broadcasting.outbox import PENDING, SENDING, Store
from broadcasting.outbox._row import new_rows

NOW = 1_800_000_000.0
LEASE = 30.0


def put(store: Store, channel: str) -> None:
    message = Message((channel,), "shipped", "x", "x", f"m-{channel}")
    store.insert(new_rows(message, "pusher", store.partitions, NOW))


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_row_another_relay_marked_since_the_fetch_is_not_marked_again(
    new_store: object, kind: str
) -> None:
    store: Store = new_store(kind)  # type: ignore[operator]
    everything = list(range(store.partitions))
    put(store, "orders")
    assert store.claim("first", NOW, LEASE) == everything
    [fetched] = store.fetch("first", everything, NOW, 100)
    assert fetched.state == PENDING  # queued behind others of its channel, say

    # "first" pauses past its lease: "second" takes over, marks the row and sends it
    later = NOW + LEASE + 1
    assert store.claim("second", later, LEASE) == everything
    [row] = store.fetch("second", everything, later, 100)
    assert store.mark_sending("second", [row.id], later) == [row.id]

    # "second" pauses past its lease in turn, and "first" takes the partitions back
    latest = later + LEASE + 1
    assert store.claim("first", latest, LEASE) == everything
    # its wave marks what it fetched before: the row is second's attempt now, not to send
    assert store.mark_sending("first", [fetched.id], latest) == []
    [found] = store.fetch("first", everything, latest, 100)
    assert found.state == SENDING  # the next round reports it unknown, never sends it


def test_a_row_still_pending_is_marked(new_store: object, kind: str) -> None:
    store: Store = new_store(kind)  # type: ignore[operator]
    everything = list(range(store.partitions))
    put(store, "orders")
    assert store.claim("first", NOW, LEASE) == everything
    [fetched] = store.fetch("first", everything, NOW, 100)
    later = NOW + LEASE + 1  # its lease ran out, nobody took it: claimed again
    assert store.claim("first", later, LEASE) == everything
    assert store.mark_sending("first", [fetched.id], later) == [fetched.id]
