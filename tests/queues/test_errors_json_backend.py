"""A real Celery worker whose task raises each of the library's errors, and a result backend
that keeps them as JSON (Redis, ``result_serializer='json'``): ``AsyncResult.get()`` raises
an error of the same class, with the same message, repr and public attributes.

Celery keeps such an exception as its type, its module and its ``args``, and calls the class
with those args to raise it again; before the library's errors held their ``__init__``'s
arguments there, ``get()`` raised a plain ``Exception`` naming the class instead (a
PublishError's ``__init__`` refused its message alone). The unit test of the same rule, class
by class, is tests/core/test_errors_rebuilt_from_args.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import queue_soak
from error_samples import described
from errors_json_worker import ERRORS
from queue_services import need, wait_for_worker

HERE = Path(__file__).resolve().parent
#: The queue tests' Redis database (tests/queues/conftest.py), a queue of this module's own.
REDIS = queue_soak.REDIS_URL


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The worker's Celery app (this side's), its worker running on a queue of its own."""
    need("Redis", 6379)
    import uuid

    from errors_json_worker import app

    queue = f"errors-json-{uuid.uuid4().hex[:10]}"
    log = tmp_path_factory.mktemp("errors-json") / "worker.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    command = [str(Path(sys.executable).parent / "celery"), "-A", "errors_json_worker", "worker"]
    command += ["-Q", queue, "-P", "solo", "-l", "INFO", "-n", f"{queue}@%h"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=HERE, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for_worker("the worker started", lambda: "ready." in log.read_text(), log, 60)
        yield app, queue, log
    finally:
        queue_soak.stop(process)
        client = app.backend.client
        for key in client.scan_iter(f"_kombu*{queue}*"):
            client.delete(key)
        client.delete(queue)


def test_the_backend_keeps_exceptions_as_json(worker: Any) -> None:
    app, _, _ = worker
    assert app.conf.result_serializer == "json" and app.backend.serializer == "json"


@pytest.mark.parametrize("name", list(ERRORS))
def test_a_task_s_error_comes_back_from_the_json_backend_as_it_was(worker: Any, name: str) -> None:
    app, queue, log = worker
    result = app.send_task("errors_json_worker.fail", args=[name], queue=queue)
    try:
        with pytest.raises(BaseException) as info:
            result.get(timeout=60, propagate=True)
        raised = info.value
        expected = ERRORS[name]()
        assert type(raised) is type(expected), (raised, log.read_text()[-3000:])
        assert described(raised) == described(expected)
        # what the backend stored: the args, as JSON holds them, not a repr standing in
        stored = json.loads(app.backend.get(app.backend.get_key_for_task(result.id)))["result"]
        assert stored["exc_type"] == type(expected).__qualname__
        assert stored["exc_module"] == type(expected).__module__
        assert stored["exc_message"] == json.loads(json.dumps(expected.args))
    finally:
        result.forget()
