"""The `broadcasting` command, run for real in a subprocess, on input that used to end in a
Python traceback: an unreadable config file, Ctrl-C, a closed stdout, a deeply nested
MESSAGE, and installed plugins that are broken or claim the same name.

Plugins are real installed distributions: a `*.dist-info` folder with METADATA and
entry_points.txt in a folder on PYTHONPATH, which importlib.metadata reads like any other.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest


def _env(site: Path | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run(*args: str, site: Path | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broadcasting", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(site, **extra),
    )


def one_clean_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``broadcasting: error: ...`` line of a failed command."""
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("broadcasting: error: "), lines[0]
    return lines[0]


# -- the configuration file ------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize(
    "suffix",
    [
        ".json",
        ".py",
        pytest.param(
            ".toml",
            marks=pytest.mark.skipif(
                sys.version_info < (3, 11), reason="TOML configuration needs Python 3.11+"
            ),
        ),
    ],
)
def test_a_config_file_that_cannot_be_read_is_one_line(tmp_path: Path, suffix: str) -> None:
    """A file that is there but whose reading fails (here /proc/self/mem, whose read is an
    I/O error; a file the user may not read is the same OSError) is a ConfigurationError."""
    config = tmp_path / f"broadcast{suffix}"
    config.symlink_to("/proc/self/mem")
    line = one_clean_line(run("send", "hi", "-c", "orders", "--config", str(config)))
    assert "ConfigurationError" in line and "cannot read" in line and str(config) in line


def test_a_config_path_the_system_refuses_to_look_up_is_one_line(tmp_path: Path) -> None:
    """Looking a path up can fail as well as reading it (a name longer than the file
    system's limit here; a folder the user may not search is the same OSError). Newer
    Pythons answer "not a file" to such a lookup: then it is the missing file's error."""
    config = tmp_path / ("a" * 300 + ".json")
    line = one_clean_line(run("send", "hi", "-c", "orders", "--config", str(config)))
    assert "ConfigurationError" in line
    assert "cannot read" in line or "no configuration file" in line


def test_a_drivers_key_that_is_not_a_name_is_refused(tmp_path: Path) -> None:
    """`DRIVERS = {Kind.PUSHER: ...}` in a .py config: `check` crashed on it, and no
    driver could ever be configured by it."""
    config = tmp_path / "broadcast.py"
    config.write_text(
        "import enum\n"
        "class Kind(enum.Enum):\n"
        "    MEMORY = 'memory'\n"
        "DRIVER = 'memory'\n"
        "DRIVERS = {Kind.MEMORY: {'max_history': 5}}\n"
    )
    for command in (["check"], ["send", "hi", "-c", "orders"]):
        line = one_clean_line(run(*command, "--config", str(config)))
        assert "ConfigurationError" in line and "'DRIVERS'" in line and "Kind" in line


# -- Ctrl-C and a closed stdout --------------------------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[tuple[int, threading.Event]]:
    """A TCP server that accepts connections and never answers: a request to it hangs."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            accepted.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], accepted
    finally:
        with contextlib.suppress(OSError):  # wakes the accept() (close alone does not)
            server.shutdown(socket.SHUT_RDWR)
        server.close()
        for conn in held:
            conn.close()
        thread.join(5)


#: ``python -m broadcasting`` as a terminal starts it: Ctrl-C raises KeyboardInterrupt. A
#: process started in the background by a shell without job control inherits SIGINT ignored
#: (POSIX), and Python then leaves it ignored: so would the command, rightly.
AS_AT_A_TERMINAL = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('broadcasting', run_name='__main__', alter_sys=True)"
)


@pytest.mark.parametrize(
    "command", [["send", "hi", "-c", "orders"], ["check"], ["channels"], ["members", "presence-x"]]
)
def test_ctrl_c_while_a_request_is_out_stops_with_status_130(
    tmp_path: Path, silent_server: tuple[int, threading.Event], command: list[str]
) -> None:
    port, accepted = silent_server
    config = tmp_path / "broadcast.json"
    options: dict[str, object] = {"app_id": "1", "key": "k", "secret": "s3cr3t-value"}
    options |= {"host": "127.0.0.1", "port": port, "ssl": False, "timeout": 30}
    config.write_text(json.dumps({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}))
    process = subprocess.Popen(
        [sys.executable, "-c", AS_AT_A_TERMINAL, *command, "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert accepted.wait(30), "the command never reached the server"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip() == "broadcasting: interrupted"
    assert "s3cr3t-value" not in out + err


@pytest.mark.parametrize(
    "command", [["drivers", "--json"], ["drivers"], ["send", "hi", "-c", "orders", "--json"]]
)
def test_a_reader_that_went_away_ends_quietly_with_status_141(command: list[str]) -> None:
    """`broadcasting drivers | head -0`: the reader closed the pipe before anything was written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "broadcasting", *command],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 141, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "BrokenPipeError" not in result.stderr and "Exception ignored" not in result.stderr


