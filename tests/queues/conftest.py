"""Fixtures for the task-queue plugins' tests: soketi, Redis (db 13), RabbitMQ, names.

Redis (127.0.0.1:6379) and RabbitMQ (127.0.0.1:5672, guest/guest) run on every machine of
this project; a test that needs one is skipped where it is missing, and fails instead when
``CI`` is set. Every test uses queue names and journal prefixes of its own (uuid-suffixed),
so parallel runs do not collide; what it leaves is deleted afterwards.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for folder in (ROOT / "tests" / "servers", ROOT / "benchmarks", HERE):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from queue_services import need  # noqa: E402
from queue_soak import AMQP_URL, REDIS_URL  # noqa: E402
from soketi_pytest import running_soketi  # noqa: E402
from soketi_server import SoketiServer  # noqa: E402

from broadcasting.contrib._queue import RedisJournal  # noqa: E402


@pytest.fixture(scope="session")
def soketi() -> Iterator[SoketiServer]:
    """The session's soketi (stopped after the last test)."""
    yield from running_soketi()


@pytest.fixture
def redis_url() -> str:
    """The queue tests' Redis database (13)."""
    need("Redis", 6379)
    return REDIS_URL


@pytest.fixture
def amqp_url() -> str:
    """RabbitMQ, as Celery (kombu) names it."""
    need("RabbitMQ", 5672)
    return AMQP_URL


@pytest.fixture
def uid() -> str:
    """A suffix of this test's own."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def journal(redis_url: str, uid: str) -> Iterator[RedisJournal]:
    """A journal of this test's own (its keys deleted afterwards)."""
    found = RedisJournal(redis_url, prefix=f"bq-test:{uid}:")
    yield found
    keys = list(found.client.scan_iter(f"{found.prefix}*"))
    if keys:
        found.client.delete(*keys)
    found.client.close()
