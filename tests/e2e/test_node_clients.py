"""The helper that runs the JS clients: skip without Node/Chromium, fail under CI, fail fast.

The skip/fail rule is checked in a child pytest whose PATH has no ``node``
or ``npm`` (and, for Chromium, whose ``CHROMIUM_PATH`` names nothing).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from node_clients import ClientFailed, NodeClient, node_unavailable, start_client

ROOT = Path(__file__).resolve().parents[2]

CHILD_TEST = """
import sys
sys.path.insert(0, {servers!r})
from node_clients import start_client

def test_client():
    with start_client({script!r}, {config!r}) as client:
        client.expect("connected")
"""


def run_child(
    tmp_path: Path, *, ci: bool, script: str, config: dict[str, object], env: dict[str, str]
) -> str:
    test_file = tmp_path / "test_child.py"
    test_file.write_text(
        CHILD_TEST.format(servers=str(ROOT / "tests" / "servers"), script=script, config=config)
    )
    child_env = {k: v for k, v in os.environ.items() if k != "CI"}
    child_env.update(env)
    if ci:
        child_env["CI"] = "true"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(test_file),
            "-p",
            "no:cacheprovider",
            "-rs",
            "-q",
            "-W",
            "ignore::DeprecationWarning",
        ],
        cwd=tmp_path,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]  # pytest's summary line
    if ci:
        assert result.returncode == 1, output[-2000:]
        assert "the Node.js clients are required in CI" in output, output[-2000:]
        assert "skipped" not in last
    else:
        assert result.returncode == 0, output[-2000:]
        assert "1 skipped" in last, output[-2000:]
    return output


@pytest.mark.parametrize("ci", [False, True])
def test_without_node_the_client_tests_skip_or_fail_under_ci(tmp_path: Path, ci: bool) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    output = run_child(
        tmp_path, ci=ci, script="pusher_client.mjs", config={}, env={"PATH": str(empty)}
    )
    assert "node and npm not found" in output


@pytest.mark.parametrize("ci", [False, True])
def test_without_chromium_the_browser_test_skips_or_fails_under_ci(
    tmp_path: Path, ci: bool
) -> None:
    if os.system("command -v node >/dev/null 2>&1") != 0:
        # the case without node is the test above; under CI node must be there
        node_unavailable("needs node (the case without it is the test above)")
    missing = tmp_path / "no-chromium"
    output = run_child(
        tmp_path,
        ci=ci,
        script="browser.mjs",
        config={"chromium": True},
        env={"CHROMIUM_PATH": str(missing)},
    )
    assert f"chromium ({missing}) not found" in output


def test_a_client_that_exits_fails_the_wait_at_once() -> None:
    client = start_client("pusher_client.mjs", {"key": "k", "wsPort": 9, "authEndpoint": "x"})
    try:
        client.send({"cmd": "close"})
        started = time.monotonic()
        with pytest.raises(ClientFailed, match="exited before a connected"):
            client.expect("connected", timeout=60)
        assert time.monotonic() - started < 30  # the exit ended the wait, not the bound
        assert client.seen("closed")
    finally:
        client.close()


def test_an_unknown_script_is_refused_before_starting() -> None:
    with pytest.raises(FileNotFoundError):
        NodeClient("no-such-client.mjs")


def test_a_pipe_closed_under_the_reader_ends_its_output() -> None:
    # close() closes the script's stdout while the reader thread may still be reading its
    # last lines; the reader must take that as the end of the output, not die with
    # "I/O operation on closed file". Made certain here: a real pipe, closed before the
    # reader runs (in this thread, so its outcome is seen).
    client = NodeClient("pusher_client.mjs")
    client.process = subprocess.Popen(
        [sys.executable, "-c", 'print(\'{"type": "connected"}\')'],
        stdout=subprocess.PIPE,
        text=True,
    )
    client.process.wait(timeout=30)
    assert client.process.stdout is not None
    client.process.stdout.close()
    client._read()
    assert client._unread.get_nowait() is None  # the end of the output, said once
    assert client._unread.empty()
    client.close()  # the process has exited: only its folder to remove
    assert not client._workdir.exists()
