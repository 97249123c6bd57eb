"""The conformance kit must fail drivers that misbehave, each for the right reason.

A suite of deliberately broken drivers is written to a temporary directory and
run with pytest in a subprocess (``-p no:asyncio``, so this also proves the kit
needs no pytest-asyncio). The report must show each broken driver failing the
tests about its bug, and a correct driver passing everything with nothing
skipped. Most are in-process drivers (``publish`` overridden); the network
ones are ``send()`` drivers of the in-process service in ``toy_service.py``
(copied next to the suite), broken in the ways that matter to delivery:
claiming a de-duplication the service does not do, re-sending behind the
core's back, taking a refusal for an acknowledgement, letting an SDK exception
escape, and returning what ``send()`` must not return. Others break what they
declare (a Feature whose methods lie, methods of a feature left undeclared, a
TLS option they refuse) or hold a revealed key in a traceback's frame.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kit_report import Report, assert_fails_exactly, run_suite

SUITE = """
from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from broadcasting import (
    BroadcastError,
    ChannelInfo,
    ConfigurationError,
    InvalidChannelError,
    PublishError,
    QueryError,
    Receipt,
    WebhookEvent,
)
from broadcasting.plugin import (
    SUBSCRIBED,
    Answer,
    Capabilities,
    Driver,
    Feature,
    Health,
    Heard,
    Limits,
    Message,
    Secret,
    register_driver,
)
from broadcasting.testing import Delivery, DeliveryRecorder, DriverConformance, Features
from toy_service import (
    AsyncToyDriver,
    TokenToyDriver,
    ToyConformance,
    ToyDriver,
    ToyService,
    failing,
)


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
        token = options.get("token")  # the core hands it over as a Secret...
        return cls(token.reveal() if isinstance(token, Secret) else "")  # ...kept revealed


class ErrorShowsValue(Good):
    name = "kit-error-shows-value"

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> ErrorShowsValue:
        token = options.get("token")
        value = token.reveal() if isinstance(token, Secret) else token
        if not isinstance(value, str) or len(value) < 8:
            raise ConfigurationError(cls.name, "token", f"{value!r} is too short")
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
        return asyncio.run(self.publish_async(message))

    async def publish_async(self, message: Message) -> Receipt:
        self.deliver(message)
        return Receipt(self.name, message.event, message.channels, message.id)


class WrongReceipt(Good):
    name = "kit-wrong-receipt"

    def publish(self, message: Message) -> Receipt:
        self.deliver(message)
        return Receipt(self.name, message.event, message.channels[:1], message.id)


# -- drivers whose declarations do not hold


class SignsUndeclared(Good):
    # signs subscriptions but does not declare Feature.AUTHORIZE: the core never asks it
    name = "kit-signs-undeclared"

    def sign_channel(self, request):
        return {"auth": "signed"}


class StateWrongType(Good):
    # declares Feature.STATE, and answers a channel's state as a dict
    name = "kit-state-wrong-type"
    features = frozenset({Feature.STATE})

    def occupied_channels(self, prefix=None):
        return []

    def channel_info(self, channel):
        return {"name": channel, "occupied": False}

    def members(self, channel):
        return []


class HearsNothing(Good):
    # declares Feature.LISTEN; confirms the subscription, then never hears a publish
    name = "kit-hears-nothing"
    features = frozenset({Feature.LISTEN})

    async def listen_channels(self, channels):
        for channel in channels:
            yield Heard(channel, SUBSCRIBED, "", 0.0)
        await asyncio.Event().wait()


class TrustsAnyWebhook(Good):
    # declares Feature.WEBHOOKS and verifies nothing
    name = "kit-trusts-any-webhook"
    features = frozenset({Feature.WEBHOOKS})

    def verify_webhook(self, headers, body):
        return [WebhookEvent("channel_occupied", "orders", 1, "e1", driver=self.name)]


class RefusesItsSslOption(Good):
    # declares a TLS option that from_config does not accept
    name = "kit-refuses-its-ssl-option"
    ssl_option = "tls"

    @classmethod
    def from_config(cls, options):
        for key in options:
            raise ConfigurationError(cls.name, key, "unknown option")
        return cls()


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
    features = frozenset({Feature.EXCLUDE_SENDER})

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


class SingleChannel(Good):
    name = "kit-single-channel"

    def validate(self, message: Message) -> None:
        if len(message.channels) > 1:
            raise InvalidChannelError("kit-single-channel: one channel per publish")


