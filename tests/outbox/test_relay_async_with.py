"""``async with Relay(broadcast):`` runs the relay beside an application on its loop (a
FastAPI or Starlette lifespan), stops it at the end of the block after the requests in
flight, and does not let a relay that ended by itself go unnoticed: it is logged at ERROR
when it happens and raised at the end of the block.

Against a real SQLite outbox (a file in the test's folder) and the memory driver, which
keeps what it is sent; a second relay under the first one's owner name is the real way a
relay ends by itself (``OwnerInUse``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from broadcasting import Broadcast
from broadcasting.outbox import Relay, store_for
from broadcasting.outbox._store import OwnerInUse


def config(tmp_path: Path) -> dict[str, Any]:
    return {"DRIVER": "memory", "OUTBOX": {"url": f"sqlite:///{tmp_path}/outbox.sqlite3"}}


async def until(condition: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "waited too long"
        await asyncio.sleep(0.02)


async def test_the_block_delivers_the_outbox_and_releases_the_leases(tmp_path: Path) -> None:
    async with Broadcast(config(tmp_path)) as broadcast:
        memory = broadcast.driver("memory").driver
        store = store_for(broadcast)
        relay = Relay(broadcast, owner="lifespan")
        async with relay as running:
            assert running is relay
            await broadcast.achannel("orders", {"id": 1}, "created", send="outbox")
            await until(lambda: memory.messages)
            await until(lambda: "lifespan" in store.stats(time.time()).relays)
        assert [m.data for m in memory.messages] == [{"id": 1}]
        assert "lifespan" not in store.stats(time.time()).relays  # released at the end
        # a stop is spent by the run it ends: the same relay runs again
        async with relay:
            await broadcast.achannel("orders", {"id": 2}, "created", send="outbox")
            await until(lambda: len(memory.messages) == 2)


async def test_entering_twice_is_refused(tmp_path: Path) -> None:
    async with Broadcast(config(tmp_path)) as broadcast:
        relay = Relay(broadcast)
        async with relay:
            with pytest.raises(RuntimeError, match="already running"):
                await relay.__aenter__()


async def test_a_relay_that_ends_by_itself_is_said_at_once_and_raised_at_the_end(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with Broadcast(config(tmp_path)) as broadcast:
        first = Relay(broadcast, owner="twin")
        async with first:
            await until(lambda: first.partitions)  # it holds the name and the leases
            twin = Relay(broadcast, owner="twin")
            with (
                caplog.at_level(logging.ERROR, logger="broadcasting.outbox"),
                pytest.raises(OwnerInUse),
            ):
                async with twin:
                    await until(lambda: caplog.records)  # while the block still runs
            [record] = caplog.records
            assert record.getMessage() == ("relay twin stopped: the outbox is not being delivered")
            assert record.exc_info is not None and record.exc_info[0] is OwnerInUse
            assert first.partitions  # the first one goes on


async def test_the_blocks_own_error_is_the_one_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with Broadcast(config(tmp_path)) as broadcast:
        first = Relay(broadcast, owner="twin")
        async with first:
            await until(lambda: first.partitions)

            async def failing_app() -> None:
                async with Relay(broadcast, owner="twin"):
                    await until(lambda: caplog.records)
                    raise ZeroDivisionError  # the application's own failure

            with (
                caplog.at_level(logging.ERROR, logger="broadcasting.outbox"),
                pytest.raises(ZeroDivisionError),
            ):
                await failing_app()
            assert len(caplog.records) == 1  # the relay's, said when it happened
