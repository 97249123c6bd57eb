"""The core's ``client_config`` check let any secret option's value through as long as the
driver returned it as the public ``key``: a driver that gave its app secret, its API key or
an option it declares secret as ``key`` sent it to every page. Only the public app key,
from an option named for it and not declared secret, may be there.

The drivers are real Driver classes with no service (``client_config()`` sends nothing);
the Pusher driver is the real one, its public key still allowed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from broadcasting import Broadcast, ConfigurationError
from broadcasting.plugin import Driver, Message, Receipt, Secret
from broadcasting.testing._suite.leaks import held_in_frames
from broadcasting.web import client_config

VALUE = "s37-the-secret-value-0123"


class KeyFrom(Driver):
    """A driver whose client_config() gives the option named ``public_from`` as ``key``:
    right for a public key option, a leak for any other."""

    name = "s37-key-from"
    secret_options: ClassVar[frozenset[str]] = frozenset({"signing_key", "tenant_key"})

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> KeyFrom:
        return cls(options)

    def publish(self, message: Message) -> Receipt:
        raise NotImplementedError

    def client_config(self, auth_endpoint: str, user_auth_endpoint: str) -> dict[str, Any]:
        chosen = self.options[self.options["public_from"]]
        key = chosen.reveal() if isinstance(chosen, Secret) else chosen
        return {"client": "x", "key": key, "options": {"authEndpoint": auth_endpoint}}


def config_of(options: dict[str, Any]) -> dict[str, Any]:
    with Broadcast({"DRIVERS": {KeyFrom.name: options}}) as broadcast:
        return client_config(broadcast, driver=broadcast.driver(KeyFrom))


@pytest.mark.parametrize(
    "option",
    [
        "secret",  # the app secret, named like one
        "api_key",  # an API key: secret (as "apikey" is)
        "token",
        "signing_key",  # declared secret by the driver
        "tenant_key",  # declared secret, though named like a public key would be
    ],
)
def test_a_secret_option_given_as_the_public_key_is_refused(option: str) -> None:
    with Broadcast({"DRIVERS": {KeyFrom.name: {option: VALUE, "public_from": option}}}) as made:
        target = made.driver(KeyFrom)
        with pytest.raises(ConfigurationError) as info:
            client_config(made, driver=target)
    error = info.value
    assert error.driver == KeyFrom.name and error.key == option
    assert "as its public 'key'" in str(error)
    assert VALUE not in str(error) and VALUE not in repr(error)
    # error trackers record every frame's locals: none of the library's holds the value
    # (frame 0 is this test's, which holds it on purpose)
    held = [at for at in held_in_frames(error, [VALUE]) if not at.startswith("traceback['0:")]
    assert not held, held


@pytest.mark.parametrize("option", ["key", "app_key", "public_key", "Key"])
def test_the_public_key_option_is_still_given(option: str) -> None:
    config = config_of({option: "public-app-key", "public_from": option})
    assert config["key"] == "public-app-key"


def test_the_public_key_beside_a_secret_of_the_same_value_is_refused() -> None:
    # key == secret: the "public" key would show the secret
    options = {"key": VALUE, "secret": VALUE, "public_from": "key"}
    with pytest.raises(ConfigurationError) as info:
        config_of(options)
    assert info.value.key == "secret"


def test_pushers_public_key_is_still_in_the_config() -> None:
    pusher = {"app_id": "1234567", "key": "app-key-1234", "secret": VALUE, "cluster": "eu"}
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": pusher}}) as broadcast:
        config = client_config(broadcast)
    assert config["key"] == config["echo"]["key"] == "app-key-1234"
    assert VALUE not in json.dumps(config)
