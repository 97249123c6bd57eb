"""What a built-in base class keeps outside ``args`` and ``__dict__`` comes back from pickle,
and ``ConfigurationError.combine()`` names the class it cannot combine.

An error is unpickled without running its ``__init__`` (``BroadcastError.__reduce__``), so
what ``ImportError.__init__`` (``msg``, ``name``, ``path``) and ``OSError``'s (``errno``,
``strerror``, ``filename``) set lived nowhere pickle looked: a ``PluginLoadError`` came back
from a worker with ``msg`` ``None``.
"""

from __future__ import annotations

import pickle
import sys

import pytest

from broadcasting import ConfigurationError, ForbiddenError, PluginLoadError

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_plugin_load_error_keeps_import_errors_own_members(protocol: int) -> None:
    error = PluginLoadError("acme", "acme:Driver", "acme", "no module named 'acme'")
    assert error.msg == str(error)
    back = pickle.loads(pickle.dumps(error, protocol))
    assert back.msg == error.msg
    assert (back.name, back.path) == (None, None)
    assert str(back) == str(error) and back.args == error.args


class DriverImportError(PluginLoadError):
    """A driver's own error whose ``__init__`` sets ImportError's ``name`` and ``path``."""

    def __init__(self, module: str, path: str) -> None:
        super().__init__("acme", f"{module}:Driver", "acme", "failed")
        self.name, self.path = module, path


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_subclass_keeps_name_and_path(protocol: int) -> None:
    back = pickle.loads(
        pickle.dumps(DriverImportError("acme.driver", "/x/acme/driver.py"), protocol)
    )
    assert (back.name, back.path) == ("acme.driver", "/x/acme/driver.py")
    if sys.version_info >= (3, 12):
        assert back.name_from is None


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_forbidden_error_keeps_os_errors_own_members(protocol: int) -> None:
    # OSError's form with a file name: its args keep only (errno, strerror)
    error = ForbiddenError(13, "not allowed", "private-orders.1")
    assert error.args == (13, "not allowed")
    back = pickle.loads(pickle.dumps(error, protocol))
    assert (back.errno, back.strerror, back.filename) == (13, "not allowed", "private-orders.1")
    assert str(back) == str(error)
    plain = pickle.loads(pickle.dumps(ForbiddenError("no rule allows it"), protocol))
    assert (plain.args, plain.errno, plain.filename) == (("no rule allows it",), None, None)


class Bare(ConfigurationError):
    """A driver's error that never calls ConfigurationError.__init__."""

    def __init__(self, text: str) -> None:
        Exception.__init__(self, text)


def test_combine_names_an_error_it_cannot_combine() -> None:
    with pytest.raises(TypeError) as caught:
        ConfigurationError.combine([Bare("bad port"), ConfigurationError("acme", "k", "bad")])
    said = str(caught.value)
    assert f"{__name__}.Bare was not made by ConfigurationError.__init__" in said
    assert "super().__init__(driver, key, problem)" in said
    assert "bad port" not in said  # its message is the driver's: it may hold a value
    with pytest.raises(TypeError, match="Bare"):
        ConfigurationError.combine([Bare("alone")])
