"""Bounded retries with exponential backoff and full jitter, for drivers."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from broadcasting._errors import ConfigurationError

#: The longest wait a backoff option takes (a day): more is a mistake, and inf or NaN
#: would fail the publish at its first retry instead of here.
MAX_BACKOFF = 86_400


@dataclass(frozen=True)
class Retry:
    """How the core retries a failed request: up to ``retries`` attempts after the first, the
    n-th after a random wait up to ``min(max_backoff, backoff * 2**n)`` s ("full jitter")."""

    retries: int = 2
    backoff: float = 0.1
    max_backoff: float = 2.0
    jitter: bool = True

    @classmethod
    def from_options(cls, driver: str, options: Mapping[str, Any]) -> Retry:
        """Read ``retries``, ``retry_backoff`` and ``retry_max_backoff`` from driver options;
        a ConfigurationError names each wrong one (``problems``), never its value."""
        found: list[ConfigurationError] = []
        retries = options.get("retries", cls.retries)
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            found.append(ConfigurationError(driver, "retries", "must be an int >= 0"))

        def seconds(key: str, default: float) -> float:
            value = options.get(key, default)
            # NaN and inf too: a retry would then raise ValueError or OverflowError mid-publish
            if (
                not isinstance(value, (int, float))
                or isinstance(value, bool)
                or not 0 <= value <= MAX_BACKOFF
            ):
                problem = f"must be a number of seconds from 0 to {MAX_BACKOFF:,}"
                found.append(ConfigurationError(driver, key, problem))
                return default
            return float(value)

        backoff = seconds("retry_backoff", cls.backoff)
        max_backoff = seconds("retry_max_backoff", cls.max_backoff)
        if found:
            raise ConfigurationError.combine(found)
        return cls(retries, backoff, max_backoff)

    def cap(self, attempt: int) -> float:
        """The longest wait before retry number ``attempt + 1``, in seconds."""
        return min(self.max_backoff, self.backoff * 2.0 ** min(attempt, 60))

    def delay(self, attempt: int) -> float:
        """The wait before retry number ``attempt + 1``, in seconds."""
        cap = self.cap(attempt)
        return random.uniform(0, cap) if self.jitter else cap

    def delays(self) -> Iterator[float]:
        """The wait before each retry, in seconds (``retries`` values)."""
        for attempt in range(self.retries):
            yield self.delay(attempt)
