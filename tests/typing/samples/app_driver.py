"""Driver-author code: a driver, its plugin hook, and the plugin API of
broadcasting.plugin, as docs/writing-a-driver.md and docs/hooks.md show them; and
applications reaching the installed drivers' own classes.

Checked by mypy --strict (tests/typing/test_public_types.py), never run.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Mapping
from typing import Any

from typing_extensions import assert_type

from broadcasting import Broadcast, Broadcaster, Receipt
from broadcasting.drivers import BroadcastPusherDriver as SeedNamedPusher
from broadcasting.plugin import (
    AuthRequest,
    Batch,
    Capabilities,
    ConfigurationError,
    Driver,
    DriverInfo,
    Feature,
    Health,
    Limits,
    Message,
    PerLoop,
    PublishError,
    QueryError,
    Secret,
    call_after_fork,
    hookimpl,
    in_forked_child,
    installed_drivers,
    register_driver,
    run_sync,
    unregister_driver,
)
from broadcasting.testing import Delivery, DeliveryRecorder
from broadcasting_ably import AblySettings, BroadcastAblyDriver
from broadcasting_pusher import BroadcastPusherDriver, PusherSettings

OPTIONS = frozenset({"api_key", "endpoint"})


class BroadcastAcmeDriver(Driver):
    name = "acme"
    limits = Limits(max_payload_bytes=10_240, max_event_name_length=200)
    capabilities = Capabilities(channels_per_request=100)
    features = frozenset({Feature.AUTHORIZE})

    def __init__(self, api_key: Secret, *, endpoint: str = "https://api.acme.example") -> None:
        self._api_key = api_key
        self.endpoint = endpoint

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> BroadcastAcmeDriver:
        problems = [
            ConfigurationError(cls.name, str(key), "unknown option")
            for key in options
            if key not in OPTIONS
        ]
        api_key = options.get("api_key")
        if not isinstance(api_key, Secret) or not api_key:
            problems.append(ConfigurationError(cls.name, "api_key", "is required (a str)"))
        if problems or not isinstance(api_key, Secret):  # the guide's §5 leaves api_key Any | None
            raise ConfigurationError.combine(problems)
        return cls(api_key)

    def send(self, batch: Batch) -> None:
        message = batch.message
        assert_type(message, Message)
        assert_type(message.id, str)
        assert_type(batch.channels, tuple[str, ...])
        raise PublishError("Acme answered 500", driver=self.name, status=500, retryable=True)

    def sign_channel(self, request: AuthRequest) -> dict[str, Any]:
        subject = f"{request.socket_id}|{request.channel}|{request.member_id or ''}"
        key = self._api_key.reveal().encode()
        return {"signature": hmac.new(key, subject.encode(), hashlib.sha256).hexdigest()}

    def _whoami(self) -> str:
        raise QueryError("refused", driver=self.name, kind="auth")

    def check(self) -> Health:
        return Health.measure(self._whoami)


@hookimpl
def broadcasting_connect(name: str, options: Mapping[str, Any]) -> Driver | None:
    return BroadcastAcmeDriver.from_config(options) if name == "acme" else None


class Pool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: PerLoop[dict[str, str]] = PerLoop(dict)
        call_after_fork(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    def session(self) -> dict[str, str]:
        return self._sessions.get()


@in_forked_child
def _renew() -> None: ...


async def answer() -> int:
    return 1


def author() -> None:
    assert_type(register_driver("acme", BroadcastAcmeDriver), None)
    broadcast = Broadcast({"DRIVER": "acme", "DRIVERS": {"acme": {"api_key": "k"}}})
    acme = broadcast.driver(BroadcastAcmeDriver)
    assert_type(acme, Broadcaster[BroadcastAcmeDriver])
    assert_type(acme.driver.endpoint, str)
    assert_type(acme.channel("orders", {"id": 42}, "shipped"), Receipt)
    assert_type(BroadcastAcmeDriver.from_config({"api_key": Secret("k")}), BroadcastAcmeDriver)
    assert_type(Secret("k").reveal(), str)
    assert_type(Pool().session(), dict[str, str])
    assert_type(run_sync(answer()), int)
    assert_type(installed_drivers(), list[DriverInfo])
    assert_type(unregister_driver("acme"), None)
    recorder = DeliveryRecorder()
    recorder.record(Delivery("orders", "shipped", '{"id":42}'))


def installed(broadcast: Broadcast) -> None:
    # the seed-era name is resolved at run time: a Driver class
    assert_type(SeedNamedPusher, type[Driver])
    assert_type(broadcast.driver(SeedNamedPusher), Broadcaster[Driver])
    pusher = broadcast.driver(BroadcastPusherDriver)
    assert_type(pusher, Broadcaster[BroadcastPusherDriver])
    assert_type(pusher.driver.settings, PusherSettings)
    assert_type(pusher.driver.check(), Health)
    ably = broadcast.driver(BroadcastAblyDriver).with_options(key="tenant:key")
    assert_type(ably, Broadcaster[BroadcastAblyDriver])
    assert_type(ably.driver.settings, AblySettings)
    assert_type(BroadcastPusherDriver.from_config({}), BroadcastPusherDriver)


class PusherEu(BroadcastPusherDriver):
    name = "pusher_eu"


register_driver("pusher_eu", PusherEu)
assert_type(PusherEu.from_config({}), PusherEu)
