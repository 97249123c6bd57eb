"""Behaviour written once: flows that yield effects, run by a sync and an async runner.

A flow is a generator with no I/O of its own: it yields an :class:`Effect` and is
sent the result (or has the exception thrown in at the ``yield``). :func:`run`
performs effects blocking, :func:`arun` awaits them. Hooks go through pluggy on
both paths; on the async path pluggy's synchronous call runs in a greenlet
(:func:`bridged`), so wrappers and hook-call monitoring see real outcomes.
"""

from __future__ import annotations

import inspect
import os
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from broadcasting._loop import run_sync

if TYPE_CHECKING:
    import pluggy

    from broadcasting._driver import Driver

T = TypeVar("T")

#: A flow: yields effects, is sent their results, returns its own.
Flow = Generator["Effect", Any, T]


class Effect:
    """Something a flow needs done: :meth:`run` does it blocking, :meth:`arun` awaited."""

    __slots__ = ()

    def run(self) -> Any:
        raise NotImplementedError

    async def arun(self) -> Any:
        raise NotImplementedError


class _Steps:
    """A flow's effects, one at a time; set ``reply`` or ``error`` before the next."""

    __slots__ = ("error", "flow", "reply", "result")

    def __init__(self, flow: Flow[Any]) -> None:
        self.flow = flow
        self.reply: Any = None
        self.error: Exception | None = None  # thrown into the flow at its yield, traceback and all
        self.result: Any = None

    def __iter__(self) -> _Steps:
        return self

    def __next__(self) -> Effect:
        error, self.error = self.error, None
        try:
            return self.flow.send(self.reply) if error is None else self.flow.throw(error)
        except StopIteration as stop:
            self.result = stop.value
            raise StopIteration from None


def run(flow: Flow[T]) -> T:
    """Run ``flow`` to its end, performing each effect with blocking calls."""
    steps = _Steps(flow)
    for effect in steps:
        try:
            steps.reply = effect.run()
        except Exception as exc:
            steps.error = exc
    result: T = steps.result
    return result


async def arun(flow: Flow[T]) -> T:
    """Run ``flow`` to its end, awaiting each effect on the running loop."""
    steps = _Steps(flow)
    for effect in steps:
        try:
            steps.reply = await effect.arun()
        except Exception as exc:
            steps.error = exc
    result: T = steps.result
    return result


def drive(flow: Flow[T]) -> T:
    """Run ``flow`` on the caller's path: blocking, or awaited from a bridged hook."""
    if in_bridge():
        return wait_for(arun(flow))
    return run(flow)


# -- the effects ---------------------------------------------------------------------


class Call(Effect):
    """Call application code (a rule, a handler), sync or async.

    Sync path: an awaitable result runs on the core's background loop. Async
    path: it is awaited; ``offload`` runs a plain function off the loop.
    """

    __slots__ = ("args", "function", "kwargs", "offload")

    def __init__(
        self,
        function: Callable[..., Any],
        *args: Any,
        kwargs: Mapping[str, Any] | None = None,
        offload: Callable[..., Awaitable[Any]] | None = None,
    ) -> None:
        self.function = function
        self.args = args
        self.kwargs = kwargs or {}
        self.offload = offload

    def run(self) -> Any:
        value = self.function(*self.args, **self.kwargs)
        if inspect.isawaitable(value):
            return run_sync(_awaited(value))
        return value

    async def arun(self) -> Any:
        function = self.function
        if self.offload is not None and not inspect.iscoroutinefunction(function):
            value = await self.offload(function, *self.args, **self.kwargs)
        else:
            value = function(*self.args, **self.kwargs)
        if inspect.isawaitable(value):
            value = await value
        return value


class DriverCall(Effect):
    """Call a driver's method ``name`` or its twin ``a<name>``, whichever it implements.

    Each path prefers its own kind and runs the other where it cannot block (a
    sync method in a worker thread, an async one on the core's background loop).
    """

    __slots__ = ("args", "driver", "name")

    def __init__(self, driver: Driver, name: str, *args: Any) -> None:
        self.driver = driver
        self.name = name
        self.args = args

    def run(self) -> Any:
        driver, name = self.driver, self.name
        if not implements(driver, name) and implements(driver, "a" + name):
            return run_sync(getattr(driver, "a" + name)(*self.args))
        return getattr(driver, name)(*self.args)

    async def arun(self) -> Any:
        driver, name = self.driver, self.name
        if not implements(driver, "a" + name) and implements(driver, name):
            import asyncio

            return await asyncio.to_thread(getattr(driver, name), *self.args)
        return await getattr(driver, "a" + name)(*self.args)


def implements(driver: Driver, method: str) -> bool:
    """Whether ``driver``'s class has its own ``method`` (not the Driver base's)."""
    key = (type(driver), method)
    found = _implements.get(key)
    if found is None:
        from broadcasting._driver import Driver

        found = _implements[key] = getattr(key[0], method) is not getattr(Driver, method, None)
    return found


_implements: dict[tuple[type, str], bool] = {}


