"""The outbox relay re-sends an Ably row that may already have arrived only while Ably would
still drop the copy (its two-minute idempotency window; the driver declares 100 s), counted
from when the row was written (its first send came later: the safe side), and reports it
unknown after.

Real parts: the HTTPS Ably emulator and a SQLite outbox file. A relay that died mid-send is
set up by writing the row's state as it would have left it (``sending``), with its write
time moved into the past; the emulator de-duplicates for good, so what is counted is what
the relay sends."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from broadcasting import Broadcast
from broadcasting.outbox._policy import Backoff
from broadcasting.outbox._relay import Relay
from broadcasting.outbox._row import DELIVERED, SENDING, UNKNOWN


@pytest.fixture
def outboxed(
    ably_options: dict[str, Any], tmp_path: Path
) -> Iterator[Callable[..., tuple[Broadcast, Path]]]:
    made: list[Broadcast] = []

    def make(**options: Any) -> tuple[Broadcast, Path]:
        path = tmp_path / f"outbox-{len(made)}.sqlite3"
        config = {
            "DRIVER": "ably",
            "DRIVERS": {"ably": {**ably_options, **options}},
            "OUTBOX": {"url": f"sqlite:///{path}", "partitions": 1},
        }
        made.append(Broadcast(config))
        return made[-1], path

    yield make
    for broadcast in made:
        broadcast.close()


def row_of(path: Path) -> tuple[int, str | None]:
    with sqlite3.connect(path) as db:
        state, error = db.execute("SELECT state, error FROM broadcasting_outbox").fetchone()
    return state, error


def as_left_by_a_dead_relay(path: Path, written_ago: float) -> None:
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE broadcasting_outbox SET state = ?, created = ?",
            (SENDING, time.time() - written_ago),
        )


@pytest.mark.parametrize(("ago", "resent"), [(5.0, True), (200.0, False)])
def test_a_row_a_dead_relay_left_sending_goes_again_only_inside_the_window(
    outboxed: Callable[..., tuple[Broadcast, Path]], emulator: Any, ago: float, resent: bool
) -> None:
    broadcast, path = outboxed()
    channel = f"window-{uuid.uuid4().hex[:8]}"
    broadcast.channel(channel, {"n": 1}, "e", send="outbox")
    as_left_by_a_dead_relay(path, ago)
    stats = Relay(broadcast).run_once()
    state, error = row_of(path)
    if resent:
        assert (stats.delivered, state) == (1, DELIVERED)
        assert len(emulator.messages(channel)) == 1
    else:
        assert (stats.unknown, state) == (1, UNKNOWN)
        assert error is not None and "only for a while" in error
        assert emulator.messages(channel) == [] and emulator.publish_requests == []


def test_a_lost_answer_keeps_the_row_sending_and_the_retry_is_absorbed(
    outboxed: Callable[..., tuple[Broadcast, Path]], emulator: Any
) -> None:
    broadcast, path = outboxed(retries=0)  # the relay's own retry, not the core's
    channel = f"window-{uuid.uuid4().hex[:8]}"
    broadcast.channel(channel, {"n": 2}, "e", send="outbox")
    emulator.drop_next()  # stored, then the connection dropped: the outcome is unknown
    relay = Relay(broadcast, backoff=Backoff(0.05, 0.1))
    first = relay.run_once()
    assert first.retried == 1
    assert row_of(path)[0] == SENDING  # it may be out there: a relay that takes it knows
    time.sleep(0.15)
    relay.run_once()
    assert row_of(path)[0] == DELIVERED
    assert len(emulator.messages(channel)) == 1  # the re-send was dropped as a repeat


def test_a_lost_answer_too_late_for_the_window_is_unknown_at_once(
    outboxed: Callable[..., tuple[Broadcast, Path]], emulator: Any
) -> None:
    broadcast, path = outboxed(retries=0)
    channel = f"window-{uuid.uuid4().hex[:8]}"
    broadcast.channel(channel, {"n": 3}, "e", send="outbox")
    with sqlite3.connect(path) as db:  # written 95 s ago: a retry (up to 10 s on) would miss
        db.execute("UPDATE broadcasting_outbox SET created = ?", (time.time() - 95,))
    emulator.drop_next()
    stats = Relay(broadcast).run_once()
    assert (stats.unknown, row_of(path)[0]) == (1, UNKNOWN)
    assert len(emulator.publish_requests) == 1  # sent once, never again