class NoReconnect(Good):
    name = "kit-no-reconnect"
    closed = False

    def close(self) -> None:
        self.closed = True

    def publish(self, message: Message) -> Receipt:
        if self.closed:
            raise BroadcastError("kit-no-reconnect: closed")
        return super().publish(message)


# -- network drivers: send() to the in-process toy service (toy_service.py, copied
# next to this file); the kit taps send()/asend() and checks the service's side


class Networked(ToyDriver):
    # correct: one request per send(), failures mapped, no retries of its own
    name = "kit-networked"
    service = ToyService()


class NetworkedDedup(AsyncToyDriver):
    # correct: asend, micro-batching, and a service that really drops re-sent ids
    name = "kit-networked-dedup"
    service = ToyService(deduplicates=True)


class NetworkedRawError(Networked):
    # lets its SDK's exception escape send(): the core files it as unknown, the kit flags it
    name = "kit-networked-raw-error"

    def request(self, parts):
        if self.fault:
            raise ConnectionError("the SDK's own exception escaped")
        return super().request(parts)


class ReadTimeout(Exception):
    # a transport's own timeout class, not the builtin TimeoutError (httpx has one; aiohttp's
    # is asyncio.TimeoutError, which is not the builtin on Python 3.10)
    pass


class TimeoutEscapes(Networked):
    # maps the builtin TimeoutError (what the in-process service raises), but its real
    # transport times out with a class of its own, which escapes send()
    name = "kit-timeout-escapes"

    def request(self, parts):
        try:
            return super().request(parts)
        except TimeoutError as exc:
            if self.address is None:
                raise
            raise ReadTimeout("read timed out") from exc


class ClaimsDedup(Networked):
    # declares that its service drops a re-sent message id; the service keeps every copy
    name = "kit-claims-dedup"
    capabilities = Capabilities(channels_per_request=5, deduplicates=True)


class RetriesInternally(Networked):
    # its transport re-sends after a timeout, as an SDK with retries of its own does
    name = "kit-retries-internally"

    def request(self, parts):
        for attempt in range(3):
            try:
                return super().request(parts)
            except TimeoutError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


class IgnoresBudget(Networked):
    # its transport re-sends after a timeout, counting each request, but past batch.budget
    name = "kit-ignores-budget"

    def send(self, batch):
        for attempt in range(5):
            batch.requests = attempt + 1
            try:
                return self.exchange(batch)
            except PublishError:
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")


class AsendRetriesSend(Networked):
    # its async path runs send() in a thread and retries it itself on a retryable error
    name = "kit-asend-retries-send"

    async def asend(self, batch):
        for attempt in range(3):
            try:
                return await asyncio.to_thread(self.send, batch)
            except PublishError as exc:
                if not exc.retryable or attempt == 2:
                    raise
        raise AssertionError("unreachable")


class SucceedsWhenRefused(Networked):
    # reads only 5xx as failure: a 401 from the service becomes "acknowledged"
    name = "kit-succeeds-when-refused"

    def answer(self, status):
        if status < 500:
            return None
        return super().answer(status)


class MalformedResult(Networked):
    # returns the service's raw answer instead of None / Answer / one per part
    name = "kit-malformed-result"

    def answer(self, status):
        super().answer(status)
        return {"status": status}


class NonStrIds(Networked):
    # returns the status code as the message's id: ids must be str
    name = "kit-non-str-ids"

    def answer(self, status):
        super().answer(status)
        return Answer(ids=(status,))


class ChecksWithTheWrongKind(Networked):
    # its health check files the service's 401 as kind "other": an "error", not "auth_failed"
    name = "kit-checks-wrong-kind"

    def check(self):
        def probe():
            status = self.request(()) if self.fault != "refuse" else 0
            if status not in (0, 200):
                raise QueryError("refused", driver=self.name, status=status, kind="other")
            return "ok"

        return Health.measure(probe)


class QueryLetsErrorsEscape(Networked):
    # declares Feature.STATE; a query that fails lets the transport's exception escape
    name = "kit-query-lets-errors-escape"
    features = frozenset({Feature.STATE})

    def _ask(self):
        if self.fault == "refuse":
            raise ConnectionRefusedError("nothing listens")

    def occupied_channels(self, prefix=None):
        self._ask()
        return []

    def channel_info(self, channel):
        self._ask()
        return ChannelInfo(channel, False)

    def members(self, channel):
        self._ask()
        return []


