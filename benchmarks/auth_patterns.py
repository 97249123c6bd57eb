"""How long matching a channel name against a rule's pattern takes, crafted names included.

    python benchmarks/auth_patterns.py

The channel rules' matcher is linear in the name's length. This prints
microseconds per match for ordinary names and for names crafted against a
backtracking matcher (1,024 characters, the longest the core accepts), next to
a backtracking regex with the same meaning, which is measured on shorter
crafted names only: at 1,024 characters it takes seconds to minutes per match.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "core" / "src"))

from broadcasting._auth import Pattern

CASES = [
    ("orders.{id}", "orders.42"),
    ("org.{org}.team.{team}", "org.acme.team.blue"),
    ("org.{org}-{team}-{room}", "org.acme-blue-lobby"),
]
CRAFTED = [
    ("org.{org}-{team}-{room}", lambda n: "org." + "-" * (n - 5) + "."),
    ("org.{a}-{b}-{c}-{d}", lambda n: "org." + "a-" * ((n - 5) // 2) + "."),
    ("x{a}x{b}x{c}x", lambda n: "x" * (n - 1) + "y"),
]


def regex(pattern: str) -> re.Pattern[str]:
    """The same pattern as the backtracking regex the core used before."""
    parts, end = [], 0
    for found in re.finditer(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", pattern):
        parts += [re.escape(pattern[end : found.start()]), f"(?P<{found.group(1)}>[^.]+)"]
        end = found.end()
    parts.append(re.escape(pattern[end:]))
    return re.compile("".join(parts))


def per_call(fn: Callable[[], object], budget: float = 0.2) -> float:
    """Microseconds per call, the best of five rounds of about ``budget / 5`` seconds."""
    count, best = 1, float("inf")
    while True:
        started = time.perf_counter()
        for _ in range(count):
            fn()
        took = time.perf_counter() - started
        if took > budget / 5:
            break
        count *= 4
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(count):
            fn()
        best = min(best, (time.perf_counter() - started) / count)
    return best * 1e6


def both(pattern: str, name: str) -> tuple[float, float]:
    """Microseconds per match of ``name``: the core's matcher, then the old regex."""
    linear, old = Pattern(pattern), regex(pattern)
    return per_call(lambda: linear.match(name)), per_call(lambda: old.fullmatch(name))


def main() -> None:
    print(f"{'pattern':28} {'name':>22} {'linear µs':>10} {'regex µs':>10}")
    for pattern, name in CASES:
        new, old = both(pattern, name)
        print(f"{pattern:28} {name:>22} {new:10.2f} {old:10.2f}")
    for pattern, build in CRAFTED:
        matcher, long_name = Pattern(pattern), build(1024)
        worst = per_call(lambda: matcher.match(long_name))  # noqa: B023 - called at once
        shown = f"crafted, {len(long_name)} chars"
        print(f"{pattern:28} {shown:>22} {worst:10.2f} {'-':>10}")
        for n in (50, 100, 200):
            name = build(n)
            new, old = both(pattern, name)
            shown = f"crafted, {len(name)} chars"
            print(f"{'':28} {shown:>22} {new:10.2f} {old:10.0f}  (x{old / new:,.0f})")


if __name__ == "__main__":
    main()
