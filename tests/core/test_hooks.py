"""The hooks: a wrapper sees every publish, sync and async, and may alter or veto it."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Generator, Mapping
from typing import Any

import pluggy
import pytest

from broadcasting import Broadcast, BroadcastError, Receipt
from broadcasting.drivers.memory import BroadcastMemoryDriver
from broadcasting.plugin import Batch, Driver, Message, hookimpl, wait_for


class Timing:
    """The documented example: time every publish, whatever the driver."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, float]] = []

    @hookimpl(wrapper=True)
    def broadcasting_publish(
        self, driver: Driver, message: Message
    ) -> Generator[None, Receipt, Receipt]:
        start = time.perf_counter()
        receipt = yield
        self.seen.append((driver.name, message.event, time.perf_counter() - start))
        return receipt


def test_a_wrapper_sees_sync_publishes_on_every_driver() -> None:
    timing = Timing()
    broadcast = Broadcast({"DRIVER": "memory"}, plugins=[timing])
    broadcast.channel("c", "m", "one")
    broadcast.driver("null").channel("c", "m", "two")
    broadcast.driver("log").channel("c", "m", "three")
    assert [(d, e) for d, e, _ in timing.seen] == [
        ("memory", "one"),
        ("null", "two"),
        ("log", "three"),
    ]
    assert all(elapsed >= 0 for _, _, elapsed in timing.seen)


async def test_a_wrapper_sees_async_publishes() -> None:
    timing = Timing()
    broadcast = Broadcast({"DRIVER": "memory"}, plugins=[timing])
    receipt = await broadcast.achannel("c", {"a": 1}, "async-one")
    await broadcast.driver("null").achannel("c", "m", "async-two")
    assert [(d, e) for d, e, _ in timing.seen] == [("memory", "async-one"), ("null", "async-two")]
    assert receipt.channels == ("c",)


class Staging:
    """Alters every message before it is delivered: prefixes channels, tags the data."""

    @hookimpl(wrapper=True)
    def broadcasting_publish(
        self, driver: Driver, message: Message
    ) -> Generator[None, Receipt, Receipt]:
        message.channels = tuple(f"staging-{c}" for c in message.channels)
        if isinstance(message.data, dict):
            message.data = {**message.data, "env": "staging"}
        receipt = yield
        return dataclasses.replace(receipt, ids=("rewritten",))


class Veto:
    @hookimpl(wrapper=True)
    def broadcasting_publish(
        self, driver: Driver, message: Message
    ) -> Generator[None, Receipt, Receipt]:
        if message.event == "forbidden":
            raise PermissionError("event 'forbidden' is vetoed")
        return (yield)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_wrapper_may_alter_the_result_or_veto(mode: str) -> None:
    broadcast = Broadcast({"DRIVER": "memory"}, plugins=[Staging(), Veto()])
    memory = broadcast.driver(BroadcastMemoryDriver).driver

    async def publish(event: str) -> Receipt:
        if mode == "sync":
            return broadcast.channel("c", "m", event)
        return await broadcast.achannel("c", "m", event)

    receipt = await publish("fine")
    assert receipt.ids == ("rewritten",)
    assert receipt.channels == ("staging-c",)
    with pytest.raises(PermissionError, match="vetoed"):
        await publish("forbidden")
    assert [(m.event, m.channels) for m in memory.messages] == [("fine", ("staging-c",))]
    if mode == "sync":
        broadcast.channel("c", {"a": 1})
    else:
        await broadcast.achannel("c", {"a": 1})
    assert memory.messages[-1].text == '{"a":1,"env":"staging"}'


class Intercept:
    """A non-wrapper implementation answers first; the driver is never called."""

    def __init__(self, awaitable: bool) -> None:
        self.awaitable = awaitable

    @hookimpl
    def broadcasting_publish(self, driver: Driver, message: Message) -> Any:
        receipt = Receipt("intercepted", message.event, message.channels, message.id)
        if not self.awaitable:
            return receipt

        async def later() -> Receipt:
            return receipt

        return later()


async def test_a_non_wrapper_implementation_may_answer_instead_of_the_driver() -> None:
    broadcast = Broadcast({"DRIVER": "memory"}, plugins=[Intercept(awaitable=False)])
    memory = broadcast.driver(BroadcastMemoryDriver).driver
    assert broadcast.channel("c", "m").driver == "intercepted"
    assert (await broadcast.achannel("c", "m")).driver == "intercepted"
    assert memory.messages == []


async def test_an_async_implementation_is_awaited_on_the_async_path() -> None:
    broadcast = Broadcast({"DRIVER": "memory"}, plugins=[Intercept(awaitable=True)])
    assert (await broadcast.achannel("c", "m")).driver == "intercepted"


class Audit:
    """A wrapper that awaits an async store with ``wait_for`` before every publish."""

    def __init__(self) -> None:
        self.stored: list[str] = []

    async def store(self, event: str) -> str:
        await asyncio.sleep(0)  # a real await: the call cannot finish without a loop
        self.stored.append(event)
        return event

    @hookimpl(wrapper=True)
    def broadcasting_publish(
        self, driver: Driver, message: Message
    ) -> Generator[None, Receipt, Receipt]:
        assert wait_for(self.store(message.event)) == message.event
        return (yield)


class Accepts(Driver):
    """Sends through the core's delivery (so its publishes run bridged) and accepts all."""

    name = "accepts"

    def send(self, batch: Batch) -> None:
        pass


