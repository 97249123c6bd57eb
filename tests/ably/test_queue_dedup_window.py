"""A queued publish to Ably whose earlier attempt died mid-publish is sent again only while
Ably would still drop the copy (its two-minute idempotency window, declared by the driver as
``Capabilities(dedup_window=100.0)``), and is reported unknown after it.

The worker's side (``perform``) runs in this process against the HTTPS Ably emulator and a
real Redis journal. The earlier attempt is a real one: the task is performed once (the
emulator stores it), then its journal entry is set back to "sending", with the time of that
first send moved into the past, as a worker killed after its request would have left it some
time ago. (The emulator de-duplicates for good; the window is the core's to keep.)
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

QUEUES = Path(__file__).resolve().parents[1] / "queues"
if str(QUEUES) not in sys.path:
    sys.path.append(str(QUEUES))

from queue_services import need  # noqa: E402

from broadcasting import Broadcast, Receipt  # noqa: E402
from broadcasting.contrib import _queue  # noqa: E402
from broadcasting.contrib._queue import (  # noqa: E402
    DONE,
    RETRY,
    SENDING,
    UNKNOWN,
    RedisJournal,
    TaskFailed,
    begin,
    entry,
    finish,
    parse,
    perform,
    since_of,
)
from broadcasting.plugin import PublishError  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/13"


@pytest.fixture
def journal() -> Iterator[RedisJournal]:
    need("Redis", 6379)
    found = RedisJournal(REDIS_URL, prefix=f"bq-ably:{uuid.uuid4().hex[:10]}:")
    yield found
    keys = list(found.client.scan_iter(f"{found.prefix}*"))
    if keys:
        found.client.delete(*keys)
    found.client.close()


def payload(broadcast: Broadcast, channel: str) -> dict[str, Any]:
    broadcaster = broadcast.driver()
    message = broadcaster._message([channel], {"n": 1}, "queued", None)  # type: ignore[arg-type]
    assert not isinstance(message, Receipt)
    message.via = "rq"
    return _queue.encode(broadcaster, message)


@pytest.mark.parametrize(("ago", "resent"), [(5.0, True), (200.0, False)])
def test_an_attempt_that_died_is_sent_again_only_inside_the_window(
    make_broadcast: Callable[..., Broadcast],
    emulator: Any,
    journal: RedisJournal,
    ago: float,
    resent: bool,
) -> None:
    broadcast = make_broadcast()
    channel = f"dedup-{uuid.uuid4().hex[:8]}"
    job = payload(broadcast, channel)
    assert perform(broadcast, job, via="rq", journal=journal) is not None  # the first send
    requests = len(emulator.publish_requests)
    # as a worker killed after that request would have left it, `ago` seconds ago
    journal.put(job["id"], entry(SENDING, [channel], time.time() - ago), 60)
    if resent:
        assert perform(broadcast, job, via="rq", journal=journal) is not None
        assert len(emulator.publish_requests) > requests  # sent again...
        assert parse(journal.read(job["id"]) or "") == (DONE, (channel,))
    else:
        with pytest.raises(TaskFailed) as caught:
            perform(broadcast, job, via="rq", journal=journal)
        assert caught.value.outcome == UNKNOWN
        assert "window has passed" in str(caught.value)
        assert len(emulator.publish_requests) == requests  # ...or not at all
        assert parse(journal.read(job["id"]) or "")[0] == UNKNOWN
    assert len(emulator.messages(channel)) == 1  # ...and stored once either way


def test_a_retry_of_what_may_have_arrived_keeps_its_first_send_time() -> None:
    """The journal's policy, pure: the first send's time goes with a retry that re-sends
    what may have arrived, and decides whether the retry may still send it."""
    start = begin(None, ["a"], resend=lambda since: True, now=50.0)
    assert start.since == 50.0 and since_of(start.entry) == 50.0
    lost = PublishError("timed out", driver="ably", retryable=True, unknown=["a"])
    done = finish(["a"], lost, resend=True, since=50.0)
    assert done.outcome == RETRY and since_of(done.entry) == 50.0
    window = lambda since: since is not None and 170.0 - since < 100.0  # noqa: E731
    later = begin(done.entry, ["a"], resend=window, now=170.0)  # 120 s after the first send
    assert later.outcome == UNKNOWN and not later.send
    sooner = begin(done.entry, ["a"], resend=lambda since: True, now=60.0)
    assert sooner.send == ("a",) and since_of(sooner.entry) == 50.0
    # a certain failure's retry is a first send again: it carries no time, and is sent
    refused = PublishError("refused", driver="ably", retryable=True, failed=["a"])
    plain = finish(["a"], refused, resend=False, since=50.0)
    assert plain.outcome == RETRY and since_of(plain.entry) is None
    again = begin(plain.entry, ["a"], resend=window, now=500.0)
    assert again.send == ("a",) and since_of(again.entry) == 500.0
    # an entry written before first-send times were kept reads as before
    assert parse('sending ["a"]') == (SENDING, ("a",)) and since_of('sending ["a"]') is None
