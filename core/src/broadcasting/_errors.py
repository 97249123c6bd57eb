"""The exception hierarchy: everything the library raises derives from BroadcastError."""

from __future__ import annotations

import copyreg
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal


class BroadcastError(Exception):
    """Base class of every error raised by ``broadcasting`` and its drivers.

    ``http_status`` is what the web endpoints answer with (``None``: a 500).
    """

    http_status: int | None = None

    #: The message of an error whose ``args`` are what its ``__init__`` took (:meth:`_made_of`).
    _said: str | None = None
    #: The ``args`` that :attr:`_said` is the message of.
    _said_of: tuple[Any, ...] = ()

    def _made_of(self, said: str, *args: Any) -> None:
        """Keep ``args``, what ``__init__`` took, positionally, as ``self.args``, and ``said`` as
        the message (``str()`` and ``repr()``): ``type(self)(*self.args)`` makes the same error
        again. Celery's JSON result backend stores an exception as its ``args`` and makes it
        again so, each argument JSON can hold (a tuple comes back as a list).

        ``said`` is the message only while ``args`` stay these: a subclass that sets its own
        (``self.args = ...``, ``Exception.__init__(self, ...)``) after ours is said by them."""
        self._said = said
        self._said_of = args
        self.args = args

    def _message(self) -> str | None:
        """:attr:`_said`, unless ``args`` were set since :meth:`_made_of` (``None`` then)."""
        said = self._said
        if said is None:
            return None
        made, args = self._said_of, self.args
        try:
            return said if args is made or args == made else None
        except Exception:  # an argument of a subclass's own that cannot be compared
            return None

    def __str__(self) -> str:
        said = self._message()
        return super().__str__() if said is None else said

    def __repr__(self) -> str:  # the message alone, as when ``args`` held only it
        said = self._message()
        return super().__repr__() if said is None else f"{type(self).__name__}({said!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled as it is, attributes and all, not made again from its message: a subclass's
        # __init__ takes other arguments (ConfigurationError's driver, key and problem), and
        # task queues' workers (Celery, RQ, Dramatiq) and multiprocessing pass an exception
        # between processes pickled. A subclass's __slots__ are not in __dict__: their values
        # go with it (BaseException.__setstate__ sets each name given, a slot's too)
        state = dict(self.__dict__)
        for name in copyreg._slotnames(type(self)):  # type: ignore[attr-defined]
            if name not in ("__dict__", "__weakref__") and hasattr(self, name):
                state[name] = getattr(self, name)
        for base, names in _BUILTIN_MEMBERS:  # set by a built-in's __init__, which is not run
            if isinstance(self, base):  # None is unset: OSError's str() tells the two apart
                state.update(
                    (name, value)
                    for name in names
                    if (value := getattr(self, name, None)) is not None
                )
        return (_unpickled, (type(self), self.args), state or None)


#: What a built-in base's ``__init__`` sets outside ``__dict__`` and ``args``: an unpickled
#: error is made without its ``__init__`` (``PluginLoadError`` is an ``ImportError``,
#: ``ForbiddenError`` an ``OSError``; a driver's error may derive from either).
_BUILTIN_MEMBERS: tuple[tuple[type[BaseException], tuple[str, ...]], ...] = (
    (ImportError, ("msg", "name", "path", "name_from")),  # name_from: Python 3.12+
    (OSError, ("errno", "strerror", "filename", "filename2")),
)


def _unpickled(cls: type[BroadcastError], args: tuple[Any, ...]) -> BroadcastError:
    """An error of ``cls`` with ``args``, its ``__init__`` not run: pickle sets the rest."""
    return cls.__new__(cls, *args)


#: Only this project's drivers get an install hint: one for any name would help a typo-squatter.
KNOWN_PACKAGES = {"pusher": "broadcasting-pusher", "ably": "broadcasting-ably"}


