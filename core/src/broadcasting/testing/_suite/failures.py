"""Failed publishes: one PublishError whose outcomes are true to what the service got."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import pytest

from broadcasting import Broadcaster, PublishError
from broadcasting.plugin import ERROR_KINDS, Health
from broadcasting.testing._silent import SilentServer
from broadcasting.testing._suite.leaks import capture_logs
from broadcasting.testing._suite.run import EVENT, MODES, Run, call, marker
from broadcasting.testing._tap import SendTap


@dataclass
class Failure:
    """What publishing with one of the ``failing_options`` gave."""

    error: PublishError
    broadcaster: Broadcaster[Any]
    tap: SendTap | None
    logs: list[str]
    #: what check() with the same options returned, or raised
    health: Health | Exception | None = None

    def stray(self) -> list[BaseException]:
        """What the driver's ``send()``/``asend()`` raised that is not a PublishError."""
        assert self.tap is not None, "a send() driver's publish is tapped"
        return [exc for exc in self.tap.raised if not isinstance(exc, PublishError)]


def fail(
    run: Run,
    where: str,
    options: Mapping[str, Any],
    mode: str,
    channels: Sequence[str],
    data: Any,
    *,
    check: bool = False,
) -> Failure:
    """Publish through a driver built from failing ``options``; what it raised.

    The driver is tapped (nothing injected) to see what each request raised; with
    ``check``, its health check runs next, on the same path.
    """
    target = list(channels) if len(channels) > 1 else channels[0]
    health: Health | Exception | None = None
    with run.other_broadcast(options) as other, capture_logs() as logs:
        broadcaster = other.driver(run.suite.driver_name)
        tap = SendTap(broadcaster.driver) if run.sends else None
        with tap or nullcontext():
            try:
                receipt = run.publish(mode, target, data, EVENT, broadcaster=broadcaster)
            except PublishError as exc:
                error = exc
            else:
                pytest.fail(
                    f"the publish with {where} returned {receipt!r}: the driver reported "
                    "success for a publish that configuration makes fail (did it read "
                    "the service's refusal as an acknowledgement?)"
                )
        if check:
            try:
                health = call(mode, broadcaster, "check")
            except Exception as exc:  # reported by the test, after the publish's own checks
                health = exc
    return Failure(error, broadcaster, tap, logs.lines, health)


def failing_cases(
    run: Run, options: Sequence[Mapping[str, Any]]
) -> list[tuple[str, Mapping[str, Any]]]:
    """``(name, options)`` of the ``failing_options``: given exactly for a send() driver."""
    if not run.sends:
        assert not options, "failing_options given, but the driver has no send()"
        return []
    assert options, (
        "a send() driver must give `failing_options`: configurations whose publishes fail"
    )
    return [(f"failing_options[{index}]", each) for index, each in enumerate(options)]


def check_kind(error: PublishError, where: str) -> None:
    assert error.kind in ERROR_KINDS, f"{where}: kind={error.kind!r} is not one of {ERROR_KINDS}"
    for channel, cause in error.causes.items():
        assert cause.kind in ERROR_KINDS, f"{where}: causes[{channel!r}].kind={cause.kind!r}"


