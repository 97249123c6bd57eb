"""Driver discovery through entry points, the in-process registry, and hook calling."""

from __future__ import annotations

import difflib
import threading
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

from broadcasting import _background, _manager, hookspecs
from broadcasting._auth import AuthRequest, authorize
from broadcasting._driver import Driver
from broadcasting._errors import DriverNotFoundError, PluginLoadError
from broadcasting._flow import drive
from broadcasting._fork import in_forked_child
from broadcasting._types import Message, Receipt, wrap_named
from broadcasting.hookspecs import PROJECT, hookimpl

if TYPE_CHECKING:
    from broadcasting._broadcast import Broadcast

D = TypeVar("D", bound=Driver)

DRIVER_GROUP = "broadcasting.drivers"
PLUGIN_GROUP = "broadcasting.plugins"


@dataclass(frozen=True)
class DriverInfo:
    """An installed or registered driver, as ``broadcasting drivers`` lists it."""

    name: str
    distribution: str | None
    version: str | None
    module: str


@cache  # one metadata scan per group per process
def _entry_points(group: str) -> dict[str, tuple[EntryPoint, ...]]:
    """Every entry point of ``group`` by name, in discovery order; a name that two packages
    claim for different objects has several (a driver's is then refused: :func:`_claimed`)."""
    found: dict[str, dict[str, EntryPoint]] = {}
    for ep in entry_points(group=group):
        found.setdefault(ep.name, {}).setdefault(ep.value, ep)
    return {name: tuple(eps.values()) for name, eps in found.items()}


def _origin(ep: EntryPoint) -> str:
    return f"{ep.dist.name if ep.dist else 'an unknown distribution'} ({ep.value})"


def _claimed(name: str, eps: tuple[EntryPoint, ...]) -> EntryPoint:
    """The one entry point of driver ``name``; two packages claiming it is an error, rather
    than one of them quietly chosen by the order of sys.path."""
    if len(eps) == 1:
        return eps[0]
    first, *others = eps
    raise PluginLoadError(
        entry_point=name,
        value=first.value,
        distribution=first.dist.name if first.dist else None,
        reason=f"driver {name!r} is also provided by "
        + ", ".join(_origin(ep) for ep in others)
        + ": uninstall all but one, or choose one with register_driver()",
    )


def _hook_problem(plugin: object, name: str) -> str | None:
    """What pluggy finds wrong with ``plugin``'s hook implementations (a parameter the
    spec does not have, a hook that is no broadcasting hook...), on one line, the plugin
    called ``name``; ``None`` when they are sound."""
    scratch = _manager.PluginManager(PROJECT)
    scratch.add_hookspecs(hookspecs)
    try:
        scratch.register(plugin, name)
    except pluggy.PluginValidationError as exc:
        return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return _unknown_hook(scratch, plugin)


