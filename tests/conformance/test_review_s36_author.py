"""What a third-party driver author met following docs/writing-a-driver.md: holes in the kit.

Each broken driver here passed the conformance kit before its fix. As in
``test_kit_catches_bugs.py``, the suite is written to a temporary directory and
run with pytest in a subprocess (``-p no:asyncio``); each correct driver must
pass everything with nothing skipped, each broken one fail the test about its
bug, for the right reason. The drivers are ``send()`` drivers of the in-process
service in ``toy_service.py`` (a stand-in: no real service refuses a key, loses
an answer and keeps a socket on demand in one process):

* a driver that names the key it was refused with in its error: the kit looked
  only for the declared (working) key, which is never refused, so the leak hid
  behind the wrong key the ``failing_options`` hold;
* ``async def send`` and a plain ``def asend``: the kit failed them everywhere
  with messages that never said what was wrong (``send() raised TypeError``);
* a driver that keeps a socket and has no ``close()``: the kit checked only that
  closing twice works;
* a driver that puts its key in the browser's ``client_config()`` as the public
  ``key``: the kit never called it.
"""

from __future__ import annotations

import re
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, cast

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kit_report import Report, assert_fails_exactly, run_suite

from broadcasting import Broadcast, PublishError
from broadcasting.plugin import Batch, Driver, register_driver, run_sync, unregister_driver

SUITE = """
from __future__ import annotations

import socket
import threading
from typing import Any

import pytest

from broadcasting import PublishError
from broadcasting.plugin import Driver, register_driver
from toy_service import TokenToyDriver, ToyConformance, ToyDriver, ToyService, failing

RIGHT = "tok-right-review-s36-4c1d"
WRONG = "tok-wrong-review-s36-9e7a"  # only in failing_options: not declared


class Tokened(TokenToyDriver):
    # correct: a token option kept as the Secret the core hands over
    name = "author-tokened"
    service = ToyService()

    def client_config(self, auth_endpoint, user_auth_endpoint):
        return {"client": "toy-js", "key": None, "options": {"authEndpoint": auth_endpoint}}


class ShowsRefusedKey(Tokened):
    # names the token the service refused in its error
    name = "author-shows-refused-key"
    service = ToyService()

    def answer(self, status):
        if status == 401:
            raise PublishError(
                f"{self.name}: the service refused the token {self.token.reveal()}",
                driver=self.name,
                status=401,
            )
        return super().answer(status)


class ConfigShowsKey(Tokened):
    # gives the browser its token as the public key (the core lets a "key" through)
    name = "author-config-shows-key"
    service = ToyService()

    def client_config(self, auth_endpoint, user_auth_endpoint):
        return {"client": "toy-js", "key": self.token.reveal(), "options": {}}


# The core refuses these two in the class body (test_a_sync_async_mix_up_is_refused_...);
# set after the class is made, they reach the kit, whose shape check must name them too.
class AsyncDefSend(ToyDriver):
    # its blocking method written as a coroutine
    name = "author-async-def-send"
    service = ToyService()


async def _async_send(self, batch):
    return self.exchange(batch)


AsyncDefSend.send = _async_send


class PlainAsend(ToyDriver):
    # its async method written as a plain function
    name = "author-plain-asend"
    service = ToyService()
    send = Driver.send


def _plain_asend(self, batch):
    return self.exchange(batch)


PlainAsend.asend = _plain_asend


class HoldsSocket(ToyDriver):
    # opens a connection on first use and never closes it (no close())
    name = "author-holds-socket"
    service = ToyService()

    def __init__(self, fault: str = "") -> None:
        super().__init__(fault)
        self._lock = threading.Lock()
        self._sock = None

    def send(self, batch):
        with self._lock:
            if self._sock is None:
                self._sock = socket.socket()
        return super().send(batch)


class ClosesSocket(HoldsSocket):
    # correct: close() releases the connection; the next send opens another
    name = "author-closes-socket"
    service = ToyService()

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


DRIVERS = [Tokened, ShowsRefusedKey, ConfigShowsKey, AsyncDefSend, PlainAsend,
           HoldsSocket, ClosesSocket]
for cls in DRIVERS:
    register_driver(cls.name, cls)

Base = ToyConformance


class TokenBase(Base):
    secrets = (RIGHT,)

    @pytest.fixture
    def driver_options(self) -> dict[str, Any]:
        return {"token": RIGHT}

    @pytest.fixture
    def failing_options(self) -> list[dict[str, Any]]:
        return failing(token=WRONG)


class TestTokened(TokenBase):
    driver_name = "author-tokened"


class TestShowsRefusedKey(TokenBase):
    driver_name = "author-shows-refused-key"


class TestConfigShowsKey(TokenBase):
    driver_name = "author-config-shows-key"


class TestAsyncDefSend(Base):
    driver_name = "author-async-def-send"


class TestPlainAsend(Base):
    driver_name = "author-plain-asend"


class TestHoldsSocket(Base):
    driver_name = "author-holds-socket"


class TestClosesSocket(Base):
    driver_name = "author-closes-socket"
"""

CORRECT = ["TestTokened", "TestClosesSocket"]


def _both(*names: str) -> set[str]:
    return {f"{name}[{mode}]" for name in names for mode in ("sync", "async")}


# class -> (the exact failed cases, phrases the failure messages must contain)
BROKEN: dict[str, tuple[set[str], tuple[str, ...]]] = {
    "TestShowsRefusedKey": (
        _both("test_publish_failures_are_publish_errors"),
        (
            "appears in an error (or its cause) with failing_options[1]",
            "the service refused the token tok-wrong-review-s36-9e7a",
        ),
    ),
    "TestConfigShowsKey": (
        {"test_client_config_is_given_or_not_supported"},
        # the core refuses it first (61f5780); the kit's own check says "appears in"
        ("would be in the browser's client config as its public 'key'",),
    ),
    "TestHoldsSocket": (
        {"test_close_releases_connections"},
        ("HoldsSocket was closed, yet what it held was collected still open", "unclosed <socket"),
    ),
}

