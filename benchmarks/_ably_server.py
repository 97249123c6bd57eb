"""Serve the test suite's Ably REST emulator from its own process, for the benchmarks.

The emulator (tests/servers/ably_emulator.py) runs its aiohttp server in a
thread of whoever starts it; in the benchmark process that thread would fight
the clients being timed for the GIL. So ``run.py`` starts this script as a
child process instead. It prints one JSON line ``{"port": N, "ca_path": P}``
once it serves on 127.0.0.1, then answers commands on stdin, one per line:

- ``count``: print how many publish requests arrived since the last reset;
- ``reset``: forget recorded requests and stored messages;
- end of input: stop.

Two changes from the test emulator, both to keep a long benchmark from
measuring the emulator's bookkeeping instead of the clients: the idempotency
check looks message ids up in a set per channel (the test emulator scans a list,
which grows with every publish to the same channel), and only ids are kept,
not whole messages. Every request is still checked as strictly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "servers"))

from ably_emulator import AblyEmulator  # noqa: E402

KEY = "bench.key:bench-secret-value"


class BenchEmulator(AblyEmulator):
    """The test emulator with O(1) idempotency bookkeeping."""

    def __init__(self) -> None:
        super().__init__({KEY: ["*"]})
        self._ids: dict[str, set[str]] = {}

    def _store(self, channel: str, message: dict[str, Any], request: Any) -> str:
        msg_id = message.get("id")
        with self._lock:
            seen = self._ids.setdefault(channel, set())
            if isinstance(msg_id, str):
                if msg_id in seen:
                    return f"dup-{msg_id}"
                seen.add(msg_id)
            self._serial += 1
            return f"serial-{self._serial:06d}"

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._ids.clear()


def main() -> None:
    emulator = BenchEmulator().start()
    print(json.dumps({"port": emulator.port, "ca_path": emulator.ca_path, "key": KEY}), flush=True)
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "count":
                print(len(emulator.publish_requests), flush=True)
            elif command == "reset":
                emulator.reset()
                print("ok", flush=True)
            elif command:
                print(f"unknown command {command!r}", flush=True)
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
