"""The `ably` driver against the project's conformance kit (broadcasting.testing).

The receiving side is the local emulator (Ably cannot run here): what it stored
per channel is what Ably would deliver to subscribers.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pytest

from broadcasting.testing import Delivery, DriverConformance, SilentServer
from servers.ably_emulator import DROPPING_KEY, TEST_KEY, WRONG_KEY, AblyEmulator
from servers.soketi_server import refused_port


class EmulatorObserver:
    """The conformance kit's Observer over what the emulator stored."""

    def __init__(self, emulator: AblyEmulator) -> None:
        self.emulator = emulator

    def watch(self, channels: Sequence[str]) -> None:
        """Nothing to do: the emulator keeps every channel."""

    def deliveries(self, channel: str, count: int, timeout: float) -> Sequence[Delivery]:
        # the emulator stores a message before it answers the publish: no waiting
        return [Delivery(m.channel, m.name or "", m.data) for m in self.emulator.messages(channel)]


class TestAblyConformance(DriverConformance):
    driver_name = "ably"
    secrets: ClassVar[Sequence[str]] = (
        TEST_KEY,
        TEST_KEY.split(":", 1)[1],
        base64.b64encode(TEST_KEY.encode()).decode(),
    )
    invalid_channel_names: ClassVar[Sequence[str]] = ("[meta]log", ":x", "a\nb", "a\rb")

    @pytest.fixture
    def driver_options(self, emulator: AblyEmulator) -> Mapping[str, Any]:
        return emulator.options(retry_backoff=0.01)

    @pytest.fixture
    def observer(self, emulator: AblyEmulator) -> EmulatorObserver:
        return EmulatorObserver(emulator)

    @pytest.fixture
    def failing_options(self, emulator: AblyEmulator) -> Sequence[Mapping[str, Any]]:
        return [
            emulator.options(WRONG_KEY),
            emulator.options(tls_port=refused_port(), retries=0, timeout=0.5),
            # every answer lost after the emulator stored the message: the core retries
            # (Ably de-duplicates), so each channel is unknown yet received exactly once
            emulator.options(DROPPING_KEY, retries=2, retry_backoff=0.01),
        ]

    @pytest.fixture
    def silent_server_context(self, emulator: AblyEmulator) -> ssl.SSLContext:
        return emulator.server_context()  # the SDK trusts the emulator's CA

    @pytest.fixture
    def unanswered_options(
        self, emulator: AblyEmulator, silent_server: SilentServer
    ) -> Mapping[str, Any]:
        return emulator.options(tls_port=silent_server.port, timeout=0.5, retry_backoff=0.01)

    @pytest.fixture
    def invalid_options(self) -> Sequence[tuple[Mapping[str, Any], str]]:
        return [
            ({"secret": "api:key"}, "secret"),
            ({"key": TEST_KEY, "cluster": "eu"}, "cluster"),
            ({"key": TEST_KEY, "tls": False}, "tls"),
            ({"key": TEST_KEY, "max_payload_bytes": -1}, "max_payload_bytes"),
        ]
