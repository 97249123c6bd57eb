"""Every exception class ``broadcasting`` exports comes back from pickle as it went in: its
type, message, ``args`` and attributes (a combined ConfigurationError with its problems).

Task queues' workers report a task's error pickled (Celery's result backend keeps it only if
it unpickles, else something else stands in for it), and so do multiprocessing and
``concurrent.futures`` pools, whose parent could not unpickle a ConfigurationError: its
``__init__`` takes the driver, the key and the problem, and pickle called it with the
message alone (``ProcessPoolExecutor`` ended as a broken pool).
"""

from __future__ import annotations

import multiprocessing
import pickle
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

import broadcasting
from broadcasting import (
    BroadcastError,
    CloseError,
    ConfigurationError,
    DriverNotFoundError,
    NotSupportedError,
    PayloadTooLargeError,
    PluginLoadError,
    PublishError,
    QueryError,
    ServiceError,
)
from broadcasting.plugin import Retry


def _combined() -> ConfigurationError:
    return ConfigurationError.combine(
        ConfigurationError("pusher", key, problem)
        for key, problem in [("port", "must be an int"), ("ssl", "must be True or False")]
    )


#: One error of each exported class, made as the library makes them.
MADE: dict[type[BaseException], Callable[[], BaseException]] = {
    ConfigurationError: lambda: ConfigurationError("pusher", "port", "must be an int"),
    DriverNotFoundError: lambda: DriverNotFoundError("pushr", ["pusher", "ably"]),
    PluginLoadError: lambda: PluginLoadError(
        entry_point="acme", value="acme:Driver", distribution="acme", reason="no module"
    ),
    NotSupportedError: lambda: NotSupportedError("log", "presence", "use pusher"),
    PayloadTooLargeError: lambda: PayloadTooLargeError("too large", size=20, limit=10),
    ServiceError: lambda: ServiceError("refused", driver="pusher", status=429, code=7),
    QueryError: lambda: QueryError("refused", driver="ably", kind="auth", code="40101"),
    PublishError: lambda: PublishError(
        "not acknowledged",
        driver="pusher",
        status=503,
        retryable=True,
        delivered=["a"],
        failed=["b"],
        unknown=["c"],
        requests=3,
        causes={"b": PublishError("refused", driver="pusher", status=503)},
    ),
    CloseError: lambda: CloseError([OSError("socket"), BroadcastError("flush")]),
}
EXPORTED = sorted(
    (
        cls
        for cls in map(vars(broadcasting).get, broadcasting.__all__)
        if isinstance(cls, type) and issubclass(cls, BaseException)
    ),
    key=lambda cls: cls.__name__,
)


def made(cls: type[BaseException]) -> BaseException:
    return MADE.get(cls, lambda: cls("what went wrong"))()


def same(value: Any) -> Any:
    """``value`` as compared: an exception by its type, args and attributes."""
    if isinstance(value, BaseException):
        return (type(value), value.args, same(vars(value)))
    if isinstance(value, dict):
        return {k: same(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [same(v) for v in value]
    return value


def test_every_exported_exception_class_is_here() -> None:
    assert {BroadcastError, ConfigurationError, PublishError} <= set(EXPORTED)
    assert set(MADE) <= set(EXPORTED)  # a class whose __init__ takes more is made as it is


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("cls", EXPORTED, ids=lambda cls: cls.__name__)
def test_an_exported_error_round_trips_through_pickle(
    cls: type[BaseException], protocol: int
) -> None:
    error = made(cls)
    back = pickle.loads(pickle.dumps(error, protocol))
    assert type(back) is cls
    assert str(back) == str(error) and repr(back) == repr(error)
    assert same(back) == same(error)


def test_a_configuration_error_keeps_its_key_and_problem() -> None:
    back = pickle.loads(pickle.dumps(ConfigurationError("ably", "tls", "must be True")))
    assert (back.driver, back.key, back.problem) == ("ably", "tls", "must be True")
    assert back.problems == (back,)
    assert str(back) == "Configuration error in the 'ably' driver, key 'tls': must be True"


def test_a_combined_configuration_error_keeps_its_problems() -> None:
    error = _combined()
    back = pickle.loads(pickle.dumps(error))
    assert str(back) == str(error)
    assert (back.driver, back.key) == ("pusher", "port")
    assert [(p.driver, p.key, p.problem) for p in back.problems] == [
        ("pusher", "port", "must be an int"),
        ("pusher", "ssl", "must be True or False"),
    ]
    assert all(type(p) is ConfigurationError for p in back.problems)
    # combined again after the trip, as a worker's error may be
    again = ConfigurationError.combine([back, ConfigurationError("pusher", "host", "is bad")])
    assert [p.key for p in again.problems] == ["port", "ssl", "host"]


def test_a_note_added_to_an_error_comes_back() -> None:
    error = ConfigurationError("pusher", "port", "must be an int")
    if sys.version_info >= (3, 11):
        error.add_note("while starting the worker")
    else:  # PEP 678's attribute, which add_note() sets from Python 3.11
        error.__notes__ = ["while starting the worker"]
    assert pickle.loads(pickle.dumps(error)).__notes__ == ["while starting the worker"]


def test_a_process_pool_hands_a_configuration_error_back() -> None:
    """A real pool of processes: the worker's error, pickled there, is unpickled here."""
    spawn = multiprocessing.get_context("spawn")
    wrong = {"retries": -1, "retry_backoff": "fast"}
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        future = pool.submit(Retry.from_options, "pusher", wrong)
        with pytest.raises(ConfigurationError) as info:
            future.result()
    assert [(p.key, p.problem) for p in info.value.problems] == [
        ("retries", "must be an int >= 0"),
        ("retry_backoff", "must be a number of seconds from 0 to 86,400"),
    ]


def test_celery_keeps_a_configuration_error_as_it_is() -> None:
    """Celery's result backend stores a task's exception only if it unpickles; otherwise it
    stores the nearest base class it can make (a plain BroadcastError or ValueError)."""
    serialization = pytest.importorskip("celery.utils.serialization")
    error = _combined()
    assert serialization.get_pickleable_exception(error) is error
