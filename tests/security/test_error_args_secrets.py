"""Since d2cdc61 an error's ``args`` hold what its ``__init__`` took (so that
``type(e)(*e.args)`` makes it again): what Celery's JSON result backend stores of a failed
task, and what an error tracker may record. Those ``args`` must hold no secret, and no text
the message did not already say, for the errors the drivers raise about secret options (the
pusher ``secret`` and master key, the ably ``key``), a wrong secret refused by a real soketi,
and an outbox URL with a password.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))
from soketi_pytest import running_soketi
from soketi_server import SoketiServer

from broadcasting import (
    Broadcast,
    BroadcastError,
    ConfigurationError,
    OutboxError,
    PublishError,
    ServiceError,
)

SECRET = "sek-args-5d21c9e04b7a"


@pytest.fixture(scope="module")
def soketi() -> Iterator[SoketiServer]:
    yield from running_soketi()


def texts(value: object) -> Iterator[str]:
    """Every text in ``value`` (nested tuples, lists and mappings), as JSON would keep it."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple)):
        for each in value:
            yield from texts(each)
    elif isinstance(value, dict):
        for key, each in value.items():
            yield from texts(key)
            yield from texts(each)


def errors_of(error: BaseException) -> Iterator[BaseException]:
    """``error``, its problems, causes and chain."""
    seen: set[int] = set()
    todo = [error]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += list(getattr(current, "problems", ()))
        todo += list(getattr(current, "causes", {}).values())
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]


def assert_args_clean(error: BroadcastError, secret: str = SECRET) -> None:
    """No ``secret`` in the args (as JSON keeps them) of ``error`` or anything it holds, and
    no text in a driver's error's args that its message does not say."""
    for each in errors_of(error):
        stored = json.dumps(each.args, default=repr)
        assert secret not in stored, (type(each).__name__, stored)
        if isinstance(each, (ConfigurationError, ServiceError)) and not getattr(
            each, "causes", None
        ):
            said = str(each)
            unsaid = [t for t in texts(each.args) if t not in said]
            assert unsaid == [], (said, unsaid)


def refused(config: dict[str, Any], name: str) -> ConfigurationError:
    with Broadcast(config) as broadcast, pytest.raises(ConfigurationError) as info:
        broadcast.driver(name)
    return info.value


PUSHER = {"app_id": "1", "key": "app-key", "secret": SECRET, "host": "127.0.0.1"}


@pytest.mark.parametrize(
    "options",
    [
        {**PUSHER, "secret": f" {SECRET} "},
        {**PUSHER, "encryption_master_key_base64": SECRET},
        {**PUSHER, "secret": f"{SECRET}\n", "app_id": "x", "timeout": -1},
    ],
    ids=["secret-spaced", "master-key", "several-problems"],
)
def test_pusher_configuration_errors_carry_no_secret_in_args(options: dict[str, Any]) -> None:
    error = refused({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}, "pusher")
    assert_args_clean(error)


@pytest.mark.parametrize(
    "key",
    [f"app.keyid {SECRET}", f"app.keyid:{SECRET} more", f"{SECRET}\u00e9"],
    ids=["no-colon", "two-parts", "not-ascii"],
)
def test_ably_configuration_errors_carry_no_key_in_args(key: str) -> None:
    config = {"DRIVER": "ably", "DRIVERS": {"ably": {"key": key, "timeout": 0}}}
    assert_args_clean(refused(config, "ably"))


def test_a_wrong_pusher_secret_refused_by_soketi_is_not_in_args(soketi: SoketiServer) -> None:
    options = {**soketi.driver_options(), "secret": SECRET}
    with (
        Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}) as broadcast,
        pytest.raises(PublishError) as info,
    ):
        broadcast.channel(["orders", "invoices"], {"id": 1}, "shipped")
    assert info.value.kind == "auth"
    assert_args_clean(info.value)


def test_an_outbox_url_password_is_not_in_args() -> None:
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:1/test"
    with (
        Broadcast({"DRIVER": "memory", "OUTBOX": {"url": url}}) as broadcast,
        pytest.raises(OutboxError) as info,
    ):
        broadcast.channel("orders", {"id": 1}, "shipped", send="outbox")
    assert_args_clean(info.value)
