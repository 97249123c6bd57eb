"""Every hook, exercised through a real Broadcast; and the guide's plugin examples, run.

tests/test_hook_docs.py requires a ``test_hook_<name>`` test for each hook
specification, in a module whose implementation (or call) of the hook uses
the specification's exact argument names. These are those tests.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

import pytest

from broadcasting import Broadcast, ConfigurationError, PublishError, Receipt
from broadcasting.drivers.memory import BroadcastMemoryDriver
from broadcasting.plugin import Driver, Message, hookimpl, register_driver, unregister_driver

DOCS = Path(__file__).resolve().parents[2] / "docs"
GUIDE = DOCS / "writing-a-driver.md"


def guide_example(name: str, doc: Path = GUIDE, marker: str = "example") -> str:
    """The python block that follows ``<!-- example: name -->`` in ``doc``."""
    text = doc.read_text(encoding="utf-8")
    match = re.search(
        rf"<!-- {marker}: {re.escape(name)} -->\s*```python\n(.*?)```", text, re.DOTALL
    )
    assert match, f"no {marker} {name!r} in {doc.name}"
    return match.group(1)


class AcmeDriver(BroadcastMemoryDriver):
    """A memory driver under another name, standing in for a third-party driver."""

    name = "acme"


class AcmePlugin:
    """A driver plugin object: answers broadcasting_connect for 'acme' only."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def broadcasting_connect(self, name: str, options: Mapping[str, Any]) -> Driver | None:
        self.calls.append((name, dict(options)))
        if name != "acme":
            return None
        if options.get("broken"):
            raise ConfigurationError("acme", "broken", "is set")
        return AcmeDriver()


# -- broadcasting_connect -----------------------------------------------------------


def test_hook_broadcasting_connect() -> None:
    """A plugin passed to Broadcast connects its driver by name, once, with its options."""
    plugin = AcmePlugin()
    config = {"DRIVER": "acme", "DRIVERS": {"acme": {"region": "eu"}}}
    with Broadcast(config, plugins=[plugin]) as broadcast:
        driver = broadcast.driver().driver
        assert isinstance(driver, AcmeDriver)
        assert broadcast.driver("acme").driver is driver  # cached: the hook is called once
        receipt = broadcast.channel("orders", {"id": 1}, "created")
        # other names fall through to the installed drivers
        assert isinstance(broadcast.driver("memory").driver, BroadcastMemoryDriver)
    assert ("acme", {"region": "eu"}) in plugin.calls
    assert [name for name, _ in plugin.calls].count("acme") == 1
    assert receipt.driver == "acme"
    assert [m.event for m in driver.messages] == ["created"]


def test_hook_broadcasting_connect_registered_globally() -> None:
    """register_driver() with a plugin object makes the name usable by every Broadcast."""
    plugin = AcmePlugin()
    register_driver("acme", plugin)
    try:
        assert isinstance(Broadcast({"DRIVER": "acme"}).driver().driver, AcmeDriver)
    finally:
        unregister_driver("acme")
    assert plugin.calls == [("acme", {})]


def test_hook_broadcasting_connect_errors_reach_the_caller() -> None:
    config = {"DRIVER": "acme", "DRIVERS": {"acme": {"broken": True}}}
    with pytest.raises(ConfigurationError, match="'broken'"):
        Broadcast(config, plugins=[AcmePlugin()]).driver()


# -- broadcasting_publish ------------------------------------------------------------------


