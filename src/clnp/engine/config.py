"""Training settings every method reads: the shared budget of a comparison.

:class:`TrainConfig` holds what the one training loop (:mod:`clnp.engine.loop`) needs: epochs,
batch size, optimiser, learning rate, weight decay, seed. A method's own settings live with the
method (CLNP's L1 coefficient and margin in :class:`clnp.methods.clnp.CLNPConfig`, a baseline's
strength in its constructor, their ranges in the method's declaration), so a baseline never reads CLNP's
settings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch

from .devices import check_device_name
from .precision import check_precision

MAX_SEED = 2**32 - 1
"""The largest seed: what numpy accepts (``clnp run``'s data splits are seeded through it), and far inside the
64 bits that ``torch.manual_seed`` takes of the per-task seed ``seed * 1_000_003 + task``."""


LR_SCHEDULES = ("constant", "cosine")
"""How the learning rate moves within one phase (a task's training, or its retraining after pruning):
``constant``, or ``cosine`` from ``lr`` down to 0 over the phase's steps (:func:`scheduled_lr`)."""


class ConfigTypeError(ValueError, TypeError):
    """A configuration value of the wrong type (a ``ValueError`` too, so callers refuse it as bad input)."""


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_choice(config: object, name: str, choices: Sequence[str]) -> None:
    """Refuse a setting that is not one of its ``choices`` (``ValueError`` naming the field, the choices and the
    value given)."""
    value = getattr(config, name)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def check_field_types(config: object, expected: dict[str, str]) -> None:
    """Refuse a value of the wrong type (``ConfigTypeError`` naming the field) before it fails deep in training."""
    for name, kind in expected.items():
        value = getattr(config, name)
        ok = {"int": isinstance(value, int) and not isinstance(value, bool), "number": is_number(value),
              "str": isinstance(value, str), "bool": isinstance(value, bool)}[kind]
        if not ok:
            raise ConfigTypeError(f"{type(config).__name__}.{name} must be {'a' if kind != 'int' else 'an'} {kind}, "
                                  f"got {value!r} ({type(value).__name__})")


@dataclass
class TrainConfig:
    """How every method trains a task (constructor state; learned state lives in the network)."""

    epochs: int = 20
    """Training epochs per task."""
    finetune_epochs: int = 5
    """Epochs of retraining after pruning, for the methods that prune (CLNP, PackNet); 0 turns it off.
    A shared budget, so that pruning methods are compared at equal retraining cost."""
    batch_size: int = 64
    optimizer: str = "adam"
    """``adam`` or ``sgd``; a fresh one is made for every task and phase."""
    lr: float = 1e-3
    finetune_lr: float | None = None
    """Learning rate of the retraining after pruning (CLNP, PackNet); None: the method's default, ``lr``
    here (:meth:`finetuning`; CLNP's config fine-tunes at a fraction of it). Retraining starts from a
    trained network, so a smaller step than training's usually ends higher (CLNP on
    permuted-fashion-mnist: ``bench/RESULTS.md``)."""
    lr_schedule: str = "constant"
    """How the rate moves within each phase: one of :data:`LR_SCHEDULES`. A method may set its own for a phase
    (CLNP's fine-tuning decays: :meth:`clnp.methods.clnp.CLNPConfig.finetuning`)."""
    momentum: float = 0.9
    """SGD momentum (ignored by Adam)."""
    weight_decay: float = 0.0
    seed: int = 0
    eval_batch_size: int = 1024
    progress: bool = False
    """Show a progress bar over epochs."""
    device: str | None = None
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``: the learner moves its network there. None
    leaves the network where it is (the library's default; ``clnp run`` defaults to ``auto``)."""
    precision: str = "32"
    """``32``, ``bf16-mixed`` or ``16-mixed``: autocast for the forward passes of training and evaluation."""
    expected_tasks: int | None = None
    """How many tasks the stream holds, for a method that plans its capacity over it (CLNP's unit budget);
    None: not known (open-ended). ``clnp run`` fills in the benchmark's task count."""

    def __post_init__(self) -> None:
        check_field_types(self, {
            "epochs": "int", "finetune_epochs": "int", "batch_size": "int", "seed": "int", "eval_batch_size": "int",
            "lr": "number", "momentum": "number", "weight_decay": "number", "optimizer": "str", "progress": "bool",
            "precision": "str", "lr_schedule": "str",
        })
        if self.device is not None:
            check_device_name(self.device)
        if self.expected_tasks is not None:
            check_field_types(self, {"expected_tasks": "int"})
            if self.expected_tasks < 1:
                raise ValueError(f"expected_tasks must be >= 1 (or None: open-ended), got {self.expected_tasks}")
        check_precision(self.precision)
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be >= 0 and <= {MAX_SEED}, got {self.seed}")
        check_choice(self, "lr_schedule", LR_SCHEDULES)
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.finetune_epochs < 0:
            raise ValueError(f"finetune_epochs must be >= 0, got {self.finetune_epochs}")
        if not self.lr > 0 or self.lr == float("inf"):
            raise ValueError(f"lr must be > 0 and finite, got {self.lr}")
        if self.finetune_lr is not None:
            check_field_types(self, {"finetune_lr": "number"})
            if not self.finetune_lr > 0 or self.finetune_lr == float("inf"):
                raise ValueError(f"finetune_lr must be > 0 and finite, got {self.finetune_lr}")
        for name in ("weight_decay", "momentum"):
            value = getattr(self, name)
            if not 0 <= value < float("inf"):
                raise ValueError(f"{name} must be >= 0 and finite, got {value}")

    def finetuning(self) -> TrainConfig:
        """These settings with the retraining's learning rate (``finetune_lr``, when given) as ``lr``."""
        return self if self.finetune_lr is None else replace(self, lr=self.finetune_lr)

    def training(self) -> TrainConfig:
        """The plain training settings (drops a subclass's method settings)."""
        names = {f.name for f in fields(TrainConfig)}
        return TrainConfig(**{k: v for k, v in vars(self).items() if k in names})


def check_some_inputs(task_id: int, x: torch.Tensor) -> None:
    """Refuse the accuracy of no inputs (it is undefined; 0.0 would read as a task forgotten)."""
    if x.shape[0] == 0:
        raise ValueError(f"task {task_id}: accuracy of no inputs is undefined; expected at least one input")


def scheduled_lr(config: TrainConfig, step: int, steps: int) -> float:
    """The learning rate of update ``step`` (from 0) of a phase of ``steps`` updates, as ``config.lr_schedule``
    says: ``cosine`` starts at ``lr`` and reaches 0 after the last update."""
    if config.lr_schedule == "constant":
        return config.lr
    return config.lr * (0.5 * (1.0 + math.cos(math.pi * min(step, steps) / max(1, steps))))


def make_optimizer(params: list[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """A fresh optimiser over ``params`` as ``config`` says (one per task and phase)."""
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
