"""A command the tests run as an operator would (``broadcasting relay``): a process in a
session of its own, its stdout and stderr (the journal) in a file, killed if a test leaves
it running (tests/outbox)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class RelayProcess:
    """``argv`` run in ``workdir`` with ``env``, its output in ``<workdir>/<name>.log``."""

    def __init__(
        self, argv: Sequence[str], workdir: Path, name: str, env: Mapping[str, str]
    ) -> None:
        self.journal = workdir / f"{name}.log"
        with self.journal.open("wb") as err:
            self.process = subprocess.Popen(
                list(argv),
                cwd=workdir,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.journal.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, check: Callable[[str], bool], seconds: float = 30) -> str:
        """The log, once ``check`` holds for it (fails if the process exits first)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            said = self.log()
            if check(said):
                return said
            assert self.process.poll() is None, f"the relay exited: {said}"
            time.sleep(0.05)
        raise AssertionError(f"not seen in {seconds} s:\n{self.log()}")

    def stop(self, signum: int = signal.SIGTERM, seconds: float = 30) -> int:
        """Send ``signum`` (if it still runs); the exit status (killed if it does not exit)."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(seconds)
        finally:
            self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
