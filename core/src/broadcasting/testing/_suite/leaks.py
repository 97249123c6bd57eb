"""Finding a declared secret where a debugger, a log or an error tracker would show it."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from broadcasting._errors import ConfigurationError
from broadcasting._types import SECRET_OPTION
from broadcasting.plugin import Secret

#: Option names that look secret: the safety net of ``test_secrets_never_shown``.
SECRET_KEY = SECRET_OPTION

#: The kit's own frames hold the test's raw options on purpose: never searched.
KIT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class LogCapture(logging.Handler):
    """Collects every log line (any logger, DEBUG and up) while active."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(record.getMessage())
        except Exception:  # a broken log call is not the kit's business
            self.lines.append(str(record.msg))


@contextmanager
def capture_logs() -> Iterator[LogCapture]:
    """Every log line of any logger while the block runs."""
    root = logging.getLogger()
    handler = LogCapture()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def shown(value: object) -> str:
    """A value as a debugger or error tracker shows it."""
    if isinstance(value, str):
        return value
    try:
        return repr(value)
    except Exception as exc:  # a broken repr shows nothing
        return f"<repr failed: {type(exc).__name__}>"


def chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or during, each once; with the
    ``problems`` of a ConfigurationError that holds several, and theirs."""
    found: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo:
        current: BaseException | None = todo.pop(0)
        while current is not None and all(current is not e for e in found):
            found.append(current)
            if isinstance(current, ConfigurationError):
                todo += current.problems
            current = current.__cause__ or current.__context__
    return found


def frames(exc: BaseException) -> Iterator[tuple[str, Mapping[str, object]]]:
    """``(function name, locals)`` of every frame of the tracebacks of ``exc``'s chain
    (error trackers record them all), the kit's own frames left out."""
    for current in chain(exc):
        tb = current.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if not os.path.abspath(frame.f_code.co_filename).startswith(KIT_DIR):
                yield frame.f_code.co_name, frame.f_locals
            tb = tb.tb_next


def error_texts(exc: BaseException) -> list[str]:
    """What an error tracker records of ``exc``: str and repr of it and its chain,
    and every local of their frames as shown."""
    texts = [text for current in chain(exc) for text in (str(current), repr(current))]
    for function, names in frames(exc):
        texts += [f"local {name!r} of {function}(): {shown(v)}" for name, v in names.items()]
    return texts


def reachable(
    root: object, name: str = "driver", limit: int = 50_000
) -> Iterator[tuple[str, object]]:
    """``(path, value)`` for everything reachable from ``root`` through data, not code.

    Attributes, slots, mapping keys and values, sequence items: what a debugger
    or an error tracker that records an object shows, recursively. A
    :class:`~broadcasting.plugin.Secret` is not opened: it holds its value on purpose.
    """
    seen: set[int] = set()
    stack: list[tuple[str, object]] = [(name, root)]
    skip = (type, type(os), type(reachable), Secret)
    while stack and len(seen) < limit:
        path, value = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        yield path, value
        if isinstance(value, skip):
            continue
        if isinstance(value, Mapping):
            try:
                items = list(value.items())
            except Exception:  # a mapping that cannot be listed shows nothing more
                items = []
            stack.extend((f"{path}[{k!r}]", v) for k, v in items)
            stack.extend((f"{path} key", k) for k, _ in items)
        elif isinstance(value, (list, tuple, set, frozenset)):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(value))
        attributes = getattr(value, "__dict__", None)
        if isinstance(attributes, dict):
            stack.extend((f"{path}.{key}", v) for key, v in attributes.items())
        for cls in type(value).__mro__:
            for slot in getattr(cls, "__slots__", ()):
                if isinstance(slot, str) and hasattr(value, slot):
                    stack.append((f"{path}.{slot}", getattr(value, slot)))


def holders(root: object, secrets: Sequence[str | bytes], name: str = "driver") -> list[str]:
    """Where, in what is reachable from ``root``, one of ``secrets`` is held as text."""
    texts = [s for s in secrets if isinstance(s, str) and s]
    raw = [s for s in secrets if isinstance(s, bytes) and s]
    found = []
    for path, value in reachable(root, name):
        if (isinstance(value, str) and any(s in value for s in texts)) or (
            isinstance(value, bytes) and any(s in value for s in raw)
        ):
            found.append(path)
    return found


def held_in_frames(exc: BaseException, secrets: Sequence[str]) -> list[str]:
    """Where, in what the frames of ``exc``'s traceback (chain included) reach, a secret is held."""
    wanted: list[str | bytes] = [*secrets, *(s.encode() for s in secrets)]
    roots = {f"{i}:{function}()": dict(names) for i, (function, names) in enumerate(frames(exc))}
    return holders(roots, wanted, "traceback")


def named_secrets(options: Mapping[str, object]) -> list[str]:
    """The strings ``options`` hold under names that look secret (a Secret as its value)."""
    found = []
    for key, value in options.items():
        text = value.reveal() if isinstance(value, Secret) else value
        if SECRET_KEY.search(str(key)) and isinstance(text, str) and text:
            found.append(text)
    return found


def leaks(texts: Sequence[str], secrets: Sequence[str]) -> list[str]:
    return [text for text in texts for secret in secrets if secret and secret in text]
