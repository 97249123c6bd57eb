"""Every public exception class is made again, equal, by calling it with its ``args``:
``type(e)(*e.args)``, and so after those args went through JSON (tuples back as lists).

That is how Celery's JSON result backend hands a task's exception to ``AsyncResult.get()``
(celery/backends/base.py stores its type, module and ``args``, and calls the class with the
args): a PublishError's ``args`` were its message alone, which its ``__init__`` refuses without
``driver=``, so the caller got a plain ``Exception`` naming the class instead. A class added
without this fails :func:`test_every_public_error_is_made_again_from_its_args` (it is made
from one message when :data:`MADE` does not know it). The real worker's test is
tests/queues/test_errors_json_backend.py.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable

import pytest
from error_samples import described

import broadcasting
import broadcasting.contrib.celery
import broadcasting.contrib.dramatiq
import broadcasting.contrib.rq
import broadcasting.plugin
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
from broadcasting.contrib.celery import TaskFailed, TaskRetry
from broadcasting.outbox._store import (
    OutboxFileMissing,
    OutboxSchemaMissing,
    OutboxTablesMissing,
    OwnerInUse,
)

MODULES = [
    broadcasting,
    broadcasting.plugin,
    broadcasting.contrib.celery,
    broadcasting.contrib.dramatiq,
    broadcasting.contrib.rq,
]
PUBLIC = sorted(
    {
        value
        for module in MODULES
        for value in map(vars(module).get, module.__all__)
        if isinstance(value, type) and issubclass(value, BaseException)
    },
    key=lambda cls: cls.__name__,
)


def _combined(driver: str = "pusher") -> ConfigurationError:
    return ConfigurationError.combine(
        ConfigurationError(driver, key, problem)
        for key, problem in [("port", "must be an int"), (None, "names no host"), ("ssl", "no")]
    )


#: One error of each class whose __init__ takes more than a message, made as the library does.
MADE: dict[type[BaseException], list[Callable[[], BaseException]]] = {
    ConfigurationError: [
        lambda: ConfigurationError("pusher", "port", "must be an int"),
        lambda: ConfigurationError("pusher", None, "names no host"),
        lambda: ConfigurationError("config", "default", "names no driver"),
        lambda: ConfigurationError("config", None, "is not a mapping"),
        _combined,
        lambda: _combined("config"),
    ],
    DriverNotFoundError: [
        lambda: DriverNotFoundError("pushr", ["pusher", "ably"]),
        lambda: DriverNotFoundError("nothing"),
    ],
    PluginLoadError: [
        lambda: PluginLoadError(
            entry_point="acme", value="acme:Driver", distribution="acme", reason="no module"
        ),
        lambda: PluginLoadError(entry_point="x", value="x:D", distribution=None, reason="bad"),
    ],
    NotSupportedError: [
        lambda: NotSupportedError("log", "presence", "use pusher"),
        lambda: NotSupportedError("null", "history"),
    ],
    PayloadTooLargeError: [lambda: PayloadTooLargeError("too large", size=20, limit=10)],
    ServiceError: [
        lambda: ServiceError("refused", driver="pusher", status=429, code=7),
        lambda: ServiceError("down", driver="ably", retryable=True),
    ],
    QueryError: [lambda: QueryError("refused", driver="ably", kind="auth", code="40101")],
    PublishError: [
        lambda: PublishError("refused", driver="pusher", status=401),
        lambda: PublishError(
            "not acknowledged",
            driver="pusher",
            status=503,
            retryable=True,
            delivered=["a"],
            failed=["b"],
            unknown=[f"u{n}" for n in range(12)],
            requests=3,
            causes={
                "b": PublishError("refused", driver="pusher", status=503, failed=["b"]),
                "u0": PublishError("timed out", driver="pusher", maybe_delivered=True),
            },
        ),
    ],
    CloseError: [lambda: CloseError([OSError("socket"), BroadcastError("flush")])],
    TaskFailed: [
        lambda: TaskFailed("gave up", message_id="m1", outcome="failed", channels=["a", "b"]),
        lambda: TaskFailed("unknown", message_id="m2", outcome="unknown"),
    ],
    TaskRetry: [lambda: TaskRetry("service down", message_id="m3", delay=2.5)],
}


def made(cls: type[BaseException]) -> list[BaseException]:
    return [make() for make in MADE.get(cls, [lambda: cls("what went wrong")])]


#: The outbox's own errors, which its commands and a relay raise (not exported by name).
OUTBOX_MADE: list[Callable[[], BaseException]] = [
    lambda: OwnerInUse("relay-1", 1796608457.25),
    lambda: OwnerInUse("relay-1", 1796608457.25, "relay name 'relay-1' is taken"),
    lambda: OutboxTablesMissing("the outbox's table 't' does not exist", "t"),
    lambda: OutboxSchemaMissing("the schema 's' does not exist", "s"),
    lambda: OutboxFileMissing("the outbox's SQLite file 'x.sqlite3' does not exist", "x.sqlite3"),
]


@pytest.mark.parametrize("make", OUTBOX_MADE, ids=lambda make: type(make()).__name__)
def test_the_outbox_errors_are_made_again_from_their_args(
    make: Callable[[], BaseException],
) -> None:
    error = make()
    again = type(error)(*json.loads(json.dumps(error.args)))
    assert described(again) == described(error)


def test_the_public_classes_are_all_here() -> None:
    assert {BroadcastError, ConfigurationError, PublishError, TaskFailed, TaskRetry} <= set(PUBLIC)
    assert set(MADE) <= set(PUBLIC)


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda cls: cls.__name__)
def test_every_public_error_is_made_again_from_its_args(cls: type[BaseException]) -> None:
    for error in made(cls):
        again = type(error)(*error.args)
        assert type(again) is cls
        assert again.args == error.args
        assert described(again) == described(error)


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda cls: cls.__name__)
def test_every_public_error_is_made_again_from_its_args_through_json(
    cls: type[BaseException],
) -> None:
    """As Celery's JSON result backend keeps them: each argument JSON holds, as JSON has it."""
    for error in made(cls):
        args = json.loads(json.dumps(error.args))
        again = type(error)(*args)
        assert described(again) == described(error)
        assert json.loads(json.dumps(again.args)) == args


