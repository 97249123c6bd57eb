"""Driver health checks: one cheap authenticated request, and what its answer says.

``broadcasting check`` and applications' own health endpoints call
:meth:`Driver.check` / :meth:`Driver.acheck`. A driver for a service
implements them with one request that needs its credentials, sent once
(never retried), and reports a :class:`Health`. A driver without a check
reports ``not_supported``, which is not a failure: nothing was checked.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from broadcasting._errors import BroadcastError, ServiceError

#: What a health check found.
HealthStatus = Literal["ok", "auth_failed", "unreachable", "error", "not_supported"]

#: Every :data:`HealthStatus`, in the order they are documented.
HEALTH_STATUSES: tuple[HealthStatus, ...] = (
    "ok",
    "auth_failed",
    "unreachable",
    "error",
    "not_supported",
)
#: The statuses that mean the driver cannot publish as configured.
FAILED: frozenset[HealthStatus] = frozenset({"auth_failed", "unreachable", "error"})


@dataclass(frozen=True)
class Health:
    """The outcome of one driver's health check.

    ``status`` is one of:

    * ``"ok"``: the service answered and accepted the credentials;
    * ``"auth_failed"``: it answered and refused them (an ``auth`` or
      ``permission`` failure: HTTP 401 or 403);
    * ``"unreachable"``: no answer came (connection refused, DNS, a timeout);
    * ``"error"``: any other failure (another HTTP error, an unreadable
      answer, a TLS certificate that could not be verified);
    * ``"not_supported"``: the driver has no health check, so nothing was
      checked. This is not a failure.

    Attributes:
        status: what the check found (see above).
        latency_ms: how long the check's request took, in milliseconds, or
            ``None`` when no request was made.
        detail: one human-readable sentence; it never holds a secret.
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
        return self.status in FAILED

    @classmethod
    def of_error(cls, error: BaseException, latency_ms: float | None = None) -> Health:
        """The health of a check whose request raised ``error``.

        A :class:`ServiceError` of kind ``auth`` or ``permission`` is
        ``auth_failed``; one of kind ``unavailable`` with no answer at all (no
        HTTP status: refused, DNS, a timeout) is ``unreachable``; any other is
        ``error`` (a 5xx, a TLS certificate that could not be verified).
        Another :class:`BroadcastError` is ``error``. The detail is the error's
        message, which drivers keep free of secrets.
        """
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
        """Run ``probe`` once, timed, and say what it found.

        ``probe`` makes the check's one request and returns a detail for
        ``ok``, or raises a :class:`BroadcastError` (usually a
        :class:`ServiceError` from the driver's transport), which
        :meth:`of_error` maps. Other exceptions propagate: they are bugs, and
        their messages may hold anything.
        """
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
        "not_supported",
        None,
        f"the {driver!r} driver has no health check; nothing was checked",
    )


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
