"""Driver health checks in the core (Health, the Driver defaults) and `broadcasting check`.

The checks of real services are tested against real servers in
tests/pusher/test_health.py (soketi) and tests/ably/test_health.py (the Ably
emulator). Here: the mapping of errors to statuses, the defaults, and the
command's output and exit status, with the built-in drivers and with toy
drivers registered in this process whose check answers what the test asks
(a stand-in: the command's logic is under test, not a service).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from broadcasting import Broadcast, ConfigurationError, Health, InvalidChannelError, PublishError
from broadcasting.cli import main
from broadcasting.plugin import HEALTH_STATUSES, Driver, register_driver, unregister_driver

JSON_KEYS = {"driver", "default", "status", "latency_ms", "detail"}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broadcasting", *args], capture_output=True, text=True, timeout=60
    )


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "broadcast.py"
    path.write_text(text)
    return str(path)


# -- Health ------------------------------------------------------------------------------


def test_health_statuses_and_which_of_them_fail() -> None:
    assert HEALTH_STATUSES == ("ok", "auth_failed", "unreachable", "error", "not_supported")
    failed = {status for status in HEALTH_STATUSES if Health(status).failed}
    assert failed == {"auth_failed", "unreachable", "error"}


def test_health_refuses_an_unknown_status() -> None:
    with pytest.raises(ValueError, match="'fine'"):
        Health("fine")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (PublishError("refused", driver="toy", status=401), "auth_failed"),
        (PublishError("forbidden", driver="toy", status=403), "auth_failed"),
        (PublishError("refused connection", driver="toy", retryable=True), "unreachable"),
        (
            PublishError("read timeout", driver="toy", retryable=True, maybe_delivered=True),
            "unreachable",
        ),
        (PublishError("TLS certificate not verified", driver="toy"), "error"),
        (PublishError("not found", driver="toy", status=404), "error"),
        (PublishError("rate limited", driver="toy", status=429, retryable=True), "error"),
        (PublishError("server error", driver="toy", status=500, retryable=True), "error"),
    ],
)
def test_of_error_maps_a_request_error_to_a_status(error: PublishError, status: str) -> None:
    health = Health.of_error(error, 1.5)
    assert (health.status, health.latency_ms) == (status, 1.5)
    # the message only: not the "(driver='toy', status=..., retryable=...)" summary
    assert health.detail == error.args[0]


def test_of_error_on_another_library_error_names_its_type() -> None:
    health = Health.of_error(InvalidChannelError("channel 'x y' breaks the rule"))
    assert health == Health("error", None, "InvalidChannelError: channel 'x y' breaks the rule")


def test_measure_ok_failed_and_a_bug() -> None:
    ok = Health.measure(lambda: "answered")
    assert (ok.status, ok.detail) == ("ok", "answered")
    assert ok.latency_ms is not None and ok.latency_ms >= 0

    def refused() -> str:
        raise PublishError("wrong secret", driver="toy", status=401)

    failed = Health.measure(refused)
    assert (failed.status, failed.detail) == ("auth_failed", "wrong secret")
    assert failed.latency_ms is not None

    def buggy() -> str:
        raise KeyError("a bug, not a service's answer")

    with pytest.raises(KeyError):
        Health.measure(buggy)


async def test_ameasure_is_the_async_twin() -> None:
    async def answered() -> str:
        return "answered"

    async def unreachable() -> str:
        raise PublishError("connection refused", driver="toy", retryable=True)

    assert (await Health.ameasure(answered)).status == "ok"
    assert (await Health.ameasure(unreachable)).status == "unreachable"


# -- the Driver defaults -------------------------------------------------------------------


class NoCheck(Driver):
    name = "nocheck"

    def send(self, batch: Any) -> None:
        """Never called here."""


class SyncCheck(Driver):
    """Implements check() only; records the thread it ran in."""

    name = "synccheck"

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def check(self) -> Health:
        self.threads.append(threading.current_thread())
        return Health("ok", 0.5, "sync")


class AsyncCheck(Driver):
    """Implements acheck() only; records the loop it ran on."""

    name = "asynccheck"

    def __init__(self) -> None:
        self.loops: list[asyncio.AbstractEventLoop] = []

    async def acheck(self) -> Health:
        self.loops.append(asyncio.get_running_loop())
        return Health("auth_failed", 0.5, "async")


def test_a_driver_without_a_check_is_not_supported() -> None:
    driver = NoCheck()
    expected = Health(
        "not_supported", None, "the 'nocheck' driver has no health check; nothing was checked"
    )
    assert driver.check() == expected
    assert asyncio.run(driver.acheck()) == expected
    assert not expected.failed


@pytest.mark.parametrize("name", ["log", "null", "memory"])
def test_built_in_drivers_report_not_supported(name: str) -> None:
    with Broadcast({"DRIVER": name}) as broadcast:
        health = broadcast.driver().check()
    assert (health.status, health.latency_ms) == ("not_supported", None)
    assert repr(name) in health.detail


def test_acheck_runs_a_sync_check_in_a_worker_thread() -> None:
    checker = Broadcast({"DRIVER": "synccheck"}).driver(SyncCheck)
    assert asyncio.run(checker.acheck()) == Health("ok", 0.5, "sync")
    threads = checker.driver.threads
    assert threads and threads[0] is not threading.main_thread()


def test_check_runs_an_async_check_on_the_background_loop() -> None:
    checker = Broadcast({"DRIVER": "asynccheck"}).driver(AsyncCheck)
    assert checker.check() == Health("auth_failed", 0.5, "async")
    (loop,) = checker.driver.loops
    assert loop.is_running()  # the core's background loop, still serving others


# -- `broadcasting check` -------------------------------------------------------------------


class Toy(Driver):
    """A registered toy driver whose check answers ``answer``, or raises ``raise``."""

    name = "toy"

    def __init__(self, answer: str, error: str | None) -> None:
        self.answer, self.error = answer, error

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> Toy:
        for key in set(options) - {"answer", "raise", "token"}:
            raise ConfigurationError(cls.name, key, "unknown option")
        return cls(options.get("answer", "ok"), options.get("raise"))

    def send(self, batch: Any) -> None:
        """Never called here."""

    def check(self) -> Health:
        if self.error is not None:
            raise RuntimeError(self.error)
        return Health(self.answer, 2.5, f"the toy says {self.answer}")  # type: ignore[arg-type]


class Toy2(Toy):
    name = "toy2"


@pytest.fixture
def toys() -> Iterator[None]:
    """The toy drivers, registered in this process (so `main()` is called in process)."""
    register_driver("toy", Toy)
    register_driver("toy2", Toy2)
    yield
    unregister_driver("toy")
    unregister_driver("toy2")


def test_check_built_in_drivers_exit_zero_and_say_not_supported(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, "DRIVER = 'memory'\nDRIVERS = {'memory': {}, 'log': {}, 'null': None}\n"
    )
    result = run("check", "--config", config)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["DRIVER", "STATUS", "LATENCY", "DETAIL"]
    rows = [line.split(maxsplit=3) for line in lines[1:]]
    assert [row[:2] for row in rows] == [
        ["memory", "(default)"],
        ["log", "not_supported"],
        ["null", "not_supported"],
    ]
    assert lines[1].split()[2:4] == ["not_supported", "-"]
    assert "the 'null' driver has no health check" in lines[3]


def test_check_json_lists_every_driver(tmp_path: Path) -> None:
    config = write_config(tmp_path, "DRIVER = 'null'\nDRIVERS = {'log': {}}\n")
    result = run("check", "--config", config, "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [set(row) for row in rows] == [JSON_KEYS, JSON_KEYS]
    assert [(r["driver"], r["default"], r["status"], r["latency_ms"]) for r in rows] == [
        ("null", True, "not_supported", None),
        ("log", False, "not_supported", None),
    ]


def test_drivers_that_cannot_be_built_are_errors_and_exit_one(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        "DRIVER = 'memory'\n"
        "DRIVERS = {'memory': {}, 'log': {'colour': 'red-secret'}, 'nowhere': {}}\n",
    )
    result = run("check", "--config", config, "--json")
    assert result.returncode == 1
    rows = {row["driver"]: row for row in json.loads(result.stdout)}
    assert rows["memory"]["status"] == "not_supported"
    assert rows["log"]["status"] == "error"
    assert rows["log"]["detail"].startswith("ConfigurationError: ")
    assert "'colour'" in rows["log"]["detail"] and "red-secret" not in result.stdout
    assert rows["nowhere"]["status"] == "error"
    assert rows["nowhere"]["detail"].startswith("DriverNotFoundError: ")


def test_driver_option_checks_only_the_named_drivers(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, "DRIVER = 'memory'\nDRIVERS = {'memory': {}, 'nowhere': {}, 'log': {}}\n"
    )
    result = run("check", "--config", config, "--json", "--driver", "log", "-d", "null")
    assert result.returncode == 0, result.stderr  # the broken 'nowhere' was not checked
    rows = json.loads(result.stdout)
    assert [(r["driver"], r["default"]) for r in rows] == [("log", False), ("null", False)]


def test_a_config_that_cannot_be_read_is_one_line_on_stderr(tmp_path: Path) -> None:
    result = run("check", "--config", str(tmp_path / "missing.py"))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith("broadcasting: error: ConfigurationError: ")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("answers", "code"),
    [
        (("ok", "ok"), 0),
        (("ok", "not_supported"), 0),
        (("ok", "auth_failed"), 1),
        (("unreachable", "ok"), 1),
        (("error", "not_supported"), 1),
    ],
)
def test_exit_status_is_one_when_any_check_failed(
    toys: None,
    answers: tuple[str, str],
    code: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_config(
        tmp_path,
        f"DRIVER = 'toy'\nDRIVERS = {{'toy': {{'answer': {answers[0]!r}}}, "
        f"'toy2': {{'answer': {answers[1]!r}}}}}\n",
    )
    assert main(["check", "--config", config, "--json"]) == code
    rows = json.loads(capsys.readouterr().out)
    assert [(r["driver"], r["status"], r["latency_ms"]) for r in rows] == [
        ("toy", answers[0], 2.5),
        ("toy2", answers[1], 2.5),
    ]


def test_text_output_has_one_aligned_row_per_driver(
    toys: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        tmp_path, "DRIVER = 'toy2'\nDRIVERS = {'toy': {'answer': 'unreachable'}, 'toy2': {}}\n"
    )
    assert main(["check", "--config", config]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "DRIVER          STATUS       LATENCY  DETAIL",
        "toy2 (default)  ok           2.5 ms   the toy says ok",
        "toy             unreachable  2.5 ms   the toy says unreachable",
    ]


def test_a_check_that_raises_is_an_error_without_its_message(
    toys: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        tmp_path, "DRIVER = 'toy'\nDRIVERS = {'toy': {'raise': 'token=hunter2 leaked'}}\n"
    )
    assert main(["check", "--config", config, "--json"]) == 1
    out = capsys.readouterr().out
    (row,) = json.loads(out)
    assert row["status"] == "error"
    assert row["detail"] == "RuntimeError raised by the check (message withheld)"
    assert "hunter2" not in out
