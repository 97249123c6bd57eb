"""Secrets lying as text in a ``Config``: strings of subclasses (review h4).

3187502 sealed strings by ``type(value) is str`` and containers by exact type, so a ``str``
subclass (a TOML or YAML library's string, a ``StrEnum``), even at the top level, where an
``isinstance`` check sealed it before, and every string inside an ``OrderedDict`` or a
settings or YAML library's dict or list subclass lay as text in the Config's attributes.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest

from broadcasting._config import load_config
from broadcasting.testing._suite.leaks import holders

TOKEN = "h4-nested-token-value-77c0"


class Text(str):
    """A str subclass, as tomlkit's String and ruamel.yaml's quoted scalars are."""

    __slots__ = ()


class Settings(dict):  # type: ignore[type-arg]
    """A dict subclass, as dynaconf's Box, tomlkit's tables and ruamel.yaml's maps are."""


class Items(list):  # type: ignore[type-arg]
    """A list subclass, as ruamel.yaml's sequences are."""


OPTIONS: dict[str, Any] = {
    "url": Text(f"https://hooks.example.test/?t={TOKEN}"),
    "auth": OrderedDict(token=TOKEN, retries=2),
    "headers": Settings({"X-Api": f"Bearer {TOKEN}"}),
    "nested": {"inner": Settings(token=Text(TOKEN))},
    "hosts": Items([f"https://u:{TOKEN}@a.example", "b.example"]),
    "port": 6001,
}


@pytest.mark.parametrize("key", [k for k, v in OPTIONS.items() if TOKEN in repr(v)])
def test_strings_of_subclasses_are_sealed_at_rest(key: str) -> None:
    config = load_config({"DRIVER": "x", "DRIVERS": {"x": {key: OPTIONS[key]}}})
    assert holders(config, [TOKEN], "config") == []


def test_they_read_back_equal_and_as_text() -> None:
    config = load_config({"DRIVER": "x", "DRIVERS": {"x": OPTIONS}})
    read = config.options("x")
    assert dict(read) == OPTIONS
    assert type(read["url"]) is Text  # a string reads back as it was given
    # a dict or list subclass reads back as a new plain one, its strings as text
    assert type(read["auth"]) is dict and read["auth"]["token"] == TOKEN
    assert type(read["headers"]) is dict and type(read["hosts"]) is list
    assert type(read["nested"]["inner"]) is dict and type(read["nested"]["inner"]["token"]) is Text
    assert read["auth"] is not config.options("x")["auth"]  # a new container each time
    assert read["port"] == 6001


def test_a_subclass_holding_no_string_is_kept_as_it_is() -> None:
    counts = OrderedDict(a=1)
    config = load_config({"DRIVER": "x", "DRIVERS": {"x": {"counts": counts}}})
    assert config.options("x")["counts"] is counts
