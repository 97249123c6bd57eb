"""The conformance kit must fail drivers that misbehave, each for the right reason.

A suite of deliberately broken in-process drivers is written to a temporary
directory and run with pytest in a subprocess (``-p no:asyncio``, so this also
proves the kit needs no pytest-asyncio). The report must show each broken
driver failing exactly the tests about its bug, and a correct driver passing
everything with nothing skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections import defaultdict

import pytest

SUITE = """
from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from broadcasting import (
    BroadcastError,
    ConfigurationError,
    Driver,
    InvalidChannel,
    Limits,
    Message,
    PublishError,
    Receipt,
    register_driver,
)
from broadcasting.testing import Delivery, DeliveryRecorder, DriverConformance, Features


class Good(Driver):
    name = "kit-good"

    def __init__(self) -> None:
        self.recorder = DeliveryRecorder()

    def deliver(self, message: Message) -> None:
        for channel in message.channels:
            self.recorder.record(Delivery(channel, message.event, message.text))

    def publish(self, message: Message) -> Receipt:
        self.deliver(message)
        return Receipt(self.name, message.event, message.channels, message.id)

    async def apublish(self, message: Message) -> Receipt:
        return self.publish(message)


class DropsEvent(Good):
    name = "kit-drops-event"

    def deliver(self, message: Message) -> None:
        for channel in message.channels:
            self.recorder.record(Delivery(channel, "base-event", message.text))


class MangledUnicode(Good):
    name = "kit-mangled-unicode"

    def deliver(self, message: Message) -> None:
        text = message.text.encode("ascii", "replace").decode("ascii")
        for channel in message.channels:
            self.recorder.record(Delivery(channel, message.event, text))


class FirstChannelOnly(Good):
    name = "kit-first-channel"

    def deliver(self, message: Message) -> None:
        self.recorder.record(Delivery(message.channels[0], message.event, message.text))


class Twice(Good):
    name = "kit-twice"

    def deliver(self, message: Message) -> None:
        super().deliver(message)
        super().deliver(message)


class LeaksSecret(Good):
    name = "kit-leaks-secret"

    def __init__(self, token: str = "") -> None:
        super().__init__()
        self.token = token  # a raw str attribute: shows in debuggers and tracebacks

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> LeaksSecret:
        return cls(str(options.get("token", "")))


class ErrorShowsValue(Good):
    name = "kit-error-shows-value"

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> ErrorShowsValue:
        token = options.get("token")
        if not isinstance(token, str) or len(token) < 8:
            raise ConfigurationError(cls.name, "token", f"{token!r} is too short")
        return cls()


class CloseTwiceFails(Good):
    name = "kit-close-twice"
    closed = False

    def close(self) -> None:
        if self.closed:
            raise RuntimeError("already closed")
        self.closed = True


class CountsCharacters(Good):
    name = "kit-counts-chars"
    limits = Limits(max_payload_bytes=200)

    def payload_size(self, message: Message) -> int:
        return len(message.text)


class SendsWhileMeasuring(Good):
    name = "kit-sends-early"
    limits = Limits(max_payload_bytes=200)

    def payload_size(self, message: Message) -> int:
        self.deliver(message)  # a request before validation has finished
        return message.size


class RunsItsOwnLoop(Good):
    name = "kit-own-loop"

    def publish(self, message: Message) -> Receipt:
        return asyncio.run(self.apublish(message))

    async def apublish(self, message: Message) -> Receipt:
        self.deliver(message)
        return Receipt(self.name, message.event, message.channels, message.id)


class WrongReceipt(Good):
    name = "kit-wrong-receipt"

    def publish(self, message: Message) -> Receipt:
        self.deliver(message)
        return Receipt(self.name, message.event, message.channels[:1], message.id)


class ClaimsSocketId(Good):
    name = "kit-claims-socket-id"
    supports_socket_id = True


# socket_id: the observer below is one connection with its own id; a correct
# driver skips it for publishes made with that id, and only for those

OBSERVER_SOCKET_ID = "4242.1717"


class IdentifiedRecorder(DeliveryRecorder):
    # the sync observer, offering the optional socket_id() capability

    def socket_id(self) -> str:
        return OBSERVER_SOCKET_ID


class AsyncIdentifiedObserver:
    # the async flavour: every method, socket_id() included, is a coroutine

    def __init__(self, recorder: DeliveryRecorder) -> None:
        self.recorder = recorder

    async def watch(self, channels):
        self.recorder.watch(channels)

    async def deliveries(self, channel, count, timeout):
        return await asyncio.to_thread(self.recorder.deliveries, channel, count, timeout)

    async def socket_id(self) -> str:
        await asyncio.sleep(0)
        return OBSERVER_SOCKET_ID


