"""A web server process a test starts on loopback (uvicorn, gunicorn...): in a session of its
own, its output in a file, every wait bounded."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

HOST = "127.0.0.1"


def free_port() -> int:
    """A port nothing is bound to right now (another process may take it before the server)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def accepts(port: int) -> bool:
    """Whether something accepts connections on ``HOST:port``."""
    try:
        socket.create_connection((HOST, port), timeout=0.2).close()
    except OSError:
        return False
    return True


class Served:
    """``argv`` run in ``workdir`` with ``env`` (a session of its own), its output in
    ``workdir/server.log``; ``timeout``: seconds it gets to start accepting, and to exit."""

    def __init__(
        self, argv: list[str], workdir: Path, port: int, env: dict[str, str], timeout: float
    ) -> None:
        self.port = port
        self.timeout = timeout
        self.journal = workdir / "server.log"
        with self.journal.open("ab") as out:
            self.process = subprocess.Popen(
                argv,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.journal.read_text(encoding="utf-8", errors="replace")

    def wait_accepting(self) -> None:
        deadline = time.monotonic() + self.timeout
        while not accepts(self.port):
            assert self.process.poll() is None, f"the server exited:\n{self.log()}"
            assert time.monotonic() < deadline, (
                f"not accepting in {self.timeout:g} s:\n{self.log()}"
            )
            time.sleep(0.05)

    def stop(self) -> int:
        """SIGTERM (the server stops its workers, whose lifespans run to their end); its exit
        status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(self.timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the server did not exit on SIGTERM:\n{self.log()}") from None

    def kill(self) -> None:
        """SIGKILL to the server's whole session (whatever is left of it)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
