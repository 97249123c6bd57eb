"""docs/flask.md, run: its files make a project whose tests pass, and its commands work.

Each titled block (```` ```python title="shop.py" ````, the template) is written to its path
in a temporary folder; tests/test_docs.py runs only untitled Python blocks, so every Python
block of the page must be titled. Then the ``sh`` blocks run there, line by line: ``pytest``
(a subprocess, with the repository's pytest plugin ``broadcast_fake``) and the ``flask
broadcasting`` commands against a real soketi started with the app the page configures.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS / "servers") not in sys.path:
    sys.path.insert(0, str(TESTS / "servers"))

from soketi_pytest import start_soketi  # noqa: E402

PAGE = TESTS.parent / "docs" / "flask.md"
_FENCE = re.compile(r"^```(?P<lang>\w*)(?P<info>[^\n]*)\n(?P<code>.*?)^```[ \t]*$", re.M | re.S)
_TITLE = re.compile(r'\btitle="([^"]+)"')
TIMEOUT = 120


def blocks() -> list[tuple[str, str | None, str]]:
    """(language, title, code) of each fenced block of the page."""
    text = PAGE.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        title = _TITLE.search(match.group("info"))
        found.append((match.group("lang"), title.group(1) if title else None, match.group("code")))
    return found


def commands() -> list[list[str]]:
    lines = [line for lang, _, code in blocks() if lang == "sh" for line in code.splitlines()]
    return [shlex.split(line, comments=True) for line in lines if not line.startswith("pip ")]


def test_every_python_block_is_a_file_named_on_its_first_line() -> None:
    python = [(title, code) for lang, title, code in blocks() if lang == "python"]
    assert len(python) >= 2
    for title, code in python:
        assert title is not None, "an untitled python block would run alone in tests/test_docs.py"
        assert code.startswith(f"# {title}\n")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flask-docs")
    for _, title, code in blocks():
        if title is not None:
            (root / title).parent.mkdir(parents=True, exist_ok=True)
            (root / title).write_text(code, encoding="utf-8")
    return root


def run(argv: list[str], project: Path, **env: str) -> subprocess.CompletedProcess[str]:
    dropped = ("PYTEST_", "FLASK_", "PUSHER_", "BROADCAST", "COV_", "COVERAGE_")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    environ.pop("PYTHONPATH", None)
    environ.update(env, PYTHONDONTWRITEBYTECODE="1")
    environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), environ["PATH"]])
    if argv[0] in ("pytest", "flask"):  # this interpreter's
        argv = [sys.executable, "-m", argv[0], *argv[1:]]
    done = subprocess.run(
        argv, cwd=project, env=environ, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0, f"{argv[1:]}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


def test_the_pages_tests_pass(project: Path) -> None:
    [pytest_line] = [argv for argv in commands() if argv[0] == "pytest"]
    done = run([*pytest_line, "-p", "no:cacheprovider", "-q"], project)
    defined = len(re.findall(r"^def test_", (project / "test_shop.py").read_text(), re.M))
    assert f"{defined} passed" in done.stdout, done.stdout


def test_the_pages_commands_work_against_soketi(project: Path) -> None:
    app = {"id": "1234567", "key": "app-key", "secret": "app-secret"}  # what the page configures
    shop = (project / "shop.py").read_text()
    assert all(f'"{value}"' in shop for value in app.values())
    soketi = start_soketi(**{"appManager.array.apps": [app]})
    try:
        outputs = [
            run(argv, project, PUSHER_PORT=str(soketi.port)).stdout
            for argv in commands()
            if argv[0] == "flask"
        ]
    finally:
        soketi.close()
    drivers, check, send = outputs
    assert "pusher" in drivers and "memory" in drivers
    assert re.search(r"^pusher \(default\)\s+ok\b", check, re.M), check
    assert send.startswith("sent: pusher: 'shipped' -> private-orders.1"), send


def test_the_cli_help_is_the_command_lines(project: Path) -> None:
    done = run(["flask", "--app", "shop", "broadcasting", "--help"], project)
    assert done.stdout.startswith("usage: flask broadcasting")
    assert json.loads(
        run(["flask", "--app", "shop", "broadcasting", "drivers", "--json"], project).stdout
    )
