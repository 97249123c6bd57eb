"""pluggy's plugin manager, remembering which names of a module or class are hooks.

``PluginManager.register`` asks :meth:`~pluggy.PluginManager.parse_hookimpl_opts` about every
name in ``dir()`` of the plugin, each answered through ``inspect.getattr_static``. For the
core's built-in plugins (the ``broadcasting.contrib`` modules and the core's own) that was
most of what a ``Broadcast()`` cost, since each builds a manager of its own.

The answer depends only on the object the name leads to, so :class:`PluginManager` keeps it
per module or class with that object, and asks pluggy again when the object has changed (a
test's monkeypatch, a reload). Kept weakly: it goes when the module or class goes.

- A module or a class registered as a plugin: the name is looked up in the module's
  ``__dict__``, or in the ``__dict__`` of each class of the MRO in turn.
- An instance: the same in its class, unless the instance holds a value of its own by that
  name (its ``__dict__``) or may (a class of its MRO declares ``__slots__``): pluggy is then
  asked every time.
- Anything else (a name found nowhere, so found through a metaclass or ``__getattr__``; an
  object that cannot be weakly referenced): pluggy is asked every time.

The hookspecs are read the same way, once per manager.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

import pluggy

_Opts = TypeVar("_Opts")
_ABSENT: Any = object()


def _unwrapped(about: object) -> object:
    return about.__func__ if isinstance(about, (staticmethod, classmethod)) else about


class _Known:
    """What pluggy answered for one name, and which object it answered about.

    Nothing here keeps that object, or through it the module or class, alive: a weak
    reference to it, or where it takes none (a descriptor, a str...) its ``id`` and its
    type's. Such an object is never a hook; a new one by the same name matches only if it
    has the address and type of the old one, which it must have replaced."""

    __slots__ = ("ident", "opts", "ref")

    def __init__(self, about: object, opts: object) -> None:
        target = _unwrapped(about)
        self.ref: weakref.ref[Any] | None
        try:
            self.ref, self.ident = weakref.ref(target), (0, 0)
        except TypeError:
            self.ref, self.ident = None, (id(target), id(type(target)))
        self.opts = opts

    def still(self, about: object) -> bool:
        target = _unwrapped(about)
        if self.ref is not None:
            return self.ref() is target
        return self.ident == (id(target), id(type(target)))


#: per module or class, per name: what pluggy answered
_Memo = weakref.WeakKeyDictionary[object, dict[str, _Known]]
_impls: _Memo = weakref.WeakKeyDictionary()  # about a module or class registered as a plugin
_instances: _Memo = weakref.WeakKeyDictionary()  # about the instances of a class
_specs: _Memo = weakref.WeakKeyDictionary()  # about a hookspecs module or class
_slotted: weakref.WeakKeyDictionary[type, bool] = weakref.WeakKeyDictionary()


def _static(owner: type | ModuleType, name: str) -> object:
    """What ``name`` leads to in a module's ``__dict__``, or first in the MRO's dicts."""
    if isinstance(owner, ModuleType):
        return owner.__dict__.get(name, _ABSENT)
    for klass in owner.__mro__:
        found = klass.__dict__.get(name, _ABSENT)
        if found is not _ABSENT:
            return found
    return _ABSENT


def _own_dict(obj: object) -> dict[str, object]:
    """``obj``'s ``__dict__``, read without running its ``__getattr__``/``__getattribute__``."""
    try:
        own = object.__getattribute__(obj, "__dict__")
    except AttributeError:
        return {}
    return own if isinstance(own, dict) else {}


def _has_slots(cls: type) -> bool:
    """Whether a class of ``cls``'s MRO declares ``__slots__``."""
    known = _slotted.get(cls)
    if known is None:
        known = _slotted[cls] = any("__slots__" in vars(k) for k in cls.__mro__)
    return known


def _remembered(
    memo: _Memo, owner: type | ModuleType, name: str, parse: Callable[[], _Opts | None]
) -> _Opts | None:
    about = _static(owner, name)
    if about is _ABSENT:
        return parse()
    try:
        names = memo.get(owner)
        if names is None:
            names = memo.setdefault(owner, {})
    except TypeError:  # not weakly referable
        return parse()
    known = names.get(name)
    if known is None or not known.still(about):
        known = names[name] = _Known(about, parse())
    return known.opts  # type: ignore[return-value]


class PluginManager(pluggy.PluginManager):
    """A :class:`pluggy.PluginManager` that remembers which names of a module or class are
    hooks (see the module's docstring); it registers exactly what pluggy's would, but for
    :meth:`register_asked_last`."""

    _last: object = _ABSENT  # the plugin register_asked_last() is registering
    _last_hook = ""

    def register_asked_last(self, plugin: object, name: str, hook: str) -> str | None:
        """Register ``plugin`` as :meth:`register` does, its implementation of ``hook`` made
        ``trylast``: called after every other plugin's, those registered later included
        (pluggy calls the most recently registered first). Its other hooks are as
        registered. Nothing is kept in a set: a plugin that cannot be hashed is fine."""
        self._last, self._last_hook = plugin, hook
        try:
            return self.register(plugin, name)
        finally:
            self._last, self._last_hook = _ABSENT, ""

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> pluggy.HookimplOpts | None:
        parse = super().parse_hookimpl_opts
        if plugin is self._last:
            opts = parse(plugin, name)
            if opts is None or (opts.get("specname") or name) != self._last_hook:
                return opts
            last = opts.copy()  # not the marker's own, which every registration shares
            last["tryfirst"], last["trylast"] = False, True
            return last
        if isinstance(plugin, (type, ModuleType)):
            return _remembered(_impls, plugin, name, lambda: parse(plugin, name))
        cls = type(plugin)
        if _has_slots(cls) or name in _own_dict(plugin):
            return parse(plugin, name)  # the instance's own, or maybe (a slot)
        return _remembered(_instances, cls, name, lambda: parse(plugin, name))

    def parse_hookspec_opts(self, module_or_class: Any, name: str) -> pluggy.HookspecOpts | None:
        parse = super().parse_hookspec_opts
        if not isinstance(module_or_class, (type, ModuleType)):
            return parse(module_or_class, name)
        return _remembered(_specs, module_or_class, name, lambda: parse(module_or_class, name))