def test_a_combined_error_made_again_keeps_its_problems_and_first_key() -> None:
    error = _combined()
    again = ConfigurationError(*json.loads(json.dumps(error.args)))
    assert (again.driver, again.key) == ("pusher", "port")
    assert [(p.driver, p.key, p.problem) for p in again.problems] == [
        ("pusher", "port", "must be an int"),
        ("pusher", None, "names no host"),
        ("pusher", "ssl", "no"),
    ]
    assert str(again) == str(error)
    assert str(again).startswith("Configuration error in the 'pusher' driver: 3 problems: [1]")
    # it combines again as it did
    more = ConfigurationError.combine([again, ConfigurationError("pusher", "host", "is bad")])
    assert [p.key for p in more.problems] == ["port", None, "ssl", "host"]


def test_a_publish_error_made_again_keeps_its_causes_and_outcomes() -> None:
    error = made(PublishError)[1]
    assert isinstance(error, PublishError)
    again = PublishError(*json.loads(json.dumps(error.args)))
    assert (again.delivered, again.failed, again.unknown[:2]) == (("a",), ("b",), ("u0", "u1"))
    assert (again.kind, again.status, again.retryable, again.requests) == (
        "unavailable",
        503,
        True,
        3,
    )
    assert again.maybe_delivered and set(again.causes) == {"b", "u0"}
    assert type(again.causes["b"]) is PublishError and again.causes["b"].failed == ("b",)
    assert again.causes["u0"].maybe_delivered
    assert again.args[0] == "not acknowledged"  # the message alone, as the health check reads it


def test_reprs_say_the_message_as_before_and_pickle_keeps_it_all() -> None:
    error = made(PublishError)[1]
    assert repr(error) == "PublishError('not acknowledged')"
    config = ConfigurationError("pusher", "port", "must be an int")
    assert repr(config) == (
        "ConfigurationError(\"Configuration error in the 'pusher' driver, key 'port': "
        'must be an int")'
    )
    for cls in PUBLIC:
        for each in made(cls):
            back = pickle.loads(pickle.dumps(each))
            assert back.args == each.args and described(back) == described(each)


def test_an_error_of_a_subclass_with_a_message_only_is_as_it_was() -> None:
    class Mine(BroadcastError):
        pass

    error = Mine("plain")
    assert (error.args, str(error), repr(error)) == (("plain",), "plain", "Mine('plain')")
    assert described(type(error)(*error.args)) == described(error)
