"""Continual-learning methods behind one interface, selectable by name (``clnp run --method``).

Every method sees the same task stream, the same network spec and the same training budget, and
is evaluated by the same loop in :mod:`clnp.runner`; a comparison compares methods and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from torch import Tensor

from .network import build_model
from .tasks import Task
from .trainer import CLNP, CLNPConfig


class ContinualLearner(Protocol):
    """What the runner needs of a method."""

    def learn(self, task: Task) -> Any:
        """Learn the next task; return a report with ``to_dict()`` (or a dict)."""

    def accuracy(self, task_id: int, x: Tensor, y: Tensor) -> float:
        """Test accuracy (fraction) of an already learned task."""

    def capacity(self) -> list[dict]:
        """Per-layer unit diagnostics (an empty list where the notion does not apply)."""


MethodFactory = Callable[[str, Sequence[int], CLNPConfig, dict], ContinualLearner]
"""``factory(model_spec, input_shape, config, options) -> learner``."""


def _clnp(model: str, input_shape: Sequence[int], config: CLNPConfig, options: dict) -> ContinualLearner:
    return CLNP(build_model(model, input_shape), config)


METHODS: dict[str, MethodFactory] = {"clnp": _clnp}


def _register_baselines() -> None:
    from .baselines import BASELINES  # imported here: the baselines import the trainer, not this module

    METHODS.update(BASELINES)


_register_baselines()


def build_method(name: str, model: str, input_shape: Sequence[int], config: CLNPConfig,
                 options: dict | None = None) -> ContinualLearner:
    """The learner of method ``name`` on a fresh network built from ``model``."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of: {', '.join(sorted(METHODS))}")
    return METHODS[name](model, input_shape, config, options or {})
