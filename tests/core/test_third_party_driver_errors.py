"""A third-party driver's errors, written as docs/writing-a-driver.md says (its error table:
``ConfigurationError(driver, key, problem)``, ``PublishError(message, driver=..., status=...,
retryable=..., maybe_delivered=...)``, ``QueryError(message, driver=..., kind=...)``) and
subclassed as a driver author would, after d2cdc61 made every public error keep what its
``__init__`` took in ``args`` (``_made_of``).

What they say (``str``, ``repr``, a traceback, ``logging.exception``) is what they said before
that change, through pickle and copy too, and ``except`` catches them as before. A subclass that
sets ``args`` itself, or calls ``Exception.__init__`` after the library's ``__init__``, says its
own message: the library's (``_said``) was kept for the message while ``args`` had changed, so
``str()`` or ``repr()`` said the parent's text instead.

The driver is a package written to a temporary directory and registered, as a test of a
third-party driver would have it, and published to through the core; its ``send`` raises
without a service (the errors are what is looked at, not a network).
"""

from __future__ import annotations

import copy
import importlib
import json
import logging
import pickle
import sys
import textwrap
import traceback
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from broadcasting import (
    Broadcast,
    BroadcastError,
    ConfigurationError,
    PublishError,
    QueryError,
    ServiceError,
)
from broadcasting.plugin import register_driver, unregister_driver

DRIVER = '''
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broadcasting.plugin import (
    Batch,
    Capabilities,
    ConfigurationError,
    Driver,
    PublishError,
    QueryError,
    Secret,
)

OPTIONS = frozenset({"api_key", "timeout"})


class AcmeRefused(PublishError):
    """Acme refused the request: an __init__ of its own, the library's keywords to super."""

    def __init__(self, status: int, *, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"Acme refused the publish: {reason}", driver="acme-errors", status=status
        )


class AcmeUnavailable(PublishError):
    """No __init__ of its own."""


class AcmeArgs(PublishError):
    """Sets its args to what it says, after the library's __init__ (a 0.3 driver's way)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"(unset) {message}", driver="acme-errors", kind="invalid")
        self.args = (message,)


class AcmeOption(ConfigurationError):
    """Its own message, set with Exception.__init__ after the library's __init__."""

    def __init__(self, key: str) -> None:
        super().__init__("acme-errors", key, "is wrong")
        Exception.__init__(self, f"acme-errors: the option {key!r} is wrong")


class AcmeQuery(QueryError):
    pass


class AcmeErrorsDriver(Driver):
    name = "acme-errors"
    capabilities = Capabilities(channels_per_request=1)

    def __init__(self, api_key: Secret, *, timeout: float = 5.0) -> None:
        self._api_key = api_key
        self.timeout = timeout

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> AcmeErrorsDriver:
        problems = [
            ConfigurationError(cls.name, str(key), "unknown option")
            for key in options
            if key not in OPTIONS
        ]
        api_key = options.get("api_key")
        if not isinstance(api_key, Secret) or not api_key:
            problems.append(ConfigurationError(cls.name, "api_key", "is required (a str)"))
        timeout = options.get("timeout", 5.0)
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            problems.append(
                ConfigurationError(cls.name, "timeout", "must be a number of seconds > 0")
            )
        if problems:
            raise ConfigurationError.combine(problems)
        assert isinstance(api_key, Secret)
        return cls(api_key, timeout=float(timeout))

    def send(self, batch: Batch) -> None:
        channel = batch.channels[0]
        if channel == "refused":
            raise AcmeRefused(403, reason="the plan has no such channel")
        if channel == "down":
            raise AcmeUnavailable(
                "Acme answered 503",
                driver=self.name,
                status=503,
                retryable=False,
                maybe_delivered=True,
            )
        if channel == "args":
            raise AcmeArgs("Acme refused the body")
        raise PublishError(
            "Acme answered 500", driver=self.name, status=500, maybe_delivered=True
        )

    def __repr__(self) -> str:
        return f"<AcmeErrorsDriver driver={self.name!r}>"
'''

