"""Reading the seed's configuration shape: ``DRIVER`` and ``DRIVERS``."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Union

from broadcasting._errors import ConfigurationError
from broadcasting._types import SECRET_OPTION, Options, Secret, wrap_named, wrap_secrets

#: Anything ``Broadcast(config)`` accepts.
ConfigSource = Union[Mapping[str, Any], ModuleType, str, "os.PathLike[str]", None]

DEFAULT_DRIVER = "log"
#: How a publish is sent when nothing says otherwise (docs/background.md).
DEFAULT_SEND = "now"
ENV_DRIVER = "BROADCAST_DRIVER"

#: One driver's options at rest, every string or bytes in a Secret (nested ones too), and the keys
#: whose values are read back opened (a string as text, a dict or list as it was given).
_Sealed = tuple[Options, frozenset[str]]
#: The containers whose strings are sealed at rest and read back in a new one of that type
#: (what TOML, JSON and Python literals make); a dict or list of a subclass (an OrderedDict, a
#: settings or YAML library's) is sealed too and reads back as a plain one; any other object
#: is kept as it is.
_CONTAINERS = (dict, list, tuple, set, frozenset)


class _Text(Secret):
    """A string option (or one inside an option) at rest: read back as text. A Secret the
    configuration gave stays a Secret."""

    __slots__ = ()


def _seal(options: Mapping[str, Any], driver: str) -> _Sealed:
    sealed: dict[str, Any] = {}
    shown = []
    for key, value in options.items():
        held = _sealed(value, driver, key, ())
        if held is not value:
            shown.append(key)
        sealed[key] = held
    return Options(sealed), frozenset(shown)


def _sealed(value: Any, driver: str, key: Any, within: tuple[int, ...]) -> Any:
    """``value`` with every string in it in a ``_Text`` (itself if it holds none)."""
    kind = type(value)
    # a str subclass too (a TOML or YAML library's), and bytes (a key given raw): each read
    # back as the very object given
    if isinstance(value, (str, bytes, bytearray)):
        return _Text(value)  # type: ignore[arg-type]  # a Secret holds any value; reveal() returns it
    if kind not in _CONTAINERS:
        if isinstance(value, dict):
            kind = dict
        elif isinstance(value, list):
            kind = list
        else:
            return value
    if id(value) in within:
        raise ConfigurationError(driver, str(key), "holds itself (a dict or list inside itself)")
    inner = (*within, id(value))
    if kind is dict:
        pairs = {k: _sealed(v, driver, key, inner) for k, v in value.items()}
        if any(pairs[k] is not v for k, v in value.items()):
            return pairs
        return value
    items = [_sealed(v, driver, key, inner) for v in value]
    changed = any(a is not b for a, b in zip(items, value, strict=True))
    return kind(items) if changed else value


def _opened(value: Any) -> Any:
    """A sealed value as it was given: a new container of its type, its strings as text."""
    kind = type(value)
    if kind is _Text:
        return value.reveal()
    if kind is dict:
        return {k: _opened(v) for k, v in value.items()}
    if kind in _CONTAINERS:
        return kind(_opened(v) for v in value)
    return value


class Config:
    """The parsed configuration, read-only: the default driver and each driver's options.

    Options named like secrets read as :class:`~broadcasting.Secret`, other
    strings as text; at rest every string is in a ``Secret``, those inside a dict, list or
    tuple option too (``{"auth": {"token": ...}}``, a list of URLs with credentials), since
    an option only its driver knows is secret must not lie around as text. Such an option
    reads back as it was given, in a new container each time.
    """

    __slots__ = ("_outbox", "_sealed", "driver", "send")

    driver: str
    #: How ``channel()`` sends when neither the call nor the event says (``SEND``).
    send: str
    _sealed: Mapping[str, _Sealed]
    _outbox: _Sealed

    def __init__(
        self,
        driver: str,
        drivers: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        send: str = DEFAULT_SEND,
        outbox: Mapping[str, Any] | None = None,
    ) -> None:
        object.__setattr__(self, "driver", driver)
        sealed = {name: _seal(options or {}, name) for name, options in (drivers or {}).items()}
        object.__setattr__(self, "_sealed", sealed)
        object.__setattr__(self, "send", send)
        # the outbox's URL may hold the database's password: it reads as a Secret too
        outbox = wrap_named(wrap_secrets(outbox or {}), frozenset({"url"}))
        object.__setattr__(self, "_outbox", _seal(outbox, "outbox"))

    @property
    def outbox(self) -> Mapping[str, Any]:
        """The ``OUTBOX`` settings (docs/background.md#where-the-outbox-lives); empty: the
        defaults."""
        values, shown = self._outbox
        return Options({k: _opened(v) if k in shown else v for k, v in values.items()})

    @property
    def drivers(self) -> Mapping[str, Mapping[str, Any]]:
        """Each configured driver's options, by driver name (a new mapping on each read)."""
        return {name: self.options(name) for name in self._sealed}

    def options(self, name: str) -> Mapping[str, Any]:
        """The ``DRIVERS`` entry for ``name`` (empty if there is none)."""
        values, shown = self._sealed.get(name, (Options(), frozenset()))
        if not shown:
            return values
        return Options({k: _opened(v) if k in shown else v for k, v in values.items()})

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Config is read-only (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Config is read-only (cannot delete {name!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Config):
            return NotImplemented
        return (self.driver, self.drivers, self.send, self.outbox) == (
            other.driver,
            other.drivers,
            other.send,
            other.outbox,
        )

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> Any:
        # what a pickle holds is read back: a Secret in it refuses to be pickled, and so does a
        # string named like a secret inside an option (``{"auth": {"token": ...}}``), which
        # reads back as text but is as secret as one at the top
        for name, (values, _) in self._sealed.items():
            for key, value in values.items():
                if (inner := _secret_within(value)) is not None:
                    path = "".join(f"[{k!r}]" for k in (name, key, *inner))
                    raise TypeError(
                        f"a Config holding a secret cannot be pickled (DRIVERS{path}): "
                        "that would write its value out"
                    )
        return (_rebuild, (self.driver, self.drivers, self.send, self.outbox))

    def __copy__(self) -> Config:
        return self  # read-only

    def __deepcopy__(self, memo: dict[int, Any]) -> Config:
        return self

    def __repr__(self) -> str:
        # option values may be secrets: show the keys only
        keys = {name: sorted(map(str, values)) for name, (values, _) in self._sealed.items()}
        shown = f"Config(driver={self.driver!r}, option keys={keys!r}"
        if self.send != DEFAULT_SEND:
            shown += f", send={self.send!r}"
        if self._outbox[0]:
            shown += f", outbox keys={sorted(map(str, self._outbox[0]))!r}"
        return shown + ")"


def _secret_within(value: Any) -> tuple[Any, ...] | None:
    """The keys down to a string under a name like a secret (:data:`SECRET_OPTION`) inside the
    sealed option ``value``, or ``None`` if it holds none (list items are looked into too)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if isinstance(key, str) and SECRET_OPTION.search(key) and _holds_text(inner):
                return (key,)
            if (below := _secret_within(inner)) is not None:
                return (key, *below)
    elif type(value) in _CONTAINERS:
        for index, inner in enumerate(value):
            if (below := _secret_within(inner)) is not None:
                return (index, *below)
    return None


def _holds_text(value: Any) -> bool:
    """Whether the sealed ``value`` is, or holds, a string."""
    if isinstance(value, Secret):
        return True
    if isinstance(value, dict):
        return any(_holds_text(v) for v in value.values())
    return type(value) in _CONTAINERS and any(_holds_text(v) for v in value)


def _rebuild(
    driver: str, drivers: Mapping[str, Mapping[str, Any]], send: str, outbox: Mapping[str, Any]
) -> Config:
    return Config(driver, drivers, send=send, outbox=outbox)


_KEYS = ("DRIVER", "DRIVERS", "SEND", "OUTBOX")
_TYPOS = ("DRIVER", "DRIVERS")  # the seed's names: a module's `driver = ...` is a slip


def _check_names(values: Mapping[Any, Any], where: str, *, strict: bool) -> None:
    """Refuse keys that are not DRIVER/DRIVERS: all of them (a mapping), or likely typos."""
    for key in values:
        if not isinstance(key, str):
            if strict:  # Broadcast({5: ...}): no setting has such a name
                raise ConfigurationError(
                    "config", None, f"a setting's name must be a str, not {type(key).__name__}"
                )
            continue
        if key in _KEYS:
            continue
        import difflib

        close = difflib.get_close_matches(key.upper(), _TYPOS, n=1, cutoff=0.75)
        if close and close[0] not in values:
            raise ConfigurationError("config", key, f"is not a setting; did you mean {close[0]!r}?")
        if strict:
            raise ConfigurationError(
                "config",
                key,
                f"is not a setting of {where} (only DRIVER, DRIVERS, SEND and OUTBOX are)",
            )


def _exception_name(exc: BaseException) -> str:
    name = type(exc).__name__
    # a class statement makes an identifier; type() takes any string at all
    return name if name.isascii() and name.isidentifier() and len(name) <= 60 else "an exception"


_GENERATED = frozenset({"<lambda>", "<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>"})


def _failure(path: Path, exc: BaseException) -> str:
    """Where running the config file failed and the exception's type, never its message
    nor a source line: either may quote a secret (``int(os.environ[...])`` does)."""
    outer = inner = function = None
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == str(path) and tb.tb_lineno is not None:
            if outer is None:
                outer = tb.tb_lineno  # the file's own statement
            inner, function = tb.tb_lineno, code.co_name  # the deepest line of the file
        tb = tb.tb_next
    where = f"{str(path)!r}" + (f" line {outer}" if outer else "")
    text = f"{where} failed: {_exception_name(exc)}"
    if inner is not None and inner != outer:
        # a def's name is an identifier; Python names a lambda or comprehension itself
        known = function is not None and (function.isidentifier() or function in _GENERATED)
        text += f" in {function if known else 'a function'}() at line {inner}"
    return text + _withheld(path)


def _withheld(path: Path) -> str:
    import shlex  # only when a config file failed

    command = f"python {shlex.quote(str(path))}"
    return f" (message withheld: it may hold a secret; run `{command}` to see the whole error)"


def _unreadable(path: Path, exc: OSError) -> ConfigurationError:
    # strerror ("Permission denied"), not str(exc): the path is already named
    reason = exc.strerror or type(exc).__name__
    return ConfigurationError("config", None, f"cannot read {str(path)!r}: {reason}")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        error = _unreadable(path, exc)
    raise error


def _run_python(path: Path) -> Mapping[str, Any]:
    namespace: dict[str, Any] = {"__file__": str(path), "__name__": "__broadcast_config__"}
    failure: str | None = None
    source = _read_bytes(path)
    try:
        code = compile(source, str(path), "exec")
    except (SyntaxError, ValueError) as exc:  # ValueError: a null byte, before Python 3.12
        line = f" line {exc.lineno}" if isinstance(exc, SyntaxError) and exc.lineno else ""
        failure = f"{str(path)!r}{line}: {_exception_name(exc)}" + _withheld(path)
    else:
        try:
            exec(code, namespace)
        except (Exception, SystemExit) as exc:  # sys.exit("...") may carry a value too
            failure = _failure(path, exc)
    if failure is not None:
        # raised outside the except blocks, so the file's exception (its message, the
        # locals of its frames) is not chained to it
        raise ConfigurationError("config", None, failure)
    return namespace


def _read_file(path: Path) -> Mapping[str, Any]:
    suffix = path.suffix.lower()
    if suffix == ".py":
        values = _run_python(path)
        _check_names({k: v for k, v in values.items() if not k.startswith("_")}, "", strict=False)
        return values
    if suffix not in (".json", ".toml"):
        raise ConfigurationError(
            "config", None, f"{str(path)!r}: a configuration file is a .py, .toml or .json file"
        )
    if suffix == ".toml" and sys.version_info < (3, 11):
        raise ConfigurationError(
            "config", None, f"{str(path)!r}: TOML configuration needs Python 3.11+"
        )
    # tomllib by name: type-checked for Python 3.10, which has none
    loads = json.loads if suffix == ".json" else importlib.import_module("tomllib").loads
    raw = _read_bytes(path)
    try:
        data = loads(raw.decode("utf-8"))
    except ValueError as exc:  # JSONDecodeError, TOMLDecodeError, UnicodeDecodeError
        raise ConfigurationError(
            "config", None, f"{str(path)!r} is not valid {suffix[1:].upper()}: {exc}"
        ) from None
    if not isinstance(data, Mapping):
        raise ConfigurationError("config", None, f"{str(path)!r} must hold a table/object")
    _check_names(data, str(path), strict=True)
    return data


def load_config(source: ConfigSource = None) -> Config:
    """Read ``DRIVER`` and ``DRIVERS`` from a mapping, a module, or a ``.py``, ``.toml`` or
    ``.json`` file (docs/configuration.md); secret-looking options are wrapped in a Secret."""
    error: ConfigurationError | None = None
    try:
        return _load(source)
    except ConfigurationError as exc:
        error = exc
    # a mistake in the configuration, not a bug: raised without the frames that read
    # it (their locals hold raw option values)
    raise error.with_traceback(None)


def _load(source: ConfigSource) -> Config:
    if source is None:
        values: Mapping[str, Any] = {}
    elif isinstance(source, Mapping):
        values = source
        _check_names(values, "a configuration mapping", strict=True)
    elif isinstance(source, ModuleType):
        names = {k: getattr(source, k) for k in dir(source) if not k.startswith("_")}
        _check_names(names, "", strict=False)
        values = {k: names[k] for k in _KEYS if k in names}
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            found = path.is_file()
        except OSError as exc:  # a folder on the way that may not be searched
            error = _unreadable(path, exc)
            raise error from None
        if not found:
            raise ConfigurationError("config", None, f"no configuration file at {str(path)!r}")
        values = _read_file(path)
    else:
        raise ConfigurationError(
            "config", None, f"expected a mapping, a module or a path, not {type(source).__name__}"
        )
    if "DRIVER" in values:
        driver = values["DRIVER"]
        if driver is None or driver == "":
            raise ConfigurationError(
                "config",
                "DRIVER",
                "is empty (an unset environment variable?); name a driver, or leave DRIVER out "
                f"to use ${ENV_DRIVER} or {DEFAULT_DRIVER!r}",
            )
    else:
        driver = os.environ.get(ENV_DRIVER) or DEFAULT_DRIVER
    if not isinstance(driver, str):
        raise ConfigurationError("config", "DRIVER", "must be a driver name (a string)")
    drivers = values.get("DRIVERS") or {}
    if not isinstance(drivers, Mapping):
        raise ConfigurationError("config", "DRIVERS", "must be a mapping of driver name to options")
    wrapped: dict[str, Mapping[str, Any]] = {}
    for name, options in drivers.items():
        if not isinstance(name, str):  # DRIVERS = {Enum.MEMBER: ...}: no driver has that name
            raise ConfigurationError(
                "config",
                "DRIVERS",
                f"its keys must be driver names (str), not {type(name).__name__}",
            )
        if options is not None and not isinstance(options, Mapping):
            raise ConfigurationError(str(name), None, "its DRIVERS entry must be a mapping")
        wrapped[name] = wrap_secrets(options or {})  # secrets stay wrapped from here on
    send = values.get("SEND", DEFAULT_SEND)
    if not isinstance(send, str) or not send:
        raise ConfigurationError(
            "config", "SEND", "must name how to send: 'now', 'after_commit', 'outbox' or a queue's"
        )
    outbox = values.get("OUTBOX") or {}
    if not isinstance(outbox, Mapping):
        raise ConfigurationError("config", "OUTBOX", "must be a mapping of outbox settings")
    return Config(driver=driver, drivers=wrapped, send=send, outbox=outbox)
