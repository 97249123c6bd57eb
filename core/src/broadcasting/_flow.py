"""Behaviour written once: flows yield effects, :func:`run` performs them blocking, :func:`arun`
awaits them. Hooks go through pluggy on both paths: on the async one in a greenlet
(:func:`bridged`), so wrappers and hook-call monitoring see real outcomes (a publish skips
the hook only while the core alone implements it, unwatched: ``_plugins.core_alone``)."""

from __future__ import annotations

import functools
import inspect
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from broadcasting._fork import in_forked_child
from broadcasting._loop import _awaited, run_sync

if TYPE_CHECKING:
    import pluggy

    from broadcasting._driver import Driver

T = TypeVar("T")
S = TypeVar("S")
P = ParamSpec("P")

#: A flow: yields effects, is sent their results, returns its own.
Flow = Generator["Effect", Any, T]


class Effect:
    """Something a flow needs done: :meth:`run` does it blocking, :meth:`arun` awaited."""

    __slots__ = ()

    def run(self) -> Any:
        raise NotImplementedError

    async def arun(self) -> Any:
        raise NotImplementedError


def run(flow: Flow[T]) -> T:
    """Run ``flow`` to its end, performing each effect with blocking calls."""
    send, throw = flow.send, flow.throw
    reply: Any = None
    error: Exception | None = None  # thrown into the flow at its yield, traceback and all
    while True:
        try:
            effect = send(reply) if error is None else throw(error)
        except StopIteration as stop:
            result: T = stop.value
            return result
        try:
            reply, error = effect.run(), None
        except Exception as exc:
            error = exc


async def arun(flow: Flow[T]) -> T:
    """Run ``flow`` to its end, awaiting each effect on the running loop."""
    send, throw = flow.send, flow.throw
    reply: Any = None
    error: Exception | None = None  # thrown into the flow at its yield, traceback and all
    while True:
        try:
            effect = send(reply) if error is None else throw(error)
        except StopIteration as stop:
            result: T = stop.value
            return result
        try:
            reply, error = await effect.arun(), None
        except Exception as exc:
            error = exc


