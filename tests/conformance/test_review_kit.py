"""Holes found in the conformance kit: each broken driver here passed it before its fix.

As in ``test_kit_catches_bugs.py``, a suite of drivers is written to a temporary
directory and run with pytest in a subprocess (``-p no:asyncio``); the report
must show each correct driver passing everything with nothing skipped, and each
broken one failing exactly the tests about its bug, for the right reason.
The network drivers are ``send()`` drivers of the in-process service in
``toy_service.py`` (copied next to the suite): a stand-in, as no real service
fails on demand in every way the kit needs.
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

import hashlib
import hmac
import json
import ssl
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import trustme

from broadcasting import (
    BadRequestError,
    ConfigurationError,
    Receipt,
    UnauthorizedError,
    WebhookEvent,
)
from broadcasting.plugin import (
    AuthRequest,
    Capabilities,
    Driver,
    Feature,
    Message,
    Secret,
    register_driver,
)
from broadcasting.testing import Delivery, DeliveryRecorder, DriverConformance
from broadcasting_webhook import BroadcastWebhookDriver
from broadcasting_webhook.receiver import WebhookReceiver
from toy_service import ToyConformance, ToyDriver, ToyService

KEY = b"kit-webhook-key-0123456789"


def signature(body: bytes) -> str:
    return hmac.new(KEY, body, hashlib.sha256).hexdigest()


class InProcess(Driver):
    name = "review-in-process"

    def __init__(self) -> None:
        self.recorder = DeliveryRecorder()

    def publish(self, message: Message) -> Receipt:
        for channel in message.channels:
            self.recorder.record(Delivery(channel, message.event, message.text))
        return Receipt(self.name, message.event, message.channels, message.id)


def events(driver: Driver, body: bytes) -> list[WebhookEvent]:
    try:
        parsed = json.loads(body)
    except ValueError:
        raise BadRequestError("the body is not JSON") from None
    return [
        WebhookEvent(e["name"], e.get("channel"), parsed["time_ms"], e["id"], driver=driver.name)
        for e in parsed["events"]
    ]


class VerifiesWebhooks(InProcess):
    # correct: the signature over the raw body first, then the body
    name = "review-verifies-webhooks"
    features = frozenset({Feature.WEBHOOKS})

    def verify_webhook(self, headers, body):
        given = {k.lower(): v for k, v in headers.items()}.get("x-signature", "")
        if not hmac.compare_digest(given, signature(body)):
            raise UnauthorizedError("bad signature")
        return events(self, body)


class ParsesThenTrustsAnySignature(InProcess):
    # parses the body first (a malformed one is a 400), then only checks that a
    # signature header is there: it never compares it with the body
    name = "review-trusts-any-signature"
    features = frozenset({Feature.WEBHOOKS})

    def verify_webhook(self, headers, body):
        found = events(self, body)
        if "x-signature" not in {k.lower() for k in headers}:
            raise UnauthorizedError("no signature")
        return found


class SignsSockets(InProcess):
    # correct: a Pusher-shaped signature over the socket_id and the channel
    name = "review-signs-sockets"
    features = frozenset({Feature.AUTHORIZE})

    def subject(self, request: AuthRequest) -> str:
        return f"{request.socket_id}:{request.channel}:{request.member_id or ''}"

    def sign_channel(self, request: AuthRequest) -> dict[str, Any]:
        digest = hmac.new(KEY, self.subject(request).encode(), hashlib.sha256).hexdigest()
        return {"auth": f"kit:{digest}"}


class SignsAnySocket(SignsSockets):
    # its clients send a socket_id, but the signature leaves it out: any connection can
    # replay another's answer
    name = "review-signs-any-socket"

    def subject(self, request: AuthRequest) -> str:
        return f"{request.channel}:{request.member_id or ''}"


class KeepsTokenRevealed(InProcess):
    # keeps its token revealed, as a plain str attribute
    name = "review-keeps-token-revealed"

    def __init__(self, token: str = "") -> None:
        super().__init__()
        self.token = token

    @classmethod
    def from_config(cls, options):
        for key in options:
            if key != "token":
                raise ConfigurationError(cls.name, key, "unknown option")
        token = options.get("token")
        return cls(token.reveal() if isinstance(token, Secret) else "")


class NetworkedWindowed(ToyDriver):
    # correct: its service drops a repeated id, and it declares for how long
    name = "review-networked-windowed"
    service = ToyService(deduplicates=True)
    capabilities = Capabilities(channels_per_request=5, deduplicates=True, dedup_window=60.0)


class WindowWithoutDedup(ToyDriver):
    # declares how long its service drops a repeat, but not that it drops one
    name = "review-window-without-dedup"
    service = ToyService(deduplicates=True)
    capabilities = Capabilities(channels_per_request=5, dedup_window=60.0)


class KeepsItsPoolAcrossFork(BroadcastWebhookDriver):
    # the webhook driver, but it keeps using the pool it made in the parent after a fork
    name = "review-keeps-pool-across-fork"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._kept = self._pool

    def _post(self, body, request_id):
        self._pool = self._kept
        return super()._post(body, request_id)

    def close(self) -> None:
        super().close()
        self._kept = self._pool


DRIVERS = [
    InProcess, VerifiesWebhooks, ParsesThenTrustsAnySignature, NetworkedWindowed,
    WindowWithoutDedup,
    KeepsItsPoolAcrossFork,
    SignsSockets,
    SignsAnySocket,
    KeepsTokenRevealed,
]
for cls in DRIVERS:
    register_driver(cls.name, cls)


class InProcessBase(DriverConformance):
    receive_timeout = 0.5

    @pytest.fixture
    def observer(self, driver: Driver) -> DeliveryRecorder:
        assert isinstance(driver, InProcess)
        return driver.recorder


class WebhookBase(InProcessBase):
    @pytest.fixture
    def webhook_delivery(self) -> tuple[dict[str, str], bytes]:
        body = json.dumps(
            {"time_ms": 1700000000000, "events": [
                {"name": "channel_occupied", "channel": "orders", "id": "e1"}
            ]}
        ).encode()
        return {"X-Signature": signature(body), "Content-Type": "application/json"}, body


class TestInProcess(InProcessBase):
    driver_name = "review-in-process"


class TestVerifiesWebhooks(WebhookBase):
    driver_name = "review-verifies-webhooks"


class TestParsesThenTrustsAnySignature(WebhookBase):
    driver_name = "review-trusts-any-signature"


class TestKeepsTokenRevealed(InProcessBase):
    # the author hands the token over as a Secret and forgets to declare it
    driver_name = "review-keeps-token-revealed"

    @pytest.fixture
    def driver_options(self) -> dict[str, Any]:
        return {"token": Secret("tok-undeclared-5e3d")}


class TestSignsSockets(InProcessBase):
    driver_name = "review-signs-sockets"


class TestSignsAnySocket(InProcessBase):
    driver_name = "review-signs-any-socket"


SECRET = "whsec-review-0123456789abcdef"


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return context, str(path)


class TestKeepsItsPoolAcrossFork(DriverConformance):
    # over TLS: a child writing on the parent's connection breaks the parent's session
    driver_name = "review-keeps-pool-across-fork"
    secrets = (SECRET,)

    @pytest.fixture
    def recorder(self) -> DeliveryRecorder:
        return DeliveryRecorder()

    @pytest.fixture
    def receiver(self, tls, recorder) -> Iterator[WebhookReceiver]:
        def record(event):
            for channel in event["channels"]:
                recorder.record(Delivery(channel, event["event"], event["data"]))

        with WebhookReceiver(SECRET, ssl_context=tls[0], on_event=record) as server:
            yield server

    @pytest.fixture
    def driver_options(self, receiver, tls) -> dict[str, Any]:
        return {"url": receiver.url, "secret": SECRET, "ca_file": tls[1]}

    @pytest.fixture
    def observer(self, recorder) -> DeliveryRecorder:
        return recorder

    @pytest.fixture
    def failing_options(self) -> list[dict[str, Any]]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        return [{"url": f"http://127.0.0.1:{port}/", "secret": SECRET, "retries": 0}]

    @pytest.fixture
    def unanswered_options(self, silent_server) -> dict[str, Any]:
        url = f"http://{silent_server.host}:{silent_server.port}/"
        return {"url": url, "secret": SECRET, "timeout": 0.5}


class TestNetworkedWindowed(ToyConformance):
    driver_name = "review-networked-windowed"


class TestWindowWithoutDedup(TestNetworkedWindowed):
    driver_name = "review-window-without-dedup"
"""

