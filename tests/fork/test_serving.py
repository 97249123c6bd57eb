"""``serving.running``: a port taken before the web server binds it is not mistaken for it.

A port found free and closed again can be taken by another process before a server that
takes a second to start binds it. The server then fails to bind ("address already in use"),
while whatever took the port answers there: a test that only waited for the port to answer
would talk to the wrong server. ``running`` waits for the server's own "bound" log line, and
starts it again on another port when the log says the port was taken. A real uvicorn and
gunicorn here; the only seam is ``serving.free_port``, made to hand out a taken port first.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serving
from serving import HOST, get_json, running

APP = """
async def app(scope, receive, send):
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"served_by": "hello"}'})
"""


@pytest.fixture
def squatter() -> Iterator[int]:
    """A port something else listens on already (it never answers HTTP)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def uvicorn(folder: Path) -> Callable[[int], list[str]]:
    def argv(port: int) -> list[str]:
        return [sys.executable, "-m", "uvicorn", "--app-dir", str(folder), "--host", HOST,
                "--port", str(port), "hello:app"]  # fmt: skip

    return argv


def gunicorn(folder: Path) -> Callable[[int], list[str]]:
    def argv(port: int) -> list[str]:
        return [sys.executable, "-m", "gunicorn", "--chdir", str(folder), "--bind",
                f"{HOST}:{port}", "--worker-class", "uvicorn.workers.UvicornWorker",
                "--no-control-socket", "hello:app"]  # fmt: skip

    return argv


@pytest.mark.parametrize("server", [uvicorn, gunicorn])
def test_a_taken_port_is_left_for_another(
    server: Callable[[Path], Callable[[int], list[str]]],
    squatter: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "hello.py").write_text(APP, encoding="utf-8")
    handed_out: list[int] = []
    free = serving.free_port

    def taken_first() -> int:
        handed_out.append(squatter if not handed_out else free())
        return handed_out[-1]

    monkeypatch.setattr(serving, "free_port", taken_first)
    with running(server(tmp_path), {}, tmp_path / "server.log") as started:
        assert handed_out[0] == squatter and len(handed_out) == 2
        assert started.url == f"http://{HOST}:{handed_out[1]}"
        assert get_json(started.url) == {"served_by": "hello"}
        assert "already in use" not in started.log().lower()


def test_a_server_that_cannot_start_fails_with_its_log(tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text("raise SystemExit('no app here')\n", encoding="utf-8")
    starting = running(uvicorn(tmp_path), {}, tmp_path / "server.log")
    with pytest.raises(AssertionError, match="exited at start") as failed:
        starting.__enter__()
    assert "no app here" in str(failed.value)
