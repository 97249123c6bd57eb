"""A queue plugin's settings that were taken and then broke every task, or whose error named
the wrong thing: refused at construction now, each a ConfigurationError naming the keyword.

- ``journal_ttl=float("inf")`` (or NaN, or more seconds than Redis takes for an expiry) was
  accepted: every task's journal write then raised (``OverflowError``, ``ValueError``, Redis's
  "out of range"), so every task was retried and given up without ever publishing.
- ``name="outbox"`` (or ``"after_commit"``) was accepted: the plugin's
  ``broadcasting_defer`` runs before the core's, so it took every outbox publish into the
  queue; ``name=""`` took none, silently.
- ``backoff=-1`` was refused "in the 'rq' driver, key 'retry_backoff'": no driver of that
  name, and no such keyword of the plugin.
- RQ's ``job_options`` with a key RQ does not take (``timeout``, RQ's old name of
  ``job_timeout``) became a keyword argument of the job's function: every job raised
  ``TypeError`` in the worker, was retried by RQ, and ended in its failed registry with
  nothing logged by broadcasting. One the plugin sets itself (``job_id``, ``retry``) broke
  the message id or the attempt count.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import rq

from broadcasting import Broadcast, ConfigurationError, Receipt
from broadcasting.contrib._queue import (
    DONE,
    MAX_JOURNAL_TTL,
    QueuePlugin,
    RedisJournal,
    encode,
    parse,
    perform,
)
from broadcasting.contrib.rq import RQQueue


@pytest.mark.parametrize("ttl", [math.inf, math.nan, 1e17, MAX_JOURNAL_TTL + 1])
def test_a_journal_ttl_no_journal_can_keep_is_refused(ttl: float) -> None:
    with pytest.raises(ConfigurationError, match=r"setting 'journal_ttl'.*at most") as info:
        RQQueue(object(), "m:b", journal_ttl=ttl)
    assert info.value.key == "journal_ttl"


def test_the_longest_journal_ttl_is_one_redis_keeps(redis_url: str, uid: str) -> None:
    """The bound is one the real Redis takes: a task with it is published and noted."""
    journal = RedisJournal(redis_url, prefix=f"bq-test:{uid}:")
    try:
        with Broadcast({"DRIVER": "memory"}) as broadcast:
            broadcaster = broadcast.driver()
            message = broadcaster._message(["orders"], {"id": 1}, "shipped", None)  # type: ignore[arg-type]
            assert not isinstance(message, Receipt)
            message.via = "rq"
            payload = encode(broadcaster, message)
            perform(broadcast, payload, via="rq", journal=journal, ttl=MAX_JOURNAL_TTL)
            assert parse(journal.read(payload["id"]) or "")[0] == DONE
    finally:
        for key in journal.client.scan_iter(f"{journal.prefix}*"):
            journal.client.delete(key)
        journal.client.close()


@pytest.mark.parametrize("name", ["outbox", "after_commit", "now", "", 7])
def test_a_name_the_core_sends_or_no_name_is_refused(name: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"setting 'name'"):
        RQQueue(object(), "m:b", name=name)


@pytest.mark.parametrize(
    ("given", "key"),
    [
        ({"retries": -1}, "retries"),
        ({"backoff": -1}, "backoff"),
        ({"max_backoff": 1e9}, "max_backoff"),
    ],
)
def test_a_bad_retry_setting_names_the_plugins_keyword(given: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        RQQueue(object(), "m:b", **given)
    assert info.value.key == key and info.value.driver == "config"
    assert f"setting {key!r}" in str(info.value) and "driver" not in str(info.value)


@pytest.fixture
def rq_queue(redis_url: str, uid: str) -> Iterator[rq.Queue]:
    queue = rq.Queue(f"bq-{uid}", connection=redis.Redis.from_url(redis_url))
    yield queue
    queue.delete(delete_jobs=True)


@pytest.mark.parametrize("key", ["timeout", "job_id", "retry", "args", "kwargs"])
def test_rq_job_options_the_job_cannot_take_are_refused(rq_queue: rq.Queue, key: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"setting 'job_options'.*{key}"):
        RQQueue(rq_queue, "m:b", job_options={key: 30})


def test_rq_job_options_rq_takes_reach_the_job(rq_queue: rq.Queue) -> None:
    plugin = RQQueue(rq_queue, "m:b", job_options={"job_timeout": 30, "result_ttl": 5})
    with Broadcast({"DRIVER": "memory"}, plugins=[plugin]) as broadcast:
        receipt = broadcast.channel("orders", {"id": 1}, "shipped", send="rq")
    job = rq_queue.fetch_job(receipt.message_id)
    assert job is not None and job.timeout == 30 and job.result_ttl == 5 and job.kwargs == {}


@pytest.mark.parametrize("target", ["no_colon", "pkg.module:", 42])
def test_a_bad_broadcast_target_names_the_broadcast_keyword(target: Any) -> None:
    """It was refused as "(setting 'rq')": the plugin's name, not the keyword given."""
    with pytest.raises(ConfigurationError) as info:
        QueuePlugin(target, name="q")
    assert info.value.key == "broadcast" and "setting 'broadcast'" in str(info.value)
