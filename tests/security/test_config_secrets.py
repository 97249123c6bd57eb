"""Issue 17, item 9: a failing ``.py`` configuration file shows no secret, wherever it came from.

The error names the file, the line and the exception's type; never the
exception's message nor a source line (either may quote a value read from
the environment, held by a helper's local variable or written in the file),
and nothing is chained to it. Checked on every way a configuration file is
loaded: ``Broadcast(path)``, ``load_config(path)`` and the CLI's ``--config``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import pytest

from broadcasting import Broadcast, ConfigurationError
from broadcasting import cli as broadcasting_cli
from broadcasting._config import load_config

ENV_SECRET = "env-secret-9c1f2a7e40b3"  # what $PUSHER_PORT mistakenly holds
LOCAL_SECRET = "local-secret-5e88d02f1a6c"  # a helper's local, written in the file
MODULE_SECRET = "module-secret-77ab41c9e2d0"  # bound at module level
SECRETS = (ENV_SECRET, LOCAL_SECRET, MODULE_SECRET)

#: Config files that fail, each with the line the error must name, its
#: exception type, and the helper (and its line) it failed in, if any.
FILES = {
    # the case: a helper reads the environment into a local and casts it
    "env_helper": (
        """\
import os

def env(name, cast=str):
    value = os.environ[name]
    return cast(value)

DRIVER = "pusher"
DRIVERS = {
    "pusher": {
        "port": env("PUSHER_PORT", int),
    }
}
""",
        10,
        "ValueError",
        ("env", 5),
    ),
    # the same helper as a lambda
    "env_lambda": (
        "import os\n"
        "env = lambda name, cast: cast(os.environ[name])\n"
        "\n"
        'PORT = env("PUSHER_PORT", int)\n',
        4,
        "ValueError",
        ("<lambda>", 2),
    ),
    # the value straight from the environment, at module level
    "env_direct": (
        'import os\nDRIVERS = {"pusher": {"port": int(os.environ["PUSHER_PORT"])}}\n',
        2,
        "ValueError",
        None,
    ),
    # a literal secret in a helper's local: the source line must not be quoted either
    "local_literal": (
        f'def token():\n    raw = "{LOCAL_SECRET}"\n    return int(raw)\n\nPORT = token()\n',
        5,
        "ValueError",
        ("token", 3),
    ),
    # a secret used as a key: a KeyError's message is the key
    "key_error": (
        'import os\nAPPS = {}\nDRIVERS = {"pusher": APPS[os.environ["PUSHER_PORT"]]}\n',
        3,
        "KeyError",
        None,
    ),
    # bound at module level, raised in the message (what the old scrubber covered)
    "module_level": (
        f'SECRET = "{MODULE_SECRET}"\nraise RuntimeError("bad " + SECRET)\n',
        2,
        "RuntimeError",
        None,
    ),
    # sys.exit() with a value: printed by the interpreter if it got out
    "system_exit": (
        'import os, sys\nsys.exit(os.environ["PUSHER_PORT"])\n',
        2,
        "SystemExit",
        None,
    ),
    # an exception with the secret in a note and in its arguments (a stack of causes)
    "chained": (
        f"""\
import os

def load():
    try:
        int(os.environ["PUSHER_PORT"])
    except ValueError as exc:
        raise LookupError("{LOCAL_SECRET}") from exc