class _Request:
    # a transport's request object: its repr hides the headers, its slots hold them
    __slots__ = ("headers",)

    def __init__(self, headers):
        self.headers = headers

    def __repr__(self):
        return "<Request>"


class KeyInFrame(TokenToyDriver, Networked):
    # builds each request with its key revealed: the frame of a failed request holds it
    name = "kit-key-in-frame"

    def request(self, parts):
        request = _Request({"Authorization": "Bearer " + self.token.reveal()})
        return super().request(parts)


DRIVERS = [Good, SingleChannel, NoReconnect, Networked, NetworkedDedup,
           NetworkedRawError, TimeoutEscapes, ClaimsDedup, RetriesInternally, IgnoresBudget,
           AsendRetriesSend,
           SucceedsWhenRefused, MalformedResult, NonStrIds, ChecksWithTheWrongKind,
           QueryLetsErrorsEscape, KeyInFrame,
           DropsEvent, MangledUnicode, FirstChannelOnly, Twice, LeaksSecret,
           ErrorShowsValue, CloseTwiceFails, CountsCharacters, SendsWhileMeasuring,
           RunsItsOwnLoop, WrongReceipt, SignsUndeclared, StateWrongType, HearsNothing,
           TrustsAnyWebhook, RefusesItsSslOption, ExcludesSender, IgnoresSocketId,
           ExcludesEveryone]
for cls in DRIVERS:
    register_driver(cls.name, cls)


class Base(DriverConformance):
    receive_timeout = 0.5  # in-process deliveries are immediate; keep failures quick

    @pytest.fixture
    def observer(self, driver: Driver) -> DeliveryRecorder:
        assert isinstance(driver, Good)
        return driver.recorder


class TestGood(Base):
    driver_name = "kit-good"

class TestSingleChannel(Base):
    driver_name = "kit-single-channel"
    features = Features(multiple_channels=False)


class TestNoReconnect(Base):
    driver_name = "kit-no-reconnect"
    features = Features(reconnect_after_close=False)


NetworkedBase = ToyConformance


class TestNetworked(NetworkedBase):
    driver_name = "kit-networked"

class TestNetworkedDedup(NetworkedBase):
    driver_name = "kit-networked-dedup"

class TestNetworkedRawError(NetworkedBase):
    driver_name = "kit-networked-raw-error"

class TestTimeoutEscapes(NetworkedBase):
    driver_name = "kit-timeout-escapes"

class TestClaimsDedup(NetworkedBase):
    driver_name = "kit-claims-dedup"

class TestRetriesInternally(NetworkedBase):
    driver_name = "kit-retries-internally"

class TestIgnoresBudget(NetworkedBase):
    driver_name = "kit-ignores-budget"

class TestAsendRetriesSend(NetworkedBase):
    driver_name = "kit-asend-retries-send"

class TestSucceedsWhenRefused(NetworkedBase):
    driver_name = "kit-succeeds-when-refused"

class TestMalformedResult(NetworkedBase):
    driver_name = "kit-malformed-result"

class TestNonStrIds(NetworkedBase):
    driver_name = "kit-non-str-ids"

class TestChecksWithTheWrongKind(NetworkedBase):
    driver_name = "kit-checks-wrong-kind"

class TestQueryLetsErrorsEscape(NetworkedBase):
    driver_name = "kit-query-lets-errors-escape"

class TestKeyInFrame(NetworkedBase):
    driver_name = "kit-key-in-frame"
    secrets = ("tok-in-a-frame-7f3a",)

    @pytest.fixture
    def driver_options(self) -> dict[str, str]:
        return {"token": "tok-in-a-frame-7f3a"}

    @pytest.fixture
    def failing_options(self) -> list[dict[str, Any]]:
        return failing(token="tok-in-a-frame-7f3a")


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
    features = Features(strict_options=False)
    secrets = ("tok-5ecret-value",)

    @pytest.fixture
    def driver_options(self) -> dict[str, str]:
        return {"token": "tok-5ecret-value"}

class TestErrorShowsValue(Base):
    driver_name = "kit-error-shows-value"
    features = Features(strict_options=False)
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

class TestSignsUndeclared(Base):
    driver_name = "kit-signs-undeclared"

