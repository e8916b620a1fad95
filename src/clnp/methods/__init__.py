"""The methods, and the registry that knows them: every method is one :class:`~clnp.engine.method.Method`.

A method lives in its own module (or package) here and declares ``METHOD = Method(...)`` there: name,
constructor, options with their ranges and help, tuning space, the shared settings it reads, what it can
do. The registry finds the modules by their file names (``online_ewc.py`` is ``online-ewc``; the package
:mod:`.common` holds what baselines share and is no method), imports one when it is first asked for, and
so names every method without importing torch (``clnp --help``). A new baseline is one new file.

A method from outside the package registers itself with :func:`register` when its module is imported;
``clnp run --plugin MODULE`` / ``clnp compare --plugin MODULE`` (or the environment variable
``CLNP_PLUGINS=mod1,mod2``, which worker processes inherit) import such modules first.

| name | module | what it is |
|---|---|---|
| ``clnp`` | :mod:`.clnp` | continual learning via neural pruning: unit partition, zero forgetting |
| ``finetune`` | :mod:`.finetune` | sequential training, nothing against forgetting (lower bound) |
| ``independent`` | :mod:`.independent` | a separate network per task (ceiling at this width, T x parameters) |
| ``joint`` | :mod:`.joint` | one network trained on all tasks seen so far at once (shared-network upper bound) |
| ``ewc``, ``online-ewc`` | :mod:`.ewc`, :mod:`.online_ewc` | Fisher-weighted quadratic penalty |
| ``si`` | :mod:`.si` | path-integral importance (Synaptic Intelligence) |
| ``mas`` | :mod:`.mas` | output-sensitivity importance (Memory Aware Synapses) |
| ``packnet`` | :mod:`.packnet` | weight-level magnitude pruning, per-task weight masks |
| ``hat`` | :mod:`.hat` | unit-level hard attention masks |
"""

from __future__ import annotations

import difflib
import os
import pkgutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib import import_module
from typing import TYPE_CHECKING

from ..engine.method import Method
from ..engine.options import Option

if TYPE_CHECKING:
    from ..engine.config import TrainConfig
    from ..engine.learner import Learner

DEFAULT_METHOD = "clnp"
"""The method a run uses unless told otherwise."""

PLUGINS_ENV = "CLNP_PLUGINS"
"""Comma-separated modules imported before the registry answers (each registers its methods)."""

NOT_METHODS = frozenset({"common"})
"""Modules of this package that are not methods."""

_REGISTRY: dict[str, Method] = {}
"""Name -> method: the built-in ones once imported, and those registered from outside."""


def builtin_names() -> tuple[str, ...]:
    """The names of the methods of this package, read from its file names (no import): the default first."""
    found = [info.name.replace("_", "-") for info in pkgutil.iter_modules(__path__)
             if not info.name.startswith("_") and info.name not in NOT_METHODS]
    return tuple(sorted(found, key=lambda name: (name != DEFAULT_METHOD, name)))


def register(method: Method, *, replace: bool = False) -> Method:
    """Add ``method`` to the registry (from a plugin module: ``METHOD = register(Method(...))``); refuse a
    name already taken by another method unless ``replace``. Returns ``method``."""
    if not isinstance(method, Method):
        raise TypeError(f"register() takes a clnp.engine.method.Method, got {type(method).__name__}")
    taken = _REGISTRY.get(method.name)
    if taken is None and method.name in builtin_names():
        taken = get(method.name)
    if taken is not None and taken is not method and not replace:
        raise ValueError(f"method {method.name!r} is already registered")
    _REGISTRY[method.name] = method
    return method


def unregister(name: str) -> None:
    """Remove a method registered from outside (tests, plugins that unload)."""
    _REGISTRY.pop(name, None)


def load_plugins(modules: Iterable[str] | None = None) -> None:
    """Import each plugin module (default: those named in ``$CLNP_PLUGINS``); a module that declares a module-level
    ``METHOD`` and has not registered it is registered here."""
    names = modules if modules is not None else [m for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    for name in names:
        module = import_module(name.strip())
        method = getattr(module, "METHOD", None)
        if isinstance(method, Method) and _REGISTRY.get(method.name) is not method:
            register(method)


def add_plugins(modules: Sequence[str]) -> None:
    """:func:`load_plugins` for ``modules``, and name them in ``$CLNP_PLUGINS`` so that worker processes and
    jobs started from here (``clnp compare --jobs``) load them too."""
    load_plugins(modules)
    known = [m for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    os.environ[PLUGINS_ENV] = ",".join(dict.fromkeys([*known, *(m.strip() for m in modules)]))


def get(name: str) -> Method:
    """The method called ``name`` (``ValueError`` naming the known ones for an unknown name)."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in builtin_names():
        method = import_module(f".{name.replace('-', '_')}", __name__).METHOD
        if method.name != name:
            raise RuntimeError(f"module {name.replace('-', '_')} declares method {method.name!r}, not {name!r}")
        _REGISTRY[name] = method
        return method
    load_plugins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    raise ValueError(f"unknown method {name!r}; expected one of: {', '.join(sorted(names()))}")


def names() -> list[str]:
    """Every method's name: the built-in ones, then those registered from outside."""
    load_plugins()
    return list(dict.fromkeys([*builtin_names(), *_REGISTRY]))


class _Methods(Mapping[str, Method]):
    """The registry as a read-only mapping, name -> :class:`Method` (imports a method when it is looked up)."""

    def __getitem__(self, name: str) -> Method:
        try:
            return get(name)
        except ValueError:
            raise KeyError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(names())

    def __len__(self) -> int:
        return len(names())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in names()


METHODS: Mapping[str, Method] = _Methods()
"""Every method by name."""


def check_options(method: str, options: dict) -> dict:
    """Refuse an unknown option of ``method`` (a misspelling would silently run the default) or a value out
    of its range, naming the option, the allowed range or names; return the options converted."""
    known = get(method).options
    checked = {}
    for name, value in options.items():
        if name not in known:
            close = difflib.get_close_matches(str(name), list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            allowed = ", ".join(known) if known else "none"
            raise ValueError(f"unknown option {method}.{name}{hint}; {method} options: {allowed}")
        checked[name] = known[name].check(method, name, value)
    return checked


def build_method(name: str, model: str, input_shape: Sequence[int], config: TrainConfig,
                 options: dict | None = None) -> Learner:
    """The learner of method ``name`` on a fresh network built from ``model``."""
    return get(name).build(model, input_shape, config, options or {})


def readers_of(setting: str) -> tuple[str, ...]:
    """The methods that read the shared run ``setting`` (of those only some methods read), in registry order."""
    return tuple(name for name in names() if setting in get(name).reads)


def shared_settings_read_by_some() -> tuple[str, ...]:
    """The shared run settings that only some methods read (``l1``, ``finetune_epochs``, ...)."""
    return tuple(dict.fromkeys(s for name in names() for s in get(name).reads))


__all__ = ["DEFAULT_METHOD", "METHODS", "PLUGINS_ENV", "Method", "Option", "add_plugins", "build_method",
           "builtin_names", "check_options", "get", "load_plugins", "names", "readers_of", "register",
           "shared_settings_read_by_some", "unregister"]

