"""``Config`` sealed only top-level string options: a secret inside a dict or list option (a
driver's ``{"auth": {"token": ...}}``, a list of URLs with credentials) lay as text in the
Config's attributes, where anything that walks an object (an error tracker recording a
frame's locals) reads it. Nested strings are sealed too now, and read back as given.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest

from broadcasting import Broadcast, ConfigurationError
from broadcasting._config import Config, load_config
from broadcasting.plugin import Secret
from broadcasting.testing._suite.leaks import held_in_frames, holders

TOKEN = "s37-nested-token-0123"
PASSWORD = "s37-nested-password-4567"
SECRET = "s37-given-as-secret-89ab"


def options() -> dict[str, Any]:
    return {
        "auth": {"token": TOKEN, "headers": {"X-Api": f"Bearer {TOKEN}"}, "retries": 2},
        "hosts": [f"https://user:{PASSWORD}@a.example", {"url": f"https://b.example/?k={TOKEN}"}],
        "pair": ("plain", PASSWORD),
        "names": frozenset({"a", PASSWORD}),
        "given": {"secret": Secret(SECRET)},
        "port": 6001,
        "host": "h.example",
    }


def loaded() -> Config:
    return load_config({"DRIVER": "x", "DRIVERS": {"x": options()}})


def test_nested_strings_are_not_held_as_text() -> None:
    config = loaded()
    assert holders(config, [TOKEN, PASSWORD, SECRET], "config") == []
    assert TOKEN not in repr(config) and PASSWORD not in repr(config)


def test_nested_options_read_back_as_given() -> None:
    config = loaded()
    read = config.options("x")
    assert dict(read) == options()
    # the same containers, not only equal ones: a tuple stays a tuple, a list a list
    for key, value in options().items():
        assert type(read[key]) is type(value), key
    assert isinstance(read["auth"]["token"], str)  # the rules are the top level's: text...
    assert read["given"]["secret"] == Secret(SECRET)  # ...and a Secret given stays one
    assert config.drivers == {"x": read}


def test_what_is_read_back_is_a_copy() -> None:
    config = loaded()
    config.options("x")["auth"]["token"] = "changed"
    config.options("x")["hosts"].append("more")
    assert config.options("x") == options()


def test_an_error_trackers_view_of_a_frame_holding_the_broadcast_shows_no_nested_secret() -> None:
    def view(broadcast: Broadcast) -> None:
        raise RuntimeError("the view failed")

    with (
        Broadcast({"DRIVER": "x", "DRIVERS": {"x": options()}}) as broadcast,
        pytest.raises(RuntimeError) as info,
    ):
        view(broadcast)
    # frame 0 is this test's own, whose options() call results pytest may keep: left out
    held = held_in_frames(info.value, [TOKEN, PASSWORD])
    assert [at for at in held if not at.startswith("traceback['0:")] == []


def test_a_config_equal_to_its_copy_and_its_rebuild() -> None:
    config = loaded()
    assert copy.deepcopy(config) == config
    assert Config("x", {"x": options()}) == config


def test_an_option_holding_itself_is_a_configuration_error() -> None:
    looped: list[Any] = ["a"]
    looped.append(looped)
    with pytest.raises(ConfigurationError) as info:
        load_config({"DRIVER": "x", "DRIVERS": {"x": {"hosts": looped}}})
    assert info.value.driver == "x" and info.value.key == "hosts"


def test_the_outbox_settings_are_sealed_and_read_back_too() -> None:
    outbox = {"url": f"postgresql://u:{PASSWORD}@db/test", "options": {"password": PASSWORD}}
    config = load_config({"OUTBOX": outbox})
    assert holders(config, [PASSWORD], "config") == []
    read: Mapping[str, Any] = config.outbox
    assert read["options"] == {"password": PASSWORD}
    assert read["url"] == Secret(outbox["url"])  # named "url": read as a Secret, as before