def blocking(flow: Callable[Concatenate[S, P], Flow[T]]) -> Callable[Concatenate[S, P], T]:
    """The method ``x`` made from the flow method ``_x_flow`` (and its docstring): runs its
    flow blocking."""

    def method(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return run(flow(self, *args, **kwargs))

    _present(method, flow, "", "")
    return method


def awaiting(
    flow: Callable[Concatenate[S, P], Flow[T]], note: str = ""
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """The coroutine method ``ax`` made from the flow method ``_x_flow``: awaits its flow.
    Its docstring is "Async twin of :meth:`x`", then ``note``."""

    async def method(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await arun(flow(self, *args, **kwargs))

    _present(method, flow, "a", note)
    return method


def _present(method: Any, flow: Callable[..., Any], prefix: str, note: str) -> None:
    """Name, sign and document ``method`` as ``flow``'s entry point, for help() and inspect."""
    owner, _, name = flow.__qualname__.rpartition(".")
    method.__name__ = name = prefix + name.removeprefix("_").removesuffix("_flow")
    method.__qualname__, method.__module__ = f"{owner}.{name}", flow.__module__
    twin = f"Async twin of :meth:`{name[1:]}`" + (f"; {note}." if note else ".")
    method.__doc__ = twin if prefix else flow.__doc__
    signature = inspect.signature(flow)  # annotations are strings here: "Flow[X]" becomes "X"
    returns = signature.return_annotation.removeprefix("Flow[").removesuffix("]")
    method.__signature__ = signature.replace(return_annotation=returns)
    method.__annotations__ = {**flow.__annotations__, "return": returns}
    method.__wrapped__ = flow  # so typing.get_type_hints() reads them in flow's module


def drive(flow: Flow[T]) -> T:
    """Run ``flow`` on the caller's path: blocking, or awaited from a bridged hook."""
    if in_bridge():
        return wait_for(arun(flow))
    return run(flow)


class Call(Effect):
    """Call application code (a rule, a handler), sync or async: an awaitable result runs on
    the core's background loop, or is awaited; ``offload`` runs a plain function off the loop."""

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
        return run_sync(_awaited(value)) if inspect.isawaitable(value) else value

    async def arun(self) -> Any:
        function = self.function
        offload = self.offload or OFFLOAD.get()
        if offload is not None and not inspect.iscoroutinefunction(function):
            if self.kwargs:  # an offload takes positional arguments only (a rule's are named)
                bound = functools.partial(function, **self.kwargs)
                value = await offload(functools.update_wrapper(bound, function), *self.args)
            else:
                value = await offload(function, *self.args)
        else:
            value = function(*self.args, **self.kwargs)
        return await value if inspect.isawaitable(value) else value


#: While an async web endpoint answers a request, how it runs a plain function off the event
#: loop (the framework's thread pool): a sync channel rule or webhook handler, called deep in
#: a hook, then does not block every other request (``AuthEndpoints.ahandle`` sets it).
OFFLOAD: ContextVar[Callable[..., Awaitable[Any]] | None] = ContextVar(
    "broadcasting_offload", default=None
)


class DriverCall(Effect):
    """Call a driver's method ``name`` or its twin ``a<name>``: each path prefers its own kind,
    and runs the other where it cannot block (a thread, the core's background loop)."""

    __slots__ = ("args", "driver", "name")

    def __init__(self, driver: Driver, name: str, *args: Any) -> None:
        self.driver = driver
        self.name = name
        self.args = args

    def run(self) -> Any:
        method, other = _method(type(self.driver), self.name, True)
        if other:
            return run_sync(getattr(self.driver, method)(*self.args))
        return getattr(self.driver, method)(*self.args)

    async def arun(self) -> Any:
        method, other = _method(type(self.driver), self.name, False)
        if other:
            import asyncio

            return await asyncio.to_thread(getattr(self.driver, method), *self.args)
        try:
            return await getattr(self.driver, method)(*self.args)
        except BaseException as exc:  # imported here: no import statement on the hot path
            import asyncio

            if not isinstance(exc, asyncio.CancelledError):
                raise
            task = asyncio.current_task()
            if sys.version_info < (3, 11) or task is None or task.cancelling():
                raise  # this task is being cancelled (3.10 cannot tell: taken as such)
            # raised by the driver's own code, nobody cancelling this task: a driver's bug,
            # which would otherwise cancel every publish that shared its request
            raise DriverCancelled(
                f"{self.driver.name}: {method}() raised CancelledError, though nothing "
                "cancelled the task that called it"
            ) from exc


class DriverCancelled(RuntimeError):
    """A driver's coroutine raised CancelledError on its own (see :meth:`DriverCall.arun`)."""


def implements(driver: Driver, method: str) -> bool:
    """Whether ``driver``'s class has its own ``method`` (not the Driver base's)."""
    return _implements(type(driver), method)


def _implements(cls: type, method: str) -> bool:
    key = (cls, method)
    found = _implemented.get(key)
    if found is None:
        from broadcasting._driver import Driver

        found = _implemented[key] = getattr(cls, method) is not getattr(Driver, method, None)
    return found


_implemented: dict[tuple[type, str], bool] = {}


def _method(cls: type, name: str, blocking: bool) -> tuple[str, bool]:
    """Which of ``name`` and ``a<name>`` a driver class's call runs on the blocking path (or
    the async one), and whether it is the other kind (its own is the Driver base's)."""
    key = (cls, name, blocking)
    found = _methods.get(key)
    if found is None:
        mine, twin = (name, "a" + name) if blocking else ("a" + name, name)
        other = not _implements(cls, mine) and _implements(cls, twin)
        found = _methods[key] = (twin, True) if other else (mine, False)
    return found


_methods: dict[tuple[type, str, bool], tuple[str, bool]] = {}


@dataclass(slots=True)
class Hook(Effect):
    """Call the hook ``name`` through pluggy; ``gather``: every result, each awaited if it
    is awaitable. ``bridge=False``: the async path needs no greenlet (the call never waits)."""

    pm: pluggy.PluginManager
    name: str
    kwargs: Mapping[str, Any]
    gather: bool = field(default=False, kw_only=True)
    bridge: bool = field(default=True, kw_only=True)

    def run(self) -> Any:
        result = getattr(self.pm.hook, self.name)(**self.kwargs)
        if self.gather:
            return [run_sync(_awaited(r)) if inspect.isawaitable(r) else r for r in result]
        return result

    async def arun(self) -> Any:
        hook = getattr(self.pm.hook, self.name)
        result = await bridged(hook, **self.kwargs) if self.bridge else hook(**self.kwargs)
        if self.gather:
            return [await r if inspect.isawaitable(r) else r for r in result]
        return await result if inspect.isawaitable(result) else result


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
    """Run flows at once (as tasks, or on a pool of threads): their results, or the first error."""

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


# made by the first bridged call: a process that never publishes from async code never
# imports greenlet
_greenlet: Any = None
_Worker: Any = None
_idle = threading.local()  # each thread's idle workers (a greenlet belongs to its thread)


def in_bridge() -> bool:
    """Whether the caller runs inside :func:`bridged` (so it may :func:`wait_for`)."""
    return _Worker is not None and type(_greenlet.getcurrent()) is _Worker


def wait_for(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` from a hook, on either path: its result (docs/hooks.md)."""
    if not in_bridge():  # the blocking path: the core's background loop awaits it
        return run_sync(_awaited(awaitable))
    result: T = _greenlet.getcurrent().parent.switch(awaitable)
    return result


async def bridged(function: Callable[..., T], /, **kwargs: Any) -> T:
    """Call the synchronous ``function`` (a pluggy hook) from async code, in a greenlet of
    this thread: each :func:`wait_for` inside it suspends it while this coroutine awaits."""
    if _Worker is None:
        _load_greenlet()
    idle: list[Any] = vars(_idle).setdefault("workers", [])  # kept: making one costs more
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


@in_forked_child
def _forget_in_child() -> None:
    """After fork: the parent's pool threads and idle greenlets are not the child's."""
    global _pool, _pool_lock, _idle
    _pool, _pool_lock, _idle = None, threading.Lock(), threading.local()
