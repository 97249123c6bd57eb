"""Publishing as RQ jobs: ``send="rq"`` (docs/background.md#task-queues-celery-rq-and-dramatiq).

::

    queue = RQQueue(rq.Queue("broadcasts", connection=redis.Redis()), "shop.app:broadcast")
    broadcast = Broadcast("config/broadcast.py", plugins=[queue])

    broadcast.channel("orders", {"id": 42}, "shipped", send="rq")  # a pending receipt

Each publish becomes a job of :func:`publish`; ``rq worker --with-scheduler broadcasts``
runs it (the scheduler runs the retries, which wait). The job names the Broadcast by its
import path, which the worker imports, and writes each attempt to a journal in the queue's
Redis, so a job re-run after its work horse died mid-publish is reported unknown instead of
sent twice. RQ is imported by the application, never by ``broadcasting``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from broadcasting._errors import ConfigurationError
from broadcasting.contrib._queue import (
    Journal,
    QueuePlugin,
    RedisJournal,
    TaskFailed,
    TaskRetry,
    resolve,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from broadcasting._broadcast import Broadcast
    from broadcasting.contrib._queue import QueueOptions

__all__ = ["Journal", "RQQueue", "RedisJournal", "TaskFailed", "TaskRetry", "publish"]


class RQQueue(QueuePlugin):
    """A plugin that sends ``send="rq"`` publishes as jobs of the RQ ``queue``.

    Args:
        queue: the ``rq.Queue`` the jobs go to.
        broadcast: the worker's Broadcast as ``"package.module:attribute"`` (the job carries
            it; the worker imports it, and finds this plugin in it by its ``name``).
        job_options: more ``Queue.enqueue()`` options (``job_timeout``, ``result_ttl``...).
        options: what every queue plugin takes (:class:`QueueOptions`): ``name`` (default
            ``"rq"``), ``journal`` (by default a :class:`RedisJournal` on the queue's own
            Redis connection), ``retries``, ``backoff``, ``max_backoff`` (as RQ's
            ``Retry(max=retries + 1, interval=[...])``, the n-th after ``min(max_backoff,
            backoff * 2**n)`` seconds, run by the worker's scheduler: ``rq worker
            --with-scheduler``; the one more is for a work horse that dies on the last
            attempt, whose re-run reports the message unknown) and ``journal_ttl``.
    """

    name = "rq"

    def __init__(
        self,
        queue: Any,
        broadcast: str,
        *,
        job_options: dict[str, Any] | None = None,
        **options: Unpack[QueueOptions],
    ) -> None:
        if not isinstance(broadcast, str):
            raise ConfigurationError(
                "config",
                "broadcast",
                "RQQueue needs broadcast='package.module:attribute': the job carries it "
                "and the RQ worker imports it",
            )
        super().__init__(broadcast, **options)
        self.queue = queue
        self.job_options = dict(job_options or {})
        _check_job_options(queue, self.job_options)
        retry = self.retry
        # one run more than the retries: RQ re-runs a job whose work horse died only while
        # it has retries left, and the death uses one up; that last run finds the journal
        # "sending" and reports the message unknown (run_task never asks for it otherwise)
        self._intervals = [
            max(1, round(min(retry.max_backoff, retry.backoff * 2**n)))
            for n in range(retry.retries + 1)
        ]

    def enqueue(self, payload: dict[str, Any]) -> None:
        """Enqueue the job (blocking); its id is the message id."""
        from rq import Retry

        options: dict[str, Any] = {
            "job_id": payload["id"],
            "retry": Retry(max=self.retry.retries + 1, interval=self._intervals),
            **self.job_options,
        }
        self.queue.enqueue(publish, payload, self.target, self.name, **options)

    def default_journal(self) -> Journal:
        """A journal on the queue's Redis connection."""
        return RedisJournal(self.queue.connection)


#: What the plugin gives each job itself: the message id, its retries, the job's arguments.
_OWN_OPTIONS = ("job_id", "retry", "args", "kwargs")


def _check_job_options(queue: Any, job_options: dict[str, Any]) -> None:
    """A ConfigurationError for an option the plugin sets itself, or one RQ does not take
    (``Queue.enqueue()`` would pass it on to the job's function: every job would fail)."""
    own = [key for key in job_options if key in _OWN_OPTIONS]
    parse_args = getattr(queue, "parse_args", None)
    if parse_args is None:  # not an rq.Queue: RQ's own
        from rq import Queue

        parse_args = Queue.parse_args
    rest = {key: value for key, value in job_options.items() if key not in _OWN_OPTIONS}
    unknown = sorted(parse_args(publish, **rest).kwargs or ())
    if own or unknown:
        said = [f"{', '.join(own)}: the plugin sets it"] if own else []
        said += [f"{', '.join(unknown)}: not an option of Queue.enqueue()"] if unknown else []
        raise ConfigurationError("config", "job_options", "; ".join(said))


_found: dict[tuple[str, str], RQQueue] = {}
_found_lock = threading.Lock()


def _plugin(target: str, via: str) -> RQQueue:
    """The RQQueue named ``via`` in the Broadcast at ``target`` (found once per worker)."""
    key = (target, via)
    plugin = _found.get(key)
    if plugin is None:
        with _found_lock:
            broadcast: Broadcast = resolve(target)
            # not get_plugins(): pluggy makes a set of those, and a plugin may be unhashable
            for _, candidate in broadcast.plugin_manager.list_name_plugin():
                if isinstance(candidate, RQQueue) and candidate.name == via:
                    candidate._broadcast = broadcast
                    plugin = _found[key] = candidate
                    break
            else:
                raise TaskFailed(
                    f"{target} has no RQQueue plugin named {via!r}: add it to its plugins",
                    message_id="",
                    outcome="failed",
                )
    return plugin


def publish(payload: dict[str, Any], target: str, via: str = RQQueue.name) -> None:
    """The job: publish one queued message through the Broadcast at ``target``.

    A certain, retryable failure raises (RQ retries the job if it has retries left); any
    other failure also stops the job's retries, so it lands in the failed job registry.
    """
    from rq import get_current_job

    job = get_current_job()
    try:
        plugin = _plugin(target, via)
        left = job.retries_left if job is not None else None
        # the job has one retry more than the plugin's: see RQQueue.__init__
        attempt = max(0, plugin.retry.retries + 1 - left) if left is not None else 0
        plugin.run_task(payload, attempt=attempt)
    except TaskRetry:
        raise
    except BaseException:
        if job is not None:  # never again: the failed job registry keeps it, with the reason
            job.retries_left = 0
        raise
