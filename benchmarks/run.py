"""Run the benchmarks of issue 6 and write results/latest.json and results/latest.md.

Usage::

    python benchmarks/run.py            # full run (about 3-5 minutes on 2 cores)
    python benchmarks/run.py --quick    # smoke run: fewer, shorter repetitions
    python benchmarks/run.py --only core,pusher

Starts its own servers on 127.0.0.1 (soketi via Node; the Ably emulator of the
test suite) and stops them at the end. Prints the Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results"
if str(HERE) not in sys.path:  # `python benchmarks/run.py` puts HERE first already
    sys.path.insert(0, str(HERE))

from _harness import Row, machine_info, markdown, write_results  # noqa: E402
from _servers import log  # noqa: E402

GROUPS = ("core", "startup", "pusher", "ably")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small counts")
    parser.add_argument(
        "--only", default=",".join(GROUPS), help=f"comma-separated groups of {GROUPS}"
    )
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 5, quick 2)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)

    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = set(groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown group(s): {', '.join(sorted(unknown))}")
    reps = args.reps or (2 if args.quick else 5)
    warmup = 1
    settings = {
        "mode": "quick" if args.quick else "full",
        "reps": reps,
        "warmup": warmup,
        "groups": groups,
    }
    info = machine_info()
    rows: list[Row] = []
    failures: list[str] = []
    started = time.monotonic()

    def step(name: str, fn: Callable[[], list[Row]]) -> None:
        log(f"[bench] {name} ...")
        t = time.monotonic()
        try:
            rows.extend(fn())
        except Exception:
            failures.append(name)
            log(f"[bench] {name} FAILED:\n{traceback.format_exc()}")
        log(f"[bench] {name} done in {time.monotonic() - t:.1f}s")

    if "core" in groups:
        import bench_core

        step(
            "core overhead (null driver)",
            lambda: bench_core.core_overhead(args.quick, reps, warmup),
        )
        step("memory driver RSS", lambda: bench_core.memory_driver(args.quick))
    if "startup" in groups:
        import bench_startup

        step("import time", lambda: bench_startup.import_times(args.quick))
    if "pusher" in groups:
        import _servers
        import bench_pusher

        with contextlib.ExitStack() as stack:
            server = stack.enter_context(_servers.soketi())
            counting = stack.enter_context(_servers.soketi(metrics=True))
            step(
                "pusher vs SDK on soketi",
                lambda: bench_pusher.run_all(server, counting, args.quick, reps, warmup),
            )
    if "ably" in groups:
        import bench_ably

        step("ably vs SDK on the emulator", lambda: bench_ably.run_all(args.quick, reps, warmup))

    settings["seconds"] = round(time.monotonic() - started, 1)
    settings["failed"] = failures
    rows.sort(key=lambda row: row.section.split(".")[0])  # stable: keeps order within a section
    # only a full run of every group replaces the recorded results
    stem = "quick" if args.quick else "latest" if set(groups) == set(GROUPS) else "partial"
    json_path, md_path = write_results(rows, info, settings, args.out, stem)
    print(markdown(rows, info, settings))
    log(f"[bench] wrote {json_path} and {md_path} in {settings['seconds']}s")
    if stem == "latest" and args.out == DEFAULT_OUT:
        log("[bench] `python tests/test_docs.py` puts them into docs/benchmarks.md")
    if failures:
        log(f"[bench] failed: {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
