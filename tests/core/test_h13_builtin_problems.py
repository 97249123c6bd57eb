"""Review h13: the built-in drivers report every wrong option at once, as the base
``Driver.from_config`` and the pusher and ably drivers do (``ConfigurationError.combine``);
and the pusher driver quotes no ``hosts`` entry that holds a secret option's value, the
encryption master key's as well as the app secret's.

Everything goes through ``Broadcast(config)``, as an application's settings do.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from secret_scan import assert_clean as check_clean
from secret_scan import configuration_error as raised

from broadcasting import Broadcast, ConfigurationError
from broadcasting.drivers.log import BroadcastLogDriver

SECRET = "h13-app-secret:0123456789"  # a colon, so a part of it looks like host:port
#: A canonical base64 master key (32 bytes) with no '+' or '/': with its padding taken off,
#: it passes for a host name, so only the secret rule can keep it out of the message.
MASTER_KEY = "QUlaJ4XOhPSVwKzIrJ5588i6XN5sVCAE688JSMjevns="
UNPADDED = MASTER_KEY.rstrip("=")
RAW_KEY = "h13RawMasterKey0123456789abcdefZ"  # 32 characters, the SDK's raw key option


def assert_clean(error: ConfigurationError, *values: str) -> None:
    check_clean(error, values, (SECRET, MASTER_KEY, UNPADDED, RAW_KEY))


# -- log, memory, null: every problem, in the order of the options ---------------------------


def test_log_names_every_unknown_and_wrong_option() -> None:
    options = {"colour": "blue", "logger": "", "level": "LOUDEST", "size": 3}
    error = raised({"DRIVERS": {"log": options}}, "log")
    assert [p.key for p in error.problems] == ["colour", "size", "logger", "level"]
    assert all(p.driver == "log" for p in error.problems)
    assert error.key == "colour"
    assert "4 problems" in str(error)
    assert all(repr(p.key) in str(error) for p in error.problems), str(error)
    assert_clean(error, "blue", "LOUDEST")


def test_log_with_only_wrong_values_names_both() -> None:
    error = raised({"DRIVERS": {"log": {"logger": 7, "level": ["x"]}}}, "log")
    assert [p.key for p in error.problems] == ["logger", "level"]


def test_log_with_one_problem_raises_it_alone() -> None:
    error = raised({"DRIVERS": {"log": {"level": "nope"}}}, "log")
    assert error.problems == (error,)
    assert (error.key, error.problem) == ("level", "must be a logging level name or number")


def test_log_accepts_its_options() -> None:
    driver = BroadcastLogDriver.from_config({"logger": "app.h13", "level": "debug"})
    assert (driver.logger.name, driver.level) == ("app.h13", logging.DEBUG)
    with Broadcast({"DRIVERS": {"log": {"logger": "app.h13", "level": 5}}}) as broadcast:
        assert broadcast.driver("log").name == "log"


def test_memory_names_every_unknown_and_wrong_option() -> None:
    options = {"max_history": 0, "colour": "blue", "size": 3}
    error = raised({"DRIVERS": {"memory": options}}, "memory")
    assert [p.key for p in error.problems] == ["colour", "size", "max_history"]
    assert all(p.driver == "memory" for p in error.problems)
    assert_clean(error, "blue")


@pytest.mark.parametrize("max_history", [None, 1, 50])
def test_memory_accepts_its_option(max_history: int | None) -> None:
    with Broadcast({"DRIVERS": {"memory": {"max_history": max_history}}}) as broadcast:
        assert broadcast.driver("memory").name == "memory"


def test_null_names_every_unknown_option() -> None:
    # null takes the base Driver.from_config, which already names them all
    error = raised({"DRIVERS": {"null": {"colour": "blue", "size": 3}}}, "null")
    assert [p.key for p in error.problems] == ["colour", "size"]
    assert_clean(error, "blue")


# -- pusher: no hosts entry holding a secret value is quoted ----------------------------------


def _pusher(**options: Any) -> ConfigurationError:
    given = {"app_id": "1", "key": "k", "secret": SECRET, **options}
    return raised({"DRIVERS": {"pusher": given}}, "pusher")


def test_hosts_entry_holding_the_unpadded_master_key_is_not_quoted() -> None:
    # the key given without its padding (its own problem) and pasted into hosts as well
    error = _pusher(encryption_master_key_base64=UNPADDED, hosts=["ok-host:1", UNPADDED + ":0"])
    assert [p.key for p in error.problems] == ["hosts", "encryption_master_key_base64"]
    assert "entry 1 is not a node" in str(error)
    assert_clean(error, UNPADDED)


def test_hosts_entry_holding_the_master_key_without_its_padding_is_not_quoted() -> None:
    # the option is right; the entry is the key with its '=' lost on the way
    error = _pusher(encryption_master_key_base64=MASTER_KEY, hosts=[UNPADDED + ":99999"])
    assert [p.key for p in error.problems] == ["hosts"]
    assert "entry 0 is not a node" in str(error)
    assert_clean(error, UNPADDED)


def test_hosts_entry_holding_the_raw_master_key_is_not_quoted() -> None:
    # encryption_master_key is the pusher SDK's option, unknown here: still a secret
    error = _pusher(encryption_master_key=RAW_KEY, hosts=["[" + RAW_KEY + "]"])
    assert [p.key for p in error.problems] == ["encryption_master_key", "hosts"]
    assert "entry 0 is not a node" in str(error)
    assert_clean(error, RAW_KEY)


def test_hosts_entry_that_is_part_of_a_secret_is_not_quoted() -> None:
    # six digits: no port, so not a node; and it would show the secret's middle
    error = _pusher(hosts=["secret:012345"])
    assert "entry 0 is not a node" in str(error)
    assert_clean(error, "secret:012345")


def test_hosts_entry_holding_no_secret_is_still_quoted() -> None:
    error = _pusher(encryption_master_key_base64=MASTER_KEY, hosts=["ok-host:1", "soketi-2:0"])
    assert "entry 1 ('soketi-2:0') is not a node" in str(error)
