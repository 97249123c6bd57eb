"""A folder on ``sys.path`` where a test installs fake distributions (``*.dist-info`` with
entry points), and the core's discovery forgetting them afterwards."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import broadcasting._plugins as plugins


def forget(prefix: str) -> None:
    """The core's discovery as before any plugin whose module starts with ``prefix``."""
    plugins._entry_points.cache_clear()
    for key, plugin in list(plugins._loaded.items()):
        module = plugin.__name__ if isinstance(plugin, ModuleType) else plugin.__module__
        if module.startswith(prefix):
            del plugins._loaded[key]
    plugins._failed.clear()


@contextlib.contextmanager
def plugin_site(folder: Path, prefix: str) -> Iterator[Path]:
    """``folder`` on ``sys.path`` while the block runs; then the modules it imported whose
    names start with ``prefix`` are gone, and the discovery has forgotten them."""
    sys.path.insert(0, str(folder))
    forget(prefix)
    before = set(sys.modules)
    try:
        yield folder
    finally:
        sys.path.remove(str(folder))
        for name in set(sys.modules) - before:
            if name.startswith(prefix):
                del sys.modules[name]
        forget(prefix)
