"""The journal's Redis URL is a secret: it may hold a password.

A worker whose journal cannot be read retries the task (:class:`TaskRetry`), saying why: the
error's type and message, which redis-py does not fill with the password. redis-py's error
itself is not chained to it, nor kept as its ``__context__``: raised while the connection
connects, its frames hold the password in their locals (``auth_args``), which an error tracker
walking the chain records. An error of another kind (the journal's entry cannot be read: a
bug, or a journal of the application's own) is chained, with its traceback.

Against the real Redis (no password set): a user it does not know, with a password, is
refused as a wrong password is.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from secret_scan import raised_in
from secret_scan import showing as scan
from soketi_server import refused_port

from broadcasting import Broadcast, Receipt
from broadcasting.contrib._queue import SENDING, RedisJournal, TaskRetry, encode, perform

PASSWORD = "pw-9f3e1c0b7a42"


@pytest.fixture
def broadcast() -> Iterator[Broadcast]:
    with Broadcast({"DRIVER": "memory"}) as made:
        yield made


def task(broadcast: Broadcast) -> dict[str, Any]:
    """A task's payload, as the producer would enqueue it."""
    broadcaster = broadcast.driver()
    message = broadcaster._message(["orders"], {"id": 1}, "shipped", None)  # type: ignore[arg-type]
    assert not isinstance(message, Receipt)
    message.via = "rq"
    return encode(broadcaster, message)


def with_password(url: str, port: int | None = None) -> RedisJournal:
    """A journal at ``url`` as a user Redis does not know, with :data:`PASSWORD` (the URL is
    a local of no frame but this one's, which has returned)."""
    rest = url.split("://", 1)[1]
    if port is not None:
        rest = rest.replace(":6379/", f":{port}/", 1)
    return RedisJournal(f"redis://review_user:{PASSWORD}@{rest}", prefix="bq-test:secret:")


@pytest.mark.parametrize(
    ("where", "shown"),
    [
        ("refused", r"AuthenticationError: invalid username-password pair"),
        ("unreachable", r"ConnectionError: Error 111 connecting to 127\.0\.0\.1"),
    ],
)
def test_a_journal_that_cannot_connect_retries_the_task_holding_no_password(
    broadcast: Broadcast, redis_url: str, where: str, shown: str
) -> None:
    journal = with_password(redis_url, refused_port() if where == "unreachable" else None)
    with pytest.raises(TaskRetry, match=shown) as info:
        perform(broadcast, task(broadcast), via="rq", journal=journal)
    assert "the journal is unavailable" in str(info.value)
    assert scan(info.value, PASSWORD, skip=__file__) == []
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert PASSWORD not in "".join(traceback.format_exception(info.value))
    assert raised_in(info.value) == "perform"  # the traceback points where it was raised
    journal.client.close()


def test_an_entry_the_worker_cannot_read_is_chained_with_its_traceback(
    broadcast: Broadcast, journal: RedisJournal
) -> None:
    """Not the journal's connection: the error that says where it went wrong stays chained."""
    payload = task(broadcast)
    journal.put(payload["id"], f"{SENDING} [not json", 60.0)
    with pytest.raises(TaskRetry, match="JSONDecodeError") as info:
        perform(broadcast, payload, via="rq", journal=journal)
    cause = info.value.__cause__
    assert isinstance(cause, json.JSONDecodeError)
    names = [frame.name for frame in traceback.extract_tb(cause.__traceback__)]
    assert "begin" in names and "parse" in names