class ExcludesSender(Good):
    name = "kit-excludes-sender"
    supports_socket_id = True

    def __init__(self) -> None:
        self.recorder = IdentifiedRecorder()

    def deliver(self, message: Message) -> None:
        if message.socket_id != OBSERVER_SOCKET_ID:
            super().deliver(message)


class IgnoresSocketId(ExcludesSender):
    # accepts socket_id, then delivers to the sender's connection anyway
    name = "kit-ignores-socket-id"

    def deliver(self, message: Message) -> None:
        Good.deliver(self, message)


class ExcludesEveryone(ExcludesSender):
    # treats any socket_id as "deliver to nobody"
    name = "kit-excludes-everyone"

    def deliver(self, message: Message) -> None:
        if message.socket_id is None:
            Good.deliver(self, message)


# -- correct drivers that switch features off: the kit must pass them, skipping nothing


class SyncOnly(Good):
    name = "kit-sync-only"

    async def apublish(self, message: Message) -> Receipt:
        raise BroadcastError("kit-sync-only has no async path")


class SingleChannel(Good):
    name = "kit-single-channel"

    def validate(self, message: Message) -> None:
        if len(message.channels) > 1:
            raise InvalidChannel("kit-single-channel: one channel per publish")


class NoReconnect(Good):
    name = "kit-no-reconnect"
    closed = False

    def close(self) -> None:
        self.closed = True

    def publish(self, message: Message) -> Receipt:
        if self.closed:
            raise BroadcastError("kit-no-reconnect: closed")
        return super().publish(message)


class Networked(Good):
    # pretends to make one request per publish; fails when configured to

    name = "kit-networked"

    def __init__(self, fail: str = "") -> None:
        super().__init__()
        self.fail = fail

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> Networked:
        unknown = set(options) - {"fail"}
        if unknown:
            raise ConfigurationError(cls.name, sorted(unknown)[0], "unknown option")
        return cls(str(options.get("fail", "")))

    def publish(self, message: Message) -> Receipt:
        if self.fail:
            self.raise_failure()
        self.deliver(message)
        return Receipt(self.name, message.event, message.channels, message.id, (), 1)

    def raise_failure(self) -> None:
        raise PublishError("service unavailable", driver=self.name, status=503, retryable=True)


class NetworkedRawError(Networked):
    name = "kit-networked-raw-error"

    def raise_failure(self) -> None:
        raise ConnectionError("the SDK's own exception escaped")


DRIVERS = [Good, SyncOnly, SingleChannel, NoReconnect, Networked, NetworkedRawError,
           DropsEvent, MangledUnicode, FirstChannelOnly, Twice, LeaksSecret,
           ErrorShowsValue, CloseTwiceFails, CountsCharacters, SendsWhileMeasuring,
           RunsItsOwnLoop, WrongReceipt, ClaimsSocketId, ExcludesSender, IgnoresSocketId,
           ExcludesEveryone]
for cls in DRIVERS:
    register_driver(cls.name, cls)


class Base(DriverConformance):
    features = Features(network=False)
    receive_timeout = 0.5  # in-process deliveries are immediate; keep failures quick

    @pytest.fixture
    def observer(self, driver: Driver) -> DeliveryRecorder:
        assert isinstance(driver, Good)
        return driver.recorder


class TestGood(Base):
    driver_name = "kit-good"

class TestSyncOnly(Base):
    driver_name = "kit-sync-only"
    features = Features(network=False, async_publish=False)


class TestSingleChannel(Base):
    driver_name = "kit-single-channel"
    features = Features(network=False, multiple_channels=False)


class TestNoReconnect(Base):
    driver_name = "kit-no-reconnect"
    features = Features(network=False, reconnect_after_close=False)


class TestNetworked(Base):
    driver_name = "kit-networked"
    features = Features()

    @pytest.fixture
    def failing_options(self) -> list[dict[str, str]]:
        return [{"fail": "yes"}]


class TestNetworkedRawError(TestNetworked):
    driver_name = "kit-networked-raw-error"


class TestDropsEvent(Base):
    driver_name = "kit-drops-event"

class TestMangledUnicode(Base):
    driver_name = "kit-mangled-unicode"

class TestFirstChannelOnly(Base):
    driver_name = "kit-first-channel"

class TestTwice(Base):
    driver_name = "kit-twice"

