"""The Celery application of tests/queues/test_errors_json_backend.py's worker (``celery -A
errors_json_worker worker``): its result backend stores a task's exception as JSON (its type,
module and ``args``), and its one task raises one of :data:`ERRORS`, made as the library makes
them. The test's side imports :data:`ERRORS` too, to compare what ``AsyncResult.get()`` raised.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from celery import Celery

from broadcasting import (
    BroadcastError,
    CloseError,
    ConfigurationError,
    DriverNotFoundError,
    InvalidChannelError,
    NotSupportedError,
    OutboxError,
    PayloadTooLargeError,
    PluginLoadError,
    PublishError,
    QueryError,
    ServiceError,
)
from broadcasting.contrib.celery import TaskFailed, TaskRetry


def _combined() -> ConfigurationError:
    return ConfigurationError.combine(
        [
            ConfigurationError("pusher", "port", "must be an int"),
            ConfigurationError("pusher", "ssl", "must be True or False"),
        ]
    )


#: name -> the error a task raises
ERRORS: dict[str, Callable[[], BaseException]] = {
    "configuration": lambda: ConfigurationError("ably", "tls", "must be True or False"),
    "configuration-setting": lambda: ConfigurationError("config", "default", "names no driver"),
    "configuration-combined": _combined,
    "driver-not-found": lambda: DriverNotFoundError("pushr", ["pusher", "ably"]),
    "plugin-load": lambda: PluginLoadError(
        entry_point="acme", value="acme:Driver", distribution=None, reason="no module"
    ),
    "not-supported": lambda: NotSupportedError("log", "presence", "use pusher"),
    "payload-too-large": lambda: PayloadTooLargeError(
        "10240 bytes > 10000", size=10240, limit=10000
    ),
    "service": lambda: ServiceError("refused", driver="pusher", status=429, code=7),
    "query": lambda: QueryError("bad key", driver="ably", kind="auth", code="40101"),
    "publish": lambda: PublishError(
        "not acknowledged",
        driver="pusher",
        status=503,
        retryable=True,
        delivered=["a"],
        failed=["b"],
        unknown=["c"],
        requests=3,
        causes={"b": PublishError("refused", driver="pusher", status=503, failed=["b"])},
    ),
    "close": lambda: CloseError([OSError("socket closed"), BroadcastError("flush failed")]),
    "invalid-channel": lambda: InvalidChannelError("channel name is empty"),
    "outbox": lambda: OutboxError("could not connect to the outbox's database"),
    "task-failed": lambda: TaskFailed(
        "gave up", message_id="m1", outcome="unknown", channels=["a"]
    ),
    "task-retry": lambda: TaskRetry("service down", message_id="m2", delay=2.5),
}

app = Celery(
    "errors_json_worker",
    broker=os.environ.get("ERRORS_JSON_BROKER", "redis://127.0.0.1:6379/13"),
    backend=os.environ.get("ERRORS_JSON_BACKEND", "redis://127.0.0.1:6379/13"),
)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
    result_expires=600,
)


@app.task(name="errors_json_worker.fail")
def fail(name: str) -> None:
    raise ERRORS[name]()
