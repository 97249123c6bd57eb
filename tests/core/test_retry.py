"""Retry: bounded attempts, backoff with jitter, only for retryable errors."""

from __future__ import annotations

import pytest

from broadcasting import ConfigurationError, PublishError, Retry


def flaky(failures: int, retryable: bool = True) -> tuple[list[int], object]:
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise PublishError("busy", driver="x", status=503, retryable=retryable)
        return "ok"

    return calls, call


def test_retries_retryable_errors_until_success() -> None:
    calls, call = flaky(2)
    assert Retry(retries=2, backoff=0.001).call(call) == "ok"  # type: ignore[arg-type]
    assert len(calls) == 3


def test_gives_up_after_the_last_retry() -> None:
    calls, call = flaky(5)
    with pytest.raises(PublishError, match="busy"):
        Retry(retries=2, backoff=0.001).call(call)  # type: ignore[arg-type]
    assert len(calls) == 3


def test_does_not_retry_non_retryable_errors() -> None:
    calls, call = flaky(5, retryable=False)
    with pytest.raises(PublishError):
        Retry(retries=5, backoff=0.001).call(call)  # type: ignore[arg-type]
    assert len(calls) == 1


async def test_async_retry() -> None:
    calls: list[int] = []

    async def call() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise PublishError("busy", driver="x", retryable=True)
        return "ok"

    assert await Retry(retries=3, backoff=0.001).acall(call) == "ok"
    assert len(calls) == 3


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
