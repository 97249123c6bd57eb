"""Reading the seed's configuration shape: ``DRIVER`` and ``DRIVERS``."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Union

from broadcasting._errors import ConfigurationError, detach
from broadcasting._types import Options, wrap_secrets

#: Anything ``Broadcast(config)`` accepts.
ConfigSource = Union[Mapping[str, Any], ModuleType, str, "os.PathLike[str]", None]

DEFAULT_DRIVER = "log"
ENV_DRIVER = "BROADCAST_DRIVER"


@dataclass(frozen=True)
class Config:
    """The parsed configuration: the default driver and each driver's options."""

    driver: str
    drivers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __repr__(self) -> str:
        # option values may be secrets: show the keys only
        keys = {name: sorted(map(str, options or {})) for name, options in self.drivers.items()}
        return f"Config(driver={self.driver!r}, option keys={keys!r})"

    def options(self, name: str) -> Mapping[str, Any]:
        """The ``DRIVERS`` entry for ``name`` (empty if there is none)."""
        return self.drivers.get(name) or Options()


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


def _scrubbed(text: str, namespace: Mapping[str, Any]) -> str:
    """``text`` without any string value the config file defined (they may be secrets)."""
    found: list[str] = []

    def collect(value: object) -> None:
        if isinstance(value, str) and len(value) >= 4:
            found.append(value)
        elif isinstance(value, Mapping):
            for item in value.values():
                collect(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                collect(item)

    for name, value in namespace.items():
        if not name.startswith("__"):
            collect(value)
    for value in sorted(found, key=len, reverse=True):
        text = text.replace(value, "********")
    return text


def _run_python(path: Path) -> Mapping[str, Any]:
    namespace: dict[str, Any] = {"__file__": str(path), "__name__": "__broadcast_config__"}
    try:
        code = compile(path.read_bytes(), str(path), "exec")
    except SyntaxError as exc:
        raise ConfigurationError(
            "config", None, f"{str(path)!r} line {exc.lineno}: SyntaxError: {exc.msg}"
        ) from None
    try:
        exec(code, namespace)
    except Exception as exc:
        line = None
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == str(path):
                line = tb.tb_lineno
            tb = tb.tb_next
        said = _scrubbed(str(exc), namespace)[:300]
        where = f"{str(path)!r}" + (f" line {line}" if line else "")
        error = ConfigurationError(
            "config", None, f"{where} failed: {type(exc).__name__}" + (f": {said}" if said else "")
        )
        raise error from None
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
    raise detach(error)  # outside the except block: nothing chained, no reading frames


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
