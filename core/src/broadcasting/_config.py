"""Reading the seed's configuration shape: ``DRIVER`` and ``DRIVERS``."""

from __future__ import annotations

import os
import runpy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Union

from broadcasting._errors import ConfigurationError

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
        return self.drivers.get(name) or {}


def load_config(source: ConfigSource = None) -> Config:
    """Read a mapping, a module, or a path to a ``.py`` file with DRIVER/DRIVERS.

    A missing ``DRIVER`` falls back to ``$BROADCAST_DRIVER``, then ``log``.
    """
    if source is None:
        values: Mapping[str, Any] = {}
    elif isinstance(source, Mapping):
        values = source
    elif isinstance(source, ModuleType):
        values = {k: getattr(source, k) for k in ("DRIVER", "DRIVERS") if hasattr(source, k)}
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ConfigurationError("config", None, f"no configuration file at {str(path)!r}")
        try:
            values = runpy.run_path(str(path))
        except Exception as exc:
            raise ConfigurationError(
                "config", None, f"{str(path)!r} failed to load: {type(exc).__name__}"
            ) from exc
    else:
        raise ConfigurationError(
            "config",
            None,
            f"expected a mapping, a module or a path, not {type(source).__name__}",
        )
    driver = values.get("DRIVER") or os.environ.get(ENV_DRIVER) or DEFAULT_DRIVER
    if not isinstance(driver, str):
        raise ConfigurationError("config", "DRIVER", "must be a driver name (a string)")
    drivers = values.get("DRIVERS") or {}
    if not isinstance(drivers, Mapping):
        raise ConfigurationError("config", "DRIVERS", "must be a mapping of driver name to options")
    for name, options in drivers.items():
        if options is not None and not isinstance(options, Mapping):
            raise ConfigurationError(str(name), None, "its DRIVERS entry must be a mapping")
    return Config(driver=driver, drivers=dict(drivers))
