"""The task-queue blocks of docs/background.md (docs/_background_queues.md until the page is
assembled) run: each ``tasks.py`` with a real broker, the worker command the page gives,
and a real subscriber that receives what was published.

Each named block (``<!-- snippet: NAME -->``, as tests/test_docs.py reads them) is written
as a file of a fresh project folder, with a ``config/broadcast.py`` aimed at the test's
soketi. Two things of the page are changed for the test, so parallel runs do not collide:
the queue name ``broadcasts`` gets a suffix of the test's own, and Redis database 0 becomes
the queue tests' database (13). The publish runs in a process of its own, as in an app.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
import queue_soak
from pusher_ws import PusherSubscriber
from queue_services import need
from soketi_server import SoketiServer

pytestmark = pytest.mark.soketi

ROOT = Path(__file__).resolve().parents[2]
_BLOCK = re.compile(r"<!-- snippet: (\S+) -->\s*```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _page() -> Path:
    """docs/background.md once the section is assembled into it, else the section file."""
    for page in (ROOT / "docs" / "background.md", ROOT / "docs" / "_background_queues.md"):
        if page.exists() and "<!-- snippet: queues-celery -->" in page.read_text("utf-8"):
            return page
    raise AssertionError("no page has the task-queue section (snippet queues-celery)")


PAGE = _page()
FOUND = _BLOCK.findall(PAGE.read_text("utf-8"))
BLOCKS = {name: code for name, code in FOUND if name.startswith("queues-")}
BIN = Path(sys.executable).parent

#: kind -> (its block, the worker command the page gives, what the test adds to it)
WORKERS = {
    "celery": (
        "queues-celery",
        "celery -A tasks worker -Q broadcasts",
        ["-c", "1", "--without-gossip", "--without-mingle", "--without-heartbeat"],
    ),
    "rq": ("queues-rq", "rq worker --with-scheduler -u redis://127.0.0.1:6379/0 broadcasts", []),
    "dramatiq": ("queues-dramatiq", "dramatiq tasks -Q broadcasts", ["-p", "1", "-t", "1"]),
}


def test_the_page_has_the_blocks_and_commands_the_tests_run() -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert set(BLOCKS) == {"queues-celery", "queues-publish", "queues-rq", "queues-dramatiq"}
    for _, command, _ in WORKERS.values():
        assert f"{command}\n" in text or f"`{command}`" in text, command


def test_the_settings_table_lists_every_argument_with_its_default() -> None:
    """The page's table of the plugins' arguments: each keyword of the three constructors
    (theirs and the shared :class:`QueueOptions`), and the shared ones' defaults."""
    from broadcasting.contrib._queue import QueueOptions, QueuePlugin
    from broadcasting.contrib.celery import CeleryQueue
    from broadcasting.contrib.dramatiq import DramatiqQueue
    from broadcasting.contrib.rq import RQQueue

    text = PAGE.read_text("utf-8")
    table = text[text.index("### Settings\n", text.index("## Task queues")) :]
    rows = [line.split(" | ") for line in table.split("\n\n")[1].splitlines()[2:]]
    documented = {name: row[1] for row in rows for name in re.findall(r"`(\w+)`", row[0])}
    keywords = {"broadcast", *QueueOptions.__annotations__}
    for plugin in (CeleryQueue, RQQueue, DramatiqQueue):
        parameters = inspect.signature(plugin.__init__).parameters.values()
        keywords.update(p.name for p in parameters if p.kind is p.KEYWORD_ONLY)
    assert set(documented) == keywords
    defaults = inspect.signature(QueuePlugin.__init__).parameters
    for name in ("retries", "backoff", "max_backoff", "journal_ttl"):
        shown = [float(number) for number in re.findall(r"`([\d.]+)`", documented[name])]
        assert defaults[name].default in shown, (name, documented[name])


@pytest.mark.parametrize("kind", list(WORKERS))
async def test_a_publish_sent_as_the_page_says_reaches_a_subscriber(
    soketi: SoketiServer, subscriber: PusherSubscriber, tmp_path: Path, uid: str, kind: str
) -> None:
    need("Redis", 6379)
    if kind != "rq":
        need("RabbitMQ", 5672)
    block, command, extra = WORKERS[kind]
    queue = f"broadcasts-{uid}"

    def adapted(code: str) -> str:
        code = code.replace('"broadcasts"', f'"{queue}"')
        return code.replace("redis://127.0.0.1:6379/0", queue_soak.REDIS_URL)

    (tmp_path / "tasks.py").write_text(adapted(BLOCKS[block]), encoding="utf-8")
    (tmp_path / "config").mkdir()
    options = soketi.driver_options()
    (tmp_path / "config" / "broadcast.py").write_text(
        f'DRIVER = "pusher"\nDRIVERS = {{"pusher": {options!r}}}\n', encoding="utf-8"
    )
    channel = f"orders-{uid}"
    message_id = ""
    await subscriber.subscribe(channel)
    argv = adapted(command).replace("broadcasts", queue).split()
    argv = [str(BIN / argv[0]), *argv[1:], *extra]
    if kind == "celery":
        argv += queue_soak.celery_node(queue)
    env = {"PYTHONPATH": str(tmp_path), "PATH": str(BIN), "HOME": str(tmp_path)}
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = await asyncio.to_thread(
            subprocess.Popen,
            argv,
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        publish = BLOCKS["queues-publish"].replace('"orders"', f'"{channel}"')
        publish = publish.replace('send="celery"', f'send="{kind}"').replace(
            "True celery", f"True {kind}"
        )
        publish += "\nprint(receipt.message_id)  # added by the test: its keys are deleted after\n"
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", publish],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        said, message_id = done.stdout.strip().splitlines()
        assert said == f"True {kind}"
        try:
            event = await subscriber.next_event(timeout=30)
        except asyncio.TimeoutError:
            said = log.read_text(errors="replace")[-3000:]
            pytest.fail(f"nothing arrived; the worker said:\n{said}")
        assert (event.channel, event.event, event.json()) == (channel, "shipped", {"id": 42})
    finally:
        queue_soak.stop(worker)
        queue_soak.delete_queue(queue, amqp=kind != "rq")
        if message_id:
            _forget(message_id)


def _forget(message_id: str) -> None:
    """Delete the journal entry (and RQ's job) of ``message_id``."""
    import redis

    client = redis.Redis.from_url(queue_soak.REDIS_URL)
    client.delete(
        f"broadcasting:journal:{message_id}", f"rq:job:{message_id}", f"rq:results:{message_id}"
    )
    client.close()
