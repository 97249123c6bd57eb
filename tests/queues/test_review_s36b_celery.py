"""Celery: a retry the broker refuses, and two plugins that would share one task.

A task whose publish failed for a reason that passes (the service down) asks Celery for a
retry: ``task.retry()`` publishes a copy of the task, with a countdown, and the worker then
acknowledges the running one. When that publish fails, Celery raises ``Reject(requeue=False)``
(celery/app/task.py): the running task's message is rejected without requeue, dropped, and
logged at WARNING only; the journal still said "retry", and nothing would ever send it. Now
the plugin puts the task back on the queue instead (``Reject(requeue=True)``: the message was
never acknowledged, ``acks_late``), after logging at ERROR with the message id, so it runs
again and its retry is asked for again.

The broker here is the real RabbitMQ: a vhost and a user of this test's own (made with
``rabbitmqctl``, removed afterwards) that may consume the queue but not publish to the
exchange its tasks come through, so the worker runs the task and RabbitMQ refuses the retry
(with publisher confirms: without them a refused publish raises nothing, docs/background.md).

``app.task(publish, name=...)`` returns the task already registered under that name, and
``app.task`` registers a task for every Celery app of the process unless ``shared=False``:
a second CeleryQueue (on the same app, or on another app) ran the first one's Broadcast and
journal. A second plugin with the same task name on one app is now refused, and an app only
has its own plugin's task.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import queue_soak
from queue_services import (
    need,
    rabbitmqctl,
    refused_driver,
    refusing_vhost,
    wait_for_worker,
    worker_env,
)

from broadcasting import Broadcast, ConfigurationError
from broadcasting.contrib._queue import FAILED, RETRY, SENDING, RedisJournal, parse

HERE = Path(__file__).resolve().parent
REDIS_URL = queue_soak.REDIS_URL


@pytest.fixture
def vhost(uid: str) -> Iterator[tuple[str, str, str]]:
    """(vhost, worker user, password): a RabbitMQ vhost where guest may do anything, and a
    user that may read everything, configure everything and publish only to the queue
    (what binding it needs), not to an exchange."""
    with refusing_vhost(uid, "s36b", f"^bq-{uid}$") as made:
        yield made


def _producer(broker: str, queue: str, prefix: str, driver: dict[str, object]) -> Broadcast:
    """The application's side: its own app with the worker's routing, and the plugin."""
    from celery import Celery
    from kombu import Exchange, Queue

    from broadcasting.contrib.celery import CeleryQueue

    app = Celery(f"producer-{queue}", broker=broker)
    app.conf.update(
        task_queues=[Queue(queue, Exchange(f"{queue}-x", "direct"), routing_key=queue)],
        broker_transport_options={"confirm_publish": True},
    )
    journal = RedisJournal(REDIS_URL, prefix=prefix)
    plugin = CeleryQueue(app, "review_s36b_worker:broadcast", journal=journal, queue=queue)
    return Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": driver}}, plugins=[plugin])


def _wait(what: str, check: Callable[[], bool], log: Path, seconds: float = 45.0) -> None:
    wait_for_worker(what, check, log, seconds, tail=4000)


def test_a_retry_the_broker_refuses_goes_back_to_the_queue_and_is_not_lost(
    vhost: tuple[str, str, str], uid: str, tmp_path: Path
) -> None:
    need("Redis", 6379)
    name, user, password = vhost
    queue, prefix = f"bq-{uid}", f"bq-s36b:{uid}:"
    # the service refuses connections: certainly not delivered, retryable
    driver = refused_driver()
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        **worker_env(
            "S36B",
            queue=queue,
            broker=f"amqp://{user}:{password}@127.0.0.1:5672/{name}",
            journal=REDIS_URL,
            prefix=prefix,
            driver=driver,
        ),
    }
    command = [str(Path(sys.executable).parent / "celery"), "-A", "review_s36b_worker"]
    command += ["worker", "-Q", queue, "-P", "prefork", "-c", "1", "-l", "WARNING"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    journal = RedisJournal(REDIS_URL, prefix=prefix)
    broadcast = _producer(f"amqp://guest:guest@127.0.0.1:5672/{name}", queue, prefix, driver)
    with log.open("wb") as out:
        worker = subprocess.Popen(
            command, cwd=HERE, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        receipt = broadcast.channel("orders", {"id": 1}, "shipped", send="celery")
        refused = f"message {receipt.message_id}: its retry could not be queued"
        # the retry is refused, and the task runs again: it was not dropped
        ran_again = lambda: log.read_text().count(refused) >= 2  # noqa: E731
        _wait("the refused retry's task ran once more", ran_again, log)
        # waiting to be run again, or running again now (the worker does not stop between)
        assert parse(journal.read(receipt.message_id) or "")[0] in (RETRY, SENDING)
        # the broker takes the worker's publishes again: the retries run, then give up
        rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
        _wait(
            "the journal ended failed",
            lambda: parse(journal.read(receipt.message_id) or "x []")[0] == FAILED,
            log,
        )
        _wait("the failure was logged", lambda: "gave up after 3 attempts" in log.read_text(), log)
        text = log.read_text()
        assert "ACCESS_REFUSED" in text and password not in text
    finally:
        queue_soak.stop(worker)
        broadcast.close()
        keys = list(journal.client.scan_iter(f"{prefix}*"))
        if keys:
            journal.client.delete(*keys)
        journal.client.close()


# --- two plugins, one task name -----------------------------------------------------------------


def test_a_second_plugin_with_the_same_task_name_on_one_app_is_refused() -> None:
    from celery import Celery

    from broadcasting.contrib.celery import CeleryQueue

    app = Celery("s36b-same")
    first = CeleryQueue(app, "m:first", journal=object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"broadcasting\.publish.*already") as info:
        CeleryQueue(app, "m:second", journal=object())  # type: ignore[arg-type]
    assert info.value.key == "task_name"
    with pytest.raises(ConfigurationError, match="already"):  # an explicit name alike
        CeleryQueue(app, "m:third", name="other", task_name="broadcasting.publish")  # type: ignore[arg-type]
    other = CeleryQueue(app, "m:second", name="celery-2", journal=object())  # type: ignore[arg-type]
    app.conf.task_always_eager = True
    ran: list[str] = []
    first.run_task = lambda payload, attempt=0: ran.append("first")  # type: ignore[method-assign]
    other.run_task = lambda payload, attempt=0: ran.append("other")  # type: ignore[method-assign]
    app.tasks[first.task.name].apply(({},))
    app.tasks[other.task.name].apply(({},))
    assert ran == ["first", "other"]


def test_a_task_name_an_application_task_has_is_refused() -> None:
    from celery import Celery

    from broadcasting.contrib.celery import CeleryQueue

    app = Celery("s36b-own")

    @app.task(name="broadcasting.publish", shared=False)
    def mine(payload: object) -> None:
        """The application's own task, under the plugin's default name."""

    app.finalize()
    with pytest.raises(ConfigurationError, match="already"):
        CeleryQueue(app, "m:b", journal=object())  # type: ignore[arg-type]


def test_each_app_runs_its_own_plugin() -> None:
    """Plugins of two apps in one process: each app's worker runs its own plugin, whatever
    the order the apps are finalized in (Celery's shared tasks were registered on every app,
    and which one an app got depended on the order of a set)."""
    from celery import Celery

    from broadcasting.contrib.celery import CeleryQueue

    ran: list[str] = []
    apps = []
    for n in range(6):
        app = Celery(f"s36b-app-{n}")
        plugin = CeleryQueue(app, "m:b", journal=object())  # type: ignore[arg-type]
        plugin.run_task = lambda payload, attempt=0, n=n: ran.append(n)  # type: ignore[method-assign]
        apps.append(app)
    for app in reversed(apps):
        app.finalize()  # as a worker does at start, before any task is sent
    for app in apps:
        app.tasks["broadcasting.publish"].apply(({},))
    assert ran == list(range(6))
    unrelated = Celery("s36b-unrelated")
    unrelated.finalize()
    assert "broadcasting.publish" not in unrelated.tasks
