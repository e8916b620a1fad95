"""The one base class of every method, CLNP and the baselines alike: what a comparison must hold equal.

:class:`Learner` owns the frame of learning a task (input checks, the per-task seed
``seed * 1_000_003 + task`` under a forked RNG, the rollback of a task that failed part-way, the network's
mode restored), the round trip of the learned state (``learner_state`` / ``load_learner_state``), the
reports, and the test accuracy, which comes from the one evaluation (:func:`clnp.engine.evaluate.accuracy`).
A method adds its own work through the hooks below and the loop's (:class:`~clnp.engine.loop.LoopHooks`),
and trains every phase through :meth:`Learner.train_phase`, the one loop.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..data.tasks import DatasetSplit, Split, Task
from . import evaluate
from .config import TrainConfig, check_some_inputs
from .devices import place
from .loop import EpochCallback, LoopHooks, fit

SEED_STRIDE = 1_000_003
"""Task ``t`` of a run with seed ``s`` learns under seed ``s * SEED_STRIDE + t``."""


def task_seed(seed: int, task_id: int) -> int:
    """The seed task ``task_id`` learns under: distinct per task and per run seed."""
    return seed * SEED_STRIDE + task_id


class CapacityError(RuntimeError):
    """The network has no room left for a new task (a method with a unit capacity, such as CLNP)."""


class StateError(ValueError):
    """A saved learner state that cannot be this learner's (a method's integrity check names what is wrong)."""


def check_finite_state(tensors: Mapping[str, Tensor], source: str) -> None:
    """Refuse (:class:`StateError`) a saved state with a NaN or infinity in any floating tensor: the check of a
    method that declares none of its own. Training stops on a non-finite loss before a task's state is saved, so
    such a value was put there afterwards, and every prediction that reads it would be NaN."""
    for name, t in tensors.items():
        if isinstance(t, Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise StateError(f"{source}: {name} holds NaN or infinite values, which no saved state holds: "
                             "the checkpoint was altered after it was written")


class Learner(LoopHooks):
    """A continual learner: learns tasks one after another; every method subclasses it.

    Subclasses set :attr:`method` and implement :meth:`_learn` (the work of one task, under its seed); they
    may override :meth:`before_learning`, :meth:`rollback`, :meth:`_report`, :meth:`_evaluator`, the state
    hooks :meth:`_state` / :meth:`_load_state`, and the capacity queries (empty here).
    """

    method = ""
    """The registered name of the method."""

    def __init__(self, net: nn.Module, config: TrainConfig) -> None:
        self.net: Any = net
        self.config = config
        self.device = place(net, config.device)
        self.reports: list[Any] = []
        self.on_epoch: EpochCallback | None = None
        """Called after every epoch with task, phase, epoch, loss, val_accuracy, seconds (the runner's log)."""

    # -------------------------------------------------------------------------------- learning
    def learn(self, task: Task) -> Any:
        """Learn the next task; return its report (a dict, or an object with ``to_dict()``).

        The task's work runs under its own seed (:func:`task_seed`) with the global RNG forked; a failure
        part-way rolls the learner back to where it was (:meth:`rollback`) and the network leaves in the mode
        it came in.
        """
        task.validate(self.net.input_shape)
        self.before_learning(task)
        task_id = self.n_learned()
        seed = task_seed(self.config.seed, task_id)
        was_training = self.net.training
        started = time.perf_counter()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                generator = torch.Generator().manual_seed(seed)
                outcome = self._learn(task, task_id, generator)
            return self._report(task, task_id, outcome, started)
        except BaseException:
            self.rollback(task_id)
            raise
        finally:
            self.net.train(was_training)

    def n_learned(self) -> int:
        """How many tasks this learner has learned (the next task's id)."""
        return len(self.reports)

    def before_learning(self, task: Task) -> None:
        """Work before the task's seed is set (CLNP's growth and capacity check); nothing here."""

    def _learn(self, task: Task, task_id: int, generator: torch.Generator) -> Any:
        """Learn ``task`` as task ``task_id``, under its seed (``generator`` is seeded with it)."""
        raise NotImplementedError

    def _report(self, task: Task, task_id: int, outcome: Any, started: float) -> Any:
        """The report of the task just learned (``outcome`` is what :meth:`_learn` returned); kept in
        :attr:`reports`. Here: ``outcome`` itself, which :meth:`_learn` has already kept."""
        return outcome

    def rollback(self, task_id: int) -> None:
        """Undo a task that failed part-way (a method that can, CLNP, gives back what it took); nothing here."""

    def train_phase(self, params: Sequence[nn.Parameter], data: Sequence[Tensor] | Split | DatasetSplit,
                    generator: torch.Generator, *, epochs: int, head: int, task: int, phase: str,
                    label: str) -> list[dict]:
        """Train ``params`` of the network through the one loop (:func:`~clnp.engine.loop.fit`) with this
        learner's hooks and settings; return the epoch log rows."""
        return fit(self, self.net, params, data, self.config, generator, epochs=epochs, head=head, task=task,
                   phase=phase, label=label, on_epoch=self.on_epoch)

    # ------------------------------------------------------------------------------ evaluation
    def accuracy(self, task_id: int, x: Tensor, y: Tensor) -> float:
        """Test accuracy (a fraction) of an already learned task, by the one evaluation."""
        self.check_eval_inputs(task_id, x, y)
        module, head = self._evaluator(task_id)
        return evaluate.accuracy(module, head, x, y, self.config.eval_batch_size, self.config.precision)

    def logits(self, task_id: int, x: Tensor) -> Tensor:
        """Outputs (on the CPU) of task ``task_id`` on ``x``, in evaluation mode and the run's precision,
        batched on the network's device."""
        module, head = self._evaluator(task_id)
        return evaluate.logits(module, head, x, self.config.eval_batch_size, self.config.precision)

    def check_eval_inputs(self, task_id: int, x: Tensor, y: Tensor | None = None) -> None:
        """Refuse inputs that cannot be evaluated (here: none at all, whose accuracy is undefined)."""
        check_some_inputs(task_id, x)

    def _evaluator(self, task_id: int) -> tuple[nn.Module, int]:
        """The module that computes task ``task_id``'s logits as ``module(x, head)``, and the head."""
        return self.net, task_id

    # -------------------------------------------------------------------------------- capacity
    def capacity(self) -> list[dict]:
        """Per-layer unit diagnostics (empty where the notion does not apply)."""
        return []

    def capacity_forecast(self) -> list[dict]:
        """After each task, where the units run out at the rate so far (empty where units do not apply)."""
        return []

    def width_advice(self, remaining: int, model: str | None = None) -> str:
        """What widths ``remaining`` more tasks need, for a :class:`CapacityError` (empty: no advice)."""
        return ""

    # ------------------------------------------------------------------ the learned state (data only)
    def learner_state(self) -> tuple[dict[str, Tensor], dict]:
        """Everything learned so far, as data: tensors and JSON-able metadata.

        Valid between tasks. :meth:`load_learner_state` restores it into a learner freshly built with the
        same model and settings, which then continues exactly as this one would (``clnp run --resume``).
        """
        tensors, meta = self._state()
        return {name: t.detach().clone() for name, t in tensors.items()}, meta

    def load_learner_state(self, tensors: Mapping[str, Tensor], meta: dict) -> None:
        """Restore :meth:`learner_state` into this learner (freshly built with the same model and settings).

        Raises ``ValueError`` (or the ``RuntimeError`` of ``load_state_dict``) when the state does not fit.
        """
        if self.n_learned():
            raise RuntimeError("load_learner_state needs a fresh learner; this one has already learned tasks")
        self._load_state(tensors, meta)

    def restore_tasks(self, tasks: list[Task]) -> None:
        """After :meth:`load_learner_state`: the tasks learned so far, for a method that reads their data
        again (joint training); nothing here."""

    def _state(self) -> tuple[dict[str, Tensor], dict]:
        raise NotImplementedError

    def _load_state(self, tensors: Mapping[str, Tensor], meta: dict) -> None:
        raise NotImplementedError


__all__ = ["SEED_STRIDE", "CapacityError", "Learner", "StateError", "check_finite_state", "task_seed"]
