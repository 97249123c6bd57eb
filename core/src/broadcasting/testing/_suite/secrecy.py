"""Declared secrets stay secret: in reprs, logs, errors, and whatever a traceback's frames hold."""

from __future__ import annotations

import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest

from broadcasting import PublishError
from broadcasting.plugin import Driver, Message, Receipt, Secret
from broadcasting.testing._suite.leaks import SECRET_KEY, capture_logs, chain, holders, shown
from broadcasting.testing._suite.run import EVENT, MODES, Run, marker
from broadcasting.testing._tap import SendTap, replace

CRASH = "a bug in the driver (injected by the conformance kit)"


@contextmanager
def crashing_publish(driver: Driver) -> Iterator[None]:
    """Make an in-process driver's ``publish`` raise, as a bug in it would."""

    def publish(message: Message) -> Receipt:
        raise RuntimeError(CRASH)

    replace(driver, "publish", publish)
    try:
        yield
    finally:
        vars(driver).pop("publish", None)


class SecrecyTests:
    """No declared secret where a debugger, a log line or an error tracker would show it."""

    def test_secrets_never_shown(self, conformance: Run, driver_options: Mapping[str, Any]) -> None:
        """Declared secrets never appear in reprs, str(), attributes (private ones too),
        receipts or log lines, nor as text anywhere reachable from the Broadcaster."""
        run = conformance
        undeclared = [
            key
            for key, value in driver_options.items()
            if SECRET_KEY.search(str(key))
            # a Secret given in the options hides a value the kit must know as well
            for text in [value.reveal() if isinstance(value, Secret) else value]
            if isinstance(text, str) and text and text not in run.secrets
        ]
        assert not undeclared, (
            f"options {undeclared} look secret: list their values in `secrets` "
            "so the kit can check they never leak"
        )
        driver, broadcaster = run.driver, run.broadcaster
        texts = [repr(driver), str(driver), repr(broadcaster), str(broadcaster)]
        texts += [repr(run.broadcast), str(run.broadcast)]
        # private attributes too: debuggers and error trackers show them all
        texts += [
            f"{name}={shown(value)}" for name, value in getattr(driver, "__dict__", {}).items()
        ]
        channel = run.channel("secret")
        run.watch(channel)
        with capture_logs() as logs:
            receipt = run.publish("sync", channel, {"k": 1}, EVENT)
            broadcaster.close()
        texts += [repr(receipt), str(receipt), *logs.lines]
        run.assert_no_secrets(texts, "a repr, attribute, receipt or log line")
        secrets = [s for s in run.secrets if s]
        held = holders(broadcaster, [*secrets, *(s.encode() for s in secrets)], "broadcaster")
        assert not held, f"a declared secret is held as text at {held[:5]}"

    @pytest.mark.parametrize("mode", MODES)
    def test_a_driver_bug_keeps_its_traceback_and_no_secret(
        self, conformance: Run, mode: str
    ) -> None:
        """A bug where the driver sends reaches the caller with its traceback, pointing at
        the line that raised, and no frame of it holds a secret: for a send() driver as
        the cause of an unknown outcome (the request may have gone out), else as it is."""
        run = conformance
        channel = run.channel("crash")
        run.watch(channel)
        if run.sends:
            variant = run.tapped_variant()
            with SendTap(variant.driver, "crash") as tap, pytest.raises(PublishError) as info:
                run.publish(mode, channel, {"k": marker()}, EVENT, broadcaster=variant)
            assert tap.refused, "the kit's crash was never injected"
            error: BaseException = info.value
            assert info.value.unknown == (channel,), (
                f"a bug in send() leaves the outcome unknown: {info.value!r}"
            )
        else:
            with crashing_publish(run.driver), pytest.raises(RuntimeError) as crashed:
                run.publish(mode, channel, {"k": marker()}, EVENT)
            error = crashed.value
        bugs = [
            e for e in chain(error) if isinstance(e, RuntimeError) and "conformance kit" in str(e)
        ]
        assert bugs, f"the bug is not in the error's cause chain: {chain(error)}"
        stack = traceback.extract_tb(bugs[0].__traceback__)
        assert stack, "the bug reached the caller without its traceback"
        assert "raise" in (stack[-1].line or ""), (
            f"the bug's traceback ends at {stack[-1].filename}:{stack[-1].lineno} "
            f"({stack[-1].line!r}), not at the line that raised it"
        )
        run.assert_error_clean(error, "the error of a driver bug")
