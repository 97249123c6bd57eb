"""Driver health checks: one cheap authenticated request, never retried, and what it found."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, get_args

from broadcasting._errors import BroadcastError, ServiceError

#: What a health check found.
HealthStatus = Literal["ok", "auth_failed", "unreachable", "error", "not_supported"]

#: Every :data:`HealthStatus`, in the order they are documented.
HEALTH_STATUSES: tuple[HealthStatus, ...] = get_args(HealthStatus)


@dataclass(frozen=True)
class Health:
    """The outcome of one driver's health check.

    ``status``: ``ok``, ``auth_failed`` (credentials refused), ``unreachable`` (no answer),
    ``error`` (any other failure) or ``not_supported`` (no check: not a failure);
    ``latency_ms``: how long its request took (``None``: none made); ``detail``: one
    sentence, never holding a secret.
    """

    status: HealthStatus
    latency_ms: float | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        if self.status not in HEALTH_STATUSES:
            raise ValueError(f"Health status must be one of {HEALTH_STATUSES}, not {self.status!r}")

    @property
    def failed(self) -> bool:
        """Whether the driver cannot publish as configured (auth_failed, unreachable, error)."""
        return self.status in ("auth_failed", "unreachable", "error")

    @classmethod
    def of_error(cls, error: BaseException, latency_ms: float | None = None) -> Health:
        """The health of a check whose request raised ``error``: a :class:`ServiceError` of kind
        ``auth`` or ``permission`` is ``auth_failed``, one of kind ``unavailable`` with no HTTP
        status ``unreachable``, anything else ``error``; the detail is its message."""
        if isinstance(error, ServiceError):
            text = str(error.args[0]) if error.args else str(error)
            if error.kind in ("auth", "permission"):
                return cls("auth_failed", latency_ms, text)
            if error.kind == "unavailable" and error.status is None:
                return cls("unreachable", latency_ms, text)
            return cls("error", latency_ms, text)
        return cls("error", latency_ms, f"{type(error).__name__}: {error}")

    @classmethod
    def measure(cls, probe: Callable[[], str]) -> Health:
        """Run ``probe`` once, timed: the detail it returns is ``ok``; a
        :class:`BroadcastError` it raises goes through :meth:`of_error`; any other propagates."""
        started = time.perf_counter()
        try:
            detail = probe()
        except BroadcastError as exc:
            return cls.of_error(exc, _since(started))
        return cls("ok", _since(started), detail)

    @classmethod
    async def ameasure(cls, probe: Callable[[], Awaitable[str]]) -> Health:
        """Async twin of :meth:`measure`: ``probe`` is a coroutine function."""
        started = time.perf_counter()
        try:
            detail = await probe()
        except BroadcastError as exc:
            return cls.of_error(exc, _since(started))
        return cls("ok", _since(started), detail)


def not_supported(driver: str) -> Health:
    """The health of a driver that has no check."""
    return Health(
        "not_supported", None, f"the {driver!r} driver has no health check; nothing was checked"
    )


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
