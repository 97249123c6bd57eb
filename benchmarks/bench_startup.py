"""Issue 6 item 5: what ``import broadcasting`` costs in a fresh interpreter.

Each import is timed inside a new interpreter (from just before the import
statement to just after it, so interpreter start-up is excluded), the runs
interleaved with the SDKs' own imports for context. ``-X importtime`` names
the costliest modules under ``broadcasting`` in the JSON output.
"""

from __future__ import annotations

import subprocess
import sys

from _harness import Row, fmt, run_python, stats

SECTION = "5. Start-up"

_TIMED_IMPORT = "import time; t = time.perf_counter(); import {mod}; print(time.perf_counter() - t)"


def _import_ms(module: str) -> float:
    return 1000 * float(run_python(_TIMED_IMPORT.format(mod=module)).split()[-1])


def _importtime_top(module: str, top: int = 8) -> list[tuple[str, float]]:
    """Modules with the largest cumulative import time (ms) under ``import module``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.split("|")
        try:
            cumulative = int(parts[1].strip())
        except ValueError:
            continue
        rows.append((parts[2].strip(), cumulative / 1000))
    rows.sort(key=lambda r: r[1], reverse=True)
    return rows[1 : top + 1]  # [0] is the module itself


def import_times(quick: bool) -> list[Row]:
    runs = 3 if quick else 9
    modules = ["broadcasting", "pusher", "ably", "pluggy"]
    samples: dict[str, list[float]] = {m: [] for m in modules}
    _import_ms("broadcasting")  # warm the OS file cache; not recorded
    for _ in range(runs):
        for module in modules:
            samples[module].append(_import_ms(module))
    ours = stats(samples["broadcasting"], "ms", higher_is_better=False)
    context = ", ".join(
        f"`import {m}` {fmt(stats(samples[m], 'ms').median)} ms" for m in modules[1:]
    )
    top = _importtime_top("broadcasting")
    return [
        Row(
            key="startup.import",
            section=SECTION,
            what=f"`import broadcasting` in a fresh interpreter (same run: {context})",
            ours=ours,
            extra={
                "others_ms": {m: samples[m] for m in modules[1:]},
                "importtime_top_ms": top,
            },
        )
    ]
