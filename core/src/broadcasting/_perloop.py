"""PerLoop: one object per running event loop (an async client), closed when the loop ends."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from broadcasting._fork import call_after_fork
from broadcasting._loop import _awaited

if TYPE_CHECKING:
    import asyncio

T = TypeVar("T")

#: Seconds to wait for another thread's loop to close its object.
CLOSE_TIMEOUT = 5.0


class PerLoop(Generic[T]):
    """One ``T`` per running event loop, made by ``create()`` on first use in that loop.

    ``close(obj)``, if given, is awaited on the object's own loop by
    :meth:`close` / :meth:`aclose` or when that loop shuts down, so no socket
    is stranded on a closed loop. Thread-safe. A forked child starts empty (the
    parent's objects are dropped, not closed: the parent keeps its connections).
    """

    def __init__(
        self, create: Callable[[], T], close: Callable[[T], Awaitable[object]] | None = None
    ) -> None:
        call_after_fork(self)
        self._create = create
        self._close = close
        self._forget()
        #: Objects created so far (for tests and diagnostics).
        self.created = 0

    def get(self) -> T:
        """The running loop's object (created on the first call in that loop)."""
        loop = (_running_loop or _load_asyncio())()
        obj = self._objects.get(loop)
        if obj is not None:
            return obj
        with self._lock:
            obj = self._objects.get(loop)
            if obj is None:
                for dead in [other for other in self._objects if other.is_closed()]:
                    self._finish(self._objects.pop(dead))
                for dead in [other for other in self._guards if other.is_closed()]:
                    del self._guards[dead]  # a closed loop's finalizer hook ignores it
                obj = self._objects[loop] = self._create()
                self.created += 1
                if loop not in self._guards:
                    guard = self._guards[loop] = self._close_at_shutdown(loop)
                    # run to its yield: that registers it with the loop, whose
                    # shutdown_asyncgens() (asyncio.run calls it) closes it while it still runs
                    with contextlib.suppress(StopIteration):
                        guard.asend(None).send(None)
            return obj

    def peek(self) -> T | None:
        """The running loop's object if it has one, without creating it."""
        import asyncio

        return self._objects.get(asyncio.get_running_loop())

    def items(self) -> list[tuple[asyncio.AbstractEventLoop, T]]:
        """Every loop's object, as ``(loop, object)`` pairs (a copy)."""
        with self._lock:
            return list(self._objects.items())

    async def _close_at_shutdown(
        self, loop: asyncio.AbstractEventLoop
    ) -> AsyncGenerator[None, None]:
        """Parked until ``loop`` shuts down; then closes its object while it still runs."""
        try:
            yield
        finally:
            self._guards.pop(loop, None)
            obj = self._objects.pop(loop, None)  # no lock: get() may hold it
            if obj is not None and self._close is not None:
                await self._close(obj)

    def _finish(self, obj: T) -> None:
        """Close ``obj`` of a loop that cannot run it: a close that would wait is given up."""
        result = None if self._close is None else self._close(obj)
        if isinstance(result, Coroutine):
            with contextlib.suppress(Exception):  # StopIteration: it finished
                result.send(None)
            result.close()

    def _take_all(self) -> list[tuple[asyncio.AbstractEventLoop, T]]:
        with self._lock:
            objects = list(self._objects.items())
            self._objects.clear()
        return objects

    def close(self) -> None:
        """Close every loop's object, from any thread (idempotent; ``get`` makes new ones)."""
        for loop, obj in self._take_all():
            self._close_from_outside(loop, obj)

    async def aclose(self) -> None:
        """Async twin of :meth:`close`: awaits the running loop's object."""
        import asyncio

        current = asyncio.get_running_loop()
        for loop, obj in self._take_all():
            if self._close is None:
                continue
            if loop is current:
                await self._close(obj)
            elif loop.is_running():
                # waited for a while, never cancelled: a loop busy meanwhile closes it once
                # free, and the other loops' objects are closed all the same
                future = asyncio.run_coroutine_threadsafe(_awaited(self._close(obj)), loop)
                closing = asyncio.wrap_future(future)
                closing.add_done_callback(_retrieved)  # as close() does: its error is not ours
                await asyncio.wait([closing], timeout=CLOSE_TIMEOUT)
            else:
                self._close_from_outside(loop, obj)

    def _close_from_outside(self, loop: asyncio.AbstractEventLoop, obj: T) -> None:
        import asyncio

        if self._close is None:
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:  # a sync close() inside this loop: cannot block it
            task = loop.create_task(_awaited(self._close(obj)))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        elif loop.is_running():  # another thread's loop (e.g. the core's background loop)
            future = asyncio.run_coroutine_threadsafe(_awaited(self._close(obj)), loop)
            with contextlib.suppress(Exception):  # that loop is busy: it closes it once free
                future.result(CLOSE_TIMEOUT)
        elif running is None and not loop.is_closed():  # a loop idle in this thread
            loop.run_until_complete(_awaited(self._close(obj)))
        else:
            self._finish(obj)

    def _forget(self) -> None:
        """Start empty; in a forked child, whose parent's loops do not run, let go of them,
        never close them, nor let the collector finalize them: closing a parent's transport
        here would take its socket out of the epoll instance the parent's loop shares with
        this process (an aiohttp connector does that as it is collected), and the parent's
        loop would never hear that socket again."""
        if hasattr(self, "_objects"):
            _inherited.append((self._objects, self._guards, self._closing))
        self._lock = threading.Lock()
        self._objects: dict[asyncio.AbstractEventLoop, T] = {}
        self._guards: dict[asyncio.AbstractEventLoop, AsyncGenerator[None, None]] = {}
        self._closing: set[asyncio.Task[Any]] = set()

    def _after_fork(self) -> None:
        self._forget()

    def __repr__(self) -> str:
        return f"<PerLoop loops={len(self._objects)}>"


#: In a forked child: the parent's per-loop objects, kept for good (see PerLoop._forget)
_inherited: list[object] = []
# asyncio.get_running_loop, once a PerLoop is first used: sync-only users never import asyncio
_running_loop: Callable[[], asyncio.AbstractEventLoop] | None = None


def _load_asyncio() -> Callable[[], asyncio.AbstractEventLoop]:
    global _running_loop
    import asyncio

    _running_loop = asyncio.get_running_loop
    return _running_loop


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
