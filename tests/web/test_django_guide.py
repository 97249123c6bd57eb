"""docs/django.md, run: its files make a Django project, which passes its own tests and ours.

The guide's Python blocks are files of a project, each named by its fence's
title, ```` ```python title="orders/channels.py" ````. tests/test_docs.py runs
the untitled ```` ```python ```` blocks of every page as they are; the titled
ones are run here, as the project they make:

- ``django-admin startproject mysite`` and ``manage.py startapp orders`` make
  the project, in a temporary folder; then each titled block (``python``,
  ``ini``) is written to its path, replacing what Django wrote there, except
  that a block marked ``<!-- django-guide: append -->`` (and any later block
  of the same path) is added below what is there already;
- ``<!-- django-guide: asgi -->`` marks a block of the ASGI variant: the
  project is built twice, and in the variant that block replaces every other
  block of its path;
- the ``sh`` block marked ``<!-- django-guide: run -->`` is what the project
  runs, line by line (``makemigrations``, ``check``, ``pytest`` with
  pytest-django, ``manage.py test``): each must succeed, and every test the
  guide's test files define must have passed;
- ``tests/web/django_guide/outcomes.py`` goes into the project as
  ``test_guide_outcomes.py``, so ``pytest`` runs it too: it checks what the
  page claims against the real project (signed answers, 403s, presence info
  from the ``User``, sign-in data, CSRF, webhooks, what the fake records).

Everything Django runs in subprocesses, each with its own settings: this
process never configures Django, so nothing of the guide's project reaches the
other tests (tests/web configures Django for itself, in process).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "django.md"
OUTCOMES = Path(__file__).resolve().parent / "django_guide" / "outcomes.py"
VARIANTS = ("wsgi", "asgi")
TIMEOUT = 300

_FENCE = re.compile(r"^```(?P<lang>[\w-]*)(?P<info>[^\n]*)\n(?P<code>.*?)^```[ \t]*$", re.M | re.S)
_TITLE = re.compile(r'\btitle="([^"]+)"')
_MARK = re.compile(r"<!-- django-guide: ([\w-]+) -->\s*\Z")
MARKS = frozenset({"append", "asgi", "run"})


@dataclass(frozen=True)
class Piece:
    """One fenced block of the guide."""

    lang: str
    path: str | None  # the fence's title: the file it belongs in
    mark: str | None  # the <!-- django-guide: ... --> right before it
    code: str
    line: int  # of its first code line in the guide


def pieces(text: str) -> list[Piece]:
    found = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()]
        mark = _MARK.search(before)
        title = _TITLE.search(match.group("info"))
        found.append(
            Piece(
                lang=match.group("lang"),
                path=title.group(1) if title else None,
                mark=mark.group(1) if mark else None,
                code=match.group("code"),
                line=before.count("\n") + 2,
            )
        )
    return found


PIECES = pieces(GUIDE.read_text(encoding="utf-8"))


def files_of(variant: str) -> dict[str, tuple[bool, str]]:
    """What the guide writes, by path: (added below Django's own file?, the text)."""
    if variant not in VARIANTS:
        raise ValueError(variant)
    replaced = {p.path for p in PIECES if p.mark == "asgi"} if variant == "asgi" else set()
    chosen: dict[str, list[Piece]] = {}
    for piece in PIECES:
        if piece.path is None or (piece.mark == "asgi") != (piece.path in replaced):
            continue
        chosen.setdefault(piece.path, []).append(piece)
    return {
        path: (parts[0].mark == "append", "\n".join(p.code for p in parts))
        for path, parts in chosen.items()
    }


def run_block() -> Piece:
    [block] = [p for p in PIECES if p.mark == "run"]
    return block


def commands() -> list[list[str]]:
    """The run block's commands; ``python`` is this interpreter, ``pytest`` its pytest."""
    argvs = []
    for line in run_block().code.splitlines():
        argv = shlex.split(line, comments=True)
        if not argv:
            continue
        if argv[0] == "python":
            argv[0] = sys.executable
        elif argv[0] == "pytest":
            argv[:1] = [sys.executable, "-m", "pytest"]
        argvs.append(argv)
    return argvs


def defined_tests(code: str) -> set[str]:
    """``test_*`` functions at the top of a module, and ``test_*`` methods of its classes."""
    tree = ast.parse(code)
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names |= {
                f"{node.name}.{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef) and item.name.startswith("test_")
            }
    return names


# -- the guide's shape -----------------------------------------------------------------------


def test_every_python_block_is_a_file_of_the_project() -> None:
    """No Python block escapes: each is titled with its path (tests/test_docs.py runs none)."""
    python = [p for p in PIECES if p.lang in ("python", "py")]
    assert len(python) >= 10
    untitled = [p.line for p in python if p.path is None]
    assert not untitled, f"docs/django.md: python blocks without a title= at lines {untitled}"
    for piece in PIECES:
        assert piece.mark in (None, *MARKS), f"line {piece.line}: unknown mark {piece.mark!r}"
        if piece.path is not None:
            assert not piece.path.startswith("/") and ".." not in piece.path, piece.path
            # GitHub shows no title: the first line names the file there
            first = piece.code.split("\n", 1)[0]
            assert re.fullmatch(rf"# {re.escape(piece.path)}(, .*)?", first), (
                f"line {piece.line}: the block should start with '# {piece.path}', not {first!r}"
            )
            compile_if_python(piece)
    seen: set[str] = set()
    for piece in PIECES:
        if piece.path is None or piece.mark == "asgi":
            continue
        if piece.path in seen:
            assert piece.mark == "append", (
                f"line {piece.line}: a second block of {piece.path} must be marked append"
            )
        seen.add(piece.path)
    variant_only = {p.path for p in PIECES if p.mark == "asgi"} - seen
    assert not variant_only, f"an asgi block replaces no file: {variant_only}"
    assert run_block().lang == "sh"


def compile_if_python(piece: Piece) -> None:
    if piece.lang == "python":
        source = "\n" * (piece.line - 1) + piece.code
        compile(source, f"{GUIDE}:{piece.path}", "exec", dont_inherit=True)


def test_the_variants_differ_only_where_the_guide_says() -> None:
    wsgi, asgi = files_of("wsgi"), files_of("asgi")
    assert wsgi.keys() == asgi.keys()
    changed = {path for path in wsgi if wsgi[path] != asgi[path]}
    assert changed == {p.path for p in PIECES if p.mark == "asgi"}
    assert "async_views=True" in asgi["mysite/urls.py"][1]
    assert "async_views" not in wsgi["mysite/urls.py"][1]


# -- the project, built and run ----------------------------------------------------------------


def environment(variant: str, project: Path) -> dict[str, str]:
    """A user's shell: nothing of this test run (pytest's, xdist's, Django's) is inherited."""
    dropped = ("PYTEST_", "DJANGO_", "PUSHER_", "ABLY_", "BROADCAST", "COV_", "COVERAGE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.pop("PYTHONPATH", None)  # the project's folder is its own path, as for a user
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["GUIDE_VARIANT"] = variant
    # the outer run's options for the inner pytest: a report to read, no cache files
    env["PYTEST_ADDOPTS"] = f"-p no:cacheprovider -rfE --junitxml={project / 'report.xml'}"
    return env


def sh(argv: list[str], project: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv, cwd=project, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    shown = " ".join(argv[1:] if argv[0] == sys.executable else argv)
    assert done.returncode == 0, (
        f"`{shown}` failed ({done.returncode}):\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    )
    return done


@dataclass
class Project:
    root: Path
    variant: str
    env: dict[str, str]


def build(root: Path, variant: str) -> Project:
    """startproject, startapp, then the guide's files (and our outcome tests) on top."""
    root.mkdir(parents=True)
    env = environment(variant, root)
    sh([sys.executable, "-m", "django", "startproject", "mysite", "."], root, env)
    sh([sys.executable, "manage.py", "startapp", "orders"], root, env)
    for path, (append, text) in files_of(variant).items():
        target = root / path
        if append:
            assert target.is_file(), f"{path}: nothing to add to"
            target.write_text(target.read_text(encoding="utf-8") + "\n" + text, encoding="utf-8")
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    shutil.copyfile(OUTCOMES, root / "test_guide_outcomes.py")
    return Project(root, variant, env)


@pytest.fixture(scope="module", params=VARIANTS)
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Project:
    import django  # imported, never configured: the project runs in subprocesses

    if django.VERSION < (5, 0):
        pytest.fail(
            "docs/django.md is written for Django 5 (aget_object_or_404, auser()): "
            "pip install -r tests/requirements.txt"
        )
    if importlib.util.find_spec("pytest_django") is None:
        pytest.fail("the guide's tests need pytest-django: pip install -r tests/requirements.txt")
    variant: str = request.param
    return build(tmp_path_factory.mktemp("django-guide") / variant, variant)


def passed_tests(report: Path) -> tuple[set[str], list[str]]:
    """The passed tests of a JUnit report, as ``name`` or ``Class.name``, and the others."""
    passed, other = set(), []
    for case in ElementTree.parse(report).iter("testcase"):
        cls = case.get("classname", "").rsplit(".", 1)[-1]
        name = case.get("name", "")
        shown = name if cls.startswith("test_") or cls == "tests" else f"{cls}.{name}"
        if len(case):  # a <failure>, <error> or <skipped> child
            other.append(f"{case.get('classname')}::{name}: {case[0].tag}")
        else:
            passed.add(shown)
    return passed, other


def test_the_project_passes_the_guides_commands(project: Project) -> None:
    """makemigrations, check, pytest (with pytest-django), manage.py test: each succeeds, and
    every test of the guide's test files (and of ours) passed."""
    guide = files_of(project.variant)
    pytest_tests = defined_tests(guide["orders/test_broadcasting.py"][1])
    runner_tests = defined_tests(guide["orders/tests.py"][1])
    ours = defined_tests(OUTCOMES.read_text(encoding="utf-8"))
    assert len(pytest_tests) >= 5 and len(runner_tests) >= 2 and len(ours) >= 10
    ran = {"pytest": False, "test": False}
    for argv in commands():
        done = sh(argv, project.root, project.env)
        if argv[1:3] == ["-m", "pytest"]:
            passed, other = passed_tests(project.root / "report.xml")
            assert not other, other
            assert passed == pytest_tests | runner_tests | ours
            ran["pytest"] = True
        elif argv[1:3] == ["manage.py", "test"]:
            assert f"Ran {len(runner_tests)} tests" in done.stderr, done.stderr
            assert re.search(r"^OK$", done.stderr, re.M), done.stderr
            ran["test"] = True
        elif argv[1:3] == ["manage.py", "makemigrations"]:
            assert (project.root / "orders" / "migrations" / "0001_initial.py").is_file()
        elif argv[1:3] == ["manage.py", "check"]:
            assert "no issues" in done.stdout, done.stdout
    assert ran == {"pytest": True, "test": True}, "the run block should run both test runners"


STARTUP = """
import json, sys
import django
django.setup()
from mysite.broadcast import broadcast
from broadcasting import ConfigurationError
try:
    broadcast.driver()
except ConfigurationError as exc:
    refused = [exc.key, "s3cret" in str(exc)]
print(json.dumps({
    "rules": broadcast.rules.patterns,
    "webhooks": [h.__name__ for n in ("member_added", "member_removed")
                 for h in broadcast.webhook_handlers.for_event(n)],
    "urlconf_loaded": "mysite.urls" in sys.modules,
    "refused": refused,
}))
"""


def test_the_rules_are_loaded_as_django_starts(project: Project) -> None:
    """django.setup() alone (no URLconf, no request) registers every rule and handler; the
    production settings start without credentials, and the missing one is named when needed."""
    env = {**project.env, "DJANGO_SETTINGS_MODULE": "mysite.settings"}
    env["PUSHER_KEY"] = "app-key"
    env["PUSHER_SECRET"] = "s3cret"  # no PUSHER_APP_ID
    done = sh([sys.executable, "-c", STARTUP], project.root, env)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {
        "rules": ["orders.{order_id:int}", "order-chat.{order_id:int}"],
        "webhooks": ["member_added", "member_removed"],
        "urlconf_loaded": False,
        "refused": ["app_id", False],
    }