class Recorder:
    """A wrapper that records what it saw before and after the driver ran."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    @hookimpl(wrapper=True)
    def broadcasting_publish(
        self, broadcast: Broadcast, driver: Driver, message: Message
    ) -> Generator[None, Receipt, Receipt]:
        assert broadcast.broadcaster_of(driver).driver is driver
        self.seen.append(("before", driver.name, message.event))
        try:
            receipt = yield
        except PublishError:
            self.seen.append(("failed", driver.name, message.event))
            raise
        self.seen.append(("after", receipt.driver, receipt.event))
        return receipt


def test_hook_broadcasting_publish() -> None:
    """A wrapper sees sync and async publishes, before and after the driver."""
    recorder = Recorder()
    with Broadcast({"DRIVER": "memory"}, plugins=[recorder]) as broadcast:
        broadcast.channel("orders", {"id": 1}, "sync-event")
        asyncio.run(broadcast.achannel("orders", {"id": 2}, "async-event"))
        driver = broadcast.driver().driver
        assert isinstance(driver, BroadcastMemoryDriver)
        assert [m.event for m in driver.messages] == ["sync-event", "async-event"]
    assert recorder.seen == [
        ("before", "memory", "sync-event"),
        ("after", "memory", "sync-event"),
        ("before", "memory", "async-event"),
        ("after", "memory", "async-event"),
    ]


class DryRun:
    """A plain implementation: answers every publish itself, so no driver is called."""

    @hookimpl
    def broadcasting_publish(
        self, broadcast: Broadcast, driver: Driver, message: Message
    ) -> Receipt:
        return Receipt("dry-run", message.event, message.channels, message.id)


def test_hook_broadcasting_publish_short_circuit() -> None:
    with Broadcast({"DRIVER": "memory"}, plugins=[DryRun()]) as broadcast:
        first = broadcast.channel("orders", {"id": 1})
        second = asyncio.run(broadcast.achannel("orders", {"id": 2}))
        driver = broadcast.driver().driver
        assert isinstance(driver, BroadcastMemoryDriver)
        assert driver.messages == []
    assert (first.driver, second.driver) == ("dry-run", "dry-run")


class Veto:
    @hookimpl(wrapper=True)
    def broadcasting_publish(
        self, broadcast: Broadcast, driver: Driver, message: Message
    ) -> Generator[None, Receipt, Receipt]:
        if "blocked" in message.channels:
            raise PublishError("blocked by policy", driver=driver.name)
        return (yield)


def test_hook_broadcasting_publish_veto_and_errors_reach_wrappers() -> None:
    """A wrapper can refuse a publish; outer wrappers see the error on both paths."""
    recorder = Recorder()
    with Broadcast({"DRIVER": "memory"}, plugins=[Veto(), recorder]) as broadcast:
        with pytest.raises(PublishError, match="blocked by policy"):
            broadcast.channel("blocked", {"id": 1}, "e1")
        with pytest.raises(PublishError, match="blocked by policy"):
            asyncio.run(broadcast.achannel("blocked", {"id": 2}, "e2"))
        broadcast.channel("open", {"id": 3}, "e3")
        driver = broadcast.driver().driver
        assert isinstance(driver, BroadcastMemoryDriver)
        assert [m.channels for m in driver.messages] == [("open",)]
    assert ("failed", "memory", "e1") in recorder.seen
    assert ("failed", "memory", "e2") in recorder.seen
    assert ("after", "memory", "e3") in recorder.seen


# -- the guide's examples, as written -------------------------------------------------


def test_docs_timing_plugin_sees_sync_async_and_failed_publishes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    namespace: dict[str, Any] = {}
    hooks = DOCS / "hooks.md"
    exec(compile(guide_example("timing-plugin", hooks, "snippet"), str(hooks), "exec"), namespace)
    plugin = namespace["TimingPlugin"]()
    caplog.set_level(logging.INFO, logger="myapp.broadcasting")
    with Broadcast({"DRIVER": "memory"}, plugins=[plugin]) as broadcast:
        broadcast.channel(["a", "b"], {"id": 1}, "created")
        asyncio.run(broadcast.achannel("a", "text", "updated"))
    # later plugins wrap earlier ones: the timing wrapper is outside the veto
    vetoed = Broadcast({"DRIVER": "memory"}, plugins=[Veto(), plugin])
    with vetoed, pytest.raises(PublishError):
        vetoed.channel("blocked", {"id": 1}, "refused")
    lines = [r.getMessage() for r in caplog.records if r.name == "myapp.broadcasting"]
    assert len(lines) == 3, lines
    assert re.fullmatch(r"memory published 'created' to 2 channel\(s\) in [\d.]+ ms", lines[0])
    assert re.fullmatch(r"memory published 'updated' to 1 channel\(s\) in [\d.]+ ms", lines[1])
    assert lines[2].startswith("memory failed after ")
    assert "blocked by policy" in lines[2]


def test_guide_register_driver_example(capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(guide_example("register-driver"), str(GUIDE), "exec"), namespace)
    receipt = namespace["receipt"]
    assert isinstance(receipt, Receipt)
    assert (receipt.driver, receipt.event, receipt.channels) == ("print", "created", ("orders",))
    assert capsys.readouterr().out == 'created -> orders: {"id":1}\n'
    with pytest.raises(LookupError):
        Broadcast({"DRIVER": "print"}).driver()  # unregistered again
