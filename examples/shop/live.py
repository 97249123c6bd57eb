"""Run the shop against a local soketi, and print what to open in a browser.

    python examples/shop/live.py

1. soketi: reuses one that already answers on 127.0.0.1:6001 (it must know
   the shop's app: id ``1``, key ``app-key``, secret ``app-secret``), or
   starts one with ``soketi/soketi.json``. The first run installs soketi into
   ``soketi/node_modules`` with ``npm ci`` (Node.js 18+ and npm).
2. checks that soketi accepts the shop's app key and secret (the driver's
   health check, as ``broadcasting check`` makes it);
3. serves the shop (``shop.app:app``) with uvicorn on 127.0.0.1:8000, and
   prints the page's URL. Ctrl+C stops both.

``--port``, ``--soketi-port`` and ``--soketi`` (soketi's ``bin/server.js``,
already installed elsewhere) change the defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

HERE = Path(__file__).resolve().parent
SOKETI_DIR = HERE / "soketi"
SOKETI_CONFIG = SOKETI_DIR / "soketi.json"
SOKETI_JS = SOKETI_DIR / "node_modules" / "@soketi" / "soketi" / "bin" / "server.js"
HOST = "127.0.0.1"


class Failed(Exception):
    """What went wrong, said in one message for the terminal."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8000, help="the shop's port (8000)")
    parser.add_argument(
        "--soketi-port", type=int, default=6001, help="soketi's port, to reuse or start (6001)"
    )
    parser.add_argument(
        "--soketi",
        type=Path,
        default=None,
        metavar="SERVER_JS",
        help="soketi's bin/server.js to run (default: installed into soketi/ with npm ci)",
    )
    return parser.parse_args(argv)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_until(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise Failed(f"{what} exited with status {process.returncode}")
        if answers(url):
            return
        time.sleep(0.1)
    raise Failed(f"{what} did not answer {url} within 60 s")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def install_soketi() -> Path:
    """soketi 1.6.1 in soketi/node_modules, from its lock file (once)."""
    if SOKETI_JS.is_file():
        return SOKETI_JS
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        raise Failed(
            f"{' and '.join(missing)} not found: soketi needs Node.js 18+ and npm. Or run soketi "
            "in a container (see examples/shop/README.md) and run this again: it reuses it."
        )
    print(f"Installing soketi into {SOKETI_DIR} (npm ci, once) ...", flush=True)
    npm = shutil.which("npm") or "npm"
    result = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=SOKETI_DIR, check=False)
    if result.returncode != 0 or not SOKETI_JS.is_file():
        raise Failed(f"`npm ci` in {SOKETI_DIR} failed ({result.returncode})")
    return SOKETI_JS


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


Process = subprocess.Popen[bytes]


@contextlib.contextmanager
def soketi(port: int, server_js: Path | None) -> Iterator[Process | None]:
    """A soketi on ``port``: the one already there (``None``), or one started here."""
    if answers(f"http://{HOST}:{port}/ready"):
        print(f"soketi: reusing the one on {HOST}:{port}", flush=True)
        yield None
        return
    server_js = server_js or install_soketi()
    env = {key: value for key, value in os.environ.items() if not key.startswith("SOKETI_")}
    # environment variables override the config file: the port asked for, and free ports for
    # the two soketi also opens (metrics, listening even when off; cluster discovery, UDP)
    env.update(
        SOKETI_PORT=str(port),
        SOKETI_METRICS_SERVER_PORT=str(free_port()),
        SOKETI_CLUSTER_PORT=str(free_port(socket.SOCK_DGRAM)),
        NODE_NO_WARNINGS="1",
    )
    with tempfile.TemporaryDirectory(prefix="shop-soketi-") as workdir:
        log = Path(workdir) / "soketi.log"
        with log.open("wb") as output:
            # as `npx soketi start --config soketi.json` does, run in soketi/
            process = subprocess.Popen(
                ["node", str(server_js), "start", f"--config={SOKETI_CONFIG}"],
                cwd=workdir,  # soketi reads a .env from its working directory
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(f"http://{HOST}:{port}/ready", process, "soketi")
            print(
                f"soketi: started on {HOST}:{port} ({SOKETI_CONFIG.relative_to(HERE)})", flush=True
            )
            yield process
        except Failed as exc:
            if process.poll() is None:
                raise
            said = log.read_text("utf-8", errors="replace")[-3000:]
            raise Failed(f"{exc}; soketi said:\n{said}") from None
        finally:
            stop(process)


def check_credentials(soketi_port: int) -> None:
    """The shop's settings against the running soketi: one signed request."""
    os.environ["PUSHER_PORT"] = str(soketi_port)
    sys.path.insert(0, str(HERE))
    from shop import settings

    from broadcasting import Broadcast

    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": settings.PUSHER}}) as broadcast:
        health = broadcast.driver("pusher").check()
    if health.status != "ok":
        raise Failed(
            f"soketi refused the shop's settings: {health.detail}\n(the shop needs soketi's app "
            "id 1, key app-key, secret app-secret: soketi/soketi.json, or a default soketi "
            "started with SOKETI_DEFAULT_APP_ID=1)"
        )
    print(
        f"soketi: accepted the shop's app key and secret ({health.latency_ms:.0f} ms)", flush=True
    )


@contextlib.contextmanager
def shop(port: int, soketi_port: int) -> Iterator[Process]:
    """``uvicorn shop.app:app`` on ``port``, its settings pointed at ``soketi_port``."""
    env = dict(os.environ, PUSHER_PORT=str(soketi_port))
    command = [sys.executable, "-m", "uvicorn", "shop.app:app", "--app-dir", str(HERE)]
    command += ["--host", HOST, "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
    try:
        wait_until(f"http://{HOST}:{port}/", process, "uvicorn")
        yield process
    finally:
        stop(process)


def on_terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the servers as Ctrl+C does


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, on_terminate)
    try:
        with soketi(args.soketi_port, args.soketi) as soketi_process:
            check_credentials(args.soketi_port)
            with shop(args.port, args.soketi_port) as shop_process:
                url = f"http://{HOST}:{args.port}"
                print(
                    f"\nThe shop is live. Open {url}/?customer=ada and, in another tab,"
                    f" {url}/?customer=bob\n(demo sign-in: the URL names the customer). "
                    "Ctrl+C stops.\n",
                    flush=True,
                )
                while shop_process.poll() is None:
                    if soketi_process is not None and soketi_process.poll() is not None:
                        raise Failed(f"soketi exited with status {soketi_process.returncode}")
                    time.sleep(0.5)
                raise Failed(f"uvicorn exited with status {shop_process.returncode}")
    except KeyboardInterrupt:
        return 0
    except Failed as exc:
        print(f"live.py: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
