"""Continual-learning methods behind one interface, selectable by name (``clnp run --method``).

Every method sees the same task stream, the same network spec and the same training settings
(:class:`~clnp.methods.config.TrainConfig`), trains through the same loop
(:func:`clnp.methods.loop.fit`) and is evaluated by the same runner, so a comparison compares
methods and nothing else. A factory has the signature ``(model_spec, input_shape, train_config,
options) -> learner``; ``options`` are the method's own settings (CLNP's ``l1``, ``margin``,
``activity``; EWC's ``lambda``, ...).

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

from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, Protocol

from torch import Tensor

from ..core.network import build_model
from ..data.tasks import Task
from . import ewc, finetune, hat, independent, joint, mas, online_ewc, packnet, si
from .clnp import CLNP, CLNPConfig
from .config import TrainConfig


class ContinualLearner(Protocol):
    """What the runner needs of a method."""

    def learn(self, task: Task) -> Any:
        """Learn the next task; return a report with ``to_dict()`` (or a dict)."""

    def accuracy(self, task_id: int, x: Tensor, y: Tensor) -> float:
        """Test accuracy (fraction) of an already learned task."""

    def capacity(self) -> list[dict]:
        """Per-layer unit diagnostics (an empty list where the notion does not apply)."""


MethodFactory = Callable[[str, Sequence[int], TrainConfig, dict], ContinualLearner]
"""``factory(model_spec, input_shape, train_config, options) -> learner``."""

CLNP_OPTIONS = ("l1", "margin", "activity")
"""CLNP's own settings, given as options (``RunConfig.l1``/``margin`` or ``--option clnp.activity=...``)."""


def _clnp(model: str, input_shape: Sequence[int], config: TrainConfig, options: dict) -> ContinualLearner:
    own = {k: v for k, v in options.items() if k in CLNP_OPTIONS}
    return CLNP(build_model(model, input_shape), CLNPConfig(**asdict(config.training()), **own))


METHODS: dict[str, MethodFactory] = {
    "clnp": _clnp,
    "finetune": finetune.build,
    "independent": independent.build,
    "joint": joint.build,
    "ewc": ewc.build,
    "online-ewc": online_ewc.build,
    "si": si.build,
    "mas": mas.build,
    "packnet": packnet.build,
    "hat": hat.build,
}
"""Method name -> factory."""


def build_method(name: str, model: str, input_shape: Sequence[int], config: TrainConfig,
                 options: dict | None = None) -> ContinualLearner:
    """The learner of method ``name`` on a fresh network built from ``model``."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of: {', '.join(sorted(METHODS))}")
    return METHODS[name](model, input_shape, config, options or {})


__all__ = ["CLNP_OPTIONS", "METHODS", "ContinualLearner", "MethodFactory", "TrainConfig", "build_method"]
