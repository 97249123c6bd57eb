"""The relay's benchmarks at a small size (the full runs: ``python benchmarks/outbox_relay.py``
and ``python benchmarks/outbox_soak.py``), against a real soketi and PostgreSQL (the crash
soak on MariaDB and SQLite too): the crash soak keeps every promise, and the speed
benchmark's code runs end to end (its figures are printed, not asserted: timing is not a unit
test's business)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.append(str(BENCHMARKS))

import outbox_relay  # noqa: E402
import outbox_soak  # noqa: E402
from soketi_server import SoketiServer  # noqa: E402

pytestmark = pytest.mark.soketi


@pytest.mark.parametrize(
    ("store", "at_least_once"),
    [("postgresql", False), ("postgresql", True), ("mysql", False), ("sqlite", False)],
)
async def test_the_crash_soak_keeps_every_promise(
    soketi: SoketiServer, store: str, at_least_once: bool
) -> None:
    settings = outbox_soak.Settings(
        publishes=600,
        writers=2,
        relays=1 if store == "sqlite" else 2,
        kills=3,
        rate=300,
        at_least_once=at_least_once,
        batch=50,
        seed=3,
        store=store,
    )
    result = await outbox_soak.soak(soketi, settings)
    print(result.summary())
    assert result.broken == []
    assert result.kills == 3
    assert result.committed + result.rolled_back == 600
    assert result.committed > 0 and result.rolled_back > 0
    assert result.backlog["pending"] == result.backlog["sending"] == result.backlog["dead"] == 0


def test_the_soak_checks_catch_a_broken_promise() -> None:
    settings = outbox_soak.Settings(publishes=4, writers=1, channels=2, seed=3)
    channel = outbox_soak.channels_of(settings, 0, 0)[0]
    written = [{"committed": [0], "rolled": [1]}]

    def broken(arrivals: list[tuple[str, int, int]]) -> list[str]:
        result = outbox_soak.Result(settings)
        outbox_soak.check(settings, result, written, arrivals, [])
        return result.broken

    assert broken([(channel, 0, 0)]) == []
    assert any("never arrived" in line for line in broken([]))
    assert any("2 times" in line for line in broken([(channel, 0, 0)] * 2))
    assert any("rolled back" in line for line in broken([(channel, 0, 0), (channel, 0, 1)]))


async def test_the_speed_benchmark_runs(soketi: SoketiServer) -> None:
    with outbox_relay.pg_outbox(outbox_relay.PG_URL, batch=200) as outbox:
        done = await outbox_relay.throughput(soketi, outbox, 400, 20)
    print(f"{done.per_second:,.0f} publishes/s, relay {done.cpu_us_per_row:.0f} µs CPU per row")
    assert (done.delivered, done.heard, done.repeats) == (400, 400, 0)
    assert done.user > 0 and done.cpu_us_per_row > 0  # the relay process's own CPU, measured
    with outbox_relay.pg_outbox(outbox_relay.PG_URL) as outbox:
        lat = await outbox_relay.latency(soketi, outbox, 200, 1.0, 4)
    print(f"p50 {lat.p50_ms:.1f} ms, p99 {lat.p99_ms:.1f} ms")
    assert (lat.sent, lat.heard, lat.repeats) == (200, 200, 0)
    assert 0 < lat.p50_ms <= lat.p99_ms <= lat.max_ms
    await asyncio.sleep(0)
