"""Run a conformance-kit suite in pytest subprocesses once per test run, shared by the xdist
workers, and read its report (tests/conformance/test_kit_catches_bugs.py, test_review_kit.py).

Under ``pytest -n 2`` both workers need the report of the same suite: its classes run in
:data:`SHARDS` pytest processes in a folder every worker of the run sees, each shard under a
file lock; a worker takes the shards nobody began, then waits for the rest. None runs twice.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

TOY_SERVICE = Path(__file__).resolve().parent / "toy_service.py"

#: pytest processes the suite's classes are split over
SHARDS = 4

#: outcome -> class -> test names: ``passed``, ``failed``, ``skipped`` (function names,
#: parameters stripped); ``failed-cases`` the full names of failed cases
#: (``test_socket_id[sync]``), ``failed-messages`` their failure messages
Report = dict[str, dict[str, set[str]]]


def run_suite(
    tmp_path_factory: pytest.TempPathFactory, folder: str, filename: str, suite: str
) -> Report:
    """Run ``suite`` (a test module's text, beside the toy service) as ``filename`` in the
    run's shared ``folder``, once per test run: its report."""
    root = _shared_folder(tmp_path_factory, folder)
    _write(root / "pytest.ini", "[pytest]\n")
    _write(root / filename, suite)
    _write(root / TOY_SERVICE.name, TOY_SERVICE.read_text())
    classes = re.findall(r"^class (Test\w+)", suite, re.MULTILINE)
    shards = [classes[number::SHARDS] for number in range(SHARDS)]
    # the shards nobody has begun, side by side: pytest runs each module on one worker
    with ThreadPoolExecutor(SHARDS) as pool:
        list(
            pool.map(lambda n: _shard_done(root, filename, n, shards[n], wait=False), range(SHARDS))
        )
    for number, shard in enumerate(shards):  # then the ones another worker is making
        _shard_done(root, filename, number, shard, wait=True)
    outcomes: Report = defaultdict(lambda: defaultdict(set))
    for number in range(SHARDS):
        for case in ET.parse(root / f"shard-{number}.xml").getroot().iter("testcase"):
            cls = case.get("classname", "").rsplit(".", 1)[-1]
            full = case.get("name", "")
            kinds = {child.tag for child in case}
            if kinds & {"failure", "error"}:
                outcome = "failed"
                outcomes["failed-cases"][cls].add(full)
                for child in case:
                    outcomes["failed-messages"][cls].add(child.get("message", ""))
            elif "skipped" in kinds:
                outcome = "skipped"
            else:
                outcome = "passed"
            outcomes[outcome][cls].add(full.split("[", 1)[0])
    ran = {cls for outcome in ("passed", "failed", "skipped") for cls in outcomes[outcome]}
    strays = {cls: outcomes["failed-messages"].get(cls) for cls in ran - set(classes)}
    assert not strays, f"the suite's own pytest failed outside its classes: {strays}"
    assert ran == set(classes), f"classes the suite did not run: {set(classes) - ran}"
    return outcomes


def _shared_folder(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A folder of this test run that every xdist worker of it sees (its own, without xdist)."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name
    folder.mkdir(exist_ok=True)
    return folder


def _write(path: Path, text: str) -> None:
    """Write ``text`` whole or not at all (another worker may write the same file)."""
    part = path.with_name(f"{path.name}.{os.getpid()}")
    part.write_text(text)
    os.replace(part, path)


def _shard_done(root: Path, filename: str, number: int, classes: list[str], *, wait: bool) -> bool:
    """Make shard ``number`` unless it is made: False if another worker is making it and
    ``wait`` is false, else True once it is there."""
    with (root / f"shard-{number}.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        if not (root / f"shard-{number}.xml").exists():  # a failed run leaves none: rerun
            _run_shard(root, filename, number, classes)
        return True


def _run_shard(root: Path, filename: str, number: int, classes: list[str]) -> None:
    """Run ``classes`` of the suite in a pytest process; its report goes to shard-N.xml."""
    xml = root / f"shard-{number}.xml"
    part = root / f"shard-{number}.xml.{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    if (3, 11) <= sys.version_info < (3, 11, 8):
        # CPython 3.11.0-3.11.7 keep one global depth counter while building an AST
        # (gh-106905): when pytest parses source to show a failure while another thread
        # formats a traceback (3.11 parses the line to place its ^^^ marks; the core's loop
        # thread logs the suite's deliberately broken drivers), pytest once died of
        # "SystemError: AST constructor recursion depth mismatch". Without column positions
        # a traceback is not parsed, so only pytest's own thread builds ASTs.
        env["PYTHONNODEBUGRANGES"] = "1"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:asyncio",
            "-p",
            "no:cacheprovider",
            "-q",
            f"--junitxml={part}",
            f"--basetemp={root / f'tmp-{number}-{os.getpid()}'}",
            "-c",
            str(root / "pytest.ini"),
            "--rootdir",
            str(root),
            *(f"{root / filename}::{name}" for name in classes),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert part.exists(), result.stdout + result.stderr
    os.replace(part, xml)


def assert_fails_exactly(
    report: Report, cls: str, cases: set[str], phrases: Iterable[str] = ()
) -> None:
    """``cls`` failed exactly ``cases`` (full names: ``test_socket_id[sync]``), skipped
    nothing and passed at least 30 of the kit's tests, and its failure messages say each of
    ``phrases``."""
    assert report["failed-cases"][cls] == cases, sorted(report["failed-cases"][cls])
    assert not report["skipped"][cls], sorted(report["skipped"][cls])
    assert len(report["passed"][cls]) >= 30
    messages = " ".join(report["failed-messages"][cls])
    for phrase in phrases:
        assert phrase in messages, (phrase, messages)
