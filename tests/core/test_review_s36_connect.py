"""Review (session 36) of connecting a Driver class whose ``from_config`` returns no driver:
the error names the class and ``from_config()``, not a hook the class never implemented."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from broadcasting import Broadcast
from broadcasting.plugin import Batch, Driver, register_driver, unregister_driver


class Forgetful(Driver):
    """``from_config`` builds the driver and forgets to return it."""

    name = "forgetful"

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> Any:
        cls()

    def send(self, batch: Batch) -> None:
        return None


class Wrong(Driver):
    name = "wrongly-built"

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> Any:
        return {"not": "a driver"}

    def send(self, batch: Batch) -> None:
        return None


@pytest.fixture
def registered() -> Iterator[None]:
    for cls in (Forgetful, Wrong):
        register_driver(cls.name, cls)
    yield
    for cls in (Forgetful, Wrong):
        unregister_driver(cls.name)


@pytest.mark.parametrize(("cls", "got"), [(Forgetful, "NoneType"), (Wrong, "dict")])
@pytest.mark.usefixtures("registered")
def test_a_registered_class_whose_from_config_returns_no_driver_is_named(
    cls: type[Driver], got: str
) -> None:
    """Was "its broadcasting_connect hook returned None" (a hook the class has not), or "not
    a Driver" from that hook, without a word of from_config()."""
    with Broadcast({"DRIVER": cls.name}) as broadcast, pytest.raises(TypeError) as raised:
        broadcast.channel("orders", {"id": 1})
    assert str(raised.value) == (
        f"{cls.__qualname__}.from_config() returned {got}, not a {cls.__qualname__}"
    )


@pytest.mark.parametrize(("cls", "got"), [(Forgetful, "NoneType"), (Wrong, "dict")])
def test_a_class_given_to_driver_whose_from_config_returns_no_driver_is_named(
    cls: type[Driver], got: str
) -> None:
    """``broadcast.driver(SomeDriver)`` (the seed's class form) with no plugin for its name:
    was "AttributeError: type object 'NoneType' has no attribute 'secret_options'"."""
    with Broadcast() as broadcast, pytest.raises(TypeError) as raised:
        broadcast.driver(cls)
    assert str(raised.value) == (
        f"{cls.__qualname__}.from_config() returned {got}, not a {cls.__qualname__}"
    )
