"""The conformance kit over HTTPS (a private CA), as most webhook URLs are.

The same kit as test_conformance.py, against a TLS receiver: a TLS session
cannot be shared, so a forked child that wrote on the parent's kept-alive
connection would break the parent's next publish, which the kit's fork test
sees only here, not over plain HTTP.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from broadcasting.testing import DeliveryRecorder, DriverConformance, SilentServer

from broadcasting_webhook.receiver import WebhookReceiver

WRONG_SECRET = "whsec-not-the-receivers-secret"


class TestWebhookConformanceOverTls(DriverConformance):
    """Every behaviour the kit checks, over HTTPS."""

    driver_name = "webhook"

    @pytest.fixture
    def declared_secrets(self, secret: str, token: str) -> Sequence[str]:
        return (secret, token, WRONG_SECRET)

    @pytest.fixture
    def driver_options(
        self, tls_receiver: WebhookReceiver, tls_ca: tuple[ssl.SSLContext, str], secret: str
    ) -> Mapping[str, Any]:
        return {"url": tls_receiver.url, "secret": secret, "ca_file": tls_ca[1]}

    @pytest.fixture
    def observer(self, recorder: DeliveryRecorder) -> DeliveryRecorder:
        return recorder

    @pytest.fixture
    def failing_options(
        self,
        tls_receiver: WebhookReceiver,
        tls_ca: tuple[ssl.SSLContext, str],
        closed_url: str,
        secret: str,
    ) -> Sequence[Mapping[str, Any]]:
        ca_file = tls_ca[1]
        return [
            {"url": closed_url, "secret": secret, "retries": 0},  # connection refused
            # 401 from the receiver, over TLS
            {"url": tls_receiver.url, "secret": WRONG_SECRET, "ca_file": ca_file, "retries": 0},
            # a certificate the default trust store does not know: not retried, not delivered
            {"url": tls_receiver.url, "secret": secret},
        ]

    @pytest.fixture
    def silent_server_context(self, tls_ca: tuple[ssl.SSLContext, str]) -> ssl.SSLContext:
        return tls_ca[0]

    @pytest.fixture
    def unanswered_options(
        self,
        silent_server: SilentServer,
        tls_ca: tuple[ssl.SSLContext, str],
        secret: str,
        token: str,
    ) -> Mapping[str, Any]:
        # the TLS handshake succeeds, then the request is read and never answered
        url = f"https://{silent_server.host}:{silent_server.port}/hooks/{token}"
        return {"url": url, "secret": secret, "ca_file": tls_ca[1], "timeout": 0.5}

    @pytest.fixture
    def invalid_options(
        self, tls_receiver: WebhookReceiver, secret: str
    ) -> Sequence[tuple[Mapping[str, Any], str]]:
        url = tls_receiver.url
        return [
            ({"url": url, "secret": secret, "ca_file": "/nonexistent/ca.pem"}, "ca_file"),
            (
                {"url": url.replace("https://", "http://"), "secret": secret, "ca_file": __file__},
                "ca_file",
            ),
        ]