class TestLeaksSecret(Base):
    driver_name = "kit-leaks-secret"
    features = Features(network=False, strict_options=False)
    secrets = ("tok-5ecret-value",)

    @pytest.fixture
    def driver_options(self) -> dict[str, str]:
        return {"token": "tok-5ecret-value"}

class TestErrorShowsValue(Base):
    driver_name = "kit-error-shows-value"
    features = Features(network=False, strict_options=False)
    secrets = ("short",)

    @pytest.fixture
    def driver_options(self) -> dict[str, str]:
        return {"token": "long-enough-token"}

    @pytest.fixture
    def invalid_options(self) -> list[tuple[dict[str, str], str]]:
        return [({"token": "short"}, "token")]

class TestCloseTwiceFails(Base):
    driver_name = "kit-close-twice"

class TestCountsCharacters(Base):
    driver_name = "kit-counts-chars"

class TestSendsWhileMeasuring(Base):
    driver_name = "kit-sends-early"

class TestRunsItsOwnLoop(Base):
    driver_name = "kit-own-loop"

class TestWrongReceipt(Base):
    driver_name = "kit-wrong-receipt"

class TestClaimsSocketId(Base):
    driver_name = "kit-claims-socket-id"

class TestExcludesSender(Base):
    driver_name = "kit-excludes-sender"
    features = Features(network=False, socket_id=True)

class TestExcludesSenderAsyncObserver(TestExcludesSender):
    @pytest.fixture
    def observer(self, driver: Driver) -> AsyncIdentifiedObserver:
        assert isinstance(driver, Good)
        return AsyncIdentifiedObserver(driver.recorder)

class TestExcludesSenderUnidentifiedObserver(TestExcludesSender):
    # no socket_id() on the observer: the kit falls back to the pass-through check
    @pytest.fixture
    def observer(self, driver: Driver) -> DeliveryRecorder:
        assert isinstance(driver, Good)
        plain = DeliveryRecorder()
        driver.recorder = plain
        return plain

class TestIgnoresSocketId(TestExcludesSender):
    driver_name = "kit-ignores-socket-id"

class TestIgnoresSocketIdAsyncObserver(TestExcludesSenderAsyncObserver):
    driver_name = "kit-ignores-socket-id"

class TestIgnoresSocketIdUnidentifiedObserver(TestExcludesSenderUnidentifiedObserver):
    # the bug cannot be seen without the observer's own id: the kit passes it,
    # which is why an observer that is one connection should offer socket_id()
    driver_name = "kit-ignores-socket-id"

class TestExcludesEveryone(TestExcludesSender):
    driver_name = "kit-excludes-everyone"

class TestExcludesEveryoneUnidentifiedObserver(TestExcludesSenderUnidentifiedObserver):
    driver_name = "kit-excludes-everyone"