class DriverNotFoundError(BroadcastError, LookupError):
    """No installed or registered driver has the name (the message suggests one)."""

    def __init__(self, name: str, installed: Iterable[str] = ()) -> None:
        import difflib

        self.name = name
        self.installed = tuple(sorted(installed))
        listed = ", ".join(self.installed) or "none"
        text = f"No broadcasting driver named {name!r} is installed (installed: {listed})."
        close = difflib.get_close_matches(name.lower(), self.installed, n=1, cutoff=0.6)
        if close:
            text += f" Did you mean {close[0]!r}?"
        package = KNOWN_PACKAGES.get(name.lower())
        if package is not None:
            text += f" Try: pip install {package}"
        super().__init__(text)
        self._made_of(text, name, self.installed)


class PluginLoadError(BroadcastError, ImportError):
    """A plugin's entry point failed to import, or did not provide what it declared."""

    def __init__(self, entry_point: str, value: str, distribution: str | None, reason: str) -> None:
        self.entry_point = entry_point
        self.value = value
        self.distribution = distribution
        self.reason = reason
        # none: not installed (a driver given to register_driver() or Broadcast(plugins=))
        source = f" from {distribution}" if distribution else ""
        text = f"Plugin {entry_point!r} ({value}){source} failed to load: {reason}"
        super().__init__(text)
        self._made_of(text, entry_point, value, distribution, reason)


class ConfigurationError(BroadcastError, ValueError):
    """A setting is missing or bad: names the driver and the key, never the value.

    One error may hold several problems (:meth:`combine`), so that a driver reports every
    wrong option at once: ``problems`` holds one ConfigurationError per problem (just this
    error, for one), and the message lists them all. ``key`` is the first problem's key.

    ``problems`` (what ``args`` holds for a combined error): its problems, each an error or
    a ``(key, problem)`` pair of the same driver; ``problem`` then says them all.
    """

    _problems: tuple[ConfigurationError, ...] = ()

    def __init__(
        self,
        driver: str,
        key: str | None,
        problem: str,
        problems: Iterable[ConfigurationError | tuple[str | None, str]] = (),
    ) -> None:
        self.driver = driver
        self.key = key
        self.problem = problem  #: what is wrong, without the driver and the key
        found = tuple(
            each if isinstance(each, ConfigurationError) else ConfigurationError(driver, *each)
            for each in problems
        )
        said = key if len(found) < 2 else None  # a combined error's message names no one key
        if driver == "config":  # the configuration itself, not one driver's options
            where = f" (setting {said!r})" if said else ""
        else:
            where = f" in the {driver!r} driver" + (f", key {said!r}" if said else "")
        text = f"Configuration error{where}: {problem}"
        super().__init__(text)
        if len(found) > 1:
            self._problems = found
            pairs = tuple((error.key, _problem(error)) for error in found)
            self._made_of(text, driver, key, problem, pairs)
        else:
            self._made_of(text, driver, key, problem)

    @property
    def problems(self) -> tuple[ConfigurationError, ...]:
        """One ConfigurationError per problem, each naming its key: ``(self,)`` for one."""
        return self._problems or (self,)

    @staticmethod
    def combine(errors: Iterable[ConfigurationError]) -> ConfigurationError:
        """One error to raise for every problem of ``errors`` (of one driver), in order: the
        error itself if there is one. Their tracebacks are dropped: the frames that found
        them may hold the values they are about."""
        found = tuple(problem for error in errors for problem in error.problems)
        if not found:
            raise ValueError("ConfigurationError.combine() needs at least one error")
        for error in found:
            if not isinstance(vars(error).get("driver"), str):
                cls = type(error)
                raise TypeError(
                    f"ConfigurationError.combine(): a {cls.__module__}.{cls.__qualname__} "
                    "was not made by ConfigurationError.__init__, so it names no driver or "
                    "key; its __init__ must call super().__init__(driver, key, problem)"
                )
        for error in found:
            error.with_traceback(None)
        if len(found) == 1:
            return found[0]
        driver = found[0].driver
        if any(error.driver != driver for error in found):
            raise ValueError("ConfigurationError.combine() takes the errors of one driver")
        said = "; ".join(f"[{n}] {_one(error)}" for n, error in enumerate(found, 1))
        return ConfigurationError(driver, found[0].key, f"{len(found)} problems: {said}", found)