class FailureTests:
    """Publishing with the ``failing_options``: the error, its outcomes, and the health check."""

    @pytest.mark.parametrize("mode", MODES)
    def test_publish_failures_are_publish_errors(
        self, conformance: Run, failing_options: Sequence[Mapping[str, Any]], mode: str
    ) -> None:
        """A publish the service does not acknowledge raises PublishError (``send()`` maps
        every failure itself; an SDK exception escaping it is a bug), nothing leaks, and
        check() with the same options reports a Health, ``auth_failed`` when the
        credentials were refused."""
        run = conformance
        if not run.sends:
            channel = run.channel("inproc")
            run.check_receipt(run.publish(mode, channel, {"k": 1}, EVENT), EVENT, [channel])
        for where, options in failing_cases(run, failing_options):
            channels = [run.channel("fail")]
            failure = fail(run, where, options, mode, channels, {"k": 1}, check=True)
            error = failure.error
            secrets = run.secrets_of(options)  # a wrong key in them is a secret too
            run.assert_error_clean(error, f"an error (or its cause) with {where}", secrets)
            run.assert_no_secrets(failure.logs, f"a log line with {where}", secrets)
            assert error.driver == run.suite.driver_name, error.driver
            assert isinstance(error.retryable, bool)
            assert error.status is None or isinstance(error.status, int)
            check_kind(error, where)
            raw = failure.stray()
            assert not raw, (
                f"with {where}, {type(failure.broadcaster.driver).__name__}.send()/asend() raised "
                f"{raw[0]!r} instead of a PublishError: map every failure of a request to "
                "PublishError(..., retryable=..., maybe_delivered=...) so the core can "
                "apply its retry rule"
            )
            health = failure.health
            assert isinstance(health, Health), (
                f"with {where}, check() gave {health!r}: a health check reports a Health "
                "(its request's failures mapped to a ServiceError, which Health.measure reads)"
            )
            run.assert_no_secrets(
                [health.detail, repr(health)], f"a health check's detail with {where}", secrets
            )
            if health.status != "not_supported" and error.kind in ("auth", "permission"):
                assert health.status == "auth_failed", (
                    f"{where}: the publish failed with kind={error.kind} (the credentials), "
                    f"but check() says {health.status!r}: both must read the service's "
                    "refusal the same way"
                )

    @pytest.mark.parametrize("mode", MODES)
    def test_failed_publish_has_three_outcomes(
        self, conformance: Run, failing_options: Sequence[Mapping[str, Any]], mode: str
    ) -> None:
        """A failed publish says, channel by channel, delivered / failed / unknown, and
        the receiving side agrees: a ``delivered`` channel got it once, a ``failed`` one
        never, an ``unknown`` one at most once (unless ``at_least_once``)."""
        run = conformance
        for where, options in failing_cases(run, failing_options):
            count = 2 if run.features.multiple_channels else 1
            channels = [run.channel(f"outcome{n}") for n in range(count)]
            data = {"marker": marker()}
            run.watch(*channels)
            failure = fail(run, where, options, mode, channels, data)
            _check_outcomes(run, failure, where, channels)
            if run.observer is None:
                continue
            resent = bool(options.get("at_least_once"))
            failing = failure.broadcaster.driver
            if failing.capabilities.deduplicates:
                who = (
                    f"{type(failing).__name__} declares deduplicates=True, so the core re-sent "
                    "it, but the service delivered the copies: the claim is false"
                )
            else:
                who = (
                    "the driver (or its SDK) re-sent it by itself; only the core may retry, "
                    "by its rules"
                )
            error = failure.error
            for channel in channels:
                copies = run.copies_before_sentinel(channel, data)
                if channel in error.delivered:
                    assert copies == 1, (
                        f"{where}: {channel!r} is reported delivered, yet the receiving side "
                        f"got the message {copies} times"
                    )
                elif channel in error.failed:
                    assert copies == 0, (
                        f"{where}: {channel!r} is reported failed (certainly not delivered), "
                        f"yet the receiving side got the message {copies} times"
                    )
                elif not resent:
                    assert copies <= 1, (
                        f"{where}: {channel!r} is unknown, and the receiving side got the "
                        f"message {copies} times: {who}"
                    )

    @pytest.mark.parametrize("mode", MODES)
    def test_an_answer_that_never_comes_is_unknown(
        self,
        conformance: Run,
        unanswered_options: Mapping[str, Any] | None,
        silent_server: SilentServer,
        mode: str,
    ) -> None:
        """A request to a server that reads it and never answers ends in the driver's own
        timeout: a PublishError, the channel ``unknown`` (the service may have it), the
        request made once (a retry could deliver it twice), and no exception of the transport
        escaping ``send()``/``asend()``."""
        run = conformance
        if not run.sends:
            assert unanswered_options is None, (
                "unanswered_options given, but the driver has no send()"
            )
            return
        assert unanswered_options is not None, (
            "a send() driver must give `unanswered_options`: its options with the requests going "
            "to `silent_server.host` and `.port` (plain TCP, or TLS with "
            "`silent_server_context`) and a request timeout of about a second. A driver that "
            "cannot be pointed at a host and port skips it: pytest.skip(reason) in the fixture"
        )
        where = "unanswered_options"
        channels = [run.channel("silent")]
        failure = _ended_within(
            UNANSWERED_LIMIT,
            lambda: fail(run, where, unanswered_options, mode, channels, {"k": 1}),
        )
        assert failure is not None, (
            f"publishing with {where} did not end within {UNANSWERED_LIMIT:.0f} s: the "
            "driver's request needs a timeout (the options should set it to about a second)"
        )
        error = failure.error
        raw = failure.stray()
        method = (
            f"{type(failure.broadcaster.driver).__name__}.{'asend' if mode == 'async' else 'send'}"
        )
        assert not raw, (
            f"{method}() "
            f"let {type(raw[0]).__module__}.{type(raw[0]).__qualname__} escape when no answer "
            "came: map a timeout to PublishError(..., retryable=True, maybe_delivered=True). "
            "(asyncio.TimeoutError, which aiohttp raises, is not the builtin TimeoutError on "
            "Python 3.10.)"
        )
        silent_server.wait_for_requests(1, timeout=5.0)  # its reading threads may lag
        assert silent_server.requests >= 1, (
            f"no request reached the silent server ({silent_server!r}): {where} must send the "
            "driver's requests to its host and port; the publish failed with "
            f"{error!r} instead"
        )
        assert error.unknown == tuple(channels) and error.maybe_delivered, (
            f"the request reached the service and no answer came, so the service may have "
            f"it: the channel must be unknown (maybe_delivered=True), not failed: {error!r}"
        )
        _check_outcomes(run, failure, where, channels)
        run.assert_error_clean(error, f"the error with {where}", run.secrets_of(unanswered_options))
        once = not (
            failure.broadcaster.driver.capabilities.deduplicates
            or unanswered_options.get("at_least_once")
        )
        if once:
            assert silent_server.requests == 1, (
                f"the request whose answer never came was sent {silent_server.requests} times: "
                "the service may have had each copy; only a service that de-duplicates (or "
                "at_least_once) allows a second"
            )


