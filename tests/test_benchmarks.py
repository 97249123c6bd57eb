"""The benchmarks run against the current API (nothing else runs them between releases).

A quick run of every group, into a temporary folder: it starts its own soketi and Ably
emulator. Figures are not checked here; docs/benchmarks.md quotes a full run. The
benchmarks of issue 21 are run by tests/test_benchmarks_load.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.server
def test_every_benchmark_group_runs_to_the_end(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    rows = json.loads((tmp_path / "quick.json").read_text(encoding="utf-8"))["rows"]
    sections = {row["section"].split(".")[0] for row in rows}
    assert sections == {"1", "2", "3", "4", "5", "6", "7"}, sections
    assert all(row["ours"] is not None for row in rows), [r["key"] for r in rows if not r["ours"]]
