"""A tap on one connected driver's ``send()`` / ``asend()``: it counts and breaks requests.

The kit replaces those two methods on the driver instance (the class is
untouched), so it sees each request where the core's delivery does. It can make
the first request fail: ``"lose"`` runs it (the service gets it), then raises a
retryable, maybe-delivered PublishError, as a timeout after sending would;
``"refuse"`` raises a retryable, certainly-not-delivered one without running it;
``"crash"`` raises a RuntimeError in its place, as a bug in ``send()`` would.
When a driver's ``asend`` runs its own ``send`` (or the reverse), the innermost
call is the request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any

from broadcasting import PublishError
from broadcasting.plugin import Batch, Driver

#: Faults a tap can inject into the first request.
FAULTS = (None, "lose", "refuse", "crash")


def sends(driver: Driver) -> bool:
    """Whether ``driver`` implements ``send``/``asend``, so the core's delivery runs for it."""
    cls = type(driver)
    return cls.send is not Driver.send or cls.asend is not Driver.asend


def replace(driver: Driver, name: str, method: Callable[..., Any]) -> None:
    """Set ``driver.<name>`` on the instance, the class untouched (undo: pop it from vars)."""
    try:
        setattr(driver, name, method)
    except AttributeError as exc:
        raise TypeError(
            f"the conformance kit replaces {type(driver).__name__}.{name} on the driver "
            "instance; give the class a __dict__ (no bare __slots__)"
        ) from exc


class _Call:
    """One tapped call under way (a context manager); ``nested`` once it made another."""

    __slots__ = ("batch", "nested", "tap", "token")

    def __init__(self, tap: SendTap, batch: Batch) -> None:
        self.tap = tap
        self.batch = batch
        self.nested = False
        self.token: Token[_Call | None] | None = None

    def __enter__(self) -> None:
        self.tap._enter(self)
        self.token = _current.set(self)

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if self.token is not None:
            _current.reset(self.token)
        if exc is None:
            self.tap._done(self)
        else:
            self.tap._failed(exc)


_current: ContextVar[_Call | None] = ContextVar("broadcasting_testing_tap", default=None)


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

    def __enter__(self) -> SendTap:
        cls = type(self.driver)
        for name in ("send", "asend"):
            if getattr(cls, name) is getattr(Driver, name):
                continue  # the base class's bridge to the other method: never called by the core
            try:
                replace(self.driver, name, self._wrap(name, getattr(self.driver, name)))
            except TypeError:
                self.__exit__()
                raise
            self._installed.append(name)
        if not self._installed:
            raise TypeError(f"{cls.__name__} implements neither send() nor asend()")
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self._installed:
            vars(self.driver).pop(name, None)
        self._installed.clear()

    def _wrap(self, name: str, real: Callable[[Batch], Any]) -> Callable[[Batch], Any]:
        if name == "send":

            def send(batch: Batch) -> Any:
                with _Call(self, batch):
                    return real(batch)

            return send

        async def asend(batch: Batch) -> Any:
            with _Call(self, batch):
                return await real(batch)

        return asend

    # -- one call: refused, counted, or its answer lost ---------------------------------

    def _enter(self, call: _Call) -> None:
        parent = _current.get()
        if parent is not None and parent.tap is self:
            parent.nested = True
            return
        if self.fault in ("refuse", "crash"):
            with self._lock:
                first = not self.refused
                if first:
                    self.refused.append(call.batch)
            if first:
                error: Exception = (
                    RuntimeError("a bug in send() (injected by the conformance kit)")
                    if self.fault == "crash"
                    else PublishError(
                        f"{self.driver.name}: connection refused (injected by the conformance "
                        "kit: nothing was sent)",
                        driver=self.driver.name,
                        retryable=True,
                    )
                )
                self._injected.append(error)
                raise error
        with self._lock:
            self._ran.append(call.batch)

    def _failed(self, exc: BaseException) -> None:
        if not any(exc is injected for injected in self._injected):
            with self._lock:
                if not any(exc is seen for seen in self.raised):
                    self.raised.append(exc)

    def _done(self, call: _Call) -> None:
        if call.nested:
            return  # the inner call was the request
        with self._lock:
            self.sent.append(call.batch)
            if self.fault != "lose" or self.lost is not None:
                return
            self.lost = PublishError(
                f"{self.driver.name}: timed out waiting for the answer (injected by the "
                "conformance kit: the service got the request)",
                driver=self.driver.name,
                retryable=True,
                maybe_delivered=True,
            )
            self._injected.append(self.lost)
        raise self.lost

    def __repr__(self) -> str:
        return f"<SendTap fault={self.fault!r} sent={len(self.sent)} refused={len(self.refused)}>"
