"""Automation: `python3 -m nox` runs every default session; `-s NAME` runs one.

Sessions:
  tests      the test suite on every Python 3.10-3.13 found (all but the newest: no server)
  unit       the tests that start no server, on one Python
  lint       ruff check + ruff format --check
  typecheck  mypy --strict on the core and both driver packages
  isolated   wheels installed into fresh venvs prove discovery from the outside
  docs       the documentation site: mkdocs build --strict (broken links and anchors fail)
  bench      benchmarks against the raw SDKs (not a default session)
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
PACKAGES = ["core", "plugins/pusher_driver", "plugins/ably_driver"]
EXAMPLES = sorted(str(p.parent.relative_to(ROOT)) for p in ROOT.glob("examples/*/pyproject.toml"))

nox.options.sessions = ["lint", "typecheck", "docs", "tests", "isolated"]
#: Four workers, each given whole files (``loadfile``): a module's fixtures (a soketi cluster, the
#: conformance kit's review runs) start once, not once per worker holding one of its tests. The
#: whole suite took 280 s against 307 s spread test by test, the proofs 189 s against 201 s
#: (3.11, this project's 2-core machine). (``--dist loadgroup`` would group marked modules
#: only, and on pytest 9.2 groups nothing: pytest-xdist#1386.)
WORKERS = ["-n", "4", "--dist", "loadfile"]
nox.options.reuse_existing_virtualenvs = True
# uv makes and fills the sessions' venvs in seconds (pip: about 50 s per session here), when it
# is installed beside nox (.ci/run installs both); plain virtualenv and pip otherwise
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_missing_interpreters = bool(os.environ.get("CI"))


#: Bytecode, compiled once. uv installs without it (pip compiles at install), and this project's
#: machines set PYTHONDONTWRITEBYTECODE, so without these every Python the tests start (each
#: xdist worker, every Django, Celery or uvicorn process) compiled Django, SQLAlchemy, Celery
#: and aiohttp from source again, and pytest rewrote every test module's asserts again in each
#: worker: ``-m "not server and not once"`` on 3.11 took 297 s (546 s of CPU) that way, and
#: 204 s (359 s of CPU) with everything compiled, on this project's quiet 2-core machine.
COMPILED = {"UV_COMPILE_BYTECODE": "1"}
WRITE_BYTECODE: dict[str, str | None] = {"PYTHONDONTWRITEBYTECODE": None}  # None: unset


def _install_all(session: nox.Session) -> None:
    extras = {"plugins/pusher_driver": "plugins/pusher_driver[aiohttp]"}
    editable = [arg for path in [*PACKAGES, *EXAMPLES] for arg in ("-e", extras.get(path, path))]
    session.install(*editable, "-r", "tests/requirements.txt", env=COMPILED)


def _pytest(session: nox.Session, *args: str) -> None:
    session.run("pytest", *args, env=WRITE_BYTECODE)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite in 4 workers: soketi, the Ably emulator and the web servers are
    started by the tests; PostgreSQL, Redis and RabbitMQ must run on 127.0.0.1."""
    _install_all(session)
    # the soaks and benchmark runs (``proof``) and the tests of what lies outside Python (a
    # browser, Node.js clients, the cluster, a guide's commands) are marked ``once``, the tests
    # that start a server (soketi, the Ably emulator, a web server) ``server``: the newest
    # Python runs them all; the older ones run the rest (the library's own logic, and its tests
    # against PostgreSQL, MariaDB, Redis and RabbitMQ), among them every test that names a
    # Python version (3.10 has no ``Task.uncancel`` and no ``add_note``). The whole suite on
    # every Python took CI past 30 minutes; with the server tests on 3.10 too, 32 minutes on a
    # slow day (3.10 7 minutes, 3.11 4). ``-- -m ...`` asks for any selection anywhere
    # most tests wait on a server or a subprocess more than they compute: two workers per core
    # of the project's 2-core machines keep both busy (3.2 minutes there, against 4 with 2;
    # six workers took as long as four, 244 s against 242 s, with 12% more CPU)
    if session.posargs or session.python != PYTHONS[-1]:
        marks = [] if session.posargs else ["-m", "not server and not once"]
        _pytest(session, *WORKERS, *marks, *session.posargs)
        return
    # the newest Python: the tests, then the proofs by themselves. Beside the soaks, which keep
    # both cores busy, tests that bound a wait failed CI four times in two days; apart, the two
    # runs took 200 s and 101 s here, against 280 s together
    failed = []
    for marker in ("not proof", "proof"):
        try:
            _pytest(session, *WORKERS, "-m", marker)
        except nox.command.CommandFailed:
            failed.append(marker)
    if failed:
        session.error(f"pytest -m {' and -m '.join(repr(m) for m in failed)} failed")


@nox.session
def unit(session: nox.Session) -> None:
    """The faster loop: the tests that start no server, as 3.10-3.12 run them (not a default
    session)."""
    _install_all(session)
    _pytest(session, "-q", *WORKERS, "-m", "not server and not once", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.install("ruff==0.17.6")  # pinned: a new release must not turn CI red
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the three packages."""
    _install_all(session)
    session.install("mypy==2.4.1")
    session.run("mypy")


@nox.session
def isolated(session: nox.Session) -> None:
    """Build wheels, install them into fresh venvs, prove discovery from the outside."""
    # build makes each package's build environment with virtualenv when it is there (a
    # session venv made by uv has no pip for the stdlib's venv to copy: slower without it)
    session.install("build[virtualenv]", "pytest>=8")
    session.run("python", "tests/isolated/run.py", *session.posargs)


@nox.session(python="3.12")  # mkdocs-material 9.8 needs Python 3.11+
def docs(session: nox.Session) -> None:
    """Build the documentation site into build/site; a broken link or anchor fails it."""
    session.install("-r", "docs/requirements.txt")
    session.run("mkdocs", "build", "--strict", env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against the raw SDKs, servers on 127.0.0.1 (not a default session).

    `nox -s bench` rewrites benchmarks/results/latest.* (~3 min on 2 cores);
    `nox -s bench -- --quick` is a ~40 s smoke run writing results/quick.*.
    """
    _install_all(session)
    session.run("python", "benchmarks/run.py", *session.posargs)
