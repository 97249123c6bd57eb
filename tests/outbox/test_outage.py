"""The outbox through a soketi outage, at a small size (the full run, 30 s:
``python benchmarks/outbox_outage.py``): a writer process commits a steady load into
PostgreSQL, soketi (real) is stopped for 3 s and started again on the same port, and
everything committed must arrive once soketi is back, once each, in commit order, with no
row left behind. The figures (backlog peak, drain time, relay CPU) are printed, not
asserted: timing is not a unit test's business."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.append(str(BENCHMARKS))

import outbox_outage  # noqa: E402
from soketi_pytest import running_soketi  # noqa: E402
from soketi_server import SoketiServer  # noqa: E402

pytestmark = pytest.mark.soketi


@pytest.fixture
def soketi() -> Iterator[SoketiServer]:
    """A soketi of this test's own: the test stops and restarts it."""
    yield from running_soketi()


async def test_everything_arrives_after_a_soketi_outage(soketi: SoketiServer, pg_url: str) -> None:
    settings = outbox_outage.Settings(
        rate=100, before=1.0, outage=3.0, after=1.0, backoff_cap=2.0, pg=pg_url
    )
    result = await outbox_outage.outage(soketi, settings)
    print(result.summary())
    assert result.broken == []
    assert soketi.running
    assert result.committed == settings.publishes == 500
    assert result.backlog_peak > 0  # the rows waited while soketi was down
    assert result.backlog["pending"] == result.backlog["sending"] == result.backlog["dead"] == 0


def test_cpu_seconds_reads_this_process() -> None:
    import os

    before = outbox_outage.cpu_seconds(os.getpid())
    sum(i * i for i in range(300_000))
    assert outbox_outage.cpu_seconds(os.getpid()) >= before > 0
