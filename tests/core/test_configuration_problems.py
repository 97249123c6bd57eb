"""A driver reports every wrong option at once: ``ConfigurationError.combine()`` makes one
error that lists them all, with one ConfigurationError per problem in ``problems``.

A driver that raises a plain ConfigurationError at its first problem (every third-party
driver written before ``combine``) works exactly as before. The pusher and ably drivers
collect every problem, through ``Broadcast(config)`` and ``broadcasting check`` alike. No
value is ever shown, and no frame of a combined error's tracebacks holds a revealed secret.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from secret_scan import assert_clean as check_clean
from secret_scan import configuration_error as raised

from broadcasting import ConfigurationError
from broadcasting.plugin import Driver, Secret, register_driver, unregister_driver
from broadcasting.testing._suite.leaks import chain

SECRET = "cfg-problems-secret-0123456789"
ABLY_KEY = "appid.keyid:cfg-problems-ably-secret-0123"


def assert_clean(error: ConfigurationError, *values: str) -> None:
    """No value in anything an error tracker records of ``error`` and its problems."""
    check_clean(error, values, (SECRET, ABLY_KEY))


# -- ConfigurationError.combine ------------------------------------------------------------


def test_one_error_is_its_own_only_problem() -> None:
    error = ConfigurationError("acme", "port", "must be an int")
    assert error.problems == (error,)
    assert ConfigurationError.combine([error]) is error
    assert str(error) == "Configuration error in the 'acme' driver, key 'port': must be an int"


def test_several_problems_are_listed_in_one_message_in_order() -> None:
    first = ConfigurationError("acme", "port", "must be an int")
    second = ConfigurationError("acme", "ssl", "must be True or False")
    third = ConfigurationError("acme", None, "its options must be complete")
    error = ConfigurationError.combine([first, second, third])
    assert error.problems == (first, second, third)
    assert (error.driver, error.key) == ("acme", "port")  # the first problem's key
    assert str(error) == (
        "Configuration error in the 'acme' driver: 3 problems: [1] key 'port': must be an int; "
        "[2] key 'ssl': must be True or False; [3] its options must be complete"
    )
    assert isinstance(error, ValueError)  # what `except ValueError` caught before


def test_combined_errors_are_flattened() -> None:
    a, b, c = (ConfigurationError("acme", key, "is wrong") for key in "abc")
    error = ConfigurationError.combine([ConfigurationError.combine([a, b]), c])
    assert error.problems == (a, b, c)


def test_combine_refuses_nothing_and_errors_of_two_drivers() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ConfigurationError.combine([])
    mixed = [ConfigurationError("acme", "a", "x"), ConfigurationError("other", "b", "y")]
    with pytest.raises(ValueError, match="one driver"):
        ConfigurationError.combine(mixed)


# -- a driver of a third party, and the base class ------------------------------------------


class FirstOnly(Driver):
    """Raises a plain ConfigurationError at its first problem, as drivers did before."""

    name = "first-only"
    raised: ConfigurationError | None = None

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> FirstOnly:
        for key in ("a", "b"):
            if key in options:
                cls.raised = ConfigurationError(cls.name, key, "must not be given")
                raise cls.raised
        return cls()

    def send(self, batch: Any) -> None:
        """Never called here."""


def _reveal(token: str, key: str) -> None:
    """A check that holds the revealed token in its frame when it raises."""
    if not token.startswith("tok-"):
        raise ConfigurationError("gathers", key, "must start with 'tok-'")


class Gathers(Driver):
    """Checks two tokens, revealed into a helper's frame, and raises every problem at once."""

    name = "gathers"
    secret_options = frozenset({"first", "second"})

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> Gathers:
        found = []
        for key in ("first", "second"):
            try:
                _reveal(options[key].reveal(), key)
            except ConfigurationError as exc:  # its traceback holds _reveal's frame
                found.append(exc)
        if found:
            raise ConfigurationError.combine(found)
        return cls()

    def send(self, batch: Any) -> None:
        """Never called here."""


@pytest.fixture
def drivers() -> Iterator[None]:
    register_driver("first-only", FirstOnly)
    register_driver("gathers", Gathers)
    yield
    unregister_driver("first-only")
    unregister_driver("gathers")


@pytest.mark.usefixtures("drivers")
def test_a_driver_that_raises_its_first_problem_works_as_before() -> None:
    error = raised({"DRIVERS": {"first-only": {"a": 1, "b": 2}}}, "first-only")
    assert error is FirstOnly.raised
    assert error.problems == (error,)
    assert (error.driver, error.key) == ("first-only", "a")
    said = "Configuration error in the 'first-only' driver, key 'a': must not be given"
    assert str(error) == said


