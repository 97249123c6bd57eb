"""A queued publish retried with channels of two kinds: some certainly not delivered, some
that may have arrived (an answer lost). On a service that drops a repeated id only for a
while (Ably: the driver declares 100 s), the second kind may be sent again only inside that
while; the first kind must be sent whatever the time, since nothing of it arrived.

The journal's "retry" entry kept one first-send time for all its channels, so a retry that
came after the window (a long backoff, a backlog, a worker down for a while) held back every
channel and reported them all unknown: a channel that certainly failed was never sent. And a
channel re-sent because it may have arrived, which then failed certainly in the re-send, lost
its first-send time: a later retry took it for never sent, and sent it again after Ably had
forgotten the first copy (twice in a browser).

The policy (``begin``, ``finish``) is pure and checked here directly; ``perform`` runs in this
process against the HTTPS Ably emulator and the real Redis journal (db 13), with the journal
entry an earlier attempt left written as that attempt's ``finish`` wrote it.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from broadcasting import Broadcast, PublishError, Receipt  # noqa: E402
from broadcasting.contrib import _queue  # noqa: E402
from broadcasting.contrib._queue import (  # noqa: E402
    DONE,
    RETRY,
    SENDING,
    UNKNOWN,
    RedisJournal,
    TaskFailed,
    TaskRetry,
    begin,
    entry,
    finish,
    parse,
    perform,
    since_of,
)
from broadcasting.plugin import Retry  # noqa: E402
from servers.ably_emulator import AblyEmulator  # noqa: E402

WINDOW = 100.0  # the Ably driver's dedup_window


def window(now: float) -> Any:
    return lambda since: since is not None and now - since < WINDOW


def mixed_error() -> PublishError:
    """ "a" refused before anything was stored (a 429), "b" with its answer lost."""
    refused = PublishError("rate limited", driver="ably", status=429, retryable=True)
    lost = PublishError("timed out", driver="ably", retryable=True, maybe_delivered=True)
    causes = {"a": refused, "b": lost}
    return PublishError("mixed", driver="ably", failed=["a"], unknown=["b"], causes=causes)


# --- the policy ---------------------------------------------------------------------------------


def test_after_the_window_a_mixed_retry_sends_what_certainly_failed_and_holds_the_rest() -> None:
    first = begin(None, ["a", "b"], resend=window(1000.0), now=1000.0)
    done = finish(first.send, mixed_error(), resend=True, since=first.since, maybe=first.maybe)
    assert (done.outcome, done.retry) == (RETRY, ("a", "b"))
    later = begin(done.entry, ["a", "b"], resend=window(1200.0), now=1200.0)  # 200 s on
    assert later.send == ("a",)  # certainly never delivered: sent, whatever the time
    assert later.unknown == ("b",)  # may have arrived, and Ably forgot it: held, reported
    assert later.since == 1200.0 and later.maybe == ()  # a's first send that counts is now
    assert later.entry is not None and parse(later.entry) == (SENDING, ("a",))
    assert "not sent again" in later.reason


def test_inside_the_window_a_mixed_retry_sends_both_from_the_first_send() -> None:
    done = finish(["a", "b"], mixed_error(), resend=True, since=1000.0)
    sooner = begin(done.entry, ["a", "b"], resend=window(1050.0), now=1050.0)
    assert (sooner.send, sooner.unknown, sooner.maybe) == (("a", "b"), (), ("b",))
    assert sooner.since == 1000.0 and since_of(sooner.entry) == 1000.0


def test_a_channel_that_may_have_arrived_stays_so_when_its_re_send_fails_for_certain() -> None:
    """The re-send of "b" (first sent at 1000) is refused with a 429: that says nothing of the
    first send. Its retry keeps the first-send time, and after the window it is held."""
    start = begin(entry(RETRY, ["b"], 1000.0), ["b"], resend=window(1050.0), now=1050.0)
    assert start.maybe == ("b",)
    refused = PublishError("rate limited", driver="ably", status=429, retryable=True, failed=["b"])
    done = finish(start.send, refused, resend=True, since=start.since, maybe=start.maybe)
    assert done.outcome == RETRY and since_of(done.entry) == 1000.0
    later = begin(done.entry, ["b"], resend=window(1200.0), now=1200.0)
    assert (later.send, later.outcome) == ((), UNKNOWN)
    # refused for good now: the first send may still have arrived, so it is unknown, not failed
    final = PublishError("no", driver="ably", status=401, failed=["b"])
    assert finish(["b"], final, resend=True, since=1000.0, maybe=("b",)).unknown == ("b",)


def test_entries_of_the_previous_version_read_as_before() -> None:
    """A worker upgraded mid-retry reads what the previous version wrote: a "retry" with a
    time is about channels that all may have arrived; one without, about certain failures."""
    old = 'retry ["a","b"] 1000.0'
    assert parse(old) == (RETRY, ("a", "b")) and since_of(old) == 1000.0
    inside = begin(old, ["a", "b"], resend=window(1050.0), now=1050.0)
    assert inside.send == ("a", "b") and inside.maybe == ("a", "b")
    after = begin(old, ["a", "b"], resend=window(1200.0), now=1200.0)
    assert (after.send, after.outcome) == ((), UNKNOWN)
    plain = begin('retry ["a","b"]', ["a", "b"], resend=window(1200.0), now=1200.0)
    assert plain.send == ("a", "b") and plain.maybe == ()
    # and an entry of this version that is not mixed is written as the previous one wrote it
    lost = PublishError("timed out", driver="ably", retryable=True, unknown=["a", "b"])
    assert finish(["a", "b"], lost, resend=True, since=1000.0).entry == old


def test_a_mixed_entry_keeps_channel_names_with_spaces_and_unicode() -> None:
    text = entry(RETRY, ["a b", "ünï"], 1000.5, ["ünï"])
    assert parse(text) == (RETRY, ("a b", "ünï")) and since_of(text) == 1000.5
    start = begin(text, ["a b", "ünï"], resend=window(1200.0), now=1200.0)
    assert (start.send, start.unknown) == (("a b",), ("ünï",))


# --- a worker, against the Ably emulator --------------------------------------------------------


@pytest.fixture(scope="module")
def emulator_server() -> Iterator[AblyEmulator]:
    with AblyEmulator() as server:
        yield server


@pytest.fixture
def broadcast(
    emulator_server: AblyEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Broadcast]:
    emulator_server.reset()
    emulator_server.batch_format = "legacy"
    monkeypatch.setenv("SSL_CERT_FILE", emulator_server.ca_path)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    options = emulator_server.options(retries=0, retry_backoff=0.01, retry_max_backoff=0.05)
    made = Broadcast({"DRIVER": "ably", "DRIVERS": {"ably": options}})
    yield made
    made.close()


def payload(broadcast: Broadcast, channels: list[str]) -> dict[str, Any]:
    broadcaster = broadcast.driver()
    message = broadcaster._message(channels, {"n": 1}, "queued", None)  # type: ignore[arg-type]
    assert not isinstance(message, Receipt)
    message.via = "celery"
    return _queue.encode(broadcaster, message)


FAST = Retry(retries=3, backoff=0.01, max_backoff=0.02)


def test_a_worker_sends_the_certain_failure_of_a_mixed_retry_after_the_window(
    broadcast: Broadcast,
    emulator_server: AblyEmulator,
    journal: RedisJournal,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tag = uuid.uuid4().hex[:8]
    sure, maybe = f"sure-{tag}", f"maybe-{tag}"
    job = payload(broadcast, [sure, maybe])
    # as the earlier attempt's finish() left it, 200 s ago: `sure` refused, `maybe` lost
    refused = PublishError("rate limited", driver="ably", status=429, retryable=True)
    lost = PublishError("timed out", driver="ably", retryable=True, maybe_delivered=True)
    error = PublishError(
        "mixed", driver="ably", failed=[sure], unknown=[maybe], causes={sure: refused, maybe: lost}
    )
    left = finish([sure, maybe], error, resend=True, since=time.time() - 200.0)
    journal.put(job["id"], left.entry, 60)
    with caplog.at_level(logging.ERROR, "broadcasting.queue"), pytest.raises(TaskFailed) as info:
        perform(broadcast, job, via="celery", journal=journal, attempt=1, retry=FAST)
    assert len(emulator_server.messages(sure)) == 1  # sent: it never arrived before
    assert emulator_server.messages(maybe) == []  # not sent again after the window
    assert (info.value.outcome, info.value.channels) == (UNKNOWN, (maybe,))
    assert parse(journal.read(job["id"]) or "") == (UNKNOWN, (maybe,))
    (record,) = [r for r in caplog.records if r.name == "broadcasting.queue"]
    assert f"message {job['id']}, unknown on 1 channel(s) {maybe}" in record.getMessage()


def test_a_worker_keeps_what_may_have_arrived_unknown_after_its_re_send_is_refused(
    broadcast: Broadcast, emulator_server: AblyEmulator, journal: RedisJournal
) -> None:
    """The re-send of a channel whose answer was lost 97 s ago is refused (429): retried,
    but once the window has passed it is held, not taken for a channel never sent."""
    channel = f"maybe-{uuid.uuid4().hex[:8]}"
    job = payload(broadcast, [channel])
    first = time.time() - 97.0
    journal.put(job["id"], entry(RETRY, [channel], first), 60)
    emulator_server.fail_next(429, 42910, "Rate limit exceeded")
    with pytest.raises(TaskRetry):
        perform(broadcast, job, via="celery", journal=journal, attempt=1, retry=FAST)
    requests = len(emulator_server.publish_requests)
    time.sleep(max(0.0, first + WINDOW + 0.5 - time.time()))  # the window has passed now
    with pytest.raises(TaskFailed) as info:
        perform(broadcast, job, via="celery", journal=journal, attempt=2, retry=FAST)
    assert info.value.outcome == UNKNOWN
    assert len(emulator_server.publish_requests) == requests  # not sent again
    assert parse(journal.read(job["id"]) or "")[0] == UNKNOWN


def test_a_worker_sends_a_mixed_retry_inside_the_window_once(
    broadcast: Broadcast, emulator_server: AblyEmulator, journal: RedisJournal
) -> None:
    tag = uuid.uuid4().hex[:8]
    sure, maybe = f"sure-{tag}", f"maybe-{tag}"
    job = payload(broadcast, [sure, maybe])
    journal.put(job["id"], entry(RETRY, [sure, maybe], time.time() - 10.0, [maybe]), 60)
    assert perform(broadcast, job, via="celery", journal=journal, attempt=1, retry=FAST)
    assert parse(journal.read(job["id"]) or "") == (DONE, (sure, maybe))
    assert [len(emulator_server.messages(c)) for c in (sure, maybe)] == [1, 1]