load()
""",
        9,
        "LookupError",
        ("load", 7),
    ),
}


@pytest.fixture(autouse=True)
def _secret_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHER_PORT", ENV_SECRET)


def _write(tmp_path: Path, case: str) -> Path:
    path = tmp_path / f"broadcast_{case}.py"
    path.write_text(FILES[case][0])
    return path


def _frames(error: BaseException) -> Iterator[TracebackType]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        tb = current.__traceback__
        while tb is not None:
            yield tb
            tb = tb.tb_next
        current = current.__cause__ or current.__context__


def _shown(value: object) -> str:
    """A local as an error tracker records it (a repr that fails shows nothing)."""
    if isinstance(value, str):
        return value
    try:
        return repr(value)
    except Exception:  # a half-built Broadcast, in its own __init__'s frame
        return ""


def _assert_shows_no_secret(error: BaseException) -> None:
    texts = {
        "str": str(error),
        "repr": repr(error),
        "traceback": "".join(traceback.format_exception(error)),
        "args": repr(error.args),
    }
    for what, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, f"the error's {what} shows a secret: {text}"
    # nothing is chained: the file's exception carries the secret in its message
    assert error.__cause__ is None
    assert error.__context__ is None
    # and no frame of its traceback holds one (error trackers record every local)
    for tb in _frames(error):
        if tb.tb_frame.f_code.co_filename == __file__:
            continue  # this module's frames hold the secrets on purpose (SECRETS)
        for name, value in tb.tb_frame.f_locals.items():
            shown = _shown(value)
            for secret in SECRETS:
                assert secret not in shown, f"{tb.tb_frame.f_code.co_name}:{name} holds a secret"


def _assert_names_the_place(text: str, path: Path, case: str) -> None:
    _, line, kind, inner = FILES[case]
    assert f"{str(path)!r} line {line}" in text, text
    assert kind in text, text
    if inner is not None:
        function, inner_line = inner
        assert f"in {function}() at line {inner_line}" in text, text
    assert f"python {path}" in text, "the error says how to see the whole error"


LOADERS: dict[str, Callable[[Path], object]] = {
    "Broadcast(path)": Broadcast,
    "Broadcast(str)": lambda path: Broadcast(str(path)),
    "load_config(path)": load_config,
    "load_config(str)": lambda path: load_config(str(path)),
}


@pytest.mark.parametrize("case", sorted(FILES))
@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_a_failing_config_file_shows_no_secret(tmp_path: Path, case: str, loader: str) -> None:
    path = _write(tmp_path, case)
    with pytest.raises(ConfigurationError) as info:
        LOADERS[loader](path)
    _assert_shows_no_secret(info.value)
    _assert_names_the_place(str(info.value), path, case)


@pytest.mark.parametrize("case", sorted(FILES))
def test_the_cli_shows_no_secret(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, case)
    code = broadcasting_cli.main(["send", "-c", "orders", "hi", "--config", str(path)])
    out, err = capsys.readouterr()
    assert code == 1
    for secret in SECRETS:
        assert secret not in out + err
    _assert_names_the_place(err, path, case)


def test_the_cli_in_its_own_process_shows_no_secret(tmp_path: Path) -> None:
    """As a user runs it: the secret is in the child's environment, nowhere on screen."""
    path = _write(tmp_path, "env_helper")
    env = {**os.environ, "PUSHER_PORT": ENV_SECRET}
    for command in (["send", "-c", "orders", "hi"], ["check"], ["listen", "orders"]):
        done = subprocess.run(
            [sys.executable, "-m", "broadcasting", *command, "--config", str(path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert done.returncode != 0
        for secret in SECRETS:
            assert secret not in done.stdout + done.stderr, (command, done.stderr)
        assert "ValueError" in done.stderr and "line 10" in done.stderr, done.stderr


def test_running_the_file_shows_the_whole_error(tmp_path: Path) -> None:
    """What the error tells the file's author to do does show the error (on their terminal)."""
    path = _write(tmp_path, "env_helper")
    done = subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PUSHER_PORT": ENV_SECRET},
        timeout=60,
        check=False,
    )
    assert "invalid literal for int()" in done.stderr


def test_a_syntax_error_names_the_line_and_quotes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "broadcast.py"
    path.write_text(f'DRIVER = "log"\nSECRET = "{LOCAL_SECRET}" +\n')
    with pytest.raises(ConfigurationError, match=r"broadcast.py' line 2: SyntaxError") as info:
        load_config(path)
    _assert_shows_no_secret(info.value)


def test_a_null_byte_is_a_configuration_error(tmp_path: Path) -> None:
    """compile() raises ValueError for it before Python 3.12, SyntaxError since."""
    path = tmp_path / "broadcast.py"
    path.write_bytes(b'DRIVER = "log"\nSECRET = "' + LOCAL_SECRET.encode() + b'\x00"\n')
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    _assert_shows_no_secret(info.value)


def test_an_exception_class_named_by_the_file_cannot_carry_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "broadcast.py"
    path.write_text(
        "import os\nOdd = type(os.environ['PUSHER_PORT'] + ' !', (Exception,), {})\nraise Odd()\n"
    )
    with pytest.raises(ConfigurationError, match="line 3 failed: an exception") as info:
        load_config(path)
    _assert_shows_no_secret(info.value)


def test_a_working_config_file_still_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "broadcast.py"
    path.write_text(
        "import os\n"
        "def env(name, cast=str):\n"
        "    return cast(os.environ[name])\n"
        "DRIVER = 'null'\n"
        "DRIVERS = {'pusher': {'secret': env('PUSHER_PORT'), 'port': env('PORT_OK', int)}}\n"
    )
    monkeypatch.setenv("PORT_OK", "6001")
    config = load_config(path)
    assert config.driver == "null"
    assert config.options("pusher")["port"] == 6001
    assert ENV_SECRET not in repr(config)