@pytest.mark.usefixtures("drivers")
def test_a_combined_error_keeps_no_frame_that_holds_a_revealed_secret() -> None:
    options = {"first": SECRET, "second": "also-" + SECRET}
    error = raised({"DRIVERS": {"gathers": options}}, "gathers")
    assert [p.key for p in error.problems] == ["first", "second"]
    assert all(p.__traceback__ is None for p in error.problems)
    assert len(chain(error)) == 3  # the kit's leak checks look into each problem too
    assert_clean(error, SECRET)


def test_the_base_from_config_names_every_unknown_option() -> None:
    class Plain(Driver):
        name = "plain"

        def send(self, batch: Any) -> None:
            """Never called here."""

    register_driver("plain", Plain)
    try:
        error = raised({"DRIVERS": {"plain": {"colour": "red", "size": 3}}}, "plain")
    finally:
        unregister_driver("plain")
    assert [(p.key, p.problem) for p in error.problems] == [
        ("colour", "unknown option"),
        ("size", "unknown option"),
    ]
    assert "red" not in str(error)


# -- the official drivers ---------------------------------------------------------------------

PUSHER = {"app_id": "1234567", "key": "app-key", "secret": SECRET}


def test_pusher_names_every_wrong_option_at_once() -> None:
    options = {
        **PUSHER,
        "app_id": "not-numeric-id",
        "ssl": "yes-please",
        "port": "port-text",
        "colour": "blue-value",
        "max_connections": 0,
    }
    error = raised({"DRIVERS": {"pusher": options}}, "pusher")
    assert [p.key for p in error.problems] == ["colour", "app_id", "ssl", "port", "max_connections"]
    assert all(p.driver == "pusher" for p in error.problems)
    assert all(repr(p.key) in str(error) for p in error.problems), str(error)
    assert_clean(error, SECRET, "not-numeric-id", "yes-please", "port-text", "blue-value")


def test_pusher_with_the_secret_missing_and_wrong_hosts_shows_no_entry() -> None:
    # the secret is unknown, so no entry of hosts is quoted (one could be the secret)
    options = {"app_id": "1", "key": "k", "hosts": ["ok-host:1", SECRET + ":99999"]}
    error = raised({"DRIVERS": {"pusher": options}}, "pusher")
    assert [p.key for p in error.problems] == ["secret", "hosts"]
    assert "entry 1 is not a node" in str(error)
    assert_clean(error, SECRET, "ok-host")


def test_pusher_a_wrong_key_is_not_also_called_missing() -> None:
    error = raised({"DRIVERS": {"pusher": {**PUSHER, "key": " spaced ", "port": 0}}}, "pusher")
    assert [p.key for p in error.problems] == ["key", "port"]


def test_pusher_with_one_wrong_option_says_what_it_said_before() -> None:
    error = raised({"DRIVERS": {"pusher": {**PUSHER, "port": 0}}}, "pusher")
    assert error.problems == (error,)
    assert str(error) == (
        "Configuration error in the 'pusher' driver, key 'port': must be an int from 1 to 65535"
    )


def test_ably_names_every_wrong_option_at_once() -> None:
    options = {
        "key": ABLY_KEY,
        "tls": "no-value",
        "port": "port-text",
        "colour": "blue-value",
        "fallback_hosts": ["https://a.example", "b.example/x"],
        "client_id": "*",
    }
    error = raised({"DRIVERS": {"ably": options}}, "ably")
    assert [p.key for p in error.problems] == [
        "colour",
        "port",
        "tls",
        "fallback_hosts",  # once, for its first wrong entry
        "client_id",
    ]
    assert_clean(error, ABLY_KEY, "no-value", "port-text", "blue-value", "a.example")


def test_ably_a_wrong_key_beside_wrong_options() -> None:
    options = {"key": Secret(SECRET), "token_ttl": 5, "rest_host": "a", "endpoint": "b"}
    error = raised({"DRIVERS": {"ably": options}}, "ably")
    assert [p.key for p in error.problems] == ["key", "rest_host", "token_ttl"]
    assert_clean(error, SECRET)


# -- broadcasting check ---------------------------------------------------------------------


def test_broadcasting_check_lists_every_wrong_option(tmp_path: Path) -> None:
    config = tmp_path / "broadcast.py"
    options = {**PUSHER, "ssl": "yes-please", "port": "port-text"}
    config.write_text(f"DRIVER = 'pusher'\nDRIVERS = {{'pusher': {options!r}}}\n")
    done = subprocess.run(
        [sys.executable, "-m", "broadcasting", "check", "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    (row,) = json.loads(done.stdout)
    assert row["status"] == "error"
    assert row["detail"].startswith("ConfigurationError: Configuration error in the 'pusher'")
    assert "2 problems" in row["detail"] and "'ssl'" in row["detail"] and "'port'" in row["detail"]
    for value in (SECRET, "yes-please", "port-text"):
        assert value not in done.stdout + done.stderr
