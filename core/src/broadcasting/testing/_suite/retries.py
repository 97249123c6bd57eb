"""Lost answers and refused requests, injected at the driver boundary: the core's retries."""

from __future__ import annotations

from typing import Any

import pytest

from broadcasting import ConfigurationError, PublishError, Receipt
from broadcasting.testing._suite.run import EVENT, MODES, Run, marker
from broadcasting.testing._tap import SendTap


def tapped_publish(
    run: Run, mode: str, fault: str, **delivery: Any
) -> tuple[Receipt | PublishError, SendTap, str, dict[str, str]]:
    """Publish once through a tapped variant whose first request meets ``fault``: the
    receipt or PublishError, the tap, the channel and the data."""
    variant = run.tapped_variant(**delivery)
    channel = run.channel(fault)
    data = {"marker": marker()}
    run.watch(channel)
    with SendTap(variant.driver, fault) as tap:
        try:
            outcome: Receipt | PublishError = run.publish(
                mode, channel, data, EVENT, broadcaster=variant
            )
        except PublishError as exc:
            outcome = exc
    assert not tap.raised, (
        f"the driver's own send()/asend() failed ({tap.raised[0]!r}), so the kit could not "
        "check what happens after an injected failure"
    )
    message = run.last_message()
    ids = {part.message.id for batch in tap.sent + tap.refused for part in batch.parts}
    assert ids == {message.id}, (
        f"every request of one publish must carry its Message.id {message.id!r}: {ids}"
    )
    if isinstance(outcome, Receipt):
        run.check_receipt(outcome, EVENT, [channel], message)
    return outcome, tap, channel, data


def in_process(run: Run, option: str, value: object) -> bool:
    """Whether the driver delivers in process; if so, check that ``option`` (a delivery
    option, which does not apply) is a ConfigurationError naming it."""
    if run.sends:
        return False
    with pytest.raises(ConfigurationError) as info:
        run.broadcaster.with_options(**{option: value})
    assert info.value.key == option, info.value
    return True


def check_counted(outcome: Receipt | PublishError, tap: SendTap) -> None:
    """The publish counts at least every request the tap saw, within each batch's budget."""
    Run.check_budget(tap, "after the injected failure")
    assert outcome.requests >= tap.requests, (
        f"the publish made {tap.requests} requests but reports requests="
        f"{outcome.requests}: a driver whose transport re-sends a request sets "
        "batch.requests (and leaves retries to the core)"
    )


class RetryTests:
    """What the core does when a request's answer is lost, or the request is refused."""

    @pytest.mark.parametrize("mode", MODES)
    def test_lost_answer_is_unknown_unless_the_service_deduplicates(
        self, conformance: Run, mode: str
    ) -> None:
        """An answer lost after the service got the request never becomes a duplicate:
        the channel is ``unknown`` and the request made once, or, with ``deduplicates``,
        it is re-sent (same id) and the service drops the copy (a ``dedup_window`` is
        declared with ``deduplicates`` only). An in-process driver refuses ``retries``,
        an option that does not apply."""
        run = conformance
        if in_process(run, "retries", 2):
            return
        name = type(run.driver).__name__
        capabilities = run.driver.capabilities
        assert capabilities.dedup_window is None or capabilities.deduplicates, (
            f"{name} declares dedup_window={capabilities.dedup_window} but not "
            "deduplicates=True: the core ignores the window and never re-sends what may "
            "have arrived; declare both, or neither"
        )
        outcome, tap, channel, data = tapped_publish(run, mode, "lose")
        assert tap.lost is not None, "the kit's lost answer was never injected"
        if run.driver.capabilities.deduplicates:
            assert isinstance(outcome, Receipt), (
                f"{name} declares deduplicates=True, so a lost answer is re-sent with the same "
                f"id and must end in a Receipt; got {outcome!r}"
            )
            assert len(tap.sent) == 2, (
                f"the lost request and one retry should have reached the service, "
                f"{len(tap.sent)} did"
            )
            why = (
                f"{name} declares deduplicates=True, but its service delivered the re-sent "
                "message id again: the claim is false"
            )
        else:
            assert isinstance(outcome, PublishError), (
                f"{name}'s service does not de-duplicate, so a lost answer must raise a "
                f"PublishError (the message may or may not be there); got {outcome!r}"
            )
            assert outcome.unknown == (channel,), (
                f"a lost answer leaves the channel unknown: delivered={outcome.delivered}, "
                f"failed={outcome.failed}, unknown={outcome.unknown}"
            )
            assert outcome.maybe_delivered
            assert len(tap.sent) == 1, (
                f"the request reached the service {len(tap.sent)} times: without "
                "de-duplication nothing may re-send a request whose answer was lost"
            )
            why = "something re-sent it behind the core's back"
        check_counted(outcome, tap)
        if run.observer is not None:
            copies = run.copies_before_sentinel(channel, data)
            assert copies > 0, (
                f"the request whose answer was lost never reached the receiving side of "
                f"{channel!r} (the kit let it run before losing its answer)"
            )
            assert copies == 1, (
                f"after one lost answer the receiving side got the message {copies} times "
                f"on {channel!r}: {why}"
            )

    @pytest.mark.parametrize("mode", MODES)
    def test_lost_answer_is_resent_with_at_least_once(self, conformance: Run, mode: str) -> None:
        """With ``at_least_once: True`` the core re-sends a lost answer, same id, once: a
        Receipt after two requests, delivered once with ``deduplicates``, else at most
        twice. An in-process driver refuses ``at_least_once``."""
        run = conformance
        if in_process(run, "at_least_once", True):
            return
        outcome, tap, channel, data = tapped_publish(run, mode, "lose", at_least_once=True)
        assert isinstance(outcome, Receipt), (
            f"with at_least_once the core re-sends a lost answer; got {outcome!r}"
        )
        assert len(tap.sent) == 2, (
            f"the lost request and one retry should have reached the service, {len(tap.sent)} did"
        )
        check_counted(outcome, tap)
        if run.observer is not None:
            copies = run.copies_before_sentinel(channel, data)
            most = 1 if run.driver.capabilities.deduplicates else 2
            expected = "once (it declares deduplicates=True)" if most == 1 else "once or twice"
            assert 1 <= copies <= most, (
                f"two requests carried the message and the receiving side got it {copies} "
                f"times on {channel!r}, expected {expected}"
            )

    @pytest.mark.parametrize("mode", MODES)
    def test_refused_request_is_retried(self, conformance: Run, mode: str) -> None:
        """A request refused before it was sent (certainly not delivered) is retried and
        delivered once. An in-process driver refuses ``retry_backoff``."""
        run = conformance
        if in_process(run, "retry_backoff", 0.01):
            return
        outcome, tap, channel, data = tapped_publish(run, mode, "refuse")
        assert len(tap.refused) == 1, "the kit's refused request was never injected"
        assert isinstance(outcome, Receipt), (
            f"a refused request (certainly not delivered) is retried; got {outcome!r}"
        )
        assert len(tap.sent) == 1, (
            f"one request should have reached the service after the refused one, "
            f"{len(tap.sent)} did"
        )
        check_counted(outcome, tap)
        if run.observer is not None:
            copies = run.copies_before_sentinel(channel, data)
            assert copies == 1, (
                f"the retried request was delivered {copies} times on {channel!r}, not once"
            )
