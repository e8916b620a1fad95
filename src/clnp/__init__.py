"""clnp: continual learning via neural pruning (Golkar, Kagan & Cho, arXiv 1903.04476).

A fixed-size network learns tasks in sequence. An L1 penalty makes most units idle; idle units are
pruned and stay free for later tasks; the rest are frozen, and their interference weights cut, so
earlier tasks' outputs never change: zero forgetting, bit for bit.

The packages, bottom to top (no import runs upwards):

* :mod:`clnp.core`: the mechanism (unit partition, masked layers, networks, sparsity, activity,
  pruning); knows nothing of files, data sets, the CLI or plots;
* :mod:`clnp.data`: tasks, data sets, benchmark streams;
* :mod:`clnp.engine`: what every method trains and is evaluated through: settings, the one base class,
  the one loop, the one evaluation, precisions, devices, distributed training;
* :mod:`clnp.methods`: CLNP and the baselines, each one registered :class:`~clnp.engine.method.Method`;
* :mod:`clnp.experiments`: run configs, runs and run directories, checkpoints, comparisons;
* :mod:`clnp.report`, :mod:`clnp.exporting` (``clnp.export(net, task)``), :mod:`clnp.cli`:
  on top.
"""

from importlib import import_module
from typing import Any

from .version import __version__

_LAZY = {
    "CLNPNet": "core.network", "build_model": "models:build_network", "cnn": "core.network", "mlp": "core.network",
    "FREE": "core.partition",
    "get_benchmark": "data.benchmarks", "permuted_digits": "data.streams", "split_digits": "data.streams",
    "Split": "data.tasks", "Task": "data.tasks",
    "average_accuracy": "experiments.metrics", "backward_transfer": "experiments.metrics",
    "export": "exporting", "load_state_dict_export": "exporting", "save_export": "exporting",
    "CLNP": "methods.clnp", "CapacityError": "methods.clnp", "CLNPConfig": "methods.clnp", "TaskReport": "methods.clnp",
    "TrainConfig": "engine.config",
}
"""Public name -> the module that defines it (``module:name`` where the name there differs), imported on first use:
``clnp --help`` needs no torch."""


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'clnp' has no attribute {name!r}")
    module, _, attr = _LAZY[name].partition(":")
    value = getattr(import_module(f".{module}", __name__), attr or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CLNP", "CLNPConfig", "CLNPNet", "CapacityError", "FREE", "Split", "Task", "TaskReport", "TrainConfig",
    "average_accuracy", "backward_transfer", "build_model", "cnn", "export", "get_benchmark",
    "load_state_dict_export", "mlp", "permuted_digits", "save_export", "split_digits", "__version__",
]
