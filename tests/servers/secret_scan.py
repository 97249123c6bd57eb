"""Where a secret shows in an exception and everything chained to it (its message, or the
locals of its traceback's frames), for tests of what errors keep out."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from broadcasting import Broadcast, ConfigurationError
from broadcasting.testing._suite.leaks import error_texts, held_in_frames


def chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and every exception reachable from it (cause or context)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__]


def showing(error: BaseException, secret: str, *, skip: str = "") -> list[str]:
    """Where ``secret`` shows in ``error``'s chain: a message, or a frame's local (its str or
    repr) outside the file ``skip`` (the test's own, whose locals hold it)."""
    found = []
    for exc in chain(error):
        if secret in str(exc):
            found.append(f"message of {type(exc).__name__}")
        tb: TracebackType | None = exc.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if frame.f_code.co_filename != skip:
                for name, value in list(frame.f_locals.items()):
                    shown = value if isinstance(value, str) else repr(value)
                    if secret in shown:
                        found.append(f"{frame.f_code.co_name}:{name}")
            tb = tb.tb_next
    return found


def raised_in(error: BaseException) -> str:
    """The function the traceback of ``error`` ends in: where it was raised."""
    tb = error.__traceback__
    assert tb is not None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_name


TESTS = str(Path(__file__).resolve().parents[1])


def configuration_error(config: Mapping[str, Any], name: str) -> ConfigurationError:
    """The error ``broadcast.driver(name)`` raises for ``config``, without the tests' own
    frames (they hold ``config``): what the library's frames keep is what is checked."""
    with Broadcast(config) as broadcast, pytest.raises(ConfigurationError) as info:
        broadcast.driver(name)
    tb = info.value.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(TESTS):
        tb = tb.tb_next
    return info.value.with_traceback(tb)


def assert_clean(error: ConfigurationError, values: Sequence[str], secrets: Sequence[str]) -> None:
    """No value of ``values`` in anything an error tracker records of ``error`` and its
    problems (messages, reprs), and no secret of ``secrets`` in what its frames hold."""
    texts = error_texts(error)
    for value in values:
        assert all(value not in text for text in texts), (value, texts)
    assert not held_in_frames(error, list(secrets)), held_in_frames(error, list(secrets))
