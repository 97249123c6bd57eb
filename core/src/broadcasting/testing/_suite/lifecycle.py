"""Configuring, finding, checking, closing and reopening a driver."""

from __future__ import annotations

import asyncio
import gc
import os
import select
import signal
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from broadcasting import Broadcaster, BroadcastError, ConfigurationError, Receipt
from broadcasting.plugin import Driver, Health, installed_drivers
from broadcasting.testing._suite.declared import implemented
from broadcasting.testing._suite.run import EVENT, MODES, Run, call, marker


def after_close(run: Run, mode: str) -> None:
    """The next publish reconnects, or fails clearly if the driver declares it cannot."""
    channel = run.channel("reopen")
    data = {"marker": marker()}
    if run.features.reconnect_after_close:
        run.delivered(mode, channel, data)
        return
    run.watch(channel)
    with pytest.raises(BroadcastError):
        run.publish(mode, channel, data, EVENT)


def closes_twice(run: Run, close: Callable[[], object]) -> None:
    """After a publish, ``close()`` twice is fine; the next publish reconnects (or fails
    clearly)."""
    channel = run.channel("close")
    run.check_receipt(run.publish("sync", channel, {"k": 1}, EVENT), EVENT, [channel])
    close()
    close()
    after_close(run, "sync")


#: Seconds a forked child gets to publish and exit, on top of the suite's receive_timeout.
CHILD_TIMEOUT = 30.0