KEY = "acme-key-3rdparty-7f3c91"


@pytest.fixture
def acme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """The driver's package, importable and registered under its name."""
    package = tmp_path / "src" / "broadcasting_acme_errors"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(DRIVER), encoding="utf-8")
    monkeypatch.syspath_prepend(str(package.parent))
    module = importlib.import_module("broadcasting_acme_errors")
    register_driver("acme-errors", module.AcmeErrorsDriver)
    try:
        yield module
    finally:
        unregister_driver("acme-errors")
        sys.modules.pop("broadcasting_acme_errors", None)


def config(**options: object) -> dict[str, object]:
    return {"DRIVER": "acme-errors", "DRIVERS": {"acme-errors": {"api_key": KEY, **options}}}


def published_to(channel: str) -> PublishError:
    """The core's error for a publish to ``channel``."""
    with Broadcast(config()) as broadcast, pytest.raises(PublishError) as info:
        broadcast.channel(channel, {"id": 1}, "shipped")
    return info.value


def cause(channel: str) -> PublishError:
    """The driver's own error for ``channel``, as the core's error holds it."""
    return published_to(channel).causes[channel]


def kept(error: BaseException) -> list[BaseException]:
    """``error`` and what pickle (every protocol), copy and deepcopy make of it."""
    made = [copy.copy(error), copy.deepcopy(error)]
    made += [pickle.loads(pickle.dumps(error, p)) for p in range(pickle.HIGHEST_PROTOCOL + 1)]
    return [error, *made]


def last_line(error: BaseException) -> str:
    """The last line of ``error``'s traceback as ``traceback`` prints it."""
    return traceback.format_exception(type(error), error, error.__traceback__)[-1].rstrip("\n")


def logged(error: BaseException, caplog: pytest.LogCaptureFixture) -> str:
    """The last line ``logging.exception`` writes while ``error`` is handled."""
    log = logging.getLogger("acme-errors-test")
    with caplog.at_level(logging.ERROR, "acme-errors-test"):
        caplog.clear()
        try:
            raise error
        except BroadcastError:
            log.exception("publish failed")
    return caplog.text.rstrip("\n").splitlines()[-1]


# (the driver's error, its str, its repr): what each said before d2cdc61
SAID: dict[str, tuple[str, str]] = {
    "refused": (
        "Acme refused the publish: the plan has no such channel "
        "(driver='acme-errors', kind=permission, status=403, retryable=False)",
        "AcmeRefused('Acme refused the publish: the plan has no such channel')",
    ),
    "down": (
        "Acme answered 503 (driver='acme-errors', kind=unavailable, status=503, "
        "retryable=False, maybe_delivered=True)",
        "AcmeUnavailable('Acme answered 503')",
    ),
    "args": (
        "Acme refused the body (driver='acme-errors', kind=invalid, retryable=False)",
        "AcmeArgs('Acme refused the body')",
    ),
    "other": (
        "Acme answered 500 (driver='acme-errors', kind=unavailable, status=500, "
        "retryable=False, maybe_delivered=True)",
        "PublishError('Acme answered 500')",
    ),
}


@pytest.mark.parametrize("channel", list(SAID))
def test_a_drivers_publish_error_says_what_it_said(
    acme: types.ModuleType, channel: str, caplog: pytest.LogCaptureFixture
) -> None:
    text, shown = SAID[channel]
    error = cause(channel)
    for each in kept(error):
        assert (str(each), repr(each)) == (text, shown)
    name = f"{type(error).__module__}.{type(error).__qualname__}"
    assert last_line(error) == f"{name}: {text}"
    assert logged(error, caplog) == f"{name}: {text}"


def test_the_cores_error_names_the_drivers_message(acme: types.ModuleType) -> None:
    error = published_to("args")
    assert str(error).startswith("Acme refused the body")
    assert error.failed == ("args",) and error.kind == "invalid"


