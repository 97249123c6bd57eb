"""Publishing later: once the caller's transaction commits, or through an outbox.

docs/background.md says how to choose.

The core decides how a publish is sent (the call's ``send=``, the event's ``broadcast_send``,
the config's ``SEND``), adapts the caller's transaction through the ``broadcasting_transaction``
hook, and hands the message to the ``broadcasting_defer`` hook. Its own implementation of that
hook sends after commit, or writes to the outbox (:mod:`broadcasting.outbox`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from broadcasting._errors import InputError, PublishError
from broadcasting._flow import Flow, arun, drive, run
from broadcasting._fork import in_forked_child
from broadcasting._types import Message, Receipt

if TYPE_CHECKING:
    from broadcasting._broadcast import Broadcast
    from broadcasting._broadcaster import Broadcaster

log = logging.getLogger("broadcasting.background")

NOW = "now"
AFTER_COMMIT = "after_commit"
OUTBOX = "outbox"
#: The ways the core sends by itself; a queue plugin adds its own name (``"celery"``).
BUILT_IN = (NOW, AFTER_COMMIT, OUTBOX)


class Transaction(Protocol):
    """The caller's database transaction, as a ``broadcasting_transaction`` plugin adapts it.

    ``dialect`` is SQLAlchemy's name for the database (``"postgresql"``, ``"sqlite"``,
    ``"mysql"``); ``paramstyle`` the placeholders :meth:`execute` takes (``"format"``: ``%s``,
    ``"qmark"``: ``?``).
    """

    dialect: str
    paramstyle: str

    def active(self) -> bool:
        """Whether a transaction is open now (outside one, a commit-bound publish goes at once)."""
        ...

    def on_commit(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` once, after the transaction commits; never if it rolls back."""
        ...

    def execute(self, sql: str, params: Sequence[Any]) -> object:
        """Run one statement inside the transaction (an async adapter returns an awaitable)."""
        ...


def send_mode(broadcast: Broadcast, send: str | None, target: object) -> str:
    """How this publish is sent: ``send=``, else the event's ``broadcast_send``, else ``SEND``."""
    if send is None:
        send = getattr(target, "broadcast_send", None)
        if send is None:
            return broadcast.config.send
        where = f"{type(target).__qualname__}.broadcast_send"
    else:
        where = "send"
    if not isinstance(send, str) or not send:
        raise InputError(f"{where} must name how to send ({', '.join(map(repr, BUILT_IN))}, ...)")
    return send


def pending(broadcaster: Broadcaster[Any], message: Message) -> Receipt:
    """The receipt of a message that is yet to be sent."""
    # positional: made on every deferred publish, and keywords cost more
    return Receipt(
        broadcaster.driver.name,
        message.event,
        message.channels,
        message.id,
        (),
        0,
        message.via,
        True,
    )


def defer(
    broadcaster: Broadcaster[Any], message: Message, transaction: Transaction | None
) -> Receipt:
    """The core's ``broadcasting_defer``: :func:`deferred` on the caller's path (blocking, or
    awaited from the bridge)."""
    return drive(deferred(broadcaster, message, transaction))


def deferred(
    broadcaster: Broadcaster[Any], message: Message, transaction: Transaction | None
) -> Flow[Receipt]:
    """Send ``message`` after commit, or write it to the outbox, as its ``via`` says (the
    core's part of ``broadcasting_defer``, as a flow: a publish runs it without the hook
    while the core alone implements that, ``_plugins.core_alone``)."""
    via = message.via
    if via == OUTBOX:
        write = _outbox_write or _load_outbox_write()
        return (yield from write(broadcaster, message, transaction))
    if via == AFTER_COMMIT:
        return (yield from after_commit(broadcaster, message, transaction))
    raise unknown_mode(via)


# the outbox's write path, imported by the first outbox publish (the core loads no outbox code
# before), then kept: an import statement per publish costs a fifth of the write itself
_outbox_write: Callable[..., Flow[Receipt]] | None = None


def _load_outbox_write() -> Callable[..., Flow[Receipt]]:
    global _outbox_write
    from broadcasting.outbox._write import write

    _outbox_write = write
    return write


