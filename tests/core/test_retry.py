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


@pytest.mark.parametrize("key", ["retry_backoff", "retry_max_backoff"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e300, 86_401, -0.5])
def test_a_backoff_no_wait_can_take_is_refused_at_configuration(key: str, value: float) -> None:
    """NaN or inf loaded before, then failed the publish at its first retry with a raw
    ValueError or OverflowError."""
    with pytest.raises(ConfigurationError, match=f"'{key}'.*from 0 to 86,400"):
        Retry.from_options("x", {key: value})


def test_many_retries_wait_at_most_max_backoff() -> None:
    retry = Retry(retries=5000, backoff=0.5, max_backoff=3.0, jitter=False)
    assert retry.delay(4999) == 3.0  # 2**4999 would not fit a float
