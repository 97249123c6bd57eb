"""Fixtures: a real webhook receiver on 127.0.0.1 (plain HTTP and TLS)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from broadcasting.testing import Delivery, DeliveryRecorder

from broadcasting_webhook.receiver import WebhookReceiver

#: the shared secret every test receiver checks signatures with
SECRET = "whsec-tests-0123456789abcdef"
#: a token in the URL path, as many webhook URLs carry one; it is a secret too
TOKEN = "tok-3f9a1c77e2"


def _feeding(recorder: DeliveryRecorder) -> Callable[[dict[str, Any]], None]:
    """An ``on_event`` callback turning verified bodies into the kit's deliveries."""

    def record(event: dict[str, Any]) -> None:
        for channel in event["channels"]:
            recorder.record(Delivery(channel, event["event"], event["data"]))

    return record


@pytest.fixture
def recorder() -> DeliveryRecorder:
    """Every delivery the ``receiver`` (or ``tls_receiver``) verified, one per channel."""
    return DeliveryRecorder()


@pytest.fixture
def secret() -> str:
    """The shared secret of the ``receiver`` fixture."""
    return SECRET


@pytest.fixture
def token() -> str:
    """The secret token in the ``receiver`` fixture's URL path."""
    return TOKEN


@pytest.fixture
def receiver(recorder: DeliveryRecorder) -> Iterator[WebhookReceiver]:
    """A started receiver accepting only ``/hooks/<TOKEN>``, signed with ``SECRET``."""
    with WebhookReceiver(SECRET, path=f"/hooks/{TOKEN}", on_event=_feeding(recorder)) as server:
        yield server


@pytest.fixture
def lossy_receiver(recorder: DeliveryRecorder) -> Iterator[WebhookReceiver]:
    """Like ``receiver``, but it hangs up on every request after processing it (lost answers)."""
    with WebhookReceiver(SECRET, path=f"/hooks/{TOKEN}", on_event=_feeding(recorder)) as server:
        server.lose_answers(1_000_000)
        yield server


@pytest.fixture
def closed_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks/{TOKEN}"


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    """A server TLS context for 127.0.0.1 and the path of the CA that signed it (trustme)."""
    import trustme

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server_context, str(ca_file)


@pytest.fixture
def tls_receiver(
    tls_ca: tuple[ssl.SSLContext, str], recorder: DeliveryRecorder
) -> Iterator[WebhookReceiver]:
    """Like ``receiver``, over HTTPS with a certificate from the ``tls_ca`` CA."""
    with WebhookReceiver(
        SECRET, path=f"/hooks/{TOKEN}", ssl_context=tls_ca[0], on_event=_feeding(recorder)
    ) as server:
        yield server