def _unknown_hook(pm: pluggy.PluginManager, plugin: object) -> str | None:
    """What pluggy's ``check_pending()`` finds, for ``plugin`` alone: a hook implementation
    that matches no hook spec (a misspelt name, which pluggy would otherwise never call),
    unless it is marked ``optionalhook=True``; ``None`` when every one has a spec."""
    for caller in pm.get_hookcallers(plugin) or ():
        if caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and not impl.optionalhook:
                hooks = [n for n in vars(hookspecs) if n.startswith("broadcasting_")]
                close = difflib.get_close_matches(caller.name, hooks, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                return (
                    f"its hook {caller.name!r} is not a broadcasting hook{hint}; a hook of"
                    " another project that may be absent takes @hookimpl(optionalhook=True)"
                )
    return None


def _register(pm: pluggy.PluginManager, plugin: object, name: str | None = None) -> None:
    """Register ``plugin`` on ``pm`` under ``name`` (by default a readable one, unique on
    ``pm``), refusing it, unregistered again, when a hook of it matches no hook spec."""
    name = name or _unique_name(pm, plugin)
    pm.register(plugin, name)
    _refuse_unknown_hooks(pm, plugin, name)


def _refuse_unknown_hooks(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    """Unregister ``plugin`` (registered as ``name``) and raise, if a hook of it matches no
    hook spec (:func:`_unknown_hook`)."""
    problem = _unknown_hook(pm, plugin)
    if problem is not None:
        pm.unregister(plugin)
        raise pluggy.PluginValidationError(plugin, f"Plugin {name!r}: {problem}")


def _unique_name(pm: pluggy.PluginManager, plugin: object) -> str:
    """``plugin``'s module and qualified name (its class's, for an instance), with ``#2``,
    ``#3``... when another plugin has that name on ``pm``: what pluggy's errors call it,
    rather than the ``id()`` it uses for a plugin registered without a name."""
    base = name = _describe(plugin)
    count = 1
    while pm.get_plugin(name) is not None or pm.is_blocked(name):
        count += 1
        name = f"{base}#{count}"
    return name


_lock = threading.RLock()


@in_forked_child
def _forget_lock_in_child() -> None:
    """After fork: another thread of the parent may have held the lock (importing a plugin,
    building a plugin manager); it does not exist in the child, which gets a fresh one."""
    global _lock
    _lock = threading.RLock()


_loaded: dict[str, object] = {}
_failed: dict[str, PluginLoadError] = {}
_registered: dict[str, object] = {}
_class_plugins: dict[str, _ClassPlugin] = {}


def _load(ep: EntryPoint) -> object:
    key = f"{ep.group}:{ep.name}:{ep.value}"
    with _lock:
        if key in _failed:
            raise _failed[key]  # imported once: a failure is kept
        if key not in _loaded:
            try:
                loaded = ep.load()
            except Exception as exc:
                error = _failed[key] = _load_error(ep, f"{type(exc).__name__}: {exc}")
                raise error from exc
            # a Driver class has no hooks of its own: the core connects it
            if not (isinstance(loaded, type) and issubclass(loaded, Driver)):
                problem = _hook_problem(loaded, ep.value)
                if problem is not None:
                    raise _failed.setdefault(key, _load_error(ep, problem))
            _loaded[key] = loaded
        return _loaded[key]


def _load_error(ep: EntryPoint, reason: str) -> PluginLoadError:
    return PluginLoadError(
        entry_point=ep.name,
        value=ep.value,
        distribution=ep.dist.name if ep.dist else None,
        reason=reason,
    )


def installed_drivers() -> list[DriverInfo]:
    """Every driver this process can use, sorted by name, without importing any (a name two
    packages claim, which cannot be used until one is uninstalled, once per package)."""
    infos: dict[str, list[DriverInfo]] = {}
    for name, eps in _entry_points(DRIVER_GROUP).items():
        # a name two packages claim is listed once per package: the listing shows the clash
        for ep in eps:
            dist, version = (ep.dist.name, ep.dist.version) if ep.dist else (None, None)
            infos.setdefault(name, []).append(DriverInfo(name, dist, version, ep.value))
    with _lock:
        for name, plugin in _registered.items():
            infos[name] = [DriverInfo(name, None, None, _describe(plugin))]
    return [info for name in sorted(infos) for info in infos[name]]


def driver_names() -> list[str]:
    """Names of every installed or registered driver."""
    return list(dict.fromkeys(info.name for info in installed_drivers()))


def _describe(plugin: object) -> str:
    """A module's name, or the module and qualified name of a class (an instance's class)."""
    if isinstance(plugin, ModuleType):
        return plugin.__name__
    if isinstance(plugin, _ClassPlugin):
        cls = plugin.cls
    else:
        cls = plugin if isinstance(plugin, type) else type(plugin)
    return f"{cls.__module__}.{cls.__qualname__}"


def origin(plugin: object) -> tuple[str, str | None]:
    """Where ``plugin`` comes from: its entry point's value and distribution when one loaded
    it (a Driver class's, for the core's plugin around it), else its name and ``None``."""
    target = plugin.cls if isinstance(plugin, _ClassPlugin) else plugin
    with _lock:
        keys = [key for key, loaded in _loaded.items() if loaded is target]
    for key in keys:
        group, name, value = key.split(":", 2)
        for ep in _entry_points(group).get(name, ()):
            if ep.value == value:
                return value, ep.dist.name if ep.dist else None
    return _describe(plugin), None


def implements(pm: pluggy.PluginManager, plugin: object, hook: str) -> bool:
    """Whether ``plugin``, registered on ``pm``, implements ``hook``."""
    return any(impl.plugin is plugin for impl in getattr(pm.hook, hook).get_hookimpls())


def connect_note(pm: pluggy.PluginManager, name: str, error: BaseException) -> str:
    """What an error raised while driver ``name`` was connected says it was raised in: the
    plugin whose ``broadcasting_connect`` (or the Driver class whose ``from_config``) its
    traceback passes through, with where that plugin comes from; no option's value."""
    impls = pm.hook.broadcasting_connect.get_hookimpls()
    by_code: dict[object, list[Any]] = {}
    for impl in impls:
        code = getattr(impl.function, "__code__", None)
        if code is not None:
            by_code.setdefault(code, []).append(impl)
    tb = error.__traceback__
    while tb is not None:
        found = by_code.get(tb.tb_frame.f_code)
        if found:
            # one code for several plugins (the core's, around each Driver class): the
            # one whose method ran is its frame's self
            this = tb.tb_frame.f_locals.get("self")
            impl = next((i for i in found if i.plugin is this), found[0])
            return _ran(name, impl.plugin)
        tb = tb.tb_next
    return f"while the {name!r} driver was connected (broadcasting_connect)"


def _ran(name: str, plugin: object) -> str:
    value, distribution = origin(plugin)
    if isinstance(plugin, _ClassPlugin):
        what = f"{_describe(plugin)}.from_config"
        where = f"entry point {value}" if distribution else "registered with register_driver()"
    else:
        what, where = "broadcasting_connect", f"plugin {value}"
    if distribution:
        where += f", distribution {distribution}"
    return f"while the {name!r} driver's {what} ran ({where})"


def class_note(name: str, cls: type[Driver]) -> str:
    """The note for an error a Driver class's ``from_config`` raised, connected directly."""
    return f"while the {name!r} driver's {cls.__module__}.{cls.__qualname__}.from_config ran"


def built(cls: type[D], options: Mapping[str, Any]) -> D:
    """``cls.from_config(options)``, which must return a ``cls``: a ``from_config`` that
    returns nothing (a forgotten ``return``) is named, not taken for a plugin's hook."""
    driver = cls.from_config(options)
    if not isinstance(driver, cls):
        name = cls.__qualname__
        raise TypeError(f"{name}.from_config() returned {type(driver).__name__}, not a {name}")
    return driver


class _ClassPlugin:
    """A Driver class (registered, or named by an entry point) as a plugin that connects it."""

    def __init__(self, name: str, cls: type[Driver]) -> None:
        self.name = name
        self.cls = cls

    @hookimpl
    def broadcasting_connect(self, name: str, options: Mapping[str, Any]) -> Driver | None:
        if name != self.name:
            return None
        # the class is known: the options it declares secret reach it wrapped
        return built(self.cls, wrap_named(options, self.cls.secret_options))

    def __repr__(self) -> str:
        return f"<driver {self.name!r}: {self.cls.__module__}.{self.cls.__qualname__}>"


def register_driver(name: str, driver: type[Driver] | object) -> None:
    """Make a driver available in this process under ``name``, without packaging.

    ``driver`` is a :class:`Driver` subclass (built with ``from_config``) or
    a plugin object implementing ``broadcasting_connect``. A registered name
    takes precedence over an installed entry point of the same name.
    """
    if not name or not isinstance(name, str):
        raise ValueError("a driver name must be a non-empty string")
    if isinstance(driver, type) and issubclass(driver, Driver):
        driver = _ClassPlugin(name, driver)
    with _lock:
        _registered[name] = driver


def unregister_driver(name: str) -> None:
    """Undo :func:`register_driver` (no error if ``name`` is not registered)."""
    with _lock:
        _registered.pop(name, None)


def driver_plugin(name: str) -> object | None:
    """The plugin for driver ``name``: registered, else its entry point (imported once)."""
    with _lock:
        plugin = _registered.get(name)
    if plugin is not None:
        return plugin
    eps = _entry_points(DRIVER_GROUP).get(name)
    if eps is None:
        return None
    loaded = _load(_claimed(name, eps))
    if not (isinstance(loaded, type) and issubclass(loaded, Driver)):
        return loaded
    # an entry point that names a Driver class: the core connects it by name
    with _lock:
        plugin = _class_plugins.get(name)
        if plugin is None or plugin.cls is not loaded:
            plugin = _class_plugins[name] = _ClassPlugin(name, loaded)
        return plugin


def declared_secret_options(name: str, plugin: object) -> frozenset[str]:
    """The options a driver's plugin declares secret: its class's, or a factory plugin's own."""
    if isinstance(plugin, _ClassPlugin):
        return plugin.cls.secret_options
    declared = getattr(plugin, "secret_options", None)
    if declared is None:
        return frozenset()
    if isinstance(declared, (set, frozenset, list, tuple)) and all(
        isinstance(key, str) for key in declared
    ):
        return frozenset(declared)
    value, distribution = origin(plugin)
    raise PluginLoadError(
        entry_point=name,
        value=value,
        distribution=distribution,
        reason="its secret_options must be a set of option names (str)",
    )


def driver_class(name: str, attribute: str) -> type[Driver]:
    """Resolve a seed-style class name (``BroadcastPusherDriver``) of driver ``name``."""
    plugin = driver_plugin(name)
    if plugin is None:
        raise DriverNotFoundError(name, driver_names())
    if isinstance(plugin, _ClassPlugin):
        return plugin.cls
    cls = getattr(plugin, attribute, None)
    if isinstance(cls, type) and issubclass(cls, Driver):
        return cls
    raise AttributeError(f"driver plugin {_describe(plugin)!r} has no Driver class {attribute!r}")


class _CorePlugin:
    """The core's own implementations: they run last, after every plugin's."""

    @hookimpl(trylast=True)
    def broadcasting_publish(
        self, broadcast: Broadcast, driver: Driver, message: Message
    ) -> Receipt:
        return broadcast.broadcaster_of(driver).deliver(message)

    @hookimpl(trylast=True)
    def broadcasting_authorize(
        self, broadcast: Broadcast, driver: Driver, request: AuthRequest
    ) -> dict[str, Any]:
        body: dict[str, Any] = drive(authorize(broadcast.rules, driver, request))
        return body

    @hookimpl(trylast=True)
    def broadcasting_defer(
        self, broadcast: Broadcast, driver: Driver, message: Message, transaction: Any
    ) -> Receipt:
        return _background.defer(broadcast.broadcaster_of(driver), message, transaction)


CORE_PLUGIN = _CorePlugin()

_multicall: Any
try:  # pluggy's own call loop, which add_hookcall_monitoring() replaces
    from pluggy._callers import _multicall
except ImportError:  # another pluggy: the core never calls its own part directly
    _multicall = None


def core_alone(pm: pluggy.PluginManager, name: str) -> bool:
    """Whether the core's is the only implementation of hook ``name`` (no other plugin, no
    wrapper) and no hook-call monitor (pluggy's tracing) watches: calling the hook is then
    calling the core's part, which the caller may do directly, without pluggy's call (and on
    the async path, without a greenlet)."""
    if _multicall is None or getattr(pm, "_inner_hookexec", None) is not _multicall:
        return False
    impls = getattr(pm.hook, name)._hookimpls  # read, not copied (get_hookimpls() copies)
    return len(impls) == 1 and impls[0].plugin is CORE_PLUGIN


# every Broadcast's plugin manager, so a plugin registered everywhere reaches existing ones
_managers: weakref.WeakSet[pluggy.PluginManager] = weakref.WeakSet()
_everywhere: list[object] = []  # in registration order


def make_plugin_manager(plugins: Iterable[object] = ()) -> _manager.PluginManager:
    """A plugin manager with the specs, the core's, the installed, the given plugins and
    those registered everywhere (last, now and later)."""
    pm = _manager.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(CORE_PLUGIN, name="broadcasting.core")
    with _lock:
        groups = sorted(_entry_points(PLUGIN_GROUP).items())
        installed = [_load(ep) for _, eps in groups for ep in eps]  # every package's
        for plugin in (*installed, *plugins, *_everywhere):
            if not pm.is_registered(plugin):
                _register(pm, plugin)
        _managers.add(pm)
    return pm


def add_driver_plugin(pm: _manager.PluginManager, name: str, plugin: object) -> None:
    """Register driver ``name``'s plugin on ``pm`` (once), as its name is first used there.

    Its other hooks take effect from then on, as any plugin's. Its ``broadcasting_connect``
    is asked after every other plugin's: registered now, after the plugins passed to
    Broadcast and those registered everywhere, pluggy would ask it first, and an installed
    or registered driver would take its name from the application's own plugin (a stand-in
    in a test, a factory of its own), which docs/hooks.md says is asked first."""
    with _lock:  # register_everywhere() registers on the same managers
        if not pm.is_registered(plugin):
            registered = f"driver:{name}"
            pm.register_asked_last(plugin, registered, "broadcasting_connect")
            _refuse_unknown_hooks(pm, plugin, registered)


def register_everywhere(plugin: object) -> None:
    """Register ``plugin`` on every Broadcast of this process, existing and future, after
    its own plugins, so it is called first (how ``broadcasting.testing.fake`` intercepts)."""
    with _lock:
        if any(p is plugin for p in _everywhere):
            raise ValueError(f"{plugin!r} is already registered everywhere")
        problem = _hook_problem(plugin, _describe(plugin))
        if problem is not None:  # refused before any manager has it
            raise pluggy.PluginValidationError(plugin, f"Plugin {_describe(plugin)!r}: {problem}")
        _everywhere.append(plugin)
        for pm in list(_managers):
            if not pm.is_registered(plugin):
                _register(pm, plugin)


def unregister_everywhere(plugin: object) -> None:
    """Undo :func:`register_everywhere` (no error if ``plugin`` is not registered)."""
    with _lock:
        if not any(p is plugin for p in _everywhere):
            return
        _everywhere[:] = [p for p in _everywhere if p is not plugin]
        for pm in list(_managers):
            if pm.is_registered(plugin):
                pm.unregister(plugin)