CORRECT = ["TestInProcess", "TestVerifiesWebhooks", "TestSignsSockets", "TestNetworkedWindowed"]


def _both(*names: str) -> set[str]:
    return {f"{name}[{mode}]" for name in names for mode in ("sync", "async")}


# class -> (the exact failed cases, phrases the failure messages must contain)
BROKEN: dict[str, tuple[set[str], tuple[str, ...]]] = {
    "TestKeepsTokenRevealed": (
        {"test_secrets_never_shown"},
        ("options ['token'] look secret: list their values in `secrets`",),
    ),
    "TestSignsAnySocket": (
        _both("test_subscriptions_are_signed_or_not_supported"),
        ("any connection could replay it",),
    ),
    "TestWindowWithoutDedup": (
        _both("test_lost_answer_is_unknown_unless_the_service_deduplicates"),
        ("declares dedup_window=60.0 but not deduplicates=True",),
    ),
    "TestKeepsItsPoolAcrossFork": (
        _both("test_a_forked_child_publishes_on_connections_of_its_own"),
        ("after a forked child published, the parent's next publish failed",),
    ),
    "TestParsesThenTrustsAnySignature": (
        _both("test_webhooks_are_verified_or_not_supported"),
        ("a forged or tampered delivery must be refused",),
    ),
}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """Run the suite once per test run (kit_report.Report)."""
    return run_suite(
        tmp_path_factory, "review-kit", "test_review_drivers.py", textwrap.dedent(SUITE)
    )


@pytest.mark.parametrize("cls", CORRECT)
def test_a_correct_driver_passes_everything_and_skips_nothing(
    report: dict[str, dict[str, set[str]]], cls: str
) -> None:
    assert not report["failed"][cls], sorted(report["failed-messages"][cls])
    assert not report["skipped"][cls], sorted(report["skipped"][cls])
    assert len(report["passed"][cls]) >= 30


@pytest.mark.parametrize("cls", sorted(BROKEN))
def test_a_broken_driver_fails_exactly_its_check_for_the_right_reason(
    report: dict[str, dict[str, set[str]]], cls: str
) -> None:
    """A webhook verifier that parses the body first and never compares the signature
    with it (the kit's tampered delivery must still be well-formed, or the parser's 400
    is taken for the verifier's refusal); a driver whose forked child writes on the
    parent's kept-alive TLS connection (the parent's next publish then fails); a
    ``dedup_window`` declared without ``deduplicates`` (the core ignores it); a channel
    signature that leaves out the socket_id its clients send; a secret option given as a
    ``Secret`` and not declared, which the kit's safety net must still see."""
    assert_fails_exactly(report, cls, *BROKEN[cls])
