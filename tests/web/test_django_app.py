"""The ``broadcasting.contrib.django`` app, in the project of tests/web/django_app.

Django runs in subprocesses (this process never configures it, so nothing reaches the other
tests, which configure Django for themselves): the project's tests under pytest-django and
under Django's own runner, ``manage.py check``, the system checks on bad settings, and
``manage.py broadcasting``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent / "django_app"
TIMEOUT = 120
SECRET = "hush-hush-0123"


def manage(
    *args: str, config: object = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "manage.py", *args], config=config, check=check)


def run(
    argv: list[str], *, config: object = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    dropped = ("PYTEST_", "DJANGO_", "DJAPP_", "BROADCAST", "COV_", "COVERAGE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.pop("PYTHONPATH", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if config is not None:
        env["DJAPP_BROADCASTING"] = json.dumps(config)
    done = subprocess.run(
        argv, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    if check:
        assert done.returncode == 0, (
            f"{argv[1:]} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    return done


def defined(path: Path) -> int:
    return len(
        re.findall(r"^    (?:async )?def test_|^(?:async )?def test_", path.read_text(), re.M)
    )


def test_the_projects_tests_pass_under_pytest_django(tmp_path: Path) -> None:
    pytest.importorskip("pytest_django")  # tests/requirements.txt has it
    report = tmp_path / "report.xml"
    run([sys.executable, "-m", "pytest", "-q", "pytest_app.py", f"--junitxml={report}"])
    cases = list(ElementTree.parse(report).iter("testcase"))
    failed = [c.get("name") for c in cases if len(c)]
    assert not failed
    assert len(cases) == defined(PROJECT / "pytest_app.py") >= 8


def test_the_projects_tests_pass_under_djangos_runner() -> None:
    done = manage("test", "shop")
    assert f"Ran {defined(PROJECT / 'shop' / 'tests.py')} tests" in done.stderr, done.stderr
    assert re.search(r"^OK$", done.stderr, re.M), done.stderr


def test_manage_py_check_is_clean() -> None:
    assert "System check identified no issues (0 silenced)." in manage("check").stdout


@pytest.mark.parametrize(
    ("config", "check_id", "named"),
    [
        (
            {"DRIVER": "pusher", "DRIVERS": {"pusher": {"key": "k", "secret": SECRET}}},
            "E003",
            "app_id",
        ),
        ({"DRIVER": "no-such-driver"}, "E002", "no-such-driver"),
        ({"DRIVER": "memory", "DRIVRS": {}}, "E001", "DRIVERS"),
        ({"DRIVER": 42}, "E001", "DRIVER"),
    ],
)
def test_a_bad_config_stops_django_at_start_up(config: object, check_id: str, named: str) -> None:
    done = manage("check", config=config, check=False)
    assert done.returncode == 1
    assert f"broadcasting.{check_id}" in done.stderr and named in done.stderr, done.stderr
    assert SECRET not in done.stdout + done.stderr


def test_no_config_is_a_warning_only() -> None:
    done = manage("check", config={"DRIVER": "log"})
    assert "no issues" in done.stdout
    assert "broadcasting.W001" not in done.stderr


def test_manage_py_broadcasting_is_the_command_line_with_the_settings() -> None:
    helped = manage("broadcasting", "--help").stdout
    assert helped.startswith("usage: manage.py broadcasting")
    for command in ("send", "check", "channels", "members", "listen", "drivers"):
        assert command in helped
    sent = manage(
        "broadcasting", "send", '{"id": 42}', "--channel", "orders", config={"DRIVER": "log"}
    )
    assert sent.stdout.startswith("sent: log: 'base-event' -> orders"), sent.stdout
    assert "broadcasting: broadcast 'base-event' on orders" in sent.stderr
    checked = manage("broadcasting", "check", "--json", "--driver", "memory")
    assert json.loads(checked.stdout)[0]["driver"] == "memory"
    refused = manage("broadcasting", "channels", config={"DRIVER": "log"}, check=False)
    assert refused.returncode == 1
    assert "NotSupportedError" in refused.stderr
    assert "usage: manage.py help" not in manage("help", "broadcasting").stdout
