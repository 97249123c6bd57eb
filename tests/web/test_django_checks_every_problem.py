"""Django's system checks report every wrong option of a driver at once, one
``broadcasting.E003`` each: the pusher and ably drivers raise one ConfigurationError that
holds them all (``problems``). A third-party driver that raises at its first problem is
reported as before: that problem, alone. An option left ``None`` is still left to
``check --deploy``, while the wrong ones beside it are reported by ``check``.

Run with ``python -m django check`` (Django's own check command) in a project of its own.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from web_support import CHECK_SETTINGS, django_check_run

pytest.importorskip("django")

TIMEOUT = 120
SECRET = "every-problem-app-secret-0123"
ABLY_KEY = "appid.keyid:every-problem-ably-secret"
#: Values of wrong options: none may show in the output.
VALUES = ("not-a-number", "yes-please", "port-text", "blue-value", SECRET, ABLY_KEY)

SETTINGS = (
    CHECK_SETTINGS
    + """
import first_only_driver  # registers the 'first-only' driver
BROADCASTING = {"DRIVER": %(driver)r, "DRIVERS": {%(driver)r: %(options)s}}
"""
)

#: A driver of a third party that stops at its first problem, as drivers did before.
FIRST_ONLY = """
from broadcasting.plugin import ConfigurationError, Driver, register_driver


class FirstOnly(Driver):
    name = "first-only"

    @classmethod
    def from_config(cls, options):
        for key in ("alpha", "beta"):
            if key in options:
                raise ConfigurationError(cls.name, key, "must not be given")
        return cls()

    def send(self, batch):
        pass


register_driver("first-only", FirstOnly)
"""


def check(tmp_path: Path, driver: str, options: str, *argv: str) -> list[str]:
    """The E003 lines of ``python -m django check`` with that driver and options."""
    (tmp_path / "every_problem_settings.py").write_text(
        SETTINGS % {"driver": driver, "options": options}, "utf-8"
    )
    (tmp_path / "first_only_driver.py").write_text(FIRST_ONLY, "utf-8")
    done = django_check_run(tmp_path, "every_problem_settings", *argv, timeout=TIMEOUT)
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    assert not [value for value in VALUES if value in output], output
    lines = [line for line in output.splitlines() if "broadcasting.E003" in line]
    assert (done.returncode == 1) == bool(lines), output
    return lines


def keys(lines: list[str]) -> list[str]:
    """The keys the E003 lines name, one per line, sorted (as Django sorts its messages)."""
    named = [re.findall(r"key '([a-z_]+)'", line) for line in lines]
    assert all(len(n) == 1 for n in named), lines
    return sorted(n[0] for n in named)


def test_pusher_every_wrong_option_is_one_e003_at_once(tmp_path: Path) -> None:
    options = (
        f"{{'app_id': 'not-a-number', 'key': 'app-key', 'secret': {SECRET!r}, "
        "'ssl': 'yes-please', 'port': 'port-text', 'colour': 'blue-value'}"
    )
    assert keys(check(tmp_path, "pusher", options)) == ["app_id", "colour", "port", "ssl"]


def test_ably_every_wrong_option_is_one_e003_at_once(tmp_path: Path) -> None:
    options = f"{{'key': {ABLY_KEY!r}, 'tls': 'yes-please', 'port': 'port-text', 'colour': 'x'}}"
    assert keys(check(tmp_path, "ably", options)) == ["colour", "port", "tls"]


def test_wrong_delivery_and_driver_options_are_reported_together(tmp_path: Path) -> None:
    options = (
        f"{{'app_id': '1', 'key': 'app-key', 'secret': {SECRET!r}, 'retries': 'yes-please', "
        "'ssl': 'yes-please', 'port': 'port-text'}"
    )
    assert keys(check(tmp_path, "pusher", options)) == ["port", "retries", "ssl"]


def test_unset_options_are_left_to_deploy_and_the_wrong_ones_reported(tmp_path: Path) -> None:
    options = (
        "{'app_id': None, 'key': 'app-key', 'secret': None, 'ssl': 'yes-please', "
        "'port': 'port-text'}"
    )
    assert keys(check(tmp_path, "pusher", options)) == ["port", "ssl"]
    # --deploy runs the other checks too: each problem once
    deploy = check(tmp_path, "pusher", options, "--deploy")
    assert keys(deploy) == ["app_id", "port", "secret", "ssl"]


def test_a_driver_that_raises_its_first_problem_is_reported_as_before(tmp_path: Path) -> None:
    (line,) = check(tmp_path, "first-only", "{'alpha': 'blue-value', 'beta': 'yes-please'}")
    assert line.endswith(
        "(broadcasting.E003) Configuration error in the 'first-only' driver, key 'alpha': "
        "must not be given"
    ), line
    assert check(tmp_path, "first-only", "{}") == []  # and nothing once it is right


def test_every_wrong_delivery_option_is_one_e003_at_once(tmp_path: Path) -> None:
    # the core's own options, checked before the driver is built, are reported each too,
    # beside the driver's own wrong one
    options = (
        f"{{'app_id': '1', 'key': 'app-key', 'secret': {SECRET!r}, 'retries': 'yes-please', "
        "'batch': 'yes-please', 'batch_linger': 'port-text', 'retry_backoff': 'blue-value', "
        "'ssl': 'yes-please'}"
    )
    found = keys(check(tmp_path, "pusher", options))
    assert found == ["batch", "batch_linger", "retries", "retry_backoff", "ssl"]