def after_commit(
    broadcaster: Broadcaster[Any], message: Message, transaction: Transaction | None
) -> Flow[Receipt]:
    """Send ``message`` once ``transaction`` commits (at once outside a transaction)."""
    if transaction is None or not transaction.active():
        return (yield from broadcaster.publish_message(message))
    transaction.on_commit(lambda: send_committed(broadcaster, message))
    return pending(broadcaster, message)


# a task's only reference is the loop's weak one: kept here until it ends
_tasks: set[asyncio.Task[Any]] = set()
_tasks_lock = threading.Lock()


class Cancelled(Exception):
    """What a commit waited for was cancelled midway (its event loop stopped): its outcome is
    unknown, reported like a failure."""


def call_committed(
    blocking: Callable[[], object],
    awaited: Callable[[], Coroutine[Any, Any, object]],
    failed: Callable[[Exception], None],
) -> None:
    """Do what a commit was waiting for: ``blocking()`` where no event loop runs in this
    thread, else ``awaited()`` as a task of the running loop (an async commit's callback must
    not block it). A failure goes to ``failed``; nothing is raised into the committing code,
    whose data is already committed."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is None:
        try:
            blocking()
        except Exception as exc:
            failed(exc)
        return
    task = loop.create_task(awaited())
    with _tasks_lock:
        _tasks.add(task)

    def finished(done: asyncio.Task[Any]) -> None:
        with _tasks_lock:
            _tasks.discard(done)
        if done.cancelled():  # its loop ended (asyncio.run() returning), or it was cancelled
            failed(Cancelled("cancelled before it finished (its event loop stopped?)"))
        elif isinstance(exc := done.exception(), Exception):
            failed(exc)

    task.add_done_callback(finished)


@in_forked_child
def _forget_in_child() -> None:
    """After fork: the parent's tasks and their loops are not the child's, and its lock may
    have been held by one of the parent's threads, which do not exist here."""
    global _tasks, _tasks_lock
    _tasks, _tasks_lock = set(), threading.Lock()


def send_committed(broadcaster: Broadcaster[Any], message: Message) -> None:
    """Send a committed message (:func:`call_committed`); a failure is logged."""
    call_committed(
        lambda: run(broadcaster.publish_message(message)),
        lambda: arun(broadcaster.publish_message(message)),
        lambda exc: _report(broadcaster, message, exc),
    )


def _report(broadcaster: Broadcaster[Any], message: Message, exc: Exception) -> None:
    """Log the failure of a publish that was sent after its transaction committed."""
    if isinstance(exc, (PublishError, Cancelled)):
        log.error(
            "%s: message %s (%r to %d channel(s)), sent after commit, %s: %s",
            broadcaster.name,
            message.id,
            message.event,
            len(message.channels),
            _outcomes(message.channels, exc),
            exc,
        )
    else:  # a bug (a plugin's, the driver's): its traceback says where
        log.error(
            "%s: message %s, sent after commit, raised", broadcaster.name, message.id, exc_info=exc
        )


def _outcomes(channels: Sequence[str], exc: Exception) -> str:
    """What became of each channel: ``"delivered on a; unknown on b"`` (a channel the error
    does not name: unknown if a request may have delivered it, else failed)."""
    said: dict[str, list[str]] = {"delivered": [], "failed": [], "unknown": []}
    if isinstance(exc, PublishError):
        named = {c: "delivered" for c in exc.delivered}
        named.update({c: "failed" for c in exc.failed})
        named.update({c: "unknown" for c in exc.unknown})
        rest = "unknown" if exc.maybe_delivered else "failed"
    else:  # cancelled midway: a request may have gone out
        named, rest = {}, "unknown"
    for channel in channels:
        said[named.get(channel, rest)].append(channel)
    return "; ".join(
        f"{outcome} on {', '.join(names[:10])}"
        + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        for outcome, names in said.items()
        if names
    )


def unknown_mode(via: str) -> InputError:
    """The error for a way of sending that no plugin handles."""
    return InputError(
        f"send={via!r}: no installed plugin sends that way (the core sends "
        f"{', '.join(map(repr, BUILT_IN))}; a queue needs its plugin, docs/background.md)"
    )