def test_a_subclass_without_an_init_of_its_own_is_made_again_from_its_args(
    acme: types.ModuleType,
) -> None:
    """What docs/writing-a-driver.md advises for an error class of a driver's own: a job
    queue's result backend that keeps errors as JSON (Celery's) makes one again as
    ``type(e)(*args)``. A class with an ``__init__`` of its own cannot be made so: its
    ``args`` are what the library's ``__init__`` took (the docs say so)."""
    error = cause("down")
    assert type(error) is acme.AcmeUnavailable
    again = type(error)(*json.loads(json.dumps(error.args)))
    assert (type(again), str(again), repr(again)) == (type(error), str(error), repr(error))
    assert (again.kind, again.status, again.maybe_delivered) == (
        error.kind,
        error.status,
        error.maybe_delivered,
    )
    refused = cause("refused")
    assert type(refused) is acme.AcmeRefused
    with pytest.raises(TypeError):
        type(refused)(*refused.args)


def test_a_subclass_that_sets_its_args_says_its_own_repr(acme: types.ModuleType) -> None:
    error = acme.AcmeArgs("Acme refused the body")
    assert error.args == ("Acme refused the body",)
    assert repr(error) == "AcmeArgs('Acme refused the body')"
    assert "(unset)" not in repr(error)


def test_a_subclass_that_calls_exception_init_says_its_own_message(
    acme: types.ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    error = acme.AcmeOption("timeout")
    own = "acme-errors: the option 'timeout' is wrong"
    for each in kept(error):
        assert str(each) == own
        assert repr(each) == f"AcmeOption({own!r})"
        assert each.key == "timeout" and each.problem == "is wrong"
    assert last_line(error) == f"broadcasting_acme_errors.AcmeOption: {own}"
    assert logged(error, caplog) == f"broadcasting_acme_errors.AcmeOption: {own}"


def test_the_drivers_configuration_errors_say_what_they_said(acme: types.ModuleType) -> None:
    with (
        Broadcast(config(timeout=0, colour="red")) as broadcast,
        pytest.raises(ConfigurationError) as info,
    ):
        broadcast.driver("acme-errors")
    error = info.value
    text = (
        "Configuration error in the 'acme-errors' driver: 2 problems: "
        "[1] key 'colour': unknown option; [2] key 'timeout': must be a number of seconds > 0"
    )
    for each in kept(error):
        assert str(each) == text
        assert repr(each) == f"ConfigurationError({text!r})"
        assert [p.key for p in each.problems] == ["colour", "timeout"]
    assert last_line(error) == f"broadcasting._errors.ConfigurationError: {text}"
    shown = [text, repr(error), *map(repr, error.args), *map(repr, vars(error).values())]
    assert not [each for each in shown if KEY in each]


@pytest.mark.parametrize(
    "make",
    [
        lambda m: m.AcmeRefused(403, reason="no"),
        lambda m: m.AcmeUnavailable("down", driver="acme-errors", retryable=True),
        lambda m: m.AcmeArgs("bad body"),
    ],
    ids=["own-init", "no-init", "own-args"],
)
def test_except_catches_a_drivers_publish_error_as_before(
    acme: types.ModuleType, make: Callable[[types.ModuleType], PublishError]
) -> None:
    for base in (PublishError, ServiceError, BroadcastError, Exception):
        with pytest.raises(base):
            raise make(acme)
    with pytest.raises(PublishError) as info:
        raise make(acme)
    assert not isinstance(info.value, (QueryError, ValueError))


def test_except_catches_a_drivers_query_and_configuration_errors_as_before(
    acme: types.ModuleType,
) -> None:
    query = acme.AcmeQuery("refused the key", driver="acme-errors", kind="auth")
    assert isinstance(query, (QueryError, ServiceError)) and not isinstance(query, PublishError)
    assert str(query) == "refused the key (driver='acme-errors', kind=auth, retryable=False)"
    assert repr(query) == "AcmeQuery('refused the key')"
    option = acme.AcmeOption("timeout")
    for base in (ConfigurationError, ValueError, BroadcastError):
        with pytest.raises(base):
            raise option
