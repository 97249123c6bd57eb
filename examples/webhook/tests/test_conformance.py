"""The broadcasting conformance kit, run against the webhook driver and a real receiver.

The receiver is an HTTP server on 127.0.0.1 that verifies every signature:
a delivery only counts once its HMAC checked out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from broadcasting.testing import DeliveryRecorder, DriverConformance, SilentServer

from broadcasting_webhook.receiver import WebhookReceiver

WRONG_SECRET = "whsec-not-the-receivers-secret"


class TestWebhookConformance(DriverConformance):
    """Every behaviour the kit checks; the webhook driver declares no Feature (no socket_id)."""

    driver_name = "webhook"

    @pytest.fixture
    def declared_secrets(self, secret: str, token: str) -> Sequence[str]:
        return (secret, token, WRONG_SECRET)

    @pytest.fixture
    def driver_options(self, receiver: WebhookReceiver, secret: str) -> Mapping[str, Any]:
        return {"url": receiver.url, "secret": secret, "retry_backoff": 0.01}

    @pytest.fixture
    def observer(self, recorder: DeliveryRecorder) -> DeliveryRecorder:
        return recorder

    @pytest.fixture
    def failing_options(
        self,
        receiver: WebhookReceiver,
        lossy_receiver: WebhookReceiver,
        closed_url: str,
        secret: str,
    ) -> Sequence[Mapping[str, Any]]:
        return [
            {"url": closed_url, "secret": secret, "retries": 0},  # connection refused
            {"url": receiver.url, "secret": WRONG_SECRET, "retries": 0},  # 401 from the receiver
            {"url": receiver.base_url + "/elsewhere", "secret": secret, "retries": 0},  # 404
            # processed, then no answer: unknown, and (the kit checks) received at most once
            {"url": lossy_receiver.url, "secret": secret},
        ]

    @pytest.fixture
    def unanswered_options(
        self, silent_server: SilentServer, secret: str, token: str
    ) -> Mapping[str, Any]:
        # reads each request and never answers: the driver's own read timeout ends it
        url = f"http://{silent_server.host}:{silent_server.port}/hooks/{token}"
        return {"url": url, "secret": secret, "timeout": 0.5}

    @pytest.fixture
    def invalid_options(
        self, receiver: WebhookReceiver, secret: str
    ) -> Sequence[tuple[Mapping[str, Any], str]]:
        url = receiver.url
        return [
            ({"secret": secret}, "url"),
            ({"url": "ftp://127.0.0.1/hooks", "secret": secret}, "url"),
            ({"url": "http:///no-host", "secret": secret}, "url"),
            ({"url": "http://127.0.0.1:99999/", "secret": secret}, "url"),
            ({"url": f"http://user:{WRONG_SECRET}@127.0.0.1/", "secret": secret}, "url"),
            ({"url": url}, "secret"),
            ({"url": url, "secret": 12345}, "secret"),
            ({"url": url, "secret": secret[:8]}, "secret"),
            ({"url": url, "secret": secret, "timeout": 0}, "timeout"),
            ({"url": url, "secret": secret, "timeout": "5"}, "timeout"),
            ({"url": url, "secret": secret, "max_payload_bytes": 10}, "max_payload_bytes"),
            ({"url": url, "secret": secret, "ca_file": "/nonexistent/ca.pem"}, "ca_file"),
            ({"url": url, "secret": secret, "channels_per_request": 0}, "channels_per_request"),
            ({"url": url, "secret": secret, "receiver_deduplicates": 1}, "receiver_deduplicates"),
            # a delivery option: the core reads it (and names this driver in the error)
            ({"url": url, "secret": secret, "retries": -1}, "retries"),
        ]


class TestWebhookConformanceWithADeduplicatingReceiver(TestWebhookConformance):
    """The whole kit again, with ``receiver_deduplicates`` against a receiver that does.

    The driver then declares ``Capabilities(deduplicates=True)``, so the core
    re-sends after a lost answer; the kit checks that the receiver still
    sees every message once, which is what makes the option honest.
    """

    @pytest.fixture
    def driver_options(self, receiver: WebhookReceiver, secret: str) -> Mapping[str, Any]:
        receiver.deduplicate = True
        return {
            "url": receiver.url,
            "secret": secret,
            "retry_backoff": 0.01,
            "receiver_deduplicates": True,
        }
