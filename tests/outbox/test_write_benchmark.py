"""benchmarks/outbox_write.py runs to the end at a small size (its figures are not checked
here: docs/benchmarks.md quotes a full run)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_write_benchmark_runs(pg_url: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "outbox_write.py"),
            "--count",
            "40",
            "--pg",
            pg_url,
            "--no-targets",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    for database in ("sqlite", "postgresql"):
        line = re.search(rf"^\| {database} \| .* \| (\d+\.\d+)x \|", done.stdout, re.MULTILINE)
        assert line is not None, done.stdout
        assert float(line.group(1)) > 0