@dataclass(slots=True)
class Hook(Effect):
    """Call the hook ``name`` through pluggy; with ``gather``, await each awaitable result."""

    pm: pluggy.PluginManager
    name: str
    kwargs: Mapping[str, Any]
    gather: bool = field(default=False, kw_only=True)

    def run(self) -> Any:
        result = getattr(self.pm.hook, self.name)(**self.kwargs)
        if self.gather:
            return [run_sync(_awaited(r)) if inspect.isawaitable(r) else r for r in result]
        return result

    async def arun(self) -> Any:
        if self.gather:
            result = await bridged(getattr(self.pm.hook, self.name), **self.kwargs)
            return [await r if inspect.isawaitable(r) else r for r in result]
        return await call_hook(getattr(self.pm.hook, self.name), **self.kwargs)


async def call_hook(hook: Callable[..., Any], /, **kwargs: Any) -> Any:
    """Call a first-result hook from async code; a plugin's awaitable result is awaited."""
    result = await bridged(hook, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


@dataclass(slots=True)
class Sleep(Effect):
    """Wait ``seconds`` (a retry's backoff)."""

    seconds: float

    def run(self) -> None:
        time.sleep(self.seconds)

    async def arun(self) -> None:
        import asyncio

        await asyncio.sleep(self.seconds)


@dataclass(slots=True)
class Gather(Effect):
    """Run several flows at once: their results in order, or the first error.

    Async: as tasks. Sync: the first in the calling thread, the others on a
    small pool of threads the process shares.
    """

    flows: Sequence[Flow[Any]]

    def run(self) -> list[Any]:
        first, *rest = self.flows
        futures = [_fanout_pool().submit(run, flow) for flow in rest]
        try:
            return [run(first), *(future.result() for future in futures)]
        except BaseException:  # Ctrl-C while waiting: what has not started never will
            for future in futures:
                future.cancel()
            raise

    async def arun(self) -> list[Any]:
        import asyncio

        return list(await asyncio.gather(*(arun(flow) for flow in self.flows)))


async def _awaited(value: Awaitable[T]) -> T:
    return await value  # run_sync takes a coroutine; a plugin may return any awaitable


#: Threads (per process) that run the other flows of a sync Gather.
FANOUT_THREADS = 8
_pool: Any = None
_pool_lock = threading.Lock()


def _fanout_pool() -> Any:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                from concurrent.futures import ThreadPoolExecutor

                _pool = ThreadPoolExecutor(FANOUT_THREADS, thread_name_prefix="broadcasting-fanout")
    return _pool


# -- pluggy on the async path: a greenlet per hook call in progress ---------------------

# made by the first bridged call, so a process that never publishes from async code
# never imports greenlet
_greenlet: Any = None
_Worker: Any = None
_idle = threading.local()  # each thread's idle workers (a greenlet belongs to its thread)


def in_bridge() -> bool:
    """Whether the caller runs inside :func:`bridged` (so it may :func:`wait_for`)."""
    return _Worker is not None and type(_greenlet.getcurrent()) is _Worker


def wait_for(awaitable: Awaitable[T]) -> T:
    """From inside :func:`bridged`: have the event loop await ``awaitable``; its result."""
    if not in_bridge():
        raise RuntimeError("wait_for() is only for code that bridged() runs")
    result: T = _greenlet.getcurrent().parent.switch(awaitable)
    return result


async def bridged(function: Callable[..., T], /, **kwargs: Any) -> T:
    """Call the synchronous ``function`` (a pluggy hook) from async code.

    It runs in a greenlet of this thread; each :func:`wait_for` inside it
    suspends it while this coroutine awaits the awaitable. Idle greenlets are
    kept for the next call (making one costs more than the call).
    """
    if _Worker is None:
        _load_greenlet()
    idle: list[Any] | None = getattr(_idle, "workers", None)
    if idle is None:
        idle = _idle.workers = []
    worker = idle.pop() if idle else _Worker()
    here = _greenlet.getcurrent()
    worker.parent = here
    worker.gr_context = here.gr_context  # the caller's context variables
    step = worker.switch(function, kwargs)
    while not isinstance(step, _Done):
        try:
            value = await step
        except BaseException as exc:  # cancelled, or the awaitable raised: into the hook
            step = worker.throw(type(exc), exc, exc.__traceback__)
        else:
            step = worker.switch(value)
    worker.gr_context = None
    idle.append(worker)
    if step.error is not None:
        raise step.error
    result: T = step.value
    return result


@dataclass(slots=True)
class _Done:
    value: Any
    error: BaseException | None


def _load_greenlet() -> None:
    global _greenlet, _Worker
    import greenlet

    class Worker(greenlet.greenlet):  # type: ignore[misc]
        """A greenlet that runs one call at a time, for as many calls as it is given."""

        def __init__(self) -> None:
            super().__init__(self._serve)

        def _serve(self, function: Callable[..., Any], kwargs: Mapping[str, Any]) -> None:
            while True:
                try:
                    done = _Done(function(**kwargs), None)
                except BaseException as exc:  # handed to bridged(), which raises it
                    done = _Done(None, exc)
                function = kwargs = None  # type: ignore[assignment]  # keep nothing alive
                function, kwargs = self.parent.switch(done)

    _greenlet, _Worker = greenlet, Worker


def _forget_in_child() -> None:
    """After fork: the parent's pool threads and idle greenlets are not the child's."""
    global _pool, _pool_lock, _idle
    _pool, _pool_lock, _idle = None, threading.Lock(), threading.local()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
