"""Django's system checks stopped at a driver's first bad option. The core checks its own
delivery options (``retries``, ``batch``...) before the driver is built, and the driver never
sees them: a wrong delivery option hid every problem of the driver's own options (and an
unset one, left to ``check --deploy``, hid them from ``check`` altogether). Both are reported
at once now.

Two wrong options of the driver's own are reported at once too (the driver raises one
ConfigurationError holding both): tests/web/test_django_checks_every_problem.py.

Run with ``python -m django check`` (Django's own check command) in a project of its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from web_support import CHECK_SETTINGS, django_check_run

pytest.importorskip("django")

TIMEOUT = 120
SECRET = "s37-app-secret-value-0123"

SETTINGS = (
    CHECK_SETTINGS
    + """
BROADCASTING = {
    "DRIVER": "pusher",
    "DRIVERS": {"pusher": {"app_id": "1234567", "key": "app-key", "secret": %(secret)r, %(more)s}},
}
"""
)


def check(tmp_path: Path, more: str, *argv: str) -> str:
    (tmp_path / "s37_settings.py").write_text(SETTINGS % {"secret": SECRET, "more": more}, "utf-8")
    done = django_check_run(tmp_path, "s37_settings", *argv, timeout=TIMEOUT)
    output = done.stdout + done.stderr
    assert "Traceback" not in output and SECRET not in output, output
    return output


def e003_keys(output: str) -> list[str]:
    lines = [line for line in output.splitlines() if "broadcasting.E003" in line]
    return sorted(key for key in ("'retries'", "'port'", "'batch'") if any(key in x for x in lines))


def test_a_wrong_delivery_option_and_a_wrong_driver_option_are_both_reported(
    tmp_path: Path,
) -> None:
    output = check(tmp_path, "'retries': 'three', 'port': 'not-a-port'")
    assert e003_keys(output) == ["'port'", "'retries'"], output


def test_an_unset_delivery_option_does_not_hide_a_wrong_driver_option(tmp_path: Path) -> None:
    # retries=None (an unset environment variable) is left to check --deploy
    output = check(tmp_path, "'retries': None, 'port': 'not-a-port'")
    assert e003_keys(output) == ["'port'"], output
    deploy = check(tmp_path, "'retries': None, 'port': 'not-a-port'", "--deploy")
    assert "'retries'" in deploy and "broadcasting.E003" in deploy, deploy


def test_a_right_configuration_still_passes(tmp_path: Path) -> None:
    output = check(tmp_path, "'retries': 2, 'port': 6001, 'host': 'soketi.example'")
    assert "broadcasting.E" not in output and "no issues" in output, output
