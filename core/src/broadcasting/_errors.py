"""The exception hierarchy: everything the library raises derives from BroadcastError."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal


class BroadcastError(Exception):
    """Base class of every error raised by ``broadcasting`` and its drivers.

    ``http_status`` is the HTTP status a web endpoint answers with for this error
    (``400`` for bad input, ``401``/``403`` for refused credentials or
    permission, ``501`` for a missing feature); ``None`` for errors that are
    not the client's to see, which endpoints answer with ``500``.
    """

    http_status: int | None = None


#: Drivers this project publishes, and the package each comes in. Only these get an
#: install hint: suggesting ``pip install broadcasting-<whatever was typed>`` would
#: send a typo to whoever registers that name first.
KNOWN_PACKAGES = {"pusher": "broadcasting-pusher", "ably": "broadcasting-ably"}


class DriverNotFoundError(BroadcastError, LookupError):
    """No installed or registered driver has the requested name.

    The message lists the installed drivers, suggests the closest one to a
    misspelt name, and gives the ``pip install`` line for this project's own
    drivers.
    """

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


class PluginLoadError(BroadcastError, ImportError):
    """A plugin's entry point failed to import or did not provide what it declared.

    The message names the distribution, the entry point and the original error;
    the original exception is also chained as ``__cause__``.
    """

    def __init__(
        self, *, entry_point: str, value: str, distribution: str | None, reason: str
    ) -> None:
        self.entry_point = entry_point
        self.value = value
        self.distribution = distribution
        self.reason = reason
        dist = distribution or "an unknown distribution"
        super().__init__(f"Plugin {entry_point!r} ({value}) from {dist} failed to load: {reason}")


class ConfigurationError(BroadcastError, ValueError):
    """A driver's configuration is missing a key or has a bad value.

    Names the driver and the key; never includes the value, which may be secret.
    """

    def __init__(self, driver: str, key: str | None, problem: str) -> None:
        self.driver = driver
        self.key = key
        if driver == "config":  # the configuration itself, not one driver's options
            where = f" (setting {key!r})" if key else ""
            super().__init__(f"Configuration error{where}: {problem}")
            return
        where = f"{driver!r} driver" + (f", key {key!r}" if key else "")
        super().__init__(f"Configuration error in the {where}: {problem}")


class InputError(BroadcastError, ValueError):
    """A publish was refused before any network request because its input is invalid."""

    http_status: int | None = 400


class BadRequestError(InputError):
    """An authorization or webhook request is malformed (HTTP 400).

    A ``socket_id`` that is not ``digits.digits``, a channel name the driver
    would refuse, a missing field, a public channel (which needs no
    authorization) or a body of the wrong content type.
    """


class ForbiddenError(BroadcastError, PermissionError):
    """An authorization was refused (HTTP 403).

    No rule matches the channel, the rule returned ``False``/``None``, there is
    no user for a private or presence channel, or a plugin vetoed it. The
    message says which, for the server's log; endpoints answer with a fixed
    body and never show it to the client.
    """

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
        super().__init__(f"{text}: {hint}" if hint else f"{text}.")


class RuleError(BroadcastError, TypeError):
    """A channel rule returned something unusable (a presence rule without an ``id``).

    The application's bug, not the client's: endpoints answer ``500``.
    """


class InvalidChannelError(InputError):
    """A channel name is empty, not a string, or breaks the driver's naming rule."""


class InvalidEventError(InputError):
    """The event name is empty, not a string, or too long for the driver."""


class InvalidPayloadError(InputError, TypeError):
    """The message is neither a str nor JSON-serialisable data."""


class PayloadTooLargeError(InputError):
    """The encoded message is larger than the driver allows."""

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(message)


#: What kind of failure a service reported, in words that fit any service:
#: ``auth`` (the credentials were refused), ``permission`` (accepted, but not
#: allowed to do this), ``limit`` (a rate limit or quota), ``unavailable`` (no
#: answer, or the service is down or overloaded), ``invalid`` (the service
#: refused the request as malformed), ``other``.
ErrorKind = Literal["auth", "permission", "limit", "unavailable", "invalid", "other"]
ERROR_KINDS: tuple[ErrorKind, ...] = (
    "auth",
    "permission",
    "limit",
    "unavailable",
    "invalid",
    "other",
)


