"""Without Node.js/npm the soketi tests skip, saying why; with ``CI`` set they fail.

Runs pytest in a child process whose PATH has no ``node`` or ``npm``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = "tests/pusher/test_pusher_delivery.py::test_seed_examples"


def run_without_node(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PATH"] = str(tmp_path)  # an empty directory: no node, no npm
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", TARGET, "-p", "no:cacheprovider", "-rs", "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("ci", [False, True])
def test_missing_node(tmp_path: Path, ci: bool) -> None:
    result = run_without_node(tmp_path, ci)
    output = result.stdout + result.stderr
    assert "node and npm not found on PATH" in output, output[-2000:]
    if ci:
        assert result.returncode == 1, output[-2000:]
        assert "soketi is required in CI" in output
        assert "skipped" not in output.splitlines()[-1]
    else:
        assert result.returncode == 0, output[-2000:]
        assert "1 skipped" in output
