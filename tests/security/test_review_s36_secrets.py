"""A Secret shows its value through no generic walk of an object's fields.

``Secret`` was a dataclass, so everything that walks dataclass fields opened it:
``dataclasses.asdict(driver.settings)`` (and FastAPI's ``jsonable_encoder``, pydantic, any
tool that dumps a dataclass) gave ``{"secret": {"_value": "<the app secret>"}}``, and an
event class's payload, built from its dataclass fields, put a Secret field's value on the
wire to every subscriber. No server is needed: the settings are built as the drivers build
them, and the publish goes through the in-process ``memory`` driver.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import os
import pickle

import pytest

from broadcasting import Broadcast, BroadcastEvent, InputError
from broadcasting.drivers.memory import BroadcastMemoryDriver
from broadcasting.plugin import Secret

APP_SECRET = "s36-app-secret-7f3a9c"
MASTER_KEY = base64.b64encode(os.urandom(32)).decode()
ABLY_KEY = "s36app.s36key:S36-ably-key-secret_0123"


def _texts(value: object) -> str:
    """``value`` as a generic dump shows it: its repr, and its JSON."""
    return repr(value) + json.dumps(value, default=repr)


def test_a_secret_is_no_dataclass_a_field_walk_can_open() -> None:
    secret = Secret(APP_SECRET)
    assert not dataclasses.is_dataclass(secret)
    with pytest.raises(TypeError):
        dataclasses.asdict(secret)  # type: ignore[call-overload]
    # what it still does: reveal, compare and hash by value, stay immutable
    assert secret.reveal() == APP_SECRET
    assert secret == Secret(APP_SECRET) and secret != Secret(APP_SECRET + "x")
    assert hash(secret) == hash(Secret(APP_SECRET))
    assert secret != APP_SECRET
    with pytest.raises(AttributeError):
        secret._value = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del secret._value
    assert not hasattr(secret, "__dict__")
    assert copy.copy(secret) is secret and copy.deepcopy(secret) is secret
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(secret)
    assert APP_SECRET not in f"{secret} {secret!r} {secret:>40}"


@pytest.mark.parametrize("driver", ["pusher", "ably"])
def test_dumping_a_drivers_settings_shows_no_secret(driver: str) -> None:
    options = {
        "pusher": {
            "app_id": "1",
            "key": "public-key",
            "secret": APP_SECRET,
            "encryption_master_key_base64": MASTER_KEY,
        },
        "ably": {"key": ABLY_KEY},
    }[driver]
    with Broadcast({"DRIVER": driver, "DRIVERS": {driver: options}}) as broadcast:
        settings = broadcast.driver().driver.settings
        assert dataclasses.is_dataclass(settings)
        dumped = dataclasses.asdict(settings)
        shown = _texts(dumped) + _texts(dataclasses.astuple(settings))
    for secret in (APP_SECRET, MASTER_KEY, ABLY_KEY, ABLY_KEY.partition(":")[2]):
        assert secret not in shown, shown
    # the secrets are still there, wrapped
    assert any(isinstance(value, Secret) for value in dumped.values())


@dataclasses.dataclass
class Rotated(BroadcastEvent):
    """An event whose public field holds a Secret by mistake."""

    user: str
    token: Secret

    def broadcast_on(self) -> str:
        return "accounts"


def test_an_event_field_holding_a_secret_is_refused_not_broadcast() -> None:
    with Broadcast({"DRIVER": "memory"}) as broadcast:
        memory = broadcast.driver(BroadcastMemoryDriver).driver
        with pytest.raises(InputError) as refused:
            broadcast.channel(Rotated("ada", Secret(APP_SECRET)))
        assert APP_SECRET not in str(refused.value)
        assert memory.messages == []