def kind_of(status: int | None, retryable: bool = False) -> ErrorKind:
    """The :data:`ErrorKind` an HTTP status means (``None``: no answer came)."""
    if status is None:
        return "unavailable" if retryable else "other"
    if status == 401:
        return "auth"
    if status == 403:
        return "permission"
    if status == 429:
        return "limit"
    if status == 408 or status >= 500:
        return "unavailable"
    if status >= 400:
        return "invalid"
    return "other"


class ServiceError(BroadcastError):
    """A request to the service failed (the base of :class:`PublishError` and :class:`QueryError`).

    Attributes:
        driver: name of the driver whose request failed.
        kind: what went wrong, as an :data:`ErrorKind`; the core decides on it
            (an ``auth`` or ``permission`` failure stops a fan-out's other
            requests, and is a health check's ``auth_failed``). A driver that
            passes an HTTP ``status`` and no ``kind`` gets the kind the status
            means.
        status: the HTTP status, for drivers that speak HTTP; else ``None``.
        code: the service's own error code, when it sent one.
        retryable: whether sending the same request again may succeed.
    """

    def __init__(
        self,
        message: str,
        *,
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

    def _details(self) -> list[str]:
        details = [f"driver={self.driver!r}", f"kind={self.kind}"]
        if self.status is not None:
            details.append(f"status={self.status}")
        if self.code is not None:
            details.append(f"code={self.code}")
        details.append(f"retryable={self.retryable}")
        return details

    def __str__(self) -> str:
        text = str(self.args[0]) if self.args else ""
        return f"{text} ({', '.join(self._details())})"


class QueryError(ServiceError):
    """A request that publishes nothing failed: a state query, terminate_user, a health check."""


class PublishError(ServiceError):
    """The service did not acknowledge every channel of a publish.

    Every channel of the publish ends in exactly one of three tuples:

    * ``delivered``: the service acknowledged it;
    * ``failed``: certainly not delivered (refused, a 4xx, or never sent):
      sending it again cannot deliver it twice;
    * ``unknown``: the service may have it (a timeout or a lost connection
      after the request was sent, a 5xx). Sending it again may deliver it
      twice, unless the service de-duplicates by message id.

    A driver raises it from ``send()`` for one request, leaving the channel
    tuples empty and saying with ``maybe_delivered`` whether the service may
    have processed the request; the core then fills in the tuples for the
    whole publish and raises that one to the caller, with the driver's error
    as ``__cause__``.

    Attributes (besides :class:`ServiceError`'s):
        maybe_delivered: whether the service may have processed it
            (true exactly when ``unknown`` is non-empty, on a publish's error).
        delivered, failed, unknown: the channels, by outcome (see above).
        requests: requests the whole publish took, retries included (set by
            the core; a driver reports its own count through ``Batch.requests``).
        causes: the driver's error for each channel that was not delivered.
    """

    def __init__(
        self,
        message: str,
        *,
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
        causes: Mapping[str, PublishError] | None = None,
    ) -> None:
        super().__init__(
            message, driver=driver, kind=kind, status=status, code=code, retryable=retryable
        )
        self.delivered = tuple(delivered)
        self.failed = tuple(failed)
        self.unknown = tuple(unknown)
        self.maybe_delivered = maybe_delivered or bool(self.unknown)
        self.requests = requests
        self.causes: Mapping[str, PublishError] = dict(causes or {})

    def _details(self) -> list[str]:
        details = super()._details()
        for outcome in ("delivered", "failed", "unknown"):
            channels = getattr(self, outcome)
            if channels:
                details.append(f"{outcome}={_shorten(channels)}")
        if not (self.failed or self.unknown) and self.maybe_delivered:
            details.append("maybe_delivered=True")
        return details


class CloseError(BroadcastError):
    """Several drivers failed to close; ``errors`` holds each one's exception."""

    def __init__(self, errors: Sequence[BaseException]) -> None:
        self.errors = tuple(errors)
        said = "; ".join(f"{type(e).__name__}: {e}" for e in self.errors)
        super().__init__(f"{len(self.errors)} drivers failed to close: {said}")


def _shorten(channels: tuple[str, ...], shown: int = 10) -> str:
    """A channel list for a message; the full lists stay on the exception."""
    if len(channels) <= shown:
        return repr(list(channels))
    return f"{list(channels[:shown])!r} and {len(channels) - shown} more"
