"""The CLNP learner: learn tasks one after another on one network, with zero forgetting.

``CLNP.learn(task)`` runs the method's cycle (:mod:`.cycle`) on the free units of the network: re-initialise
them, train with cross-entropy plus the L1 activity penalty, measure activity on the validation split,
choose the pruning under the graceful-forgetting margin (scored by :mod:`.search`), fine-tune the kept
units with the pruned ones silenced, and freeze the kept units as the task's own (cutting their
interference weights). Growth is in :mod:`.growth`, the saved state in :mod:`.state`.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from ...core.activity import predict_with_loss
from ...core.capacity import forecast, width_for
from ...core.network import CLNPNet, spec_with_widths
from ...core.sparsity import per_layer
from ...data.tasks import Task
from ...engine.config import check_some_inputs
from ...engine.learner import Learner
from ...engine.loop import EpochCallback
from ...engine.precision import autocast
from .config import CLNPConfig
from .cycle import CycleMixin, _Phase
from .growth import GrowthMixin
from .report import TaskReport
from .search import SearchMixin
from .state import StateMixin


class CLNP(CycleMixin, SearchMixin, GrowthMixin, StateMixin, Learner):
    """Continual learning via neural pruning on a :class:`~clnp.core.network.CLNPNet`.

    Example::

        net = clnp.mlp(64, (256, 256))
        learner = clnp.CLNP(net, clnp.CLNPConfig(epochs=20, margin=1.0))
        for task in clnp.split_digits():
            learner.learn(task)
        learner.accuracy(0, x, y)   # task 0 exactly as it was right after it was learned
    """

    method = "clnp"

    def __init__(self, net: CLNPNet, config: CLNPConfig | None = None,
                 on_epoch: EpochCallback | None = None) -> None:
        super().__init__(net, config or CLNPConfig())
        self.net: CLNPNet = net
        self.config: CLNPConfig = self.config  # type: ignore[assignment]
        self.reports: list[TaskReport] = []
        self.on_epoch = on_epoch
        if not hasattr(net, "blocks") and self.config.sparsity == "weights":  # a traced graph: unit sets
            raise ValueError("sparsity='weights' penalises the incoming weights of a stack's layers; a traced "
                             "graph network takes sparsity='activations' (the default)")
        self.l1 = per_layer(self.config.l1, net.n_layers)
        self.initial_widths = net.widths
        self._phase: _Phase | None = None
        self._activity: list[Tensor] = []
        self._grown: list[int] = []

    # -------------------------------------------------------------------------------- public
    def learn(self, task: Task) -> TaskReport:
        """Learn ``task`` on the free units; afterwards its units are frozen for ever."""
        return super().learn(task)

    def n_learned(self) -> int:
        return self.net.n_tasks

    def before_learning(self, task: Task) -> None:
        """Growth (``grow``) and the capacity check, before the task's seed is set."""
        self._grown = self._grow() if self.config.grow else [0] * self.net.n_layers
        self._check_capacity()

    def _report(self, task: Task, task_id: int, outcome: TaskReport, started: float) -> TaskReport:
        outcome.grown = self._grown
        return outcome

    @torch.no_grad()
    def predict(self, x: Tensor, task_id: int) -> Tensor:
        """Class predictions of task ``task_id`` (evaluation mode)."""
        self.check_eval_inputs(task_id, x)
        with self._precision():
            return predict_with_loss(self.net, task_id, x, batch_size=self.config.eval_batch_size)[0]

    def _precision(self) -> contextlib.AbstractContextManager:
        """Autocast in the run's precision: evaluation computes exactly as training did."""
        return autocast(self.config.precision, self.device)

    def capacity(self) -> list[dict]:
        """Per prunable layer: units, and per task the units owned, free after and reused, the plan's budget, the
        units kept over it, the validation accuracy (points) the search gave up in that layer and the units the task
        began training on."""
        rows = []
        for i, name in enumerate(self.net.layer_names):
            rows.append({
                "layer": name,
                "units": self.net.widths[i],
                "owned_by_task": [r.owned[i] for r in self.reports],
                "free_after_task": [r.free_after[i] for r in self.reports],
                "reused_by_task": [r.reused[i] for r in self.reports],
                "grown_by_task": [r.grown[i] if r.grown else 0 for r in self.reports],
                "budget_by_task": [None if r.budget is None else r.budget[i] for r in self.reports],
                "over_budget_by_task": [r.over_budget[i] if r.over_budget else 0 for r in self.reports],
                "given_up_by_task": [r.given_up[i] if r.given_up else 0.0 for r in self.reports],
                "trained_by_task": [r.trained[i] if r.trained else None for r in self.reports],
            })
        return rows

    def capacity_forecast(self) -> list[dict]:
        """After each task so far: per layer the free units, the units per task so far and the further tasks
        that fit at that rate, and the layer that fills first (:func:`clnp.core.capacity.forecast`)."""
        names = self.net.layer_names
        return [forecast([r.owned for r in self.reports[:t + 1]], self.reports[t].free_after, names)
                for t in range(len(self.reports))]

    def width_advice(self, remaining: int, model: str | None = None) -> str:
        """What the forecast says each layer's width should be for ``remaining`` more tasks (for an error);
        with the run's ``model`` spec, the spec to run with instead."""
        if not self.reports:
            return ""
        latest = forecast([r.owned for r in self.reports], self.reports[-1].free_after,
                          self.net.layer_names)["layers"]
        widths = [width_for(w, row["free"], row["units_per_task"], remaining)
                  for w, row in zip(self.net.widths, latest, strict=True)]
        spec = ",".join(str(w) for w in widths)
        rates = ", ".join(f"{row['units_per_task']:.0f}" for row in latest)
        tasks = f"{remaining} remaining task{'s' if remaining != 1 else ''}"
        if model and model.partition(":")[0] in ("mlp", "cnn"):
            instead = f"--model {spec_with_widths(model, widths)}"
        elif model:  # a built-in graph model: its widths follow one argument
            instead = f"a wider --model than {model}"
        else:
            instead = f"e.g. --model mlp:{spec} for an MLP"
        return (f"At the rate of the tasks so far ({rates} units per task and layer), the {tasks} need "
                f"widths {spec} ({instead}), or run with --grow.")

    def check_eval_inputs(self, task_id: int, x: Tensor, y: Tensor | None = None) -> None:
        """Refuse an unknown task, inputs of the wrong shape or not finite, labels that do not fit."""
        self.net.check_input(x, task_id)
        if not torch.isfinite(x).all():  # check_input refused any input that is not floating point
            raise ValueError(f"task {task_id}: inputs must be finite floating-point values (no NaN or inf)")
        if y is None:
            return
        check_some_inputs(task_id, x)
        n_classes = self.net.heads[task_id].n_units
        if y.dim() != 1 or y.shape[0] != x.shape[0] or torch.is_floating_point(y) or y.dtype == torch.bool:
            raise ValueError(f"task {task_id}: expected {x.shape[0]} integer labels (shape [{x.shape[0]}]), "
                             f"got shape {tuple(y.shape)} of {y.dtype}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
            raise ValueError(f"task {task_id}: labels range over {int(y.min())}..{int(y.max())}; "
                             f"expected 0..{n_classes - 1}")


__all__ = ["CLNP"]
