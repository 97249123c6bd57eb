"""The core's delivery options (``retries``, ``batch``, ``batch_linger``...) are checked as the
drivers check theirs: every wrong one at once, in one ConfigurationError whose ``problems``
hold one each, and never a value (a secret pasted into the wrong option included). One
wrong option says what it said before. The queues' own retry settings (``retries``,
``backoff``, ``max_backoff`` of a QueuePlugin) are named each as the queue names them.
"""

from __future__ import annotations

from typing import Any

import pytest
from secret_scan import assert_clean as check_clean
from secret_scan import configuration_error as raised

from broadcasting import ConfigurationError
from broadcasting.contrib._queue import QueuePlugin
from broadcasting.plugin import Retry

SECRET = "h8-delivery-secret-0123456789"
PUSHER = {"app_id": "1234567", "key": "app-key", "secret": SECRET}
#: Every delivery option, wrong: the values must show nowhere.
WRONG: dict[str, Any] = {
    "at_least_once": "yes-please",
    "batch": "batch-text",
    "batch_in_flight": 0,
    "batch_linger": 86_000,
    "retries": SECRET,  # a secret pasted into the wrong option is not shown either
    "retry_backoff": "backoff-text",
    "retry_max_backoff": float("inf"),
}
CHECK_ORDER = list(WRONG)  # the order the core checks them in


def assert_clean(error: ConfigurationError, *values: str) -> None:
    check_clean(error, values, (SECRET,))


def test_every_wrong_delivery_option_is_named_at_once() -> None:
    error = raised({"DRIVERS": {"pusher": {**PUSHER, **WRONG}}}, "pusher")
    assert [p.key for p in error.problems] == CHECK_ORDER
    assert {p.driver for p in error.problems} == {"pusher"}
    assert error.key == "at_least_once"  # the first problem's
    assert str(error).startswith("Configuration error in the 'pusher' driver: 7 problems: [1] ")
    assert all(repr(key) in str(error) for key in WRONG), str(error)
    assert_clean(error, SECRET, "yes-please", "batch-text", "backoff-text", "86000", "inf")


def test_one_wrong_delivery_option_says_what_it_said_before() -> None:
    error = raised({"DRIVERS": {"pusher": {**PUSHER, "retries": -1, "batch": True}}}, "pusher")
    assert error.problems == (error,)
    assert str(error) == (
        "Configuration error in the 'pusher' driver, key 'retries': must be an int >= 0"
    )


def test_retry_names_each_wrong_option() -> None:
    options = {"retries": True, "retry_backoff": -1, "retry_max_backoff": float("nan")}
    with pytest.raises(ConfigurationError) as info:
        Retry.from_options("acme", options)
    assert [p.key for p in info.value.problems] == list(options)
    assert [p.problem for p in info.value.problems] == [
        "must be an int >= 0",
        "must be a number of seconds from 0 to 86,400",
        "must be a number of seconds from 0 to 86,400",
    ]


def test_an_in_process_driver_names_every_delivery_option_given() -> None:
    options = {"retries": 3, "batch": False, "at_least_once": True}
    error = raised({"DRIVER": "memory", "DRIVERS": {"memory": options}}, "memory")
    assert [p.key for p in error.problems] == ["at_least_once", "batch", "retries"]
    assert all(p.problem.startswith("does not apply") for p in error.problems)


def test_a_queue_names_each_wrong_retry_setting_as_it_calls_it() -> None:
    with pytest.raises(ConfigurationError) as info:
        QueuePlugin("m:b", name="h8-queue", retries=-1, backoff="slow", max_backoff=1e9)
    error = info.value
    assert [(p.driver, p.key) for p in error.problems] == [
        ("config", "retries"),
        ("config", "backoff"),
        ("config", "max_backoff"),
    ]
    assert "setting 'backoff'" in str(error) and "retry_backoff" not in str(error)
    assert "slow" not in str(error)
    assert error.__context__ is None and error.__cause__ is None
