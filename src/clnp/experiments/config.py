"""Run configurations: :class:`RunConfig`, its defaults (the benchmark's, then the ones every benchmark shares)
and its checks before any work starts, including settings the run's method would ignore.

Where a configuration comes from (presets, YAML files, flags, and the order in which they combine) is
:mod:`clnp.experiments.config_sources`; its names are reached from here too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from ..engine.config import MAX_SEED, TrainConfig
from ..engine.devices import check_device_name
from ..engine.precision import check_precision
from ..methods import DEFAULT_METHOD

_SET_ELSEWHERE = {"seed", "device", "precision", "progress", "grow", "model", "epochs", "batch_size"}
"""Run settings with a default of their own in :class:`RunConfig`, or set by every benchmark."""


def _declared_defaults(settings: type) -> dict[str, Any]:
    """Each field of a settings dataclass that has a plain default, with that default."""
    return {f.name: f.default for f in fields(settings) if f.default is not MISSING}


def shared_defaults() -> dict[str, Any]:
    """The run settings no benchmark sets, from where each is declared once: the training settings'
    (:class:`TrainConfig`) dataclass defaults, and each method's own run settings (CLNP's ``l1``, ``margin``)
    as its settings dataclass declares them (:func:`run_setting_defaults`)."""
    names = {f.name for f in fields(RunConfig)}
    declared = _declared_defaults(TrainConfig)
    declared.update(run_setting_defaults())
    return {k: v for k, v in declared.items() if k in names and k not in _SET_ELSEWHERE}


def method_defaults(method: str) -> dict[str, Any]:
    """The shared training settings that ``method`` reads (:attr:`Method.reads`) and to which its settings dataclass
    gives a default of its own (CLNP's 10 fine-tuning epochs): a run of that method takes these unless told."""
    from ..methods import METHODS

    spec = METHODS.get(method)
    if spec is None or spec.settings is None:
        return {}
    shared, own = _declared_defaults(TrainConfig), _declared_defaults(spec.settings)
    return {k: own[k] for k in spec.reads if k in shared and k in own and own[k] != shared[k]}


def run_setting_defaults() -> dict[str, Any]:
    """Per run setting that a method takes as its own (:attr:`Method.run_settings`), its default, as the method's
    settings dataclass (:attr:`Method.settings`) declares it."""
    from ..methods import get, names

    out: dict[str, Any] = {}
    for name in names():
        method = get(name)
        if method.settings is not None:
            declared = _declared_defaults(method.settings)
            out.update({k: declared[k] for k in method.run_settings if k in declared and k not in out})
    return out


class ConfigError(ValueError):
    """A configuration that cannot be used: unknown key, wrong type, unreadable file."""


@dataclass
class RunConfig:
    """Everything a run depends on; ``None`` fields take the benchmark's defaults."""

    benchmark: str = "split-digits"
    method: str = DEFAULT_METHOD
    tasks: int | None = None
    model: str | None = None
    epochs: int | None = None
    finetune_epochs: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    finetune_lr: float | None = None
    """Learning rate of the retraining after pruning (CLNP, PackNet); None: ``lr``."""
    weight_decay: float | None = None
    l1: float | list[float] | None = None
    """CLNP's per-unit L1 coefficient: one for every layer, or a list with one per hidden layer."""
    margin: float | None = None
    grow: bool = False
    """CLNP: add free units to a layer before a task that would not fit (``CLNPConfig.grow``)."""
    seed: int = 0
    device: str = "auto"
    """``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``. A run may be
    resumed on another device (it is not compared on resume)."""
    precision: str = "32"
    """``32``, ``bf16-mixed`` or ``16-mixed`` (autocast in training and evaluation)."""
    method_revision: int | None = None
    """The revision of the method's results (:attr:`~clnp.engine.method.Method.revision`) the run was made at;
    None: this clnp's. Recorded so that a run of an earlier version is never taken for the same run."""
    data_dir: str | None = None
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def resolved(self) -> RunConfig:
        """A copy with every ``None`` replaced by the method's default for the benchmark (``benchmark_defaults`` of
        its declaration; none today), the benchmark's (model, epochs, batch size), the method's own default of a
        shared setting (:func:`method_defaults`), then by the one default every benchmark shares
        (:func:`shared_defaults`)."""
        from ..data.benchmarks import BENCHMARKS

        if self.benchmark not in BENCHMARKS:
            raise ValueError(f"unknown benchmark {self.benchmark!r}; expected one of: {', '.join(BENCHMARKS)}")
        from ..methods import METHODS

        spec = BENCHMARKS[self.benchmark]
        values = asdict(self)
        own = METHODS[self.method].benchmark_defaults.get(self.benchmark, {}) if self.method in METHODS else {}
        for key, default in {**shared_defaults(), **method_defaults(self.method), **spec.defaults, **own}.items():
            if values.get(key) is None:
                values[key] = default
        if values["method_revision"] is None and self.method in METHODS:
            values["method_revision"] = METHODS[self.method].revision
        return RunConfig(**values)

    def check(self) -> RunConfig:
        """Check every value (benchmark defaults filled in) before any work starts; return the resolved copy.

        Raises ``ValueError`` naming the setting, the allowed range and the value given: a NaN or infinite
        margin, L1 or learning rate, a seed numpy cannot take, more tasks than the benchmark has, an
        unknown method or a misspelled method option (``extra``) are refused here, not tasks later.
        """
        from ..data.benchmarks import BENCHMARKS, check_n_tasks
        from ..methods import check_options, get

        r = self.resolved()
        method = get(r.method)  # refuses an unknown method
        check_n_tasks(r.benchmark, r.tasks)
        if r.method_revision != method.revision:
            raise ValueError(
                f"method_revision {r.method_revision!r}: the run was set up by a clnp whose {r.method} gives other "
                f"results than this one's (revision {method.revision}); start it anew (without method_revision), "
                f"or use the clnp that made it")
        _check_int("seed", r.seed, 0, MAX_SEED)
        _check_int("epochs", r.epochs, 1, MAX_EPOCHS)
        _check_int("finetune_epochs", r.finetune_epochs, 0, MAX_EPOCHS)
        _check_int("batch_size", r.batch_size, 1, None)
        if r.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {r.optimizer!r}")
        check_device_name(r.device)
        check_precision(r.precision)
        _check_number("lr", r.lr, "> 0 and finite", lambda v: v > 0)
        if r.finetune_lr is not None:
            _check_number("finetune_lr", r.finetune_lr, "> 0 and finite", lambda v: v > 0)
        _check_number("weight_decay", r.weight_decay, ">= 0 and finite", lambda v: v >= 0)
        if "l1" in method.reads:
            if isinstance(r.l1, (list, tuple)):
                if not r.l1:
                    raise ValueError("l1 must be a number or a non-empty list of numbers (one per hidden layer)")
                for value in r.l1:
                    _check_number("l1", value, ">= 0 and finite", lambda v: v >= 0)
                r.l1 = [float(v) for v in r.l1]  # a list, as JSON gives it back, so a resume compares equal
            else:
                _check_number("l1", r.l1, ">= 0 and finite", lambda v: v >= 0)
        if "margin" in method.reads:
            _check_number("margin", r.margin, ">= 0 and <= 100 (validation accuracy points, finite)",
                          lambda v: 0 <= v <= 100)
        for name in ("l1", "margin"):
            if name not in method.reads:  # not read, but a NaN would still make the settings unequal to themselves
                value = getattr(r, name)
                for v in value if isinstance(value, (list, tuple)) else [value]:
                    if v is not None:
                        _check_number(name, v, "finite", lambda v: True)
        if not isinstance(r.extra, dict):
            raise ValueError(f"extra must be a mapping of {r.method} options, got {r.extra!r}")
        r.extra = check_options(r.method, r.extra)
        _check_model(r.model, BENCHMARKS[r.benchmark].input_shape)
        return r

    def train_config(self) -> TrainConfig:
        """The training settings every method reads (benchmark defaults filled in)."""
        r = self.resolved()
        names = {f.name for f in fields(TrainConfig)}
        kwargs = {k: v for k, v in asdict(r).items() if k in names and v is not None}
        return TrainConfig(**kwargs)

    def method_options(self) -> dict:
        """The method's own settings: ``extra``, and the run settings it takes as its own (CLNP's ``l1``,
        ``margin``, ``grow``; defaults filled in)."""
        from ..methods import get

        r = self.resolved()
        options = dict(r.extra)
        for name in get(r.method).run_settings:
            value = getattr(r, name)
            if value is not None and value is not False:  # a flag left off is the method's default
                options[name] = value
        return options


MAX_EPOCHS = 100_000
MAX_LAYER_WIDTH = 100_000
"""Widest layer a model spec may ask for (a typo such as ``mlp:20000000`` would try to allocate terabytes)."""


def _check_int(name: str, value: Any, low: int, high: int | None) -> None:
    rng = f">= {low}" + ("" if high is None else f" and <= {high}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer {rng}, got {value!r}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be {rng}, got {value}")


def _check_number(name: str, value: Any, allowed: str, ok: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number {allowed}, got {value!r}")
    if not math.isfinite(value) or not ok(value):
        raise ValueError(f"{name} must be {allowed}, got {value}")


def _check_model(spec: Any, input_shape: tuple[int, ...]) -> None:
    """Parse the model spec (building it, which is cheap) so a typo is refused before the data is read."""
    from ..models import build_network

    if not isinstance(spec, str):
        raise ValueError(f"model must be a spec such as 'mlp:256,256', got {spec!r}")
    widths = [int(w) for w in re.findall(r"\d+", spec.split(":", 2)[1] if spec.count(":") else "")]
    if any(w > MAX_LAYER_WIDTH for w in widths):
        raise ValueError(f"model spec {spec!r}: layer sizes must be <= {MAX_LAYER_WIDTH}")
    if input_shape:
        build_network(spec, input_shape)


class _ReadOnlyBy(Mapping[str, tuple[str, ...]]):
    """Setting -> the methods that read it, asked of the registry (:attr:`Method.reads`) when looked at."""

    def _table(self) -> dict[str, tuple[str, ...]]:
        from ..methods import readers_of, shared_settings_read_by_some

        return {name: readers_of(name) for name in shared_settings_read_by_some()}

    def __getitem__(self, name: str) -> tuple[str, ...]:
        return self._table()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


READ_ONLY_BY: Mapping[str, tuple[str, ...]] = _ReadOnlyBy()
"""Run settings that only some methods read, and which ones; given to another method they would be ignored
without a word."""


def refuse_ignored_settings(values: dict) -> None:
    """Refuse (``ConfigError``) a setting that the run's method would ignore, e.g. ``--method ewc --grow``.

    A value equal to what the run records anyway (the default; ``grow`` false) passes: that is
    what a baseline run's own ``config.yaml`` holds, and rerunning it with ``--config`` must work."""
    from ..data.benchmarks import BENCHMARKS

    method = values.get("method") or RunConfig.method
    spec = BENCHMARKS.get(values.get("benchmark") or RunConfig.benchmark)
    defaults = {"grow": False, **shared_defaults(), **(spec.defaults if spec is not None else {})}
    for name, readers in READ_ONLY_BY.items():
        value = values.get(name)
        if method not in readers and value is not None and value != defaults.get(name):
            raise ConfigError(f"--{name.replace('_', '-')} ({name}) is read by {' and '.join(readers)} only; "
                              f"method {method} would ignore it: drop it or choose {readers[0]}")


_MOVED = {"PRESETS", "FILE_ONLY_KEYS", "check_values", "load_config_file", "preset_values", "combine", "dump_config",
          "read_run_config", "from_namespace"}
"""Names of :mod:`.config_sources`, reached from here too (the import paths in use before it was split off)."""


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        from . import config_sources

        return getattr(config_sources, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
