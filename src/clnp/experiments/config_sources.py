"""Where a run configuration comes from: presets, YAML files, command-line flags, and the order they combine in.

A run's configuration comes from four layers, each overriding the one before:
``RunConfig`` defaults < a preset (``--preset``) < a YAML file (``--config``) < command-line flags.
The YAML file uses the flags' names in snake_case (``batch_size: 256``); an unknown key or a value
of the wrong type is refused with :class:`~clnp.experiments.config.ConfigError`, which says which key and what
was expected. A run directory's ``config.yaml`` is written by :func:`dump_config` and read by
:func:`read_run_config`.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, RunConfig, refuse_ignored_settings

PRESETS: dict[str, dict[str, Any]] = {
    # CLNP paper, permuted MNIST: 10 tasks, MLP 2x2000, Adam, batch 256, multi-head. The paper does
    # not state epochs, learning rate, L1 coefficient or margin: those come from the benchmark's defaults.
    "paper-pmnist": {"benchmark": "permuted-mnist", "tasks": 10, "model": "mlp:2000,2000", "optimizer": "adam",
                     "batch_size": 256},
    # Split CIFAR-10/100 with the SI paper's network (Zenke et al. 2017: 3x3 convs 32,32,64,64 with
    # pooling after each pair, dense 512; Adam, lr 1e-3, batch 256, 60 epochs per task). CLNP's own
    # L1 coefficient and margin for it are not published: benchmark defaults.
    "split-cifar": {"benchmark": "split-cifar10-100", "tasks": 6, "model": "cnn:32,32,64,64/512",
                    "optimizer": "adam", "lr": 1e-3, "batch_size": 256, "epochs": 60},
}
"""Published settings by name (``clnp run --preset NAME``)."""

FILE_ONLY_KEYS = {"out": (str,)}
"""Keys a config file may hold besides the ``RunConfig`` fields (they mirror flags that are not config)."""


class _Loader(yaml.SafeLoader):
    """Safe YAML, plus floats written without a dot (``1e-3``), which YAML 1.1 reads as strings."""


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {seen[key] + 1} and line {key_node.start_mark.line + 1}): "
                "write each key once", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)
_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def _allowed_types(hint: Any) -> tuple[type, ...]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(typing.get_origin(a) or a for a in typing.get_args(hint))  # list[float] -> list
    return (typing.get_origin(hint) or hint,)


def _field_types() -> dict[str, tuple[type, ...]]:
    hints = typing.get_type_hints(RunConfig)
    out = {f.name: _allowed_types(hints[f.name]) for f in fields(RunConfig)}
    return {**out, **FILE_ONLY_KEYS}


def _type_name(kinds: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a mapping",
             list: "a list of numbers", type(None): "null"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def check_values(values: dict, source: str) -> dict:
    """Check keys and value types of a config mapping; return it with numbers coerced (int -> float).

    ``source`` names where the values came from (a file path, a preset) for the error message.
    """
    kinds = _field_types()
    checked: dict[str, Any] = {}
    for key, value in values.items():
        if not isinstance(key, str) or key not in kinds:
            close = difflib.get_close_matches(str(key).replace("-", "_"), list(kinds), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{source}: unknown key {key!r}{hint}; expected keys: {', '.join(kinds)}")
        allowed = kinds[key]
        if value is None and type(None) in allowed:
            checked[key] = None
        elif isinstance(value, bool):
            if bool not in allowed:
                raise ConfigError(f"{source}: {key} must be {_type_name(allowed)}, got {value!r}")
            checked[key] = value
        elif isinstance(value, int) and int in allowed:
            checked[key] = value
        elif isinstance(value, (int, float)) and float in allowed:
            checked[key] = float(value)
        elif isinstance(value, str) and str in allowed:
            checked[key] = value
        elif isinstance(value, dict) and dict in allowed:
            checked[key] = value
        elif isinstance(value, list) and list in allowed:  # per-layer L1: the elements are checked by check()
            checked[key] = value
        else:
            raise ConfigError(
                f"{source}: {key} must be {_type_name(allowed)}, got {type(value).__name__} {value!r}")
    return checked


def load_config_file(path: str | Path) -> dict:
    """The checked key/value mapping of a YAML config file (``{}`` for an empty file)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.constructor.ConstructorError as exc:
        if "duplicate key" in str(exc.problem):
            raise ConfigError(f"config file {path}: {exc.problem}") from None
        problem = str(exc).replace("\n", " ")
        raise ConfigError(f"config file {path} is not valid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        problem = str(exc).replace("\n", " ")
        raise ConfigError(f"config file {path} is not valid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values, got {type(data).__name__}")
    return check_values(data, str(path))


def preset_values(name: str) -> dict:
    """The values of a named preset."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; expected one of: {', '.join(PRESETS)}")
    return dict(PRESETS[name])


def combine(preset: str | None = None, config_file: str | Path | None = None,
            flags: dict | None = None) -> tuple[RunConfig, str | None]:
    """Build a ``RunConfig`` from preset < config file < flags; return it and the ``out`` given, if any.

    ``flags`` holds only the values given on the command line (keys are ``RunConfig`` fields or ``out``).
    """
    values: dict[str, Any] = {}
    if preset is not None:
        values.update(preset_values(preset))
    if config_file is not None:
        values.update(load_config_file(config_file))
    if flags:
        values.update(check_values(flags, "command line"))
    out = values.pop("out", None)
    refuse_ignored_settings(values)
    if isinstance(values.get("data_dir"), str):  # stored absolute: a resume from another folder finds the data
        values["data_dir"] = str(Path(values["data_dir"]).expanduser().absolute())
    return RunConfig(**values), out


def dump_config(config: RunConfig) -> str:
    """The YAML text of a config (what ``config.yaml`` in a run directory holds)."""
    return yaml.safe_dump(asdict(config), sort_keys=False, default_flow_style=False)


def read_run_config(path: str | Path) -> RunConfig:
    """The ``RunConfig`` stored in a run directory's ``config.yaml``."""
    values = load_config_file(path)
    values.pop("out", None)
    return RunConfig(**values)


def from_namespace(args: Any) -> tuple[RunConfig, str | None]:
    """:func:`combine` for parsed ``clnp run`` arguments: ``--preset`` < ``--config`` < the flags given."""
    names = {f.name for f in fields(RunConfig)} | set(FILE_ONLY_KEYS)
    flags = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if getattr(args, "no_progress", False):
        flags["progress"] = False
    return combine(getattr(args, "preset", None), getattr(args, "config", None), flags)
