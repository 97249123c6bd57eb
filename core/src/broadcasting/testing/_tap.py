"""A tap on one connected driver's ``send()`` / ``asend()``: it counts and breaks requests.

The core's delivery engine calls ``driver.send`` / ``driver.asend`` for every
request, so the kit replaces those two methods *on the driver instance* (the
class is untouched) and sees each request where the core sees it. The tap can
also make the first request fail the ways a network (or a bug) does:

* ``"lose"``: the request really runs (the service gets it), then the answer
  is lost: the tap raises a retryable :class:`~broadcasting.PublishError`
  that may have been delivered, as a timeout after sending would;
* ``"refuse"``: the tap raises a retryable PublishError that was certainly
  not delivered (connection refused) without running the request at all;
* ``"crash"``: the tap raises a :class:`RuntimeError` in place of the request,
  as a bug in a driver's ``send()`` would.

A driver whose ``asend`` runs its own ``send`` (or the reverse) makes one
request through two tapped methods: the innermost call is the request, so a
lost answer happens where the driver's own error handling would see it.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from types import TracebackType
from typing import Any

from broadcasting import PublishError
from broadcasting.plugin import Batch, Driver

#: Faults a tap can inject into the first request.
FAULTS = (None, "lose", "refuse", "crash")


def sends(driver: Driver) -> bool:
    """Whether ``driver`` implements ``send``/``asend``, so the core's delivery runs for it."""
    cls = type(driver)
    return cls.send is not Driver.send or cls.asend is not Driver.asend


class _Frame:
    """One tapped call under way; ``nested`` once it made another tapped call."""

    __slots__ = ("nested", "tap")

    def __init__(self, tap: SendTap) -> None:
        self.tap = tap
        self.nested = False


_current: ContextVar[_Frame | None] = ContextVar("broadcasting_testing_tap", default=None)


class SendTap:
    """Wraps the ``send``/``asend`` a driver implements; use it as a context manager.

    Attributes:
        sent: the batches of requests that really ran, in order.
        refused: the batches the tap refused (or crashed on) without running them.
        lost: the lost-answer error the tap raised, once it did.
        raised: exceptions the driver's own methods raised (the tap's errors excluded).
    """

    def __init__(self, driver: Driver, fault: str | None = None) -> None:
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}, not {fault!r}")
        self.driver = driver
        self.fault = fault
        self.sent: list[Batch] = []
        self.refused: list[Batch] = []
        self.lost: PublishError | None = None
        self.raised: list[BaseException] = []
        self._injected: list[Exception] = []
        self._lock = threading.Lock()
        self._installed: list[str] = []
        self._ran: list[Batch] = []  # every batch the driver's own method ran, failed or not

    @property
    def requests(self) -> int:
        """Requests the core asked for: those that ran plus those refused."""
        with self._lock:
            return len(self.sent) + len(self.refused)

    def over_budget(self) -> list[Batch]:
        """Requests whose transport re-sent more often than ``Batch.budget`` allows."""
        with self._lock:
            return [batch for batch in self._ran if batch.requests > batch.budget]

    # -- installing -----------------------------------------------------------------

    def __enter__(self) -> SendTap:
        cls = type(self.driver)
        for name in ("send", "asend"):
            if getattr(cls, name) is getattr(Driver, name):
                continue  # the base class's bridge to the other method: never called by the core
            real = getattr(self.driver, name)
            wrapper = self._wrap_async(real) if name == "asend" else self._wrap_sync(real)
            try:
                setattr(self.driver, name, wrapper)
            except AttributeError as exc:
                self.__exit__(None, None, None)
                raise TypeError(
                    f"the conformance kit wraps {cls.__name__}.{name} on the driver instance "
                    "to observe each request; give the class a __dict__ (no bare __slots__)"
                ) from exc
            self._installed.append(name)
        if not self._installed:
            raise TypeError(f"{cls.__name__} implements neither send() nor asend()")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for name in self._installed:
            vars(self.driver).pop(name, None)
        self._installed.clear()

    # -- one call -----------------------------------------------------------------------

    def _enter(self, batch: Batch) -> _Frame:
        """Start a call: refuse it (raise) if that is the fault, else open its frame."""
        parent = _current.get()
        outermost = parent is None or parent.tap is not self
        if parent is not None and parent.tap is self:
            parent.nested = True
        if self.fault in ("refuse", "crash") and outermost:
            with self._lock:
                first = not self.refused
                if first:
                    self.refused.append(batch)
            if first and self.fault == "crash":
                crash = RuntimeError("a bug in send() (injected by the conformance kit)")
                self._injected.append(crash)
                raise crash
            if first:
                error = PublishError(
                    f"{self.driver.name}: connection refused (injected by the conformance kit: "
                    "nothing was sent)",
                    driver=self.driver.name,
                    retryable=True,
                )
                self._injected.append(error)
                raise error
        if outermost:
            with self._lock:
                self._ran.append(batch)
        return _Frame(self)

    def _failed(self, exc: BaseException) -> None:
        if not any(exc is injected for injected in self._injected):
            with self._lock:
                if not any(exc is seen for seen in self.raised):
                    self.raised.append(exc)

    def _done(self, frame: _Frame, batch: Batch) -> None:
        """A call returned: count it if it was the request itself; maybe lose its answer."""
        if frame.nested:
            return  # the inner call was the request
        with self._lock:
            self.sent.append(batch)
            lose = self.fault == "lose" and self.lost is None
            if lose:
                self.lost = PublishError(
                    f"{self.driver.name}: timed out waiting for the answer (injected by the "
                    "conformance kit: the service got the request)",
                    driver=self.driver.name,
                    retryable=True,
                    maybe_delivered=True,
                )
                self._injected.append(self.lost)
        if lose:
            assert self.lost is not None
            raise self.lost

    def _wrap_sync(self, real: Callable[[Batch], Any]) -> Callable[[Batch], Any]:
        def send(batch: Batch) -> Any:
            frame = self._enter(batch)
            token = _current.set(frame)
            try:
                result = real(batch)
            except BaseException as exc:
                self._failed(exc)
                raise
            finally:
                _current.reset(token)
            self._done(frame, batch)
            return result

        return send

    def _wrap_async(self, real: Callable[[Batch], Awaitable[Any]]) -> Callable[..., Any]:
        async def asend(batch: Batch) -> Any:
            frame = self._enter(batch)
            token = _current.set(frame)
            try:
                result = await real(batch)
            except BaseException as exc:
                self._failed(exc)
                raise
            finally:
                _current.reset(token)
            self._done(frame, batch)
            return result

        return asend

    def __repr__(self) -> str:
        return f"<SendTap fault={self.fault!r} sent={len(self.sent)} refused={len(self.refused)}>"
