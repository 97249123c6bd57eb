"""The marks that decide where a test runs name files and folders that exist.

``tests/conftest.py`` marks tests ``proof``, ``once`` and ``server`` by path, and
``nox -s tests`` leaves ``once`` and ``server`` out on every Python but the newest: a
renamed file left in those lists would silently move its tests onto every Python, or out of
``nox -s unit``'s reach, with no test failing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def suite_conftest(pytestconfig: pytest.Config) -> ModuleType:
    [module] = [
        plugin
        for plugin in pytestconfig.pluginmanager.get_plugins()
        if isinstance(plugin, ModuleType)
        and Path(getattr(plugin, "__file__", "") or "").resolve() == ROOT / "tests" / "conftest.py"
    ]
    return module


@pytest.mark.parametrize("listed", ["PROOF_FILES", "ONCE_FILES"])
def test_every_listed_file_exists(suite_conftest: ModuleType, listed: str) -> None:
    paths = getattr(suite_conftest, listed)
    assert paths
    assert sorted(path for path in paths if not (ROOT / path).is_file()) == []


@pytest.mark.parametrize("listed", ["ONCE_FOLDERS", "SERVER_FOLDERS"])
def test_every_listed_folder_exists(suite_conftest: ModuleType, listed: str) -> None:
    folders = getattr(suite_conftest, listed)
    assert folders
    assert sorted(name for name in folders if not (ROOT / "tests" / name).is_dir()) == []


def collected(marks: str, *paths: str) -> list[str]:
    """The test ids ``pytest -m marks`` collects from ``paths``."""
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    listed = subprocess.run(
        [*command, "-m", marks, *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    return [line for line in listed if "::" in line]


def test_the_older_pythons_selection_leaves_out_once_without_a_server_too() -> None:
    """Tests marked ``once`` that start no server (the kit's reports on broken drivers, the
    guides' commands, mypy over user code, the Chromium checks) stay out of what nox runs on
    3.10-3.12; the Django tests that start none are there."""
    ids = collected(
        "not server and not once",
        "tests/conformance/test_review_kit.py",
        "tests/test_hook_docs.py",
        "tests/typing/test_public_types.py",
        "tests/web",
        "tests/core/test_client_config.py",
    )
    assert not [i for i in ids if "test_review_kit" in i or "test_hook_docs" in i]
    assert not [i for i in ids if "test_public_types" in i or "guide" in i or "in_chromium" in i]
    assert [i for i in ids if i.startswith("tests/web/test_django_app.py::")]
    assert [i for i in ids if i.startswith("tests/core/test_client_config.py::")]


def test_the_older_pythons_selection_leaves_out_servers_and_keeps_the_databases() -> None:
    """What nox runs on 3.10-3.12: no soketi, emulator or web server test, no proof; the
    core's tests and the outbox's tests on PostgreSQL and MariaDB are there."""
    ids = collected(
        "not server and not once",
        "tests/pusher/test_hosts.py",
        "tests/ably/test_conformance.py",
        "tests/outbox/test_store.py",
        "tests/outbox/test_relay_benchmarks.py",
        "tests/core/test_client_config.py",
    )
    assert not [i for i in ids if i.startswith(("tests/pusher/", "tests/ably/"))]
    assert not [i for i in ids if "test_relay_benchmarks" in i]
    assert [i for i in ids if i.startswith("tests/outbox/test_store.py::") and "mysql" in i]
    assert [i for i in ids if i.startswith("tests/outbox/test_store.py::") and "postgresql" in i]
    assert [i for i in ids if i.startswith("tests/core/test_client_config.py::")]
