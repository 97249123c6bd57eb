"""Reading the seed's configuration shape: ``DRIVER`` and ``DRIVERS``."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Union

from broadcasting._errors import ConfigurationError
from broadcasting._types import Options, Secret, wrap_secrets

#: Anything ``Broadcast(config)`` accepts.
ConfigSource = Union[Mapping[str, Any], ModuleType, str, "os.PathLike[str]", None]

DEFAULT_DRIVER = "log"
ENV_DRIVER = "BROADCAST_DRIVER"


#: One driver's options at rest: every string in a Secret, and the keys of those
#: that are shown as text when read (the ones not wrapped when the config loaded).
_Sealed = tuple[Options, frozenset[str]]


def _seal(options: Mapping[str, Any]) -> _Sealed:
    shown = frozenset(k for k, v in options.items() if isinstance(v, str))
    return Options({k: Secret(v) if k in shown else v for k, v in options.items()}), shown


class Config:
    """The parsed configuration: the default driver and each driver's options.

    Read-only, and never changed by connecting a driver. Options named like
    secrets are :class:`~broadcasting.Secret` (see :func:`load_config`); other
    strings read as text. At rest, every option string is kept in a ``Secret``
    and shown only when read: an option only its driver knows is secret (its
    ``secret_options``, a URL with a token, say) is not held as text by a
    configuration that anything (a debugger, an error tracker) can walk.
    """

    __slots__ = ("_sealed", "driver")

    driver: str
    _sealed: Mapping[str, _Sealed]

    def __init__(self, driver: str, drivers: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        object.__setattr__(self, "driver", driver)
        sealed = {name: _seal(options or {}) for name, options in (drivers or {}).items()}
        object.__setattr__(self, "_sealed", sealed)

    @property
    def drivers(self) -> Mapping[str, Mapping[str, Any]]:
        """Each configured driver's options, by driver name (a new mapping on each read)."""
        return {name: self.options(name) for name in self._sealed}

    def options(self, name: str) -> Mapping[str, Any]:
        """The ``DRIVERS`` entry for ``name`` (empty if there is none)."""
        entry = self._sealed.get(name)
        if entry is None:
            return Options()
        values, shown = entry
        if not shown:
            return values
        return Options({k: v.reveal() if k in shown else v for k, v in values.items()})

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Config is read-only (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Config is read-only (cannot delete {name!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Config):
            return NotImplemented
        return self.driver == other.driver and self.drivers == other.drivers

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> Any:
        # what a pickle holds is read back: a Secret in it refuses to be pickled
        return (Config, (self.driver, self.drivers))

    def __repr__(self) -> str:
        # option values may be secrets: show the keys only
        keys = {name: sorted(map(str, values)) for name, (values, _) in self._sealed.items()}
        return f"Config(driver={self.driver!r}, option keys={keys!r})"


_KEYS = ("DRIVER", "DRIVERS")


def _did_you_mean(name: str) -> str | None:
    """``DRIVER`` or ``DRIVERS`` if ``name`` looks like a slip of one of them."""
    import difflib

    upper = name.upper()
    if upper in _KEYS:
        return upper
    close = difflib.get_close_matches(upper, _KEYS, n=1, cutoff=0.75)
    return close[0] if close else None


def _check_names(values: Mapping[str, Any], where: str, *, strict: bool) -> None:
    """Refuse keys that are not DRIVER/DRIVERS: all of them (a mapping), or likely typos."""
    for key in values:
        if not isinstance(key, str) or key in _KEYS:
            continue
        guess = _did_you_mean(key)
        if guess is not None and guess not in values:
            raise ConfigurationError("config", key, f"is not a setting; did you mean {guess!r}?")
        if strict:
            raise ConfigurationError(
                "config", key, f"is not a setting of {where} (only DRIVER and DRIVERS are)"
            )


def _exception_name(exc: BaseException) -> str:
    name = type(exc).__name__
    # a class statement makes an identifier; type() takes any string at all
    return name if name.isascii() and name.isidentifier() and len(name) <= 60 else "an exception"


def _failure(path: Path, exc: BaseException) -> str:
    """Where and how running the config file failed: its lines and the exception's type.

    Never the exception's message nor a source line: either may hold a value
    from the file, from the environment or from a helper's local variable
    (``int(os.environ[...])`` quotes what it could not read), any of them a
    secret. The file's author can see the whole error by running the file.
    """
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
    return text + _SEE_ALL.format(_quoted(str(path)))


def _syntax_failure(path: Path, exc: SyntaxError | ValueError) -> str:
    line = f" line {exc.lineno}" if isinstance(exc, SyntaxError) and exc.lineno else ""
    return f"{str(path)!r}{line}: {_exception_name(exc)}" + _SEE_ALL.format(_quoted(str(path)))


_GENERATED = frozenset({"<lambda>", "<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>"})
_SEE_ALL = " (message withheld: it may hold a secret; run `python {}` to see the whole error)"


def _quoted(text: str) -> str:
    import shlex  # only when a config file failed

    return shlex.quote(text)


def _run_python(path: Path) -> Mapping[str, Any]:
    namespace: dict[str, Any] = {"__file__": str(path), "__name__": "__broadcast_config__"}
    failure: str | None = None
    try:
        code = compile(path.read_bytes(), str(path), "exec")
    except (SyntaxError, ValueError) as exc:  # ValueError: a null byte, before Python 3.12
        failure = _syntax_failure(path, exc)
    else:
        try:
            exec(code, namespace)
        except (Exception, SystemExit) as exc:  # sys.exit("...") may carry a value too
            failure = _failure(path, exc)
    if failure is not None:
        # Raised here, after the except blocks, so nothing is chained to it: the
        # exception the file raised carries the value in its message, and its
        # traceback the file's frames, whose locals hold the values it read.
        raise ConfigurationError("config", None, failure)
    return namespace


def _read_file(path: Path) -> Mapping[str, Any]:
    suffix = path.suffix.lower()
    if suffix == ".py":
        values = _run_python(path)
        _check_names({k: v for k, v in values.items() if not k.startswith("_")}, "", strict=False)
        return values
    if suffix in (".json", ".toml"):
        try:
            if suffix == ".json":
                import json

                data: Any = json.loads(path.read_text(encoding="utf-8"))
            else:
                try:  # by name: type-checked for Python 3.10, which has no tomllib
                    tomllib: Any = importlib.import_module("tomllib")
                except ModuleNotFoundError:
                    raise ConfigurationError(
                        "config", None, f"{str(path)!r}: TOML configuration needs Python 3.11+"
                    ) from None
                data = tomllib.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:  # json.JSONDecodeError, tomllib.TOMLDecodeError
            raise ConfigurationError(
                "config", None, f"{str(path)!r} is not valid {suffix[1:].upper()}: {exc}"
            ) from None
        if not isinstance(data, Mapping):
            raise ConfigurationError("config", None, f"{str(path)!r} must hold a table/object")
        _check_names(data, str(path), strict=True)
        return data
    raise ConfigurationError(
        "config", None, f"{str(path)!r}: a configuration file is a .py, .toml or .json file"
    )


def load_config(source: ConfigSource = None) -> Config:
    """Read a mapping, a module, or a path to a ``.py``, ``.toml`` or ``.json`` file.

    See :func:`_load`. A ``ConfigurationError`` is raised with none of the
    frames that read the raw configuration (their locals hold its values).
    """
    error: ConfigurationError | None = None
    try:
        return _load(source)
    except ConfigurationError as exc:
        error = exc
    # A mistake in the configuration, not a bug: raised from here, outside the except
    # block, with none of the frames that read it (their locals hold raw option values).
    raise error.with_traceback(None)


def _load(source: ConfigSource) -> Config:
    """Read a mapping, a module, or a path to a ``.py``, ``.toml`` or ``.json`` file.

    The settings are ``DRIVER`` (the default driver's name) and ``DRIVERS``
    (each driver's options). A mapping or data file holds nothing else; in a
    module, other names are ignored unless they look like a slip of those two
    (``driver``, ``DRIVER_S``), which is an error with a did-you-mean. Options
    whose name looks secret (``secret``, ``key``, ``token``...) are wrapped in
    :class:`~broadcasting.Secret` here and stay wrapped. With no
    ``DRIVER`` at all, ``$BROADCAST_DRIVER`` is used, then ``log``; a
    ``DRIVER`` that is present but empty or ``None`` is an error.
    """
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
        if not path.is_file():
            raise ConfigurationError("config", None, f"no configuration file at {str(path)!r}")
        values = _read_file(path)
    else:
        raise ConfigurationError(
            "config",
            None,
            f"expected a mapping, a module or a path, not {type(source).__name__}",
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
        if options is not None and not isinstance(options, Mapping):
            raise ConfigurationError(str(name), None, "its DRIVERS entry must be a mapping")
        wrapped[name] = wrap_secrets(options or {})  # secrets stay wrapped from here on
    return Config(driver=driver, drivers=wrapped)
