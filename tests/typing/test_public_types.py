"""What a user's code sees of the public API, checked with mypy --strict.

``.venv/bin/mypy`` checks the library's own source; nothing there fails when a public call
hands the application ``Any`` (an untyped ``__getattr__``, a decorator typed
``Callable[..., Any]``) or another type than the documented one. The modules in
``samples/`` are application code written from README.md and docs/*.md; each
``assert_type(call, T)`` there fails the check when ``call`` is ``Any`` or not ``T``, and
``--disallow-any-expr`` reports any other expression of type ``Any`` (an ``Any`` inside a
type, such as ``dict[str, Any]`` or ``list[URLPattern]`` from untyped Django, is allowed).

A sample line ending in ``# known: <why>`` must fail: a flaw reported, not yet fixed. Once
it is, this test says so, and the marker goes.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

# mypy checks with python_version = 3.10 (pyproject.toml) whichever Python runs it: the answer
# is the same on every one, and a cold run takes ~20 s
pytestmark = pytest.mark.once

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = Path(__file__).resolve().parent / "samples"
#: A cache of its own: other options than the project's, so sharing .mypy_cache would make
#: every other mypy run there start cold.
CACHE = ROOT / ".mypy_cache" / "public-types"
KNOWN = "# known:"
ERROR = re.compile(r"^(?P<path>[^:\n]+):(?P<line>\d+): error: (?P<message>.*)$")
#: An ``Any`` inside a type (``dict[str, Any]``) is a documented shape, not a leak.
INSIDE = 'Expression type contains "Any"'


def mypy(*targets: Path) -> list[tuple[Path, int, str]]:
    """The errors mypy --strict --disallow-any-expr reports for ``targets``: file, line, text."""
    try:
        import mypy as _  # noqa: F401
    except ImportError:  # not a skip: the check would silently stop running
        pytest.fail("mypy is not installed in this environment: tests/requirements.txt has it")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--strict",
            "--disallow-any-expr",
            "--follow-imports=silent",  # the library's own source is .venv/bin/mypy's to check
            "--cache-dir",
            str(CACHE),
            "--no-pretty",
            "--no-error-summary",
            "--hide-error-context",
            "--show-error-codes",
            *map(str, targets),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode in (0, 1), f"mypy failed to run:\n{done.stdout}{done.stderr}"
    errors = []
    for line in done.stdout.splitlines():
        found = ERROR.match(line)
        if found and INSIDE not in found["message"]:
            errors.append(((ROOT / found["path"]).resolve(), int(found["line"]), found["message"]))
    assert done.returncode == 0 or errors or INSIDE in done.stdout, done.stdout
    return errors


def samples() -> list[Path]:
    return sorted(SAMPLES.glob("app_*.py"))


def test_the_samples_check_what_each_call_returns() -> None:
    found = samples()
    assert len(found) >= 7
    for sample in found:
        text = sample.read_text(encoding="utf-8")
        assert text.count("assert_type(") >= 5, sample.name
        # assert_type(x, Any) would pass for the very leak this test looks for
        assert not re.search(r"assert_type\([^\n]*,\s*Any\)", text), sample.name


def test_user_code_sees_the_documented_types() -> None:
    found = samples()
    known = {
        (sample, number)
        for sample in found
        for number, line in enumerate(sample.read_text(encoding="utf-8").splitlines(), 1)
        if KNOWN in line
    }
    errors = mypy(*found)
    unexpected = [e for e in errors if (e[0], e[1]) not in known]
    fixed = sorted(known - {(path, line) for path, line, _ in errors})
    said = [f"{path.relative_to(ROOT)}:{line}: {message}" for path, line, message in unexpected]
    said += [
        f"{path.relative_to(ROOT)}:{line}: passes now: remove its '{KNOWN}' marker"
        for path, line in fixed
    ]
    assert not said, "what user code sees is not what the docs say:\n" + "\n".join(said)


def test_an_any_from_a_public_call_fails_the_check(tmp_path: Path) -> None:
    """The check itself: an ``Any`` where a type was promised, and an ``Any`` passed on
    unasserted, are both reported."""
    leaky = tmp_path / "app_leaky.py"
    leaky.write_text(
        "from typing import Any\n"
        "from typing_extensions import assert_type\n"
        "from broadcasting import Broadcast, Receipt\n"
        "def untyped_send(broadcast: Broadcast) -> Any:\n"
        "    return broadcast.channel('orders', 'x')\n"
        "receipt = untyped_send(Broadcast())\n"
        "assert_type(receipt, Receipt)\n"
        "print(untyped_send(Broadcast()))\n",
        encoding="utf-8",
    )
    errors = mypy(leaky)
    assert {(line, message) for _, line, message in errors} == {
        (6, 'Expression has type "Any"  [misc]'),
        (7, 'Expression has type "Any"  [misc]'),
        (7, 'Expression is of type "Any", not "Receipt"  [assert-type]'),
        (8, 'Expression has type "Any"  [misc]'),
    }
