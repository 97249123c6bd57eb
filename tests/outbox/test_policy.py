"""The relay's decisions (broadcasting.outbox._policy): plain functions, no I/O."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from broadcasting import PublishError, Receipt
from broadcasting.outbox import _policy
from broadcasting.outbox._policy import (
    DEAD,
    DELIVERED,
    PENDING,
    SENDING,
    UNKNOWN,
    Backoff,
    judge,
    plan,
)

NOW = 1_000_000.0


@dataclass(frozen=True)
class R:
    """A row as the policy reads it."""

    id: int
    channels: tuple[str, ...]
    partition: int = 0
    state: int = PENDING
    attempts: int = 0
    available_at: float = NOW - 1


def never(row: object) -> bool:
    return False


def always(row: object) -> bool:
    return True


def ids(rows: list[_policy.RowLike]) -> list[int]:
    return [row.id for row in rows]


def test_rows_are_sent_in_partition_and_id_order() -> None:
    rows = [R(1, ("a",), 0), R(2, ("b",), 0), R(3, ("a",), 5)]
    result = plan(rows, NOW, never)
    assert ids(result.rows) == [1, 2, 3]
    assert result.unknown == [] and result.held == {}


def test_a_row_backing_off_holds_its_partition_from_there_on() -> None:
    later = NOW + 5
    rows = [R(1, ("a",)), R(2, ("b",), available_at=later), R(3, ("c",)), R(4, ("x",), 1)]
    result = plan(rows, NOW, never)
    assert ids(result.rows) == [1, 4]
    assert result.held == {0: later}


def test_a_row_found_sending_is_unknown_unless_a_repeat_is_harmless() -> None:
    rows = [R(1, ("a",), state=SENDING), R(2, ("a",))]
    strict = plan(rows, NOW, never)
    assert ids(strict.unknown) == [1]
    assert ids(strict.rows) == [2]
    lenient = plan(rows, NOW, always)
    assert lenient.unknown == []
    assert ids(lenient.rows) == [1, 2]


def test_marking_is_needed_only_when_a_repeat_would_be_a_second_event() -> None:
    assert _policy.must_mark(resend=False) is True
    assert _policy.must_mark(resend=True) is False


def receipt() -> Receipt:
    return Receipt("pusher", "e", ("a",), "m1")


def test_a_receipt_is_delivered() -> None:
    verdict = judge(R(1, ("a",), attempts=2), receipt(), NOW, resend=False, backoff=Backoff())
    assert (verdict.state, verdict.attempts, verdict.error) == (DELIVERED, 2, None)


def error(**kwargs: object) -> PublishError:
    return PublishError("boom", driver="pusher", **kwargs)  # type: ignore[arg-type]


def test_a_retryable_certain_failure_backs_off_and_keeps_the_undelivered_channels() -> None:
    cause = error(status=503, retryable=True)
    failure = error(status=503, retryable=True, delivered=["a"], failed=["b"], causes={"b": cause})
    verdict = judge(R(1, ("a", "b")), failure, NOW, resend=False, backoff=Backoff(1, 8))
    assert verdict.state == PENDING
    assert verdict.channels_left == ("b",)
    assert verdict.available_at is not None
    assert NOW + 0.5 <= verdict.available_at <= NOW + 1
    assert verdict.error is not None and "boom" in verdict.error


def test_a_failure_that_will_not_pass_is_dead() -> None:
    failure = error(status=401, failed=["a"])
    verdict = judge(R(1, ("a",)), failure, NOW, resend=False, backoff=Backoff())
    assert (verdict.state, verdict.channels_left, verdict.available_at) == (DEAD, None, None)


@pytest.mark.parametrize(("resend", "state"), [(False, UNKNOWN), (True, PENDING)])
def test_maybe_delivered_is_unknown_unless_a_repeat_is_harmless(resend: bool, state: int) -> None:
    lost = error(retryable=True, maybe_delivered=True)
    failure = error(retryable=True, unknown=["a"], causes={"a": lost})
    verdict = judge(R(1, ("a",)), failure, NOW, resend=resend, backoff=Backoff())
    assert verdict.state == state


def test_a_driver_error_without_channels_applies_to_every_channel() -> None:
    down = error(status=None, retryable=True)
    verdict = judge(R(1, ("a", "b")), down, NOW, resend=False, backoff=Backoff())
    assert (verdict.state, verdict.channels_left) == (PENDING, None)
    lost = error(retryable=True, maybe_delivered=True)
    assert judge(R(1, ("a",)), lost, NOW, resend=False, backoff=Backoff()).state == UNKNOWN


def test_an_unknown_and_a_dead_channel_make_the_row_unknown() -> None:
    lost = error(retryable=True, maybe_delivered=True)
    refused = error(status=400)
    failure = error(unknown=["a"], failed=["b"], causes={"a": lost, "b": refused})
    verdict = judge(R(1, ("a", "b")), failure, NOW, resend=False, backoff=Backoff())
    assert verdict.state == UNKNOWN


def test_another_error_is_dead_and_its_message_withheld() -> None:
    verdict = judge(
        R(1, ("a",)), RuntimeError("token=s3cret"), NOW, resend=False, backoff=Backoff()
    )
    assert verdict.state == DEAD
    assert verdict.error is not None
    assert "s3cret" not in verdict.error and "RuntimeError" in verdict.error


def test_backoff_grows_to_its_cap_and_never_drops_to_nothing() -> None:
    backoff = Backoff(0.5, 4)
    rng = random.Random(7)
    for attempts, ceiling in [(1, 0.5), (2, 1), (3, 2), (4, 4), (9, 4), (500, 4)]:
        for _ in range(20):
            assert ceiling / 2 <= backoff.delay(attempts, rng) <= ceiling
    with pytest.raises(ValueError, match="base > 0"):
        Backoff(0, 1)


def test_idle_waits_double_to_a_bound_and_stop_at_a_held_partition() -> None:
    assert _policy.next_wait(0, [], NOW) == pytest.approx(0.01)
    assert _policy.next_wait(3, [], NOW) == pytest.approx(0.08)
    assert _policy.next_wait(50, [], NOW) == pytest.approx(1.0)
    assert _policy.next_wait(50, [NOW + 0.25, NOW + 3], NOW) == pytest.approx(0.25)
    assert _policy.next_wait(50, [NOW - 1], NOW) == 0.0


def test_a_row_found_sending_is_unknown_with_the_reason() -> None:
    found = _policy.maybe_sent(R(2, ("a",), state=SENDING), "an earlier relay's attempt")
    assert found.state == UNKNOWN and found.error is not None and "sending" in found.error


def test_woken_for_nothing_twice_the_relay_pauses_before_listening_again() -> None:
    assert _policy.pace(0, 0.01) == (0.0, 0.01)  # after work: a new row wakes it at once
    assert _policy.pace(1, 0.02) == (0.02, 0.0)
    pause, listen = _policy.pace(9, 1.0)
    assert (pause, listen) == (_policy.EMPTY_GAP, pytest.approx(1.0 - _policy.EMPTY_GAP))