def _problem(error: ConfigurationError) -> str:
    """What is wrong, as one problem of a combined error's ``args`` says it."""
    problem = getattr(error, "problem", None)
    return problem if isinstance(problem, str) else str(error)


def _one(error: ConfigurationError) -> str:
    """``key 'port': must be...``: one problem of a combined error (its driver is said once)."""
    problem = getattr(error, "problem", None)
    if not isinstance(problem, str):  # a subclass that did not call our __init__
        return str(error)
    if error.key is None:
        return problem
    return f"{'setting' if error.driver == 'config' else 'key'} {error.key!r}: {problem}"


class InputError(BroadcastError, ValueError):
    """A publish was refused before any network request because its input is invalid."""

    http_status: int | None = 400


class BadRequestError(InputError):
    """An authorization or webhook request is malformed (HTTP 400)."""


class ForbiddenError(BroadcastError, PermissionError):
    """An authorization was refused (HTTP 403); the message, for the log only, says why."""

    http_status: int | None = 403


class UnauthorizedError(BroadcastError, PermissionError):
    """A webhook's key or signature did not verify, or it is too old (HTTP 401)."""

    http_status: int | None = 401


class NotSupportedError(BroadcastError, NotImplementedError):
    """The driver does not offer a feature (HTTP 501); names the driver and the feature."""

    http_status: int | None = 501

    def __init__(self, driver: str, feature: str, hint: str = "") -> None:
        self.driver = driver
        self.feature = feature
        text = f"The {driver!r} driver does not support {feature}"
        text = f"{text}: {hint}" if hint else f"{text}."
        super().__init__(text)
        self._made_of(text, driver, feature, hint)


class RuleError(BroadcastError, TypeError):
    """A channel rule returned something unusable: the application's bug (a 500)."""


class InvalidChannelError(InputError):
    """A channel name is empty, not a string, or breaks the driver's naming rule."""


class InvalidEventError(InputError):
    """The event name is empty, not a string, or too long for the driver."""


class InvalidPayloadError(InputError, TypeError):
    """The message is neither a str nor JSON-serialisable data."""