#: How long a publish to the silent server may take before the kit calls it stuck (seconds).
UNANSWERED_LIMIT = 60.0


def _ended_within(seconds: float, publish: Callable[[], Failure]) -> Failure | None:
    """``publish()``'s result, or None when it had not ended after ``seconds``."""
    ended: list[Failure] = []
    raised: list[BaseException] = []

    def run() -> None:
        try:
            ended.append(publish())
        except BaseException as exc:  # pytest.fail's Failed too: raised in the test's thread
            raised.append(exc)

    thread = threading.Thread(target=run, name="conformance-unanswered", daemon=True)
    thread.start()
    thread.join(seconds)
    if raised:
        raise raised[0]
    return ended[0] if ended else None


def _check_outcomes(run: Run, failure: Failure, where: str, channels: Sequence[str]) -> None:
    """The error's own claims agree with each other and with the requests the tap saw."""
    error = failure.error
    outcomes = {"delivered": error.delivered, "failed": error.failed, "unknown": error.unknown}
    for outcome, listed in outcomes.items():
        assert isinstance(listed, tuple), f"PublishError.{outcome} is not a tuple"
        assert len(set(listed)) == len(listed), f"{outcome} lists a channel twice: {listed}"
    together = [c for listed in outcomes.values() for c in listed]
    assert sorted(together) == sorted(channels), (
        f"{where}: delivered {error.delivered}, failed {error.failed} and unknown "
        f"{error.unknown} must partition the published channels {list(channels)} "
        "(each channel in exactly one of them)"
    )
    assert error.failed or error.unknown, (
        f"{where}: a PublishError whose channels were all delivered"
    )
    assert error.maybe_delivered == bool(error.unknown), (
        f"{where}: maybe_delivered={error.maybe_delivered} but unknown={error.unknown}"
    )
    assert set(error.causes) == set(error.failed) | set(error.unknown), (
        f"{where}: causes must name every channel that was not delivered, and only "
        f"those: {sorted(error.causes)}"
    )
    for channel, cause in error.causes.items():
        assert isinstance(cause, PublishError), f"causes[{channel!r}] is {cause!r}"
        assert cause.maybe_delivered == (channel in error.unknown), (
            f"{where}: {channel!r} is {'unknown' if channel in error.unknown else 'failed'}"
            f" but its cause says maybe_delivered={cause.maybe_delivered}"
        )
    assert isinstance(error.requests, int) and error.requests >= 1, (
        f"{where}: a send() driver's PublishError must count its requests "
        f"(requests={error.requests!r})"
    )
    tap = failure.tap
    if tap is not None:
        run.check_budget(tap, where)
        assert error.requests >= tap.requests, (
            f"{where}: the publish made {tap.requests} requests but reports "
            f"requests={error.requests}"
        )
        assert isinstance(error.__cause__, PublishError), (
            f"{where}: the first driver error must be the PublishError's __cause__"
        )
