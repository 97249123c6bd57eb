"""A service that drops a repeated id only for a while (Ably: 2 minutes; the driver declares
100 s): the core's own retries of a message an earlier attempt may have sent count that
while from the earlier attempt, not from the retry's own first request. The service and its
clock are stand-ins (tests/servers/dedup_support.py says why); the outbox is a real SQLite
file."""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))

from dedup_support import Forgetful, forgetful_broadcast, forgetful_service

from broadcasting import Broadcast, PublishError
from broadcasting._validate import build_message
from broadcasting.outbox import Relay
from broadcasting.outbox._store import Store


def _with_outbox(service: Forgetful, folder: Path) -> tuple[Broadcast, Store]:
    """A Broadcast whose outbox is a SQLite file in ``folder``, and that outbox's store."""
    url = f"sqlite:///{folder / 'outbox.sqlite3'}"
    return forgetful_broadcast(service, OUTBOX={"url": url}), Store.from_config({"url": url})


def test_a_message_first_sent_earlier_is_retried_only_within_the_window_from_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The window was counted from the first request of this call: a message first sent
    99 s before was retried at 114 s and arrived twice."""
    service = forgetful_service(monkeypatch)
    broadcast = forgetful_broadcast(service)
    try:
        broadcaster = broadcast.driver()
        message = build_message(broadcaster.driver, ["orders"], {"n": 1}, "shipped", None)
        message.first_sent = time.time() - 99.0
        service.seen_before(message.id, -99.0)
        with pytest.raises(PublishError) as info:
            broadcaster.deliver(message)
        assert info.value.maybe_delivered
        # one request at 0 s (dropped: 99 s after the first), then no retry: at 15 s the
        # declared 100 s had passed since the first send
        assert service.clock.now == 15.0
        assert [at for at, _ in service.stored] == [-99.0]
    finally:
        broadcast.close()


def test_a_relay_resending_a_crashed_relays_row_counts_the_window_from_the_row(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A row left ``sending`` 99 s ago (a relay killed after its request went) is sent
    again, as the driver de-duplicates; the core's retries of that re-send went on for
    another 100 s, after the service had forgotten the id: delivered twice. Now the re-send
    goes once and the row is unknown."""
    service = forgetful_service(monkeypatch)
    broadcast, store = _with_outbox(service, tmp_path)
    try:
        broadcast.channel("orders", {"n": 1}, "shipped", send="outbox")
        with sqlite3.connect(tmp_path / "outbox.sqlite3") as db:
            (message_id,) = db.execute("SELECT message_id FROM broadcasting_outbox").fetchone()
            db.execute(
                "UPDATE broadcasting_outbox SET state = 1, created = ?, available_at = ?",
                (time.time() - 99.0, time.time() - 99.0),
            )
        service.seen_before(message_id, -99.0)
        stats = Relay(broadcast, store=store).run_once()
        assert (stats.delivered, stats.unknown) == (0, 1)
        assert [at for at, _ in service.stored] == [-99.0]  # every later request dropped
        assert service.clock.now == 15.0  # the re-send alone
    finally:
        store.close()
        broadcast.close()


def test_a_rows_first_send_in_a_shared_request_starts_the_window(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The relay's rows go first in requests shared with other rows; the window of a row's
    retries was counted from after that shared request returned. With 55 s requests: the
    first at 0 s, a retry at 55 s, and a third at 110 s, past the declared 100 s from the
    first send, was still allowed."""
    service = forgetful_service(monkeypatch, request=55.0)
    broadcast, store = _with_outbox(service, tmp_path)
    try:
        broadcast.channel("orders", {"n": 1}, "shipped", send="outbox")
        stats = Relay(broadcast, store=store).run_once()
        assert stats.delivered == 0
        assert service.clock.now == 110.0  # two requests: at 0 s and 55 s
        assert [at for at, _ in service.stored] == [0.0]
    finally:
        store.close()
        broadcast.close()
