"""The core's messages about a driver's bug name the method it actually called: ``asend()``
on the async path (and on the blocking one, for a driver that implements only ``asend``),
``send()`` where that ran.

The drivers here are real ``send``/``asend`` drivers with no service behind them: what is
under test is the core's own error text when a driver raises past its error mapping or
returns what the core cannot read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from broadcasting import Broadcast, PublishError
from broadcasting.plugin import Batch, Driver


class Broken(Exception):
    """What the drivers' bug raises (not a PublishError)."""


class AsyncOnly(Driver):
    name = "s37-async-only"
    result: Any = "not-a-result"

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> AsyncOnly:
        return cls()

    async def asend(self, batch: Batch) -> Any:
        if self.result is Broken:
            raise Broken("asend's bug")
        return self.result


class Both(Driver):
    name = "s37-both"
    result: Any = "not-a-result"

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> Both:
        return cls()

    def send(self, batch: Batch) -> Any:
        if self.result is Broken:
            raise Broken("send's bug")
        return self.result

    async def asend(self, batch: Batch) -> Any:
        if self.result is Broken:
            raise Broken("asend's bug")
        return self.result


@pytest.fixture
def broadcast() -> Iterator[Broadcast]:
    # batch=False: one publish, one request; the async batcher's path is tested below
    options = {"batch": False}
    with Broadcast(
        {"DRIVER": "s37-both", "DRIVERS": {"s37-both": options, "s37-async-only": options}}
    ) as made:
        yield made


def said(error: PublishError) -> str:
    return str(error)


@pytest.mark.parametrize("result", [Broken, "not-a-result"])
def test_the_blocking_path_of_an_async_only_driver_names_asend(
    broadcast: Broadcast, result: Any
) -> None:
    target = broadcast.driver(AsyncOnly)
    target.driver.result = result  # type: ignore[attr-defined]
    with pytest.raises(PublishError) as info:
        target.channel("orders", {"id": 1}, "shipped")
    text = said(info.value)
    assert "asend()" in text, text
    assert "send()" not in text.replace("asend()", ""), text


@pytest.mark.parametrize("result", [Broken, "not-a-result"])
async def test_the_async_path_names_asend(broadcast: Broadcast, result: Any) -> None:
    target = broadcast.driver(Both)
    target.driver.result = result  # type: ignore[attr-defined]
    with pytest.raises(PublishError) as info:
        await target.achannel("orders", {"id": 1}, "shipped")
    text = said(info.value)
    assert "asend()" in text, text
    assert "send()" not in text.replace("asend()", ""), text


@pytest.mark.parametrize("result", [Broken, "not-a-result"])
def test_the_blocking_path_still_names_send(broadcast: Broadcast, result: Any) -> None:
    target = broadcast.driver(Both)
    target.driver.result = result  # type: ignore[attr-defined]
    with pytest.raises(PublishError) as info:
        target.channel("orders", {"id": 1}, "shipped")
    text = said(info.value)
    assert "send()" in text and "asend()" not in text, text


async def test_the_async_batcher_names_asend() -> None:
    with Broadcast({"DRIVER": "s37-both", "DRIVERS": {"s37-both": {"batch": True}}}) as made:
        target = made.driver(Both)
        target.driver.result = Broken  # type: ignore[attr-defined]
        with pytest.raises(PublishError) as info:
            await target.achannel("orders", {"id": 1}, "shipped")
    text = said(info.value)
    assert "asend() raised Broken" in text, text
