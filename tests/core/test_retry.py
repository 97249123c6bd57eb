"""Retry: bounded attempts and backoff with jitter (which errors are retried: test_delivery)."""

from __future__ import annotations

import pytest

from broadcasting import ConfigurationError
from broadcasting.plugin import Retry


def test_delays_grow_exponentially_up_to_the_cap() -> None:
    assert list(Retry(retries=5, backoff=0.1, max_backoff=0.5, jitter=False).delays()) == [
        0.1,
        0.2,
        0.4,
        0.5,
        0.5,
    ]
    jittered = list(Retry(retries=50, backoff=0.1, max_backoff=0.5).delays())
    assert all(0 <= d <= 0.5 for d in jittered)
    assert len(set(jittered)) > 1


def test_from_options() -> None:
    retry = Retry.from_options("x", {"retries": 4, "retry_backoff": 0.5, "retry_max_backoff": 3})
    assert retry == Retry(4, 0.5, 3.0)
    assert Retry.from_options("x", {}) == Retry()
    with pytest.raises(ConfigurationError, match="'retries'"):
        Retry.from_options("x", {"retries": -1})
    with pytest.raises(ConfigurationError, match="'retry_backoff'"):
        Retry.from_options("x", {"retry_backoff": "fast"})
