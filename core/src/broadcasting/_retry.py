"""Bounded retries with exponential backoff and full jitter, for drivers."""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from broadcasting._errors import ConfigurationError, PublishError

T = TypeVar("T")


@dataclass(frozen=True)
class Retry:
    """How a driver retries a publish that failed with a retryable :class:`PublishError`.

    ``retries`` extra attempts are made after the first; the n-th waits a
    random time up to ``min(max_backoff, backoff * 2**n)`` seconds ("full
    jitter"). A non-retryable error is raised at once; after the last attempt
    the last error is raised.
    """

    retries: int = 2
    backoff: float = 0.1
    max_backoff: float = 2.0
    jitter: bool = True

    @classmethod
    def from_options(cls, driver: str, options: Mapping[str, Any]) -> Retry:
        """Read ``retries``, ``retry_backoff`` and ``retry_max_backoff`` from driver options."""
        defaults = cls()
        retries = options.get("retries", defaults.retries)
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise ConfigurationError(driver, "retries", "must be an int >= 0")
        values = {}
        for key, default in (
            ("retry_backoff", defaults.backoff),
            ("retry_max_backoff", defaults.max_backoff),
        ):
            value = options.get(key, default)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigurationError(driver, key, "must be a number of seconds >= 0")
            values[key] = float(value)
        return cls(retries, values["retry_backoff"], values["retry_max_backoff"])

    def delays(self) -> Iterator[float]:
        """The wait before each retry, in seconds (``retries`` values)."""
        for attempt in range(self.retries):
            cap = min(self.max_backoff, self.backoff * (2**attempt))
            yield random.uniform(0, cap) if self.jitter else cap

    def call(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` until it succeeds, retrying retryable PublishErrors."""
        delays = self.delays()
        while True:
            try:
                return fn()
            except PublishError as exc:
                delay = next(delays, None) if exc.retryable else None
                if delay is None:
                    raise
            time.sleep(delay)

    async def acall(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Async twin of :meth:`call`."""
        delays = self.delays()
        while True:
            try:
                return await fn()
            except PublishError as exc:
                delay = next(delays, None) if exc.retryable else None
                if delay is None:
                    raise
            import asyncio

            await asyncio.sleep(delay)
