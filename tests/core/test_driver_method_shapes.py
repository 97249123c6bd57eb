"""A driver's method the core awaits must be a coroutine function, and one it calls without
awaiting must not be: a class that gets either wrong is refused when it is made, naming the
method and the fix. Before, a plain ``def asend`` was accepted and every publish through it
ended unknown (it ran, then could not be awaited), and an ``async def send`` never ran (found
by h124, writing a driver from docs/writing-a-driver.md alone; the conformance kit's shape
check says the same for a method set after the class is made)."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from broadcasting.plugin import Batch, Driver


def test_a_plain_asend_is_refused_when_the_class_is_made() -> None:
    with pytest.raises(TypeError, match=r"Plain\.asend\(\) is not a coroutine function"):

        class Plain(Driver):
            name = "plain"

            def asend(self, batch: Batch) -> None:  # type: ignore[override]
                pass

    with pytest.raises(TypeError, match=r"Plain\.aclose\(\) is not a coroutine function"):

        class Plain(Driver):  # type: ignore[no-redef]
            name = "plain"

            def aclose(self) -> None:  # type: ignore[override]
                pass


def test_a_coroutine_where_the_core_does_not_await_is_refused_when_the_class_is_made() -> None:
    with pytest.raises(TypeError, match=r"Plain\.send\(\) is a coroutine .* name it asend\(\)"):

        class Plain(Driver):
            name = "plain"

            async def send(self, batch: Batch) -> None:  # type: ignore[override]
                pass

    with pytest.raises(TypeError, match=r"Plain\.publish\(\) is .* write a plain `def`"):

        class Plain(Driver):  # type: ignore[no-redef]
            name = "plain"

            async def publish(self, message: Any) -> Any:  # type: ignore[override]
                pass


def test_a_decorated_async_method_is_judged_by_what_it_wraps() -> None:
    def traced(method: Any) -> Any:
        @functools.wraps(method)
        def wrapper(*args: Any) -> Any:
            return method(*args)  # the coroutine, awaited by the core

        return wrapper

    class Traced(Driver):
        name = "traced"

        @traced
        async def asend(self, batch: Batch) -> None:
            pass

    assert Traced.name == "traced"
