"""A task redelivered after a worker died mid-publish, to a service that drops a repeated id
only for a while: the core's own retries of the re-send count that while from the journal's
first send, not from the re-send. The service and its clock are stand-ins
(tests/servers/dedup_support.py says why); the journal is the real Redis."""

from __future__ import annotations

import time

import pytest
from dedup_support import forgetful_broadcast, forgetful_service

from broadcasting._validate import build_message
from broadcasting.contrib import _queue
from broadcasting.contrib._queue import SENDING, RedisJournal, TaskFailed, entry, perform


def test_a_redelivered_task_is_retried_only_within_the_window_from_its_first_send(
    monkeypatch: pytest.MonkeyPatch, journal: RedisJournal
) -> None:
    """The journal says a worker began sending 99 s ago: the re-send is allowed (Ably drops
    a repeat for 2 minutes), but its retries went on for another 100 s and the message
    arrived twice. Now the re-send goes once, and the message is reported unknown."""
    service = forgetful_service(monkeypatch)
    broadcast = forgetful_broadcast(service)
    try:
        broadcaster = broadcast.driver()
        message = build_message(broadcaster.driver, ["orders"], {"n": 1}, "shipped", None)
        message.via = "celery"
        payload = _queue.encode(broadcaster, message)
        journal.put(message.id, entry(SENDING, ["orders"], time.time() - 99.0), 60)
        service.seen_before(message.id, -99.0)
        with pytest.raises(TaskFailed) as info:
            perform(broadcast, payload, via="celery", journal=journal)
        assert info.value.outcome == "unknown"
        assert service.clock.now == 15.0  # the re-send alone
        assert [at for at, _ in service.stored] == [-99.0]
    finally:
        broadcast.close()