# drivers whose every publish fails: the kit must also say, in one test, why
MISSHAPEN = {
    "TestAsyncDefSend": (
        "AsyncDefSend.send() is a coroutine function, but the core calls it without awaiting "
        "it; name it asend()"
    ),
    "TestPlainAsend": (
        "PlainAsend.asend() is not a coroutine function: the core awaits it; write "
        "`async def asend`"
    ),
}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """Run the suite once per test run (kit_report.Report)."""
    return run_suite(
        tmp_path_factory, "review-s36-author", "test_author_drivers.py", textwrap.dedent(SUITE)
    )


@pytest.mark.parametrize("cls", CORRECT)
def test_a_correct_driver_passes_everything_and_skips_nothing(report: Report, cls: str) -> None:
    assert not report["failed"][cls], sorted(report["failed-messages"][cls])
    assert not report["skipped"][cls], sorted(report["skipped"][cls])
    assert {"test_close_releases_connections", "test_async_twins_are_coroutines"} <= set(
        report["passed"][cls]
    )
    assert len(report["passed"][cls]) >= 30


@pytest.mark.parametrize("cls", sorted(BROKEN))
def test_a_broken_driver_fails_exactly_its_check_for_the_right_reason(
    report: Report, cls: str
) -> None:
    """The refused key in an error is found although only the working key was declared;
    a secret the core lets into the page's config as the public ``key`` is found; a
    socket a driver never closes is found once its closed Broadcast is collected."""
    assert_fails_exactly(report, cls, *BROKEN[cls])


@pytest.mark.parametrize("cls", sorted(MISSHAPEN))
def test_a_sync_async_mix_up_is_named(report: Report, cls: str) -> None:
    """``async def send`` or a plain ``def asend`` fails the kit's shape check, saying which
    method must be what (its publishes fail too, with messages that do not say so)."""
    assert "test_async_twins_are_coroutines" in report["failed"][cls], sorted(report["failed"][cls])
    messages = " ".join(report["failed-messages"][cls])
    assert MISSHAPEN[cls] in messages, messages


# -- the guide --------------------------------------------------------------------------

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "writing-a-driver.md"
#: helpers the core gives every driver, never overridden; and the async twins, which the
#: guide names once for all ("the a-prefixed async twin")
NOT_DEFINED_BY_AUTHORS = {"channel_name", "parse_channel"}


def test_the_driver_table_names_every_method_a_driver_can_define() -> None:
    """§4's table ("Everything a driver can define") names each public member of Driver.

    ``client_config`` was missing: an author could not learn that the page's
    config (``broadcasting.web.client_config``, the Django and Flask template
    helpers) asks the driver for it.
    """
    text = GUIDE.read_text(encoding="utf-8")
    table = text[text.index("Everything a driver can define") : text.index("## 5. Configuration")]
    named = set(re.findall(r"`(?:async )?([a-z_]+)", table))
    members = {name for name in vars(Driver) if not name.startswith("_")}
    twins = {name for name in members if name.startswith("a") and name[1:] in members}
    missing = sorted(members - twins - NOT_DEFINED_BY_AUTHORS - named)
    assert not missing, f"§4's table of driver members leaves out {missing}"


# -- run_sync, of broadcasting.plugin ------------------------------------------------------


def _outcome_within(seconds: float, work: Callable[[], object]) -> BaseException | str:
    """What ``work()`` raised (or ``"returned"``) within ``seconds``; ``"hung"`` if it had not
    ended by then (it is left waiting in a daemon thread)."""
    outcome: list[BaseException | str] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append("returned")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return outcome[0] if outcome else "hung"


def test_run_sync_refuses_what_is_not_a_coroutine() -> None:
    """``run_sync(x)`` with ``x`` not a coroutine raised on the loop's thread (create_task)
    and left the caller waiting for ever; it is a TypeError in the caller's thread."""
    outcome = _outcome_within(5, lambda: run_sync(cast("Any", None)))
    assert isinstance(outcome, TypeError), outcome
    assert "run_sync() runs a coroutine, not NoneType" in str(outcome)


class _PlainAsend(Driver):
    """``asend`` as a plain function, set after the class was made (a ``def asend`` in the
    class body is refused there: tests/core/test_driver_method_shapes.py): the
    core runs it for a sync publish."""

    name = "review-s36-plain-asend"
    sent: ClassVar[list[str]] = []


def _plain_asend(self: _PlainAsend, batch: Batch) -> None:
    self.sent.extend(batch.channels)


_PlainAsend.asend = _plain_asend  # type: ignore[assignment,method-assign]


def test_a_sync_publish_through_a_plain_asend_ends_instead_of_hanging() -> None:
    """A driver's ``def asend`` (not ``async def``) hung every sync publish for ever (its
    result went to run_sync); now the publish ends ``unknown``: the request ran."""
    register_driver(_PlainAsend.name, _PlainAsend)
    try:
        broadcast = Broadcast({"DRIVER": _PlainAsend.name})
        outcome = _outcome_within(10, lambda: broadcast.channel("orders", {"id": 1}))
        broadcast.close()
    finally:
        unregister_driver(_PlainAsend.name)
    assert isinstance(outcome, PublishError), outcome
    assert outcome.unknown == ("orders",), outcome
    assert _PlainAsend.sent == ["orders"]
