"""The shared queue logic without any service: the payload, the journal's policy, the errors.

``begin`` decides from a message's journal entry what a (re)delivered task does; ``finish``
turns a publish's outcome into the next entry. Both are pure: every case is checked here,
with real ``PublishError``s as the core raises them.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from broadcasting import Broadcast, InputError, PublishError
from broadcasting.contrib import _queue
from broadcasting.contrib._queue import (
    DONE,
    FAILED,
    RETRY,
    SENDING,
    UNKNOWN,
    Job,
    TaskFailed,
    TaskRetry,
    begin,
    entry,
    finish,
    parse,
)
from broadcasting.contrib.rq import RQQueue

CHANNELS = ("a", "b", "c")


def test_a_first_attempt_notes_it_is_sending_every_channel() -> None:
    start = begin(None, CHANNELS, resend=False)
    assert start.send == CHANNELS
    assert start.entry is not None and parse(start.entry) == (SENDING, CHANNELS)


def test_a_retry_sends_only_the_channels_not_delivered() -> None:
    start = begin(entry(RETRY, ["b"]), CHANNELS, resend=False)
    assert start.send == ("b",)
    assert start.entry == entry(SENDING, ["b"])


def test_an_unfinished_attempt_is_unknown_and_not_sent_again() -> None:
    start = begin(entry(SENDING, ["a", "c"]), CHANNELS, resend=False)
    assert start.send == ()
    assert start.outcome == UNKNOWN
    assert start.entry == entry(UNKNOWN, ["a", "c"])
    assert "not sent again" in start.reason


def test_an_unfinished_attempt_is_sent_again_where_resending_is_safe() -> None:
    start = begin(entry(SENDING, ["a"]), CHANNELS, resend=True)
    assert start.send == ("a",)
    assert start.entry is None  # still sending


@pytest.mark.parametrize("state", [DONE, FAILED, UNKNOWN])
def test_a_finished_message_is_not_sent_again(state: str) -> None:
    start = begin(entry(state, CHANNELS), CHANNELS, resend=True)
    assert (start.send, start.entry, start.outcome) == ((), None, state)


def _error(**kwargs: object) -> PublishError:
    return PublishError("boom", driver="pusher", **kwargs)  # type: ignore[arg-type]


def test_a_receipt_is_done() -> None:
    assert finish(CHANNELS, None, resend=False) == _queue.Finish(entry(DONE, CHANNELS), DONE)


def test_certain_retryable_failures_are_retried_and_delivered_channels_dropped() -> None:
    refused = _error(status=503, retryable=True)
    error = _error(delivered=["a"], failed=["b", "c"], causes={"b": refused, "c": refused})
    done = finish(CHANNELS, error, resend=False)
    assert (done.outcome, done.retry) == (RETRY, ("b", "c"))
    assert done.entry == entry(RETRY, ["b", "c"])


def test_on_the_last_attempt_a_retryable_failure_is_dead() -> None:
    error = _error(failed=["a"], causes={"a": _error(status=503, retryable=True)})
    done = finish(["a"], error, resend=False, last=True)
    assert (done.outcome, done.dead, done.entry) == (FAILED, ("a",), entry(FAILED, ["a"]))


def test_a_non_retryable_failure_is_dead_at_once() -> None:
    error = _error(failed=["a"], causes={"a": _error(status=401)})
    done = finish(["a"], error, resend=False)
    assert (done.outcome, done.dead) == (FAILED, ("a",))


def test_maybe_delivered_is_unknown_unless_resending_is_safe() -> None:
    lost = _error(maybe_delivered=True, retryable=True)
    error = _error(unknown=["a"], causes={"a": lost})
    assert finish(["a"], error, resend=False).outcome == UNKNOWN
    assert finish(["a"], error, resend=True).retry == ("a",)
    # resending is safe, but there is no retry left, or none would help: still unknown
    assert finish(["a"], error, resend=True, last=True).unknown == ("a",)
    final = _error(unknown=["a"], causes={"a": _error(maybe_delivered=True)})
    assert finish(["a"], final, resend=True).outcome == UNKNOWN


def test_a_mix_retries_what_it_can_and_reports_the_rest() -> None:
    error = _error(
        delivered=["a"],
        failed=["b"],
        unknown=["c"],
        causes={"b": _error(status=429, retryable=True), "c": _error(maybe_delivered=True)},
    )
    done = finish(CHANNELS, error, resend=False)
    assert (done.outcome, done.retry, done.unknown) == (RETRY, ("b",), ("c",))


def test_the_errors_survive_a_pickle() -> None:
    failed = TaskFailed("why", message_id="m1", outcome=UNKNOWN, channels=["a"])
    back = pickle.loads(pickle.dumps(failed))
    assert (str(back), back.message_id, back.outcome) == ("why", "m1", UNKNOWN)
    assert back.channels == ("a",)
    retry = pickle.loads(pickle.dumps(TaskRetry("later", message_id="m2", delay=1.5)))
    assert (retry.message_id, retry.delay) == ("m2", 1.5)


def _plugin() -> RQQueue:
    return RQQueue(object(), "tests:broadcast", journal=object())  # type: ignore[arg-type]


def test_the_payload_round_trips_with_the_same_id_and_data_kind() -> None:
    with Broadcast({"DRIVER": "memory"}) as broadcast:
        broadcaster = broadcast.driver()
        for data in ({"id": 42}, "plain text", [1, "two"]):
            message = broadcaster._message(["x", "y"], data, "shipped", None)
            assert not isinstance(message, type(None))
            payload = _queue.encode(broadcaster, message)  # type: ignore[arg-type]
            rebuilt = Job.decode(payload).message(broadcaster.driver, "rq")
            assert rebuilt == message and rebuilt.id == message.id  # type: ignore[comparison-overlap]
            assert rebuilt.via == "rq" and type(rebuilt.data) is type(data)


@pytest.mark.parametrize(
    "payload", [None, {"v": 2}, {"v": 1, "driver": "memory"}, {**dict.fromkeys("x"), "v": 1}]
)
def test_a_payload_of_another_shape_fails_the_task(payload: object) -> None:
    with pytest.raises(TaskFailed, match="not a broadcasting message") as caught:
        Job.decode(payload)
    assert caught.value.outcome == FAILED


GOOD = {
    "v": 1,
    "driver": "memory",
    "channels": ["orders"],
    "event": "shipped",
    "text": '{"id":1}',
    "kind": "json",
    "socket_id": None,
    "id": "m-1",
}


@pytest.mark.parametrize(
    "change",
    [
        {"channels": "orders"},  # published to six one-letter channels
        {"channels": {"a": 1}},  # published to its keys
        {"channels": []},
        {"v": True},  # True == 1
        {"id": ""},  # every empty id would share one journal entry
        {"text": "{bad json"},  # escaped as JSONDecodeError
        {"text": "[" * 100_000 + "]" * 100_000},  # escaped as RecursionError
    ],
    ids=["channels-str", "channels-dict", "no-channels", "v-true", "empty-id", "bad-json", "deep"],
)
def test_a_malformed_payload_fails_the_task_with_a_typed_error(change: dict[str, Any]) -> None:
    """Each of these was published to the wrong channels, escaped untyped, or would have
    shared a journal entry with every other such payload (a review found them)."""
    Job.decode(GOOD)  # the control: the same payload unchanged is read
    with pytest.raises(TaskFailed, match="not a broadcasting message") as caught:
        Job.decode({**GOOD, **change})
    assert caught.value.outcome == FAILED


def test_a_variant_of_a_driver_cannot_be_queued() -> None:
    options = {"app_id": "1", "client": "key", "secret": "secret", "host": "127.0.0.1"}
    config = {"DRIVER": "pusher", "DRIVERS": {"pusher": options}, "SEND": "rq"}
    with Broadcast(config, plugins=[_plugin()]) as broadcast:
        variant = broadcast.driver("pusher").with_options(port=1)
        with pytest.raises(InputError, match="with_options"):
            variant.channel("orders", {"id": 1}, "shipped")


def test_bad_settings_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="retries"):
        RQQueue(object(), "tests:broadcast", retries=-1)
    with pytest.raises(ValueError, match="module:attribute"):
        RQQueue(object(), lambda: None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"package\.module:attribute"):
        RQQueue(object(), "no_colon")
    with pytest.raises(ValueError, match="journal_ttl"):
        RQQueue(object(), "tests:broadcast", journal_ttl=0)
    # an entry that expires before the last retry reads it: that retry would take the task for
    # a first attempt and send again what an earlier one delivered (a review did: 1 s entries,
    # 2 s backoff, two channels delivered twice). Twice the longest the retries wait: 2*(2+2)
    with pytest.raises(ValueError, match=r"journal_ttl.*\(8 s with retries=2"):
        RQQueue(object(), "tests:broadcast", retries=2, backoff=2, max_backoff=2, journal_ttl=1)
    RQQueue(object(), "tests:broadcast", retries=2, backoff=2, max_backoff=2, journal_ttl=8.5)


def test_two_plugins_of_one_queue_get_tasks_of_their_own() -> None:
    from celery import Celery

    from broadcasting.contrib.celery import CeleryQueue

    app = Celery("names")
    default = CeleryQueue(app, "m:b", journal=object())  # type: ignore[arg-type]
    slow = CeleryQueue(app, "m:b", name="celery-slow", journal=object())  # type: ignore[arg-type]
    assert (default.name, default.task.name) == ("celery", "broadcasting.publish")
    assert (slow.name, slow.task.name) == ("celery-slow", "broadcasting.publish.celery-slow")
    assert repr(slow) == "<CeleryQueue 'celery-slow'>"


def test_dramatiq_on_redis_keeps_its_journal_in_the_brokers_redis() -> None:
    from dramatiq.brokers.redis import RedisBroker
    from dramatiq.brokers.stub import StubBroker

    from broadcasting.contrib._queue import RedisJournal
    from broadcasting.contrib.dramatiq import DramatiqQueue

    broker = RedisBroker(url="redis://127.0.0.1:6379/13")  # connects on first use only
    on_redis = DramatiqQueue("m:b", broker=broker)
    assert isinstance(on_redis.journal(), RedisJournal)
    assert on_redis.journal().client is broker.client  # type: ignore[attr-defined]
    assert on_redis.actor.actor_name == "broadcasting_publish"
    elsewhere = DramatiqQueue("m:b", broker=StubBroker(), name="dramatiq-2")
    assert elsewhere.actor.actor_name == "broadcasting_publish_dramatiq-2"
    with pytest.raises(ValueError, match=r"journal=RedisJournal\(url\)"):
        elsewhere.journal()