def in_forked_child(work: Callable[[], object], timeout: float) -> str | None:
    """Run ``work()`` in a child made by ``os.fork()`` that leaves at once with ``os._exit``
    (nothing of pytest runs in it): ``"ok"``, the error it raised, or None if it hung."""
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # forking a threaded process
        pid = os.fork()
    if pid == 0:  # the child: never returns
        said = "ok"
        try:
            work()
        except BaseException as exc:
            said = f"{type(exc).__name__}: {exc}"
        finally:
            try:
                os.write(write_fd, said.encode("utf-8", "replace")[:8000])
            finally:
                os._exit(0)
    os.close(write_fd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    hung = True
    try:
        while True:
            ready, _, _ = select.select([read_fd], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                break
            chunk = os.read(read_fd, 8192)
            if not chunk:
                hung = False
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        if hung:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return None if hung else b"".join(chunks).decode("utf-8", "replace")


class LifecycleTests:
    """From configuration to close, and back."""

    def test_configuration_errors_name_the_key(
        self,
        conformance: Run,
        driver_options: Mapping[str, Any],
        invalid_options: Sequence[tuple[Mapping[str, Any], str]],
    ) -> None:
        """Bad options raise ConfigurationError naming the key, never showing a value."""
        run = conformance
        name = run.suite.driver_name
        cases = list(invalid_options)
        unknown = {**driver_options, "no_such_option_xyz": "value-xyz"}
        if run.features.strict_options:
            cases.append((unknown, "no_such_option_xyz"))
        else:
            with run.other_broadcast(unknown) as other:
                other.driver(name)
        assert cases, "declare invalid_options, or keep Features(strict_options=True)"
        for options, key in cases:
            with run.other_broadcast(options) as other, pytest.raises(ConfigurationError) as info:
                other.driver(name)
            error = info.value
            assert error.driver == name, error.driver
            keys = [problem.key for problem in error.problems]  # several: combined, all at once
            assert key in keys, f"the error names {keys!r}, expected {key!r}"
            assert {problem.driver for problem in error.problems} == {name}, error.problems
            assert repr(key) in str(error), str(error)
            run.assert_error_clean(error, "a ConfigurationError", run.secrets_of(options))
            assert "value-xyz" not in str(error), "a ConfigurationError shows an option's value"

    def test_driver_is_found_by_name(
        self, conformance: Run, driver_options: Mapping[str, Any]
    ) -> None:
        """The driver is installed (or registered) under its name; connecting it leaves
        the configuration as it was."""
        run = conformance
        name = run.suite.driver_name
        names = [info.name for info in installed_drivers()]
        assert name in names, f"{name!r} not in {names}"
        assert isinstance(run.driver, Driver)
        assert type(run.driver).name == name
        assert run.broadcast.driver(name) is run.broadcaster, "broadcasters are cached"
        with run.other_broadcast(driver_options) as other:
            before = other.config.drivers
            assert other.driver(name).name == name
            assert other.config.drivers == before, "connecting the driver changed the config"

    @pytest.mark.parametrize("mode", MODES)
    def test_health_check(self, conformance: Run, mode: str) -> None:
        """check()/acheck() with the working options: ``ok`` for a driver that implements a
        check, ``not_supported`` for one that does not; never a secret in its detail."""
        run = conformance
        health = call(mode, run.broadcaster, "check")
        assert isinstance(health, Health), f"check() returned {health!r}"
        run.assert_no_secrets([health.detail, repr(health)], "a health check's detail")
        if implemented(type(run.driver), "check"):
            assert health.status == "ok", f"the service refused the working options: {health}"
            assert isinstance(health.latency_ms, float), health
        else:
            assert health.status == "not_supported", health

    def test_close_is_idempotent(self, conformance: Run) -> None:
        """close() twice is fine; the next publish reconnects (or fails clearly)."""
        closes_twice(conformance, conformance.broadcaster.close)

    def test_aclose_is_idempotent(self, conformance: Run) -> None:
        """aclose() twice is fine; the next async publish reconnects (or fails clearly)."""
        run = conformance
        channel = run.channel("aclose")

        async def main() -> Receipt:
            receipt = await run.broadcaster.achannel(channel, {"k": 1}, EVENT)
            await run.broadcaster.aclose()
            await run.broadcaster.aclose()
            return receipt

        run.check_receipt(asyncio.run(main()), EVENT, [channel])
        after_close(run, "async")

    def test_close_before_first_publish(self, conformance: Run) -> None:
        """A driver that never published closes cleanly, sync and async."""
        run = conformance
        run.broadcaster.close()
        asyncio.run(run.broadcaster.aclose())
        run.broadcaster.close()
        after_close(run, "sync")

    def test_broadcast_close_and_reuse(self, conformance: Run) -> None:
        """Broadcast.close() closes the driver it keeps; that driver reconnects (or refuses)."""
        run = conformance
        closes_twice(run, run.broadcast.close)
        same = run.broadcast.driver(run.suite.driver_name)
        assert same is run.broadcaster and same.driver is run.driver, (
            "after Broadcast.close() the Broadcast keeps its driver"
        )

    def test_close_releases_connections(
        self, conformance: Run, driver_options: Mapping[str, Any]
    ) -> None:
        """After ``Broadcast.close()`` the driver holds no open socket, file or client
        session: collecting a closed Broadcast that published, sync and async, emits no
        ResourceWarning (a driver that keeps connections closes them in ``close()``)."""
        run = conformance
        channel = run.channel("release")
        gc.collect()  # what earlier tests left behind is not this driver's
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            other = run.other_broadcast(driver_options)
            broadcaster = other.driver(run.suite.driver_name)
            for mode in MODES:
                receipt = run.publish(mode, channel, {"k": 1}, EVENT, broadcaster=broadcaster)
                run.check_receipt(receipt, EVENT, [channel])
            name = type(broadcaster.driver).__name__
            other.close()
            del other, broadcaster
            gc.collect()
        unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
        assert not unclosed, (
            f"{name} was closed, yet what it held was collected still open: "
            f"{unclosed[0][:200]!r}. Close every connection, pool and client session in "
            "close() (and aclose())"
        )

    def test_context_managers(self, conformance: Run, driver_options: Mapping[str, Any]) -> None:
        """``with Broadcast(...)`` and ``async with`` publish, then close the driver."""
        run = conformance
        channel = run.channel("ctx")
        with run.other_broadcast(driver_options) as other:
            run.check_receipt(other.driver().channel(channel, "sync", EVENT), EVENT, [channel])

        async def main() -> Receipt:
            async with run.other_broadcast(driver_options) as other:
                return await other.achannel(channel, "async", EVENT)

        run.check_receipt(asyncio.run(main()), EVENT, [channel])

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() exists on POSIX only")
    @pytest.mark.parametrize("mode", MODES)
    def test_a_forked_child_publishes_on_connections_of_its_own(
        self, conformance: Run, mode: str
    ) -> None:
        """A Broadcast that published before ``os.fork()`` (a pre-forking server's
        ``--preload``) publishes from the child, and the parent's next publish is still
        delivered once: a child that wrote on the parent's kept-alive connection would
        have broken it (a TLS session cannot be shared) or read the parent's answers."""
        run = conformance
        run.delivered("sync", run.channel("prefork"), {"marker": marker()})  # connected now
        channel = run.channel("forked")

        def publish_in_child() -> None:
            receipt = run.publish(mode, channel, {"marker": marker()}, EVENT)
            run.check_receipt(receipt, EVENT, [channel])

        said = in_forked_child(publish_in_child, CHILD_TIMEOUT + run.timeout)
        assert said is not None, (
            f"a forked child's publish did not return within {CHILD_TIMEOUT + run.timeout}s: "
            "a lock or a connection of the parent's is unusable in a child; reset them "
            "in the child (broadcasting.plugin.call_after_fork or in_forked_child)"
        )
        run.assert_no_secrets([said], "the error of a forked child's publish")
        assert said == "ok", f"a forked child's publish failed: {said}"
        try:
            run.delivered(mode, run.channel("postfork"), {"marker": marker()})
        except BroadcastError as exc:
            run.assert_error_clean(exc, "the error of a publish after a fork")
            pytest.fail(
                f"after a forked child published, the parent's next publish failed: {exc!r}. "
                "The child wrote on the parent's kept-alive connection: let go of inherited "
                "connections in the child, without writing on them "
                "(broadcasting.plugin.call_after_fork or in_forked_child)"
            )

    def test_with_options_variant_publishes(self, conformance: Run) -> None:
        """with_options() gives a cached, working broadcaster of the same driver class."""
        run = conformance
        variant = run.broadcaster.with_options()
        assert isinstance(variant, Broadcaster)
        assert type(variant.driver) is type(run.driver)
        assert run.broadcaster.with_options() is variant, "variants are cached"
        channel = run.channel("variant")
        run.check_receipt(variant.channel(channel, {"k": 1}, EVENT), EVENT, [channel])