"""

# class -> tests (function names, parameters stripped) that MUST fail
# correct drivers, some with features switched off: nothing may fail or be skipped
CORRECT = [
    "TestGood",
    "TestSyncOnly",
    "TestSingleChannel",
    "TestNoReconnect",
    "TestNetworked",
    "TestExcludesSender",
    "TestExcludesSenderAsyncObserver",
    "TestExcludesSenderUnidentifiedObserver",
]

EXPECTED_FAILURES = {
    "TestNetworkedRawError": {"test_publish_failures_are_publish_errors"},
    "TestDropsEvent": {"test_custom_event_name", "test_str_payload_arrives_intact"},
    "TestMangledUnicode": {"test_unicode_payload_arrives_intact"},
    "TestFirstChannelOnly": {"test_multiple_channels", "test_large_channel_lists_are_delivered"},
    "TestTwice": {"test_str_payload_arrives_intact", "test_duplicate_channels_are_delivered_once"},
    "TestLeaksSecret": {"test_secrets_never_shown"},
    "TestErrorShowsValue": {"test_configuration_errors_name_the_key"},
    "TestCloseTwiceFails": {"test_close_is_idempotent", "test_close_before_first_publish"},
    "TestCountsCharacters": {"test_payload_limit_counts_bytes_not_characters"},
    "TestSendsWhileMeasuring": {"test_payload_limit"},
    "TestRunsItsOwnLoop": {"test_sync_publish_inside_a_running_event_loop"},
    "TestWrongReceipt": {"test_multiple_channels"},
    "TestClaimsSocketId": {"test_socket_id"},
    "TestIgnoresSocketId": {"test_socket_id"},
    "TestIgnoresSocketIdAsyncObserver": {"test_socket_id"},
    "TestExcludesEveryone": {"test_socket_id"},
}

# broken drivers whose bug is found by these test cases and by nothing else
EXACT_FAILURES = {
    "TestIgnoresSocketId": {"test_socket_id[sync]", "test_socket_id[async]"},
    "TestIgnoresSocketIdAsyncObserver": {"test_socket_id[sync]", "test_socket_id[async]"},
    "TestExcludesEveryone": {"test_socket_id[sync]", "test_socket_id[async]"},
}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, set[str]]]:
    """Run the broken-driver suite once; outcome -> class -> test names.

    Outcomes are ``passed``, ``failed`` and ``skipped`` (function names,
    parameters stripped); ``failed-cases`` has the full names of failed cases
    (``test_socket_id[sync]``) and ``failed-messages`` their failure messages.
    """
    root = tmp_path_factory.mktemp("kit")
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "test_broken_drivers.py").write_text(textwrap.dedent(SUITE))
    xml = root / "report.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:asyncio",
            "-p",
            "no:cacheprovider",
            "-q",
            f"--junitxml={xml}",
            "-c",
            str(root / "pytest.ini"),
            "--rootdir",
            str(root),
            str(root / "test_broken_drivers.py"),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert xml.exists(), result.stdout + result.stderr
    outcomes: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for case in ET.parse(xml).getroot().iter("testcase"):
        cls = case.get("classname", "").rsplit(".", 1)[-1]
        full = case.get("name", "")
        name = full.split("[", 1)[0]
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            outcome = "failed"
            outcomes["failed-cases"][cls].add(full)
            for child in case:
                outcomes["failed-messages"][cls].add(child.get("message", ""))
        elif "skipped" in kinds:
            outcome = "skipped"
        else:
            outcome = "passed"
        outcomes[outcome][cls].add(name)
    return outcomes


@pytest.mark.parametrize("cls", CORRECT)
def test_a_correct_driver_passes_everything_and_skips_nothing(
    report: dict[str, dict[str, set[str]]], cls: str
) -> None:
    assert not report["failed"][cls], sorted(report["failed"][cls])
    assert not report["skipped"][cls], sorted(report["skipped"][cls])
    assert len(report["passed"][cls]) >= 30


@pytest.mark.parametrize("cls", sorted(EXPECTED_FAILURES))
def test_a_broken_driver_fails_the_tests_about_its_bug(
    report: dict[str, dict[str, set[str]]], cls: str
) -> None:
    failed = report["failed"][cls]
    missing = EXPECTED_FAILURES[cls] - failed
    assert not missing, f"{cls}: the kit let {sorted(missing)} pass (failed: {sorted(failed)})"
    # the bug is pinned down, not everything falls over
    assert report["passed"][cls], f"{cls}: nothing passed at all"


@pytest.mark.parametrize("cls", sorted(EXACT_FAILURES))
def test_a_socket_id_bug_fails_exactly_test_socket_id_for_the_right_reason(
    report: dict[str, dict[str, set[str]]], cls: str
) -> None:
    """Both modes of test_socket_id fail, nothing else does, and the message says why."""
    assert report["failed-cases"][cls] == EXACT_FAILURES[cls], sorted(report["failed-cases"][cls])
    assert len(report["passed"][cls]) >= 30
    messages = " ".join(report["failed-messages"][cls])
    if "IgnoresSocketId" in cls:
        # the observer's own connection got the message it sent
        assert "the sender's connection must be excluded" in messages, messages
    else:
        # any socket_id dropped the message for everybody, the observer included
        assert "expected 1 delivery of the message" in messages, messages


def test_an_observer_without_socket_id_keeps_the_pass_through_check(
    report: dict[str, dict[str, set[str]]],
) -> None:
    """Without the observer's socket_id() the kit checks only the pass-through.

    The same drivers, observed by a plain DeliveryRecorder: the correct one and
    the one that ignores socket_id both pass test_socket_id (the exclusion is
    invisible to an observer with no connection of its own), while the one
    that drops messages carrying any socket_id still fails it.
    """
    for cls in (
        "TestExcludesSenderUnidentifiedObserver",
        "TestIgnoresSocketIdUnidentifiedObserver",
    ):
        assert not report["failed"][cls], (cls, sorted(report["failed"][cls]))
        assert not report["skipped"][cls], (cls, sorted(report["skipped"][cls]))
        assert "test_socket_id" in report["passed"][cls], cls
    assert report["failed-cases"]["TestExcludesEveryoneUnidentifiedObserver"] == {
        "test_socket_id[sync]",
        "test_socket_id[async]",
    }