def test_a_json_message_nested_too_deeply_is_one_line() -> None:
    line = one_clean_line(run("send", "[" * 100_000, "-c", "orders", "--driver", "null"))
    assert "InvalidPayloadError" in line and "nested too deeply" in line


# -- installed plugins -----------------------------------------------------------------------


def install(site: Path, dist: str, group: str, name: str, value: str, source: str = "") -> None:
    """A real installed distribution declaring one entry point (and its module, if given)."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{name} = {value}\n")
    if source:
        module = value.split(":")[0]
        (site / f"{module}.py").write_text(textwrap.dedent(source))


def test_an_observer_plugin_with_a_wrong_hook_signature_is_named(tmp_path: Path) -> None:
    install(
        tmp_path,
        "broadcasting-audit",
        "broadcasting.plugins",
        "audit",
        "review_audit",
        """
        from broadcasting.plugin import hookimpl

        @hookimpl
        def broadcasting_publish(broadcast, driver, message, when):
            return None
        """,
    )
    line = one_clean_line(run("send", "hi", "-c", "orders", site=tmp_path))
    assert "PluginLoadError" in line and "broadcasting-audit" in line
    assert "broadcasting_publish" in line and "'when'" in line
    # listing the drivers imports no plugin: it still works
    assert run("drivers", site=tmp_path).returncode == 0


def test_a_driver_factory_with_a_wrong_hook_signature_is_named(tmp_path: Path) -> None:
    install(
        tmp_path,
        "broadcasting-acme",
        "broadcasting.drivers",
        "acme",
        "review_acme",
        """
        from broadcasting.plugin import hookimpl

        @hookimpl
        def broadcasting_connect(name, options, region):
            return None
        """,
    )
    line = one_clean_line(run("send", "hi", "-c", "orders", "-d", "acme", site=tmp_path))
    assert "broadcasting-acme" in line and "broadcasting_connect" in line and "'region'" in line
    # check reports it as the driver's error, with what was wrong (not "message withheld")
    result = run("check", "-d", "acme", "-d", "null", "--json", site=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    rows = {row["driver"]: row for row in json.loads(result.stdout)}
    assert rows["acme"]["status"] == "error"
    assert "broadcasting-acme" in rows["acme"]["detail"]
    assert "'region'" in rows["acme"]["detail"]
    assert rows["null"]["status"] == "not_supported"


def test_two_packages_claiming_one_driver_name_are_both_named(tmp_path: Path) -> None:
    """A package that also claims `memory` does not quietly take the built-in's place."""
    install(
        tmp_path,
        "broadcasting-shadow",
        "broadcasting.drivers",
        "memory",
        "review_shadow:Shadow",
        "from broadcasting.drivers.null import BroadcastNullDriver as Shadow\n",
    )
    result = run("send", "hi", "-c", "orders", "-d", "memory", "--json", site=tmp_path)
    line = one_clean_line(result)
    assert result.stdout == ""  # nothing was sent, through either
    assert "'memory'" in line and "broadcasting-shadow" in line and "broadcasting (" in line
    assert "register_driver" in line
    listed = json.loads(run("drivers", "--json", site=tmp_path).stdout)
    memories = {row["distribution"] for row in listed if row["name"] == "memory"}
    assert memories == {"broadcasting", "broadcasting-shadow"}
    # the other drivers are not affected
    assert run("send", "hi", "-c", "orders", "-d", "null", site=tmp_path).returncode == 0


def test_observer_plugins_of_two_packages_under_one_name_both_run(tmp_path: Path) -> None:
    seen = tmp_path / "seen.txt"
    for dist, module in (
        ("broadcasting-audit-a", "review_a"),
        ("broadcasting-audit-b", "review_b"),
    ):
        install(
            tmp_path,
            dist,
            "broadcasting.plugins",
            "audit",  # the same entry point name: a label each package chose
            module,
            f"""
            import os
            from broadcasting.plugin import hookimpl

            @hookimpl
            def broadcasting_publish(broadcast, driver, message):
                with open(os.environ["REVIEW_SEEN"], "a") as seen:
                    seen.write({module!r} + "\\n")
            """,
        )
    result = run("send", "hi", "-c", "orders", "-d", "null", site=tmp_path, REVIEW_SEEN=str(seen))
    assert result.returncode == 0, result.stderr
    assert sorted(seen.read_text().split()) == ["review_a", "review_b"]
