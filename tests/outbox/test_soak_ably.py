"""The outbox's crash soak on Ably, at a small size (the full run:
``python benchmarks/outbox_soak.py --driver ably``): writers commit and roll back publishes
into PostgreSQL while relays deliver them over HTTPS to the Ably emulator (the test suite's
stand-in for Ably: no Ably server can run here) and are killed with SIGKILL. The Ably
driver de-duplicates by message id, so every committed publish must be stored exactly once,
in each channel's commit order, and no row may end ``unknown``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.append(str(BENCHMARKS))

import outbox_soak  # noqa: E402


@pytest.fixture
def emulator(pg_url: str) -> Iterator[Any]:
    """A started counting Ably emulator (PostgreSQL must be there: the soak's outbox)."""
    with outbox_soak.counting_emulator() as server:
        yield server


async def test_the_ably_crash_soak_keeps_every_promise(emulator: Any, pg_url: str) -> None:
    settings = outbox_soak.Settings(
        publishes=600,
        writers=2,
        relays=3,
        kills=3,
        rate=300,
        batch=50,
        seed=5,
        pg=pg_url,
        driver="ably",
    )
    result = await outbox_soak.soak(emulator, settings)
    print(result.summary())
    assert result.broken == []
    assert result.kills == 3
    assert result.committed + result.rolled_back == 600
    assert result.committed > 0 and result.rolled_back > 0
    assert result.unknown_rows == 0 and result.repeats == 0
    assert result.arrived == sum(len(emulator.messages(f"soak-{i}")) for i in range(16))
    assert result.backlog["pending"] == result.backlog["sending"] == result.backlog["dead"] == 0
    assert emulator.violations == []


def test_the_emulator_counts_what_it_absorbs(emulator: Any) -> None:
    """A message id sent twice on a channel is stored once and counted as absorbed, and
    what the soak reads back from the emulator is each channel's stored order."""
    request = SimpleNamespace(headers={})  # what the emulator reads of an aiohttp request
    first = emulator._store("soak-1", {"id": "m:0", "data": '{"w": 0, "s": 4}'}, request)
    again = emulator._store("soak-1", {"id": "m:0", "data": '{"w": 0, "s": 4}'}, request)
    emulator._store("soak-1", {"id": "m:1", "data": '{"w": 1, "s": 0}'}, request)
    assert first == again
    assert emulator.absorbed == 1
    assert outbox_soak.ably_arrivals(emulator, ["soak-0", "soak-1"]) == [
        ("soak-1", 0, 4),
        ("soak-1", 1, 0),
    ]
