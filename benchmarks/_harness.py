"""Timing, statistics, machine facts and the result table shared by every benchmark.

A benchmark produces :class:`Row` objects. A row compares our figure with the
raw SDK's figure from the same run (``ours`` / ``baseline``), or records one
figure alone (``ours`` only). Figures are :class:`Stats` over repetitions; the
warm-up repetitions are run and thrown away before any is recorded.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


# -- statistics ---------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    """Median and spread of repeated measurements of one figure."""

    unit: str
    samples: tuple[float, ...]
    higher_is_better: bool = True

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    @property
    def iqr(self) -> tuple[float, float]:
        """First and third quartile (inclusive method; equals min/max for n < 3)."""
        if len(self.samples) < 2:
            return (self.samples[0], self.samples[0])
        q = statistics.quantiles(self.samples, n=4, method="inclusive")
        return (q[0], q[2])

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "q1": self.iqr[0],
            "q3": self.iqr[1],
            "n": len(self.samples),
            "samples": list(self.samples),
            "higher_is_better": self.higher_is_better,
        }

    def short(self) -> str:
        """``median [min-max] unit`` for the table."""
        return f"{fmt(self.median)} [{fmt(self.min)}-{fmt(self.max)}] {self.unit}"


def fmt(value: float) -> str:
    """A number with about three significant digits, thousands separated."""
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def stats(samples: Iterable[float], unit: str, *, higher_is_better: bool = True) -> Stats:
    return Stats(unit, tuple(samples), higher_is_better)


# -- the result model ---------------------------------------------------------


@dataclass
class Row:
    """One line of the results table."""

    key: str  # stable id, e.g. "pusher.sync"
    section: str  # the numbered item, e.g. "1. Sync sequential"
    what: str  # what was measured, in words
    ours: Stats | None = None
    baseline: Stats | None = None
    baseline_name: str = ""
    # speed-up of ours over the baseline (>1 = we are faster); None if not comparable
    ratio: float | None = None
    ratio_spread: tuple[float, float] | None = None
    target: str = ""  # e.g. "≥ 2x"
    met: bool | None = None  # None = no target, or not measurable in this run
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ours"] = self.ours.to_json() if self.ours else None
        data["baseline"] = self.baseline.to_json() if self.baseline else None
        return data


def speedup(ours: Stats, baseline: Stats) -> float:
    """How many times better ours is than the baseline, by their medians."""
    if ours.higher_is_better:
        return ours.median / baseline.median
    return baseline.median / ours.median


def paired_speedups(ours: Stats, baseline: Stats) -> tuple[float, float]:
    """Min and max of the per-repetition speed-ups (repetitions were interleaved)."""
    pairs = list(zip(ours.samples, baseline.samples, strict=False))
    values = [a / b for a, b in pairs] if ours.higher_is_better else [b / a for a, b in pairs]
    return (min(values), max(values))


def compare(
    key: str,
    section: str,
    what: str,
    ours: Stats,
    baseline: Stats,
    baseline_name: str,
    *,
    target: float | None = None,
    note: str = "",
    extra: dict[str, Any] | None = None,
) -> Row:
    """A row with ours against the baseline and, if given, a ``≥ targetx`` verdict."""
    ratio = speedup(ours, baseline)
    return Row(
        key=key,
        section=section,
        what=what,
        ours=ours,
        baseline=baseline,
        baseline_name=baseline_name,
        ratio=ratio,
        ratio_spread=paired_speedups(ours, baseline),
        target=f"≥ {target:g}x" if target is not None else "",
        met=(ratio >= target) if target is not None else None,
        note=note,
        extra=extra or {},
    )


# -- timing -------------------------------------------------------------------


def interleaved(
    runs: Sequence[Callable[[], float]], reps: int, warmup: int = 1
) -> list[list[float]]:
    """Run each callable ``warmup`` times (discarded), then ``reps`` rounds in turn.

    Interleaving (A B A B ...) makes drift on a shared machine hit every
    contender alike, so their ratio holds even when absolute figures move.
    Each callable returns its own measurement (e.g. publishes per second).
    """
    for _ in range(warmup):
        for run in runs:
            run()
    results: list[list[float]] = [[] for _ in runs]
    for rep in range(reps):
        # alternate who goes first, so neither always follows the other
        order = range(len(runs)) if rep % 2 == 0 else reversed(range(len(runs)))
        for index in order:
            results[index].append(runs[index]())
    return results


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, nearest rank."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_rows(
    key: str,
    section: str,
    what: str,
    ours: tuple[list[float], list[float]],
    baseline: tuple[list[float], list[float]],
    baseline_name: str,
    note: str = "",
) -> list[Row]:
    """Two rows (p50 and p99, milliseconds) for one contender against the baseline."""
    return [
        compare(
            f"{key}.{name}",
            section,
            f"{what}: {name}",
            stats(ours[index], "ms", higher_is_better=False),
            stats(baseline[index], "ms", higher_is_better=False),
            baseline_name,
            note=note,
        )
        for index, name in enumerate(("p50", "p99"))
    ]


def rate(count: int, fn: Callable[[], object]) -> float:
    """Call ``fn`` once (it does ``count`` operations) and return operations per second."""
    start = time.perf_counter()
    fn()
    return count / (time.perf_counter() - start)


def elapsed(fn: Callable[[], object]) -> float:
    """Seconds taken by one call of ``fn``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_python(code: str, *, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """Run ``code`` in a fresh interpreter (this one's executable); return its stdout."""
    full_env = {**os.environ, **(env or {})}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"subprocess failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


# -- the machine ----------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """Date, CPU model, cores, memory, OS and Python: where the figures came from."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    node = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        node = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "python_impl": platform.python_implementation(),
        "node": node,
        "versions": _versions(),
    }


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for dist in (
        "broadcasting",
        "broadcasting-pusher",
        "broadcasting-ably",
        "pusher",
        "ably",
        "aiohttp",
        "requests",
        "httpx",
        "pluggy",
        "sniffio",  # httpcore (Ably's async client) is much slower without it
    ):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            found[dist] = None
    return found


