"""A secret left where an error tracker reads it: ``client_config`` (review h4).

A client config that JSON cannot hold (a NaN, an object) raised its ConfigurationError from
inside the ``except`` of the JSON error, so the error's context kept the encoder's frames,
whose locals hold the whole config: a secret the driver put in it as text too, the very
thing the check refuses (61f5780 cleared only the error's own frames).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from broadcasting import Broadcast, ConfigurationError
from broadcasting.plugin import Driver, Message, Receipt
from broadcasting.testing._suite.leaks import held_in_frames
from broadcasting.web import client_config

SECRET = "h4-app-secret-value-5e1d"


class NotJson(Driver):
    """Puts its app secret in the client config, beside a value JSON cannot hold."""

    name = "h4-not-json"

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> NotJson:
        return cls(options)

    def publish(self, message: Message) -> Receipt:
        raise NotImplementedError

    def client_config(self, auth_endpoint: str, user_auth_endpoint: str) -> dict[str, Any]:
        return {
            "client": "x",
            "key": "public",
            "options": {
                "authEndpoint": auth_endpoint,
                "leaked": self.options["secret"].reveal(),
                "ratio": float(self.options["ratio"]),
            },
        }


@pytest.mark.parametrize(
    "overrides", [None, {"when": object()}], ids=["driver-nan", "override-object"]
)
def test_a_client_config_that_is_not_json_leaves_no_secret_in_the_error_s_frames(
    overrides: dict[str, Any] | None,
) -> None:
    ratio = "nan" if overrides is None else "1.5"
    with Broadcast({"DRIVERS": {NotJson.name: {"secret": SECRET, "ratio": ratio}}}) as broadcast:
        driver = broadcast.driver(NotJson)
        with pytest.raises(ConfigurationError, match="its client config is not JSON") as caught:
            client_config(broadcast, driver=driver, overrides=overrides)
    # read first: the frames walked include this test's, where an assertion leaves its values
    held = held_in_frames(caught.value, [SECRET])
    # before: ["traceback['5:iterencode()']['markers'][...]['leaked']"], the JSON error's
    assert held == []
    assert SECRET not in str(caught.value)
