"""Secrets stay wrapped: from the configuration on, in attributes, pickles and tracebacks."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

import pytest

from broadcasting import Broadcast, ConfigurationError, PublishError
from broadcasting._config import load_config
from broadcasting.plugin import Batch, Driver, Secret

TOKEN = "tok-live-5d41402abc4b2a76"


def frames(error: BaseException) -> Iterator[Any]:
    """Every frame of ``error``'s traceback and of the exceptions chained to it."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        tb: TracebackType | None = current.__traceback__
        while tb is not None:
            yield tb.tb_frame
            tb = tb.tb_next
        current = current.__cause__ or current.__context__


def revealed_in_locals(error: BaseException, secret: str) -> list[str]:
    """Frames (outside this test module) with a local whose str or repr shows ``secret``."""
    found = []
    for frame in frames(error):
        if frame.f_code.co_filename == __file__ and frame.f_code.co_name.startswith("test_"):
            continue  # the tests' own frames hold the raw config on purpose
        for name, value in frame.f_locals.items():
            shown = value if isinstance(value, str) else repr(value)
            if secret in shown:
                found.append(f"{frame.f_code.co_name}:{name}")
    return found


class Picky(Driver):
    """Reveals its token while checking it, as settings code does, then sends with it."""

    name = "picky"

    def __init__(self, token: Secret) -> None:
        self.token = token

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> Picky:
        revealed = options["token"].reveal()  # a local that holds the value when it raises
        if not revealed.startswith("tok-"):
            raise ConfigurationError(cls.name, "token", "must start with 'tok-'")
        return cls(options["token"])

    def send(self, batch: Batch) -> None:
        # revealed as a temporary only (as drivers must): no local of this frame holds it
        size = len(f"Bearer {self.token.reveal()}")
        raise PublishError(f"refused ({size} bytes of auth)", driver=self.name)


def test_secret_looking_options_are_wrapped_when_the_config_is_loaded() -> None:
    config = load_config(
        {"DRIVERS": {"x": {"token": TOKEN, "api_key": "k-1", "key_id": "k-2", "host": "h"}}}
    )
    options = config.options("x")
    assert options["token"] == Secret(TOKEN)
    assert options["api_key"] == Secret("k-1") and options["key_id"] == Secret("k-2")
    assert options["host"] == "h"  # not a secret-looking name
    assert TOKEN not in repr(config) and TOKEN not in repr(options)


def test_a_secret_has_no_vars_and_refuses_pickling_but_copies() -> None:
    secret = Secret(TOKEN)
    with pytest.raises(TypeError):
        vars(secret)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(secret)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(load_config({"DRIVERS": {"x": {"secret": TOKEN}}}))
    assert copy.deepcopy({"s": secret})["s"] is secret


@pytest.mark.parametrize(
    ("options", "where"),
    [
        ({"auth": {"token": TOKEN}}, "DRIVERS['x']['auth']['token']"),
        ({"servers": [{"host": "h", "password": TOKEN}]}, "DRIVERS['x']['servers'][0]['password']"),
        ({"auth": {"api_key": [TOKEN]}}, "DRIVERS['x']['auth']['api_key']"),
    ],
)
def test_a_secret_inside_an_option_refuses_pickling_too(
    options: dict[str, Any], where: str
) -> None:
    """Read back as text (its driver takes the option as given), yet named like a secret: a
    pickle of the Config would write it out, as one at the top would."""
    config = load_config({"DRIVERS": {"x": {"hosts": ["a:6001", "b:6001"], **options}}})
    with pytest.raises(TypeError, match="cannot be pickled") as info:
        pickle.dumps(config)
    assert where in str(info.value)
    assert TOKEN not in str(info.value)
    assert copy.deepcopy(config) is config  # read-only: a copy is itself, nothing written out


def test_a_config_without_secrets_pickles_and_reads_back_the_same() -> None:
    config = load_config(
        {"DRIVERS": {"x": {"hosts": ["a:6001", "b:6001"], "auth": {"user": "u", "retries": 2}}}}
    )
    back = pickle.loads(pickle.dumps(config))
    assert back == config
    assert back.options("x")["auth"] == {"user": "u", "retries": 2}


def test_with_options_wraps_what_it_is_given() -> None:
    broadcast = Broadcast({"DRIVER": "picky", "DRIVERS": {"picky": {"token": TOKEN}}})
    driver = broadcast.driver(Picky).with_options(token="tok-other-value").driver
    assert driver.token == Secret("tok-other-value")
    assert "tok-other-value" not in repr(vars(driver))


def test_a_configuration_error_carries_no_frame_with_the_revealed_secret() -> None:
    bad = "bad-" + TOKEN
    broadcast = Broadcast({"DRIVER": "picky", "DRIVERS": {"picky": {"token": bad}}})
    with pytest.raises(ConfigurationError, match="must start with") as info:
        broadcast.driver(Picky)
    assert revealed_in_locals(info.value, bad) == []
    assert info.value.__context__ is None and info.value.__cause__ is None


def test_a_publish_error_carries_no_frame_with_the_revealed_secret() -> None:
    broadcast = Broadcast({"DRIVER": "picky", "DRIVERS": {"picky": {"token": TOKEN}}})
    with pytest.raises(PublishError, match="refused") as info:
        broadcast.driver(Picky).channel("c", "m")
    assert revealed_in_locals(info.value, TOKEN) == []
    cause = info.value.__cause__
    assert isinstance(cause, PublishError)  # the driver's error is still there...
    tb = cause.__traceback__  # ...with its traceback (issue 18, item 5)
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    assert tb is not None and tb.tb_frame.f_code.co_name == "send"  # where it was raised