class PayloadTooLargeError(InputError):
    """The encoded message is larger than the driver allows."""

    def __init__(self, message: str, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(message)
        self._made_of(message, message, size, limit)


#: A service's failure in words that fit any service (docs/publishing.md).
ErrorKind = Literal["auth", "permission", "limit", "unavailable", "invalid", "other"]
ERROR_KINDS: tuple[ErrorKind, ...] = ErrorKind.__args__  # type: ignore[attr-defined]
_KINDS: dict[int, ErrorKind] = {401: "auth", 403: "permission", 408: "unavailable", 429: "limit"}


def kind_of(status: int | None, retryable: bool = False) -> ErrorKind:
    """The :data:`ErrorKind` an HTTP status means (``None``: no answer came)."""
    if status is None:
        return "unavailable" if retryable else "other"
    if status >= 500:
        return "unavailable"
    return _KINDS.get(status, "invalid" if status >= 400 else "other")


class ServiceError(BroadcastError):
    """A request to the service failed (the base of :class:`PublishError` and :class:`QueryError`).

    Attributes:
        driver: the driver's name.
        kind: the :data:`ErrorKind` the core decides on (an ``auth`` or
            ``permission`` failure stops a fan-out and fails a health check);
            by default, what the HTTP ``status`` means.
        status: the HTTP status, for drivers that speak HTTP.
        code: the service's own error code, if any.
        retryable: whether sending the same request again may succeed.

    ``args`` holds them all, in this order after the message (the message is ``args[0]``).
    """

    def __init__(
        self,
        message: str,
        driver: str,
        kind: ErrorKind | None = None,
        status: int | None = None,
        code: int | str | None = None,
        retryable: bool = False,
    ) -> None:
        if kind is not None and kind not in ERROR_KINDS:
            raise ValueError(f"kind must be one of {ERROR_KINDS}, not {kind!r}")
        self.driver = driver
        self.kind: ErrorKind = kind or kind_of(status, retryable)
        self.status = status
        self.code = code
        self.retryable = retryable
        super().__init__(message)
        self._made_of(message, message, driver, self.kind, status, code, retryable)

    def _details(self) -> list[str]:
        given = {"status": self.status, "code": self.code}
        details = [f"driver={self.driver!r}", f"kind={self.kind}"]
        details += [f"{key}={value}" for key, value in given.items() if value is not None]
        return [*details, f"retryable={self.retryable}"]

    def __str__(self) -> str:  # its message, then what its attributes say
        text = str(self.args[0]) if self.args else ""
        return f"{text} ({', '.join(self._details())})"


class QueryError(ServiceError):
    """A request that publishes nothing failed: a state query, terminate_user, a health check."""


class PublishError(ServiceError):
    """The service did not acknowledge every channel of a publish (docs/publishing.md).

    Every channel is in ``delivered``, ``failed`` (certainly not delivered) or
    ``unknown`` (the service may have it). A driver raises it for one request,
    saying only ``maybe_delivered``; the core's error for the whole publish adds
    the channels, ``requests``, ``causes`` (each channel's error) and ``__cause__``.

    ``args`` holds each cause as its own ``args``, which ``causes`` takes too.
    """

    def __init__(
        self,
        message: str,
        driver: str,
        kind: ErrorKind | None = None,
        status: int | None = None,
        code: int | str | None = None,
        retryable: bool = False,
        maybe_delivered: bool = False,
        delivered: Sequence[str] = (),
        failed: Sequence[str] = (),
        unknown: Sequence[str] = (),
        requests: int = 1,
        causes: Mapping[str, PublishError | Sequence[Any]] | None = None,
    ) -> None:
        super().__init__(message, driver, kind, status, code, retryable)
        self.delivered = tuple(delivered)
        self.failed = tuple(failed)
        self.unknown = tuple(unknown)
        self.maybe_delivered = maybe_delivered or bool(self.unknown)
        self.requests = requests
        self.causes: Mapping[str, PublishError] = {
            channel: cause if isinstance(cause, PublishError) else PublishError(*cause)
            for channel, cause in (causes or {}).items()
        }
        said = {channel: cause.args for channel, cause in self.causes.items()}
        self._made_of(
            message,
            *self.args,
            self.maybe_delivered,
            self.delivered,
            self.failed,
            self.unknown,
            requests,
            said,
        )

    def _details(self) -> list[str]:
        details = super()._details()
        for outcome in ("delivered", "failed", "unknown"):
            channels: tuple[str, ...] = getattr(self, outcome)
            if len(channels) > 10:  # the message shortens long lists; the attributes keep them
                details.append(f"{outcome}={list(channels[:10])!r} and {len(channels) - 10} more")
            elif channels:
                details.append(f"{outcome}={list(channels)!r}")
        if not (self.failed or self.unknown) and self.maybe_delivered:
            details.append("maybe_delivered=True")
        return details


class OutboxError(BroadcastError):
    """The outbox's database failed on a connection of the store's own (its ``OUTBOX`` URL):
    it could not be reached, or a statement failed there. The publish, or the relay's step,
    wrote nothing.

    The message is the database's, with the URL's password taken out. A statement's error is
    chained to it, traceback and all; a failure to connect is chained only where the URL has
    no password (the database driver's frames hold it then). A connection the caller gave
    (``transaction=``, a Django alias) raises the database's own errors unchanged.
    """


class CloseError(BroadcastError):
    """Several drivers failed to close; ``errors`` holds each one's exception.

    ``args`` holds each as its message says it (``"OSError: ..."``), which ``errors`` takes
    too: a JSON result backend (Celery's) keeps that, not the exceptions themselves. Such a
    text is held in ``errors`` as a :class:`BroadcastError` saying it.
    """

    def __init__(self, errors: Sequence[BaseException | str]) -> None:
        each = [e if isinstance(e, str) else f"{type(e).__name__}: {e}" for e in errors]
        self.errors: tuple[BaseException, ...] = tuple(
            BroadcastError(e) if isinstance(e, str) else e for e in errors
        )
        text = f"{len(self.errors)} drivers failed to close: {'; '.join(each)}"
        super().__init__(text)
        self._made_of(text, tuple(each))