class TestStateWrongType(Base):
    driver_name = "kit-state-wrong-type"

class TestHearsNothing(Base):
    driver_name = "kit-hears-nothing"

class TestTrustsAnyWebhook(Base):
    driver_name = "kit-trusts-any-webhook"

class TestRefusesItsSslOption(Base):
    driver_name = "kit-refuses-its-ssl-option"

class TestExcludesSender(Base):
    driver_name = "kit-excludes-sender"

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
    "TestSingleChannel",
    "TestNoReconnect",
    "TestNetworked",
    "TestNetworkedDedup",
    "TestExcludesSender",
    "TestExcludesSenderAsyncObserver",
    "TestExcludesSenderUnidentifiedObserver",
]

EXPECTED_FAILURES = {
    "TestNetworkedRawError": {"test_publish_failures_are_publish_errors"},
    "TestTimeoutEscapes": {"test_an_answer_that_never_comes_is_unknown"},
    "TestClaimsDedup": {
        "test_lost_answer_is_unknown_unless_the_service_deduplicates",
        "test_lost_answer_is_resent_with_at_least_once",
    },
    "TestRetriesInternally": {
        "test_failed_publish_has_three_outcomes",
        "test_an_answer_that_never_comes_is_unknown",
    },
    "TestAsendRetriesSend": {
        "test_lost_answer_is_unknown_unless_the_service_deduplicates",
        "test_an_answer_that_never_comes_is_unknown",
    },
    "TestSucceedsWhenRefused": {
        "test_publish_failures_are_publish_errors",
        "test_failed_publish_has_three_outcomes",
    },
    "TestMalformedResult": {"test_str_payload_arrives_intact", "test_refused_request_is_retried"},
    "TestNonStrIds": {"test_str_payload_arrives_intact", "test_multiple_channels"},
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


def _both(*names: str) -> set[str]:
    return {f"{name}[{mode}]" for name in names for mode in ("sync", "async")}


# send() drivers that lie about delivery: class -> (the exact failed cases, phrases
# the failure messages must contain, so each fails for the reason it is broken)
DELIVERY_BUGS: dict[str, tuple[set[str], tuple[str, ...]]] = {
    "TestNetworkedRawError": (
        _both("test_publish_failures_are_publish_errors"),
        ("raised ConnectionError", "instead of a PublishError"),
    ),
    "TestTimeoutEscapes": (
        _both("test_an_answer_that_never_comes_is_unknown"),
        ("let test_broken_drivers.ReadTimeout escape when no answer came",),
    ),
    "TestClaimsDedup": (
        _both(
            "test_lost_answer_is_unknown_unless_the_service_deduplicates",
            "test_lost_answer_is_resent_with_at_least_once",
            "test_failed_publish_has_three_outcomes",
        ),
        (
            "declares deduplicates=True, but its service delivered the re-sent message id "
            "again: the claim is false",
            "expected once (it declares deduplicates=True)",
            "is unknown, and the receiving side got the message 3 times: ClaimsDedup declares "
            "deduplicates=True, so the core re-sent it",
        ),
    ),
    "TestRetriesInternally": (
        _both(
            "test_failed_publish_has_three_outcomes", "test_an_answer_that_never_comes_is_unknown"
        ),
        (
            "is unknown, and the receiving side got the message 3 times: the driver (or its "
            "SDK) re-sent it by itself",
            "the request whose answer never came was sent 3 times",
        ),
    ),
    "TestIgnoresBudget": (
        _both(
            "test_failed_publish_has_three_outcomes", "test_an_answer_that_never_comes_is_unknown"
        ),
        ("send() reports batch.requests=5, over its batch.budget=3",),
    ),
    "TestAsendRetriesSend": (
        {
            "test_lost_answer_is_unknown_unless_the_service_deduplicates[async]",
            "test_lost_answer_is_resent_with_at_least_once[async]",
            "test_failed_publish_has_three_outcomes[async]",
            "test_an_answer_that_never_comes_is_unknown[async]",
        },
        (
            "so a lost answer must raise a PublishError",
            "the publish made 2 requests but reports requests=1",
            "is unknown, and the receiving side got the message 3 times",
        ),
    ),
    "TestSucceedsWhenRefused": (
        _both("test_publish_failures_are_publish_errors", "test_failed_publish_has_three_outcomes"),
        ("the driver reported success for a publish that configuration makes fail",),
    ),
}

# drivers whose declarations, health check or frames do not hold: class -> (the exact
# failed cases, phrases the failure messages must contain)
PINNED_BUGS: dict[str, tuple[set[str], tuple[str, ...]]] = {
    "TestSignsUndeclared": (
        {"test_features_are_declared_not_guessed"},
        ("implements sign_channel() but does not declare Feature.AUTHORIZE",),
    ),
    "TestStateWrongType": (
        _both("test_channel_state_is_answered_or_not_supported"),
        ("channel_info() returned {'name'",),
    ),
    "TestQueryLetsErrorsEscape": (
        _both("test_channel_state_is_answered_or_not_supported"),
        ("raised ConnectionRefusedError", "a state query that fails raises QueryError"),
    ),
    "TestHearsNothing": (
        {"test_listen_hears_a_publish_or_not_supported"},
        ("confirmed the subscription, then heard nothing",),
    ),
    "TestTrustsAnyWebhook": (
        _both("test_webhooks_are_verified_or_not_supported"),
        ("a forged or tampered delivery must be refused",),
    ),
    "TestRefusesItsSslOption": (
        {"test_ssl_option_is_declared_or_refused"},
        ("declares ssl_option='tls' but accepts it neither way",),
    ),
    "TestChecksWithTheWrongKind": (
        _both("test_publish_failures_are_publish_errors"),
        ("failed with kind=auth (the credentials), but check() says 'error'",),
    ),
    # the key is held by an object whose repr hides it: only walking the frames finds it
    "TestKeyInFrame": (
        _both(
            "test_publish_failures_are_publish_errors", "test_an_answer_that_never_comes_is_unknown"
        ),
        ("held as text by a frame of the traceback", "request'].headers['Authorization']"),
    ),
}

# send() drivers returning what send() must not return: every publish that gets an
# answer fails (not pinned to a few tests), and the message says what was wrong
MALFORMED_RESULTS = {
    "TestMalformedResult": "send() must return None, an Answer, or one Answer or PublishError",
    # the core reads an Answer's ids as it reads the rest of send()'s result (f813d4c)
    "TestNonStrIds": "Answer.ids must be a tuple of str",
}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """Run the broken-driver suite once per test run (kit_report.Report)."""
    return run_suite(tmp_path_factory, "kit", "test_broken_drivers.py", textwrap.dedent(SUITE))


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


@pytest.mark.parametrize("cls", sorted(DELIVERY_BUGS))
def test_a_delivery_lie_fails_exactly_the_delivery_checks_for_the_right_reason(
    report: dict[str, dict[str, set[str]]], cls: str
) -> None:
    """A send() driver that lies about delivery fails the outcome and retry checks only.

    Claiming de-duplication the service does not do, re-sending after a lost
    answer (in the transport, or around its own send() on the async path),
    taking a 401 for an acknowledgement, letting an SDK exception escape: each
    fails exactly the kit's tests that catch it, in the modes where the bug
    lives, with a message that says what the driver did; everything else passes.
    """
    assert_fails_exactly(report, cls, *DELIVERY_BUGS[cls])


@pytest.mark.parametrize("cls", sorted(PINNED_BUGS))
def test_a_broken_declaration_fails_exactly_its_check_for_the_right_reason(
    report: dict[str, dict[str, set[str]]], cls: str
) -> None:
    """A Feature whose methods lie or are left undeclared, a TLS option the driver
    refuses, a health check that misreads a refusal, a revealed key in a frame: each
    fails exactly the kit's check of it, saying what the driver did."""
    assert_fails_exactly(report, cls, *PINNED_BUGS[cls])


@pytest.mark.parametrize("cls", sorted(MALFORMED_RESULTS))
def test_a_malformed_send_result_fails_every_answered_publish(
    report: dict[str, dict[str, set[str]]], cls: str
) -> None:
    """A send() result the core cannot read fails every test whose publish gets an answer.

    The failures name what was wrong; tests whose publishes fail (the failing
    configurations, a lost answer without de-duplication) still pass.
    """
    failed = report["failed"][cls]
    assert {"test_str_payload_arrives_intact", "test_refused_request_is_retried"} <= failed
    assert "test_publish_failures_are_publish_errors" in report["passed"][cls]
    messages = " ".join(report["failed-messages"][cls])
    assert MALFORMED_RESULTS[cls] in messages, messages


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