# -- output -------------------------------------------------------------------------


def _verdict(row: Row) -> str:
    if not row.target:
        return "—"
    if row.met is None:
        return "not judged"
    return "**yes**" if row.met else "**NO**"


def markdown(rows: Sequence[Row], info: dict[str, Any], settings: dict[str, Any]) -> str:
    """The results as a Markdown table, ratios first, with the run's date and machine."""
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    absent = [k for k, v in info["versions"].items() if not v]
    if absent:
        versions += f" (not installed: {', '.join(absent)})"
    lines = [
        f"Run {info['date']} on {info['cpu']}, {info['cores']} cores, "
        f"{info['memory_gib']} GiB, {info['os']}, {info['python_impl']} {info['python']}"
        f"{', Node ' + info['node'] if info.get('node') else ''}; "
        f"mode {settings['mode']}, {settings['reps']} repetitions after "
        f"{settings['warmup']} warm-up.",
        "",
        f"Packages: {versions}.",
        "",
        "Figures are median [min-max] over the repetitions. *Speed-up* is ours ÷ the raw SDK "
        "(for times: the SDK's time ÷ ours), median of each, with the range of the "
        "per-repetition ratios; client and server share the machine, so absolute figures "
        "drift between runs while ratios hold.",
        "",
        "| # | Workload | Ours | Raw SDK | Speed-up | Target | Met? |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ours = row.ours.short() if row.ours else "—"
        base = f"{row.baseline.short()} ({row.baseline_name})" if row.baseline else "—"
        if row.ratio is not None:
            ratio = f"**{row.ratio:.2f}x**"
            if row.ratio_spread:
                ratio += f" [{row.ratio_spread[0]:.2f}-{row.ratio_spread[1]:.2f}]"
        else:
            ratio = "—"
        what = row.what + (f" — {row.note}" if row.note else "")
        lines.append(
            f"| {row.section} | {what} | {ours} | {base} | {ratio} | {row.target or '—'} "
            f"| {_verdict(row)} |"
        )
    return "\n".join(lines) + "\n"


def write_results(
    rows: Sequence[Row],
    info: dict[str, Any],
    settings: dict[str, Any],
    out_dir: Path,
    stem: str = "latest",
) -> tuple[Path, Path]:
    """Write ``<stem>.json`` (every sample) and ``<stem>.md`` (the table) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{stem}.json"
    md_path = out_dir / f"{stem}.md"
    payload = {"machine": info, "settings": settings, "rows": [r.to_json() for r in rows]}
    json_path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    md_path.write_text(markdown(rows, info, settings))
    return json_path, md_path