@pytest.mark.parametrize("driver", ["memory", "log", "null", Accepts])
async def test_a_wrapper_may_await_with_wait_for_on_both_paths(driver: str | type) -> None:
    # in-process drivers publish without the core's greenlet unless a plugin wraps them
    audit = Audit()
    broadcast = Broadcast({"DRIVER": "memory"}, plugins=[audit])
    target = broadcast.driver(driver)
    target.channel("c", "m", "sync")
    await target.achannel("c", "m", "async")
    assert audit.stored == ["sync", "async"]


class OldStyle:
    def __init__(self) -> None:
        self.outcomes: list[str] = []

    @hookimpl(hookwrapper=True)
    def broadcasting_publish(
        self, driver: Driver, message: Message
    ) -> Generator[None, pluggy.Result[Receipt], None]:
        outcome = yield
        self.outcomes.append("error" if outcome.exception else outcome.get_result().driver)
        if message.event == "replace":
            outcome.force_result(Receipt("replaced", message.event, message.channels, message.id))


async def test_old_style_hookwrappers_work_on_both_paths() -> None:
    old = OldStyle()
    broadcast = Broadcast({"DRIVER": "null"}, plugins=[old])
    assert broadcast.channel("c", "m").driver == "null"
    assert (await broadcast.achannel("c", "m")).driver == "null"
    assert (await broadcast.achannel("c", "m", "replace")).driver == "replaced"
    assert broadcast.channel("c", "m", "replace").driver == "replaced"
    assert old.outcomes == ["null", "null", "null", "null"]


class Failing(Driver):
    name = "failing"

    def publish(self, message: Message) -> Receipt:
        raise BroadcastError("provider said no")

    async def apublish(self, message: Message) -> Receipt:
        raise BroadcastError("provider said no")


class SeesErrors:
    def __init__(self) -> None:
        self.errors: list[str] = []

    @hookimpl(wrapper=True)
    def broadcasting_publish(
        self, driver: Driver, message: Message
    ) -> Generator[None, Receipt, Receipt]:
        try:
            return (yield)
        except BroadcastError as exc:
            self.errors.append(str(exc))
            raise


async def test_a_wrapper_sees_failures_and_they_still_raise() -> None:
    seer = SeesErrors()
    broadcast = Broadcast(plugins=[seer])
    driver = broadcast.driver(Failing)
    with pytest.raises(BroadcastError, match="said no"):
        driver.channel("c", "m")
    with pytest.raises(BroadcastError, match="said no"):
        await driver.achannel("c", "m")
    assert seer.errors == ["provider said no", "provider said no"]


class ConnectSpy:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @hookimpl(wrapper=True)
    def broadcasting_connect(
        self, name: str, options: Mapping[str, Any]
    ) -> Generator[None, Driver | None, Driver | None]:
        driver = yield
        self.calls.append((name, dict(options)))
        return driver


def test_a_connect_wrapper_sees_every_connection_once() -> None:
    spy = ConnectSpy()
    broadcast = Broadcast(
        {"DRIVER": "memory", "DRIVERS": {"log": {"level": "DEBUG"}}}, plugins=[spy]
    )
    broadcast.channel("c", "m")
    broadcast.channel("c", "m")
    broadcast.driver("log").channel("c", "m")
    assert spy.calls == [("memory", {}), ("log", {"level": "DEBUG"})]


def test_a_wrapper_that_does_not_yield_is_reported_on_the_async_path() -> None:
    class NoYield:
        @hookimpl(wrapper=True)
        def broadcasting_publish(self, driver: Driver, message: Message) -> Any:
            return
            yield  # pragma: no cover

    import asyncio

    broadcast = Broadcast({"DRIVER": "null"}, plugins=[NoYield()])
    with pytest.raises(RuntimeError, match="did not yield"):
        asyncio.run(broadcast.achannel("c", "m"))


async def test_hook_call_monitoring_sees_every_publish_on_both_paths() -> None:
    # with the core alone on broadcasting_publish, a publish skips pluggy's call (and the
    # greenlet): a monitor (pluggy's tracing) must still see each one, so it turns that off
    broadcast = Broadcast({"DRIVER": "memory"})
    seen: list[str] = []

    def before(name: str, impls: object, kwargs: Mapping[str, Any]) -> None:
        if name == "broadcasting_publish":
            seen.append(kwargs["message"].event)

    target = broadcast.driver(Accepts)
    target.channel("c", "m", "unwatched")
    undo = broadcast.plugin_manager.add_hookcall_monitoring(before, lambda *args: None)
    target.channel("c", "m", "sync")
    await target.achannel("c", "m", "async")
    undo()
    await target.achannel("c", "m", "unwatched again")
    assert seen == ["sync", "async"]


def test_a_plugin_that_replaces_the_core_is_called_even_alone() -> None:
    # the direct call is for the core's own implementation only, never for one plugin's
    from broadcasting._plugins import CORE_PLUGIN

    class Instead:
        @hookimpl
        def broadcasting_publish(self, driver: Driver, message: Message) -> Receipt:
            return Receipt("instead", message.event, message.channels, message.id)

    broadcast = Broadcast({"DRIVER": "memory"}, plugins=[Instead()])
    broadcast.plugin_manager.unregister(CORE_PLUGIN)
    assert len(broadcast.plugin_manager.hook.broadcasting_publish.get_hookimpls()) == 1
    assert broadcast.driver(Accepts).channel("c", "m", "e").driver == "instead"
