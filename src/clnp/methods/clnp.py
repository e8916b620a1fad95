"""The CLNP method: learn tasks one after another on one network, with zero forgetting.

``CLNP.learn(task)`` runs the method's cycle on the free units of the network: re-initialise them,
train with cross-entropy plus the L1 activity penalty, measure activity on the validation split,
choose the pruning under the graceful-forgetting margin, fine-tune the kept units with the pruned
ones silenced, and freeze the kept units as the task's own (cutting their interference weights).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.activity import ACTIVITY_MEASURES, SearchCache, accuracy, predict_with_loss, unit_activity
from ..core.capacity import SHARES, forecast, tasks_to_plan_for, unit_budget, units_to_train, width_for
from ..core.network import CLNPNet, spec_with_widths
from ..core.partition import FREE, expand_owner, live_units
from ..core.pruning import FREE_SHARE, Score, choose_pruning
from ..core.sparsity import l1_activity_penalty, l1_unit_weights, l1_weight_penalty, per_layer
from ..data.tasks import Task
from . import distributed
from .config import ConfigTypeError, TrainConfig, check_field_types, check_some_inputs, is_number
from .devices import autocast, place
from .loop import EpochCallback, LoopHooks, fit


class CapacityError(RuntimeError):
    """A layer has no free unit left for a new task."""


class TrainingFailedError(FloatingPointError):
    """A task's network trained to about chance (or diverged): it is not pruned or frozen.

    A ``FloatingPointError`` like a diverged loss, so callers that stop a run on one stop on both.
    """


LOSS_GAIN = 0.05
"""A dense network whose validation loss is within this fraction of the class prior's entropy learned nothing."""

RESOLVED_INPUTS = 10
"""Accuracy alone judges the pruning search where the margin is worth at least this many validation inputs;
below, the search also holds agreement with the dense network and the true-class confidence. Measured: at
1.2 inputs (split-fashion-mnist, margin 0.1) the finer measures lift ACC from 99.31 to 99.34 %; at 15
(permuted-fashion-mnist, margin 0.25) they keep more units per task and cost the last tasks accuracy."""

SEARCH_INPUTS = 1000
"""Where it holds the finer measures, the search compares predictions with the dense network's on at least
this many inputs (the validation inputs, then training inputs)."""

SPARSITY_TARGETS = ("activations", "weights")
"""Where :attr:`CLNPConfig.sparsity` may put the L1 penalty."""

GROW_LOOKBACK = 2
"""With ``grow``: the coming task is expected to keep as many units as the most of the last this many tasks."""



@dataclass
class CLNPConfig(TrainConfig):
    """CLNP's settings: the training settings every method reads, plus the method's own.

    The own ones are the L1 coefficient on hidden activations, the graceful-forgetting margin and
    the activity measure; ``finetune_epochs`` (retraining after pruning) is a training setting,
    shared with PackNet.
    """

    l1: float | tuple[float, ...] = 3e-3
    """L1 coefficient on mean absolute activation: one value for all layers, or one per layer. The penalty is a sum
    over units (each unit feels the same pull at any width and fill), so one default serves every benchmark
    (``bench/l1_sweep.py``, bench/RESULTS.md "One L1 coefficient")."""
    margin: float = 1.0
    """Graceful-forgetting margin: the validation accuracy (in points) the pruning may cost."""
    plan: bool = True
    """Plan capacity over the stream: before each task, give every layer a unit budget (an equal share of its free
    units among the tasks still to come, ``expected_tasks``, or open-ended, and one task's share in reserve); the
    task trains on a few times its budget of free units; the search first prunes what costs next to nothing and
    spends the margin only where a layer is over its budget (docs/design.md, "Capacity is a budget"). False: the
    greedy search of the paper, which spends the whole margin on every task, trained on every free unit."""
    share: str = "equal"
    """How the plan divides a layer's free units among the tasks still to come: ``equal`` shares, or ``declining``
    (about twice the equal share for the coming task, falling linearly to the last: for streams whose later tasks
    reuse old units); :func:`clnp.core.capacity.allotments`, measured in bench/RESULTS.md ("The capacity plan")."""
    sparsity: str = "activations"
    """Where the L1 penalty goes: ``activations`` (each unit's mean absolute activation, clnp's reading of the paper)
    or ``weights`` (each unit's mean absolute incoming weight and bias, as the re-implementation of CLNP that NISPA
    compares with); both per unit, so ``l1`` means about the same for both."""
    activity: str = "mean_abs"
    """Unit activity measure, the order in which the search prunes: one of
    :data:`~clnp.core.activity.ACTIVITY_MEASURES` (``mean_abs``, ``firing_rate``, ``contribution``)."""
    min_gain: float = 0.1
    """How far from chance (the most frequent class) towards 100 % the dense network's validation accuracy
    must get before its task is pruned and frozen, as a fraction; otherwise :class:`TrainingFailedError`.
    0 turns the check off (for data that is not meant to be learnable, as in tests)."""
    grow: bool = False
    """Before each task, add free units to a layer that has fewer than the task is expected to need (the most
    any of the last :data:`GROW_LOOKBACK` tasks kept there, at least ``grow_min``), up to ``max_growth``
    times its initial width; earlier tasks' outputs stay bit-identical (:meth:`CLNPNet.grow_`)."""
    grow_min: int = 1
    """With ``grow``: the fewest free units every layer must have before a task."""
    max_growth: float = 4.0
    """With ``grow``: a layer grows to at most this many times its initial width; beyond, ``CapacityError``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_field_types(self, {"margin": "number", "activity": "str", "sparsity": "str", "share": "str",
                                 "min_gain": "number", "grow": "bool", "plan": "bool", "grow_min": "int",
                                 "max_growth": "number"})
        if self.grow_min < 1:
            raise ValueError(f"grow_min must be >= 1 unit, got {self.grow_min}")
        if not 1.0 <= self.max_growth < math.inf:
            raise ValueError(f"max_growth must be >= 1 (times the initial width) and finite, got {self.max_growth}")
        if not 0 <= self.min_gain <= 1:
            raise ValueError(f"min_gain must lie in [0, 1], got {self.min_gain}")
        l1 = self.l1
        if not (is_number(l1) or (isinstance(l1, (list, tuple)) and l1 and all(is_number(v) for v in l1))):
            raise ConfigTypeError(f"CLNPConfig.l1 must be a number or a list of numbers (one per layer), got {l1!r}")
        if not 0 <= self.margin < math.inf:
            raise ValueError(f"margin must be >= 0 accuracy points and finite, got {self.margin}")
        if any(not 0 <= v < math.inf for v in ((self.l1,) if is_number(self.l1) else self.l1)):
            raise ValueError(f"l1 coefficients must be >= 0 and finite, got {self.l1}")
        if self.share not in SHARES:
            raise ValueError(f"share must be one of {', '.join(map(repr, SHARES))}, got {self.share!r}")
        if self.sparsity not in SPARSITY_TARGETS:
            raise ValueError(f"sparsity must be one of {', '.join(map(repr, SPARSITY_TARGETS))}, got {self.sparsity!r}")
        if self.activity not in ACTIVITY_MEASURES:
            raise ValueError(f"activity must be one of {', '.join(map(repr, ACTIVITY_MEASURES))}, "
                             f"got {self.activity!r}")


@dataclass
class TaskReport:
    """What learning one task did: accuracies, units per layer, timings."""

    task: int
    name: str
    val_accuracy_dense: float
    """Validation accuracy after training, before pruning."""
    val_accuracy_pruned: float
    """After pruning, before fine-tuning (within the margin of the dense one)."""
    val_accuracy_final: float
    """After fine-tuning and freezing."""
    pruned: list[int]
    owned: list[int]
    free_after: list[int]
    reused: list[int]
    thresholds: list[float]
    seconds: dict[str, float]
    epoch_log: list[dict] = field(default_factory=list)
    grown: list[int] = field(default_factory=list)
    """Units added to each layer before the task (``grow``); empty or zeros without growth."""
    budget: list[int] | None = None
    """The plan's per-layer budget: the most new units the task could keep without spending the margin on it
    (None: greedy search, ``plan=False``)."""
    over_budget: list[int] = field(default_factory=list)
    """Per layer, units kept beyond the budget because pruning them would cost more than the margin."""
    given_up: list[float] = field(default_factory=list)
    """Per layer, validation accuracy (points) the search gave up to prune that layer's units."""
    val_accuracy_lossless: float | None = None
    """After the pruning that cost nothing (with a plan); the margin is spent below it only for the budget."""

    def to_dict(self) -> dict:
        return asdict(self)


__all__ = ["CLNP", "CLNPConfig", "CapacityError", "ConfigTypeError", "TaskReport", "TrainingFailedError"]


class CLNP(LoopHooks):
    """Continual learning via neural pruning on a :class:`~clnp.network.CLNPNet`.

    Example::

        net = clnp.mlp(64, (256, 256))
        learner = clnp.CLNP(net, clnp.CLNPConfig(epochs=20, margin=1.0))
        for task in clnp.split_digits():
            learner.learn(task)
        learner.accuracy(0, x, y)   # task 0 exactly as it was right after it was learned
    """

    def __init__(self, net: CLNPNet, config: CLNPConfig | None = None,
                 on_epoch: EpochCallback | None = None) -> None:
        self.net = net
        self.config = config or CLNPConfig()
        self.device = place(net, self.config.device)
        self.reports: list[TaskReport] = []
        self.on_epoch = on_epoch
        self.l1 = per_layer(self.config.l1, len(net.blocks))
        self.initial_widths = net.widths
        self._phase: _Phase | None = None
        self._activity: list[Tensor] = []

    # -------------------------------------------------------------------------------- public
    def learn(self, task: Task) -> TaskReport:
        """Learn ``task`` on the free units; afterwards its units are frozen for ever."""
        task.validate(self.net.input_shape)
        grown = self._grow() if self.config.grow else [0] * len(self.net.blocks)
        self._check_capacity()
        task_id = self.net.n_tasks
        seed = self.config.seed * 1_000_003 + task_id
        was_training = self.net.training
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                generator = torch.Generator().manual_seed(seed)
                report = self._learn(task, task_id, generator)
                report.grown = grown
                return report
        except BaseException:
            self._rollback(task_id)
            raise
        finally:
            self.net.train(was_training)  # the network leaves in the mode it came in

    def accuracy(self, task_id: int, x: Tensor, y: Tensor) -> float:
        """Test accuracy (a fraction) of an already learned task."""
        self._check_eval_inputs(task_id, x, y)
        with self._precision():
            return accuracy(self.net, task_id, x, y.cpu(), batch_size=self.config.eval_batch_size)

    @torch.no_grad()
    def predict(self, x: Tensor, task_id: int) -> Tensor:
        """Class predictions of task ``task_id`` (evaluation mode)."""
        self._check_eval_inputs(task_id, x)
        with self._precision():
            return predict_with_loss(self.net, task_id, x, batch_size=self.config.eval_batch_size)[0]

    def _precision(self) -> contextlib.AbstractContextManager:
        """Autocast in the run's precision: evaluation computes exactly as training did."""
        return autocast(self.config.precision, self.device)

    def capacity(self) -> list[dict]:
        """Per prunable layer: units, and per task the units owned, free after and reused, the plan's budget, the
        units kept over it and the validation accuracy (points) the search gave up in that layer."""
        rows = []
        for i, name in enumerate(self.net.layer_names):
            rows.append({
                "layer": name,
                "units": self.net.blocks[i].layer.n_units,
                "owned_by_task": [r.owned[i] for r in self.reports],
                "free_after_task": [r.free_after[i] for r in self.reports],
                "reused_by_task": [r.reused[i] for r in self.reports],
                "grown_by_task": [r.grown[i] if r.grown else 0 for r in self.reports],
                "budget_by_task": [None if r.budget is None else r.budget[i] for r in self.reports],
                "over_budget_by_task": [r.over_budget[i] if r.over_budget else 0 for r in self.reports],
                "given_up_by_task": [r.given_up[i] if r.given_up else 0.0 for r in self.reports],
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
        instead = f"--model {spec_with_widths(model, widths)}" if model else f"e.g. --model mlp:{spec} for an MLP"
        return (f"At the rate of the tasks so far ({rates} units per task and layer), the {tasks} need "
                f"widths {spec} ({instead}), or run with --grow.")

    def learner_state(self) -> tuple[dict[str, Tensor], dict]:
        """Everything learned so far, as data: the network's tensors and JSON-able metadata.

        Valid between tasks (the network is consolidated then); see :mod:`clnp.checkpoint`.
        """
        tensors = {name: t.detach().clone() for name, t in self.net.state_dict().items()}
        meta = {"heads": [head.out_features for head in self.net.heads],
                "reports": [r.to_dict() for r in self.reports]}
        return tensors, meta

    def load_learner_state(self, tensors: Mapping[str, Tensor], meta: dict) -> None:
        """Restore :meth:`learner_state` into this learner, freshly built with the same model and config."""
        if self.net.n_tasks:
            raise RuntimeError("load_learner_state needs a fresh learner; this one has already learned tasks")
        for n_classes in meta["heads"]:
            self.net.add_head(int(n_classes))
        self.net.load_state_dict(dict(tensors), strict=True)  # the load hook re-derives every mask
        self.reports = [TaskReport(**r) for r in meta["reports"]]

    # ------------------------------------------------------------------------------ internals
    def _check_eval_inputs(self, task_id: int, x: Tensor, y: Tensor | None = None) -> None:
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

    @torch.no_grad()
    def _rollback(self, task_id: int) -> None:
        """Undo a task that failed part-way: drop its head and give back any units it took.

        Earlier tasks never changed (their units are frozen). The free units are zeroed, so nothing
        the failed task left in them (an overflow, say) lingers; the next task re-initialises them.
        Afterwards the learner can learn the next task as if nothing had happened.
        """
        net = self.net
        if net.n_tasks <= task_id:
            return
        net.consolidate_()  # frozen rows and statistics back to their frozen values
        for owner in net.owners:
            owner[owner >= task_id] = FREE
        while net.n_tasks > task_id:
            del net.heads[net.n_tasks - 1]
        net.clear_free_units_()
        del self.reports[task_id:]

    def _expected_need(self) -> list[int]:
        """Per layer, the units the coming task is expected to keep: the most of the last tasks', at least
        ``grow_min``."""
        recent = self.reports[-GROW_LOOKBACK:]
        return [max([self.config.grow_min, *(r.owned[i] for r in recent)]) for i in range(len(self.net.blocks))]

    def _grow(self) -> list[int]:
        """Add free units where fewer are left than the coming task is expected to need (within the cap)."""
        grown = []
        for i, (need, free) in enumerate(zip(self._expected_need(), self.net.free_units(), strict=True)):
            cap = int(self.config.max_growth * self.initial_widths[i])
            k = min(need - free, cap - self.net.widths[i])
            if k > 0:
                self.net.grow_(i, k)
            grown.append(max(0, k))
        return grown

    def _check_capacity(self) -> None:
        for i, (name, free) in enumerate(zip(self.net.layer_names, self.net.free_units(), strict=True)):
            if free == 0:
                recent = self.reports[-GROW_LOOKBACK:]
                needed = ", ".join(str(r.owned[i]) for r in recent)
                growth = (f" It has grown to {self.net.widths[i]} units, the cap of max_growth="
                          f"{self.config.max_growth:g} times its initial {self.initial_widths[i]}."
                          if self.config.grow else "")
                raise CapacityError(
                    f"layer {name} has no free unit left for task {self.net.n_tasks}: every unit belongs "
                    f"to an earlier task (the last tasks kept {needed} units there).{growth} Use a wider layer, "
                    "growth (--grow, CLNPConfig(grow=True)), or a larger margin (or a stronger L1 penalty) "
                    "so that each task keeps fewer units."
                )

    def _learn(self, task: Task, task_id: int, generator: torch.Generator) -> TaskReport:
        cfg = self.config
        net = self.net
        tasks_left = tasks_to_plan_for(cfg.expected_tasks, task_id)
        budget = unit_budget(net.free_units(), tasks_left, cfg.share) if cfg.plan else None
        trained = None if budget is None else units_to_train(net.owners, budget, tasks_left, cfg.share)
        net.reset_free_units_()
        if trained is not None:
            self._silence_untrained(trained)
        net.add_head(task.n_classes)
        seconds: dict[str, float] = {}
        log: list[dict] = []

        t0 = time.perf_counter()
        train_keep = None if trained is None else [t | (o != FREE) for t, o in zip(trained, net.owners, strict=True)]
        self._train(task, task_id, cfg.epochs, "train", generator, keep=train_keep, l1=True, log=log)
        seconds["train"] = time.perf_counter() - t0
        with self._precision():
            self._check_trained(task, task_id)

            t0 = time.perf_counter()
            activity = unit_activity(net, task_id, task.val.x, cfg.activity, cfg.eval_batch_size)
            seconds["activity"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            # With a plan, most pruning happens within the free loss, a tenth of the margin: whether accuracy
            # resolves that decides whether the finer measures are held.
            probe = self._search_inputs(task, FREE_SHARE * cfg.margin if cfg.plan else cfg.margin)
            reference = None if probe is None else predict_with_loss(net, task_id, probe,
                                                                     batch_size=cfg.eval_batch_size)[0]
            cache = self._search_cache(task_id, task.val.x if probe is None else probe, task.val.y)
            decision = choose_pruning(net, task_id, activity,
                                      lambda keep, cut: self._score(task, task_id, keep, cut, probe, reference,
                                                                    cache),
                                      cfg.margin, weighted=cfg.activity == "contribution", budget=budget,
                                      trained=trained, fine_at_margin=not self._resolves(task, cfg.margin))
            # Every rank searched the same validation set; rank 0's masks are the partition, on all.
            distributed.agree_tensors_([*decision.keep, *decision.reuse_cut])
        seconds["search"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        reuse_cut = self._reuse_cut_masks(task_id, decision.reuse_cut)
        with torch.no_grad():
            for weight, mask in reuse_cut:
                weight.masked_fill_(mask, 0.0)  # the old features the task does without: cut for good
        if cfg.finetune_epochs:
            snapshot = copy.deepcopy(net.state_dict(keep_vars=False))
            self._train(task, task_id, cfg.finetune_epochs, "finetune", generator, keep=decision.keep,
                        l1=False, log=log, reuse_cut=reuse_cut)
            with self._precision():
                tuned = accuracy(net, task_id, task.val.x, task.val.y, decision.keep, cfg.eval_batch_size)
            if distributed.agree(tuned < decision.val_accuracy_after):
                # Fine-tuning lost accuracy: return to the pruned network, which met the margin.
                with torch.no_grad():
                    for name, value in net.state_dict(keep_vars=True).items():
                        value.copy_(snapshot[name])
        seconds["finetune"] = time.perf_counter() - t0

        net.zero_grad(set_to_none=True)
        net.assign_units_(task_id, decision.keep)
        with self._precision():
            final = accuracy(net, task_id, task.val.x, task.val.y, batch_size=cfg.eval_batch_size)
        owners = net.owners
        report = TaskReport(
            task=task_id, name=task.name,
            val_accuracy_dense=decision.val_accuracy_before,
            val_accuracy_pruned=decision.val_accuracy_after,
            val_accuracy_final=final,
            pruned=decision.pruned,
            owned=[int((o == task_id).sum()) for o in owners],
            free_after=[int((o == FREE).sum()) for o in owners],
            reused=self._reused(task_id),
            thresholds=decision.thresholds,
            seconds=seconds,
            epoch_log=log,
            budget=decision.budget,
            over_budget=decision.over_budget,
            given_up=decision.given_up,
            val_accuracy_lossless=decision.val_accuracy_lossless,
        )
        self.reports.append(report)
        return report

    @torch.no_grad()
    def _silence_untrained(self, trained: Sequence[Tensor]) -> None:
        """Zero the incoming weights and biases of the free units the task does not train (the plan keeps them for
        later tasks): they compute 0, so neither the activity measure nor the search sees random features."""
        for block, chosen in zip(self.net.blocks, trained, strict=True):
            layer = block.layer
            rows = (layer.owner == FREE) & ~chosen.to(layer.owner.device)
            layer.weight[rows] = 0.0
            if layer.bias is not None:
                layer.bias[rows] = 0.0

    def _reuse_cut_masks(self, task_id: int, cut: Sequence[Tensor]) -> list[tuple[Tensor, Tensor]]:
        """(weight, mask) pairs: the connections from the old units ``cut`` into the task's units or head."""
        net = self.net
        pairs = []
        for i, c in enumerate(cut):
            if not c.any():
                continue
            if i + 1 < len(net.blocks):
                consumer = net.blocks[i + 1].layer
                rows = consumer.train_rows
            else:
                consumer = net.heads[task_id]
                rows = torch.ones(consumer.n_units, dtype=torch.bool, device=c.device)
            cols = expand_owner(c.long(), consumer.weight.shape[1]).bool()
            mask = rows[:, None] & cols[None, :]
            pairs.append((consumer.weight, mask.view(*mask.shape, *([1] * (consumer.weight.dim() - 2)))
                          .expand_as(consumer.weight)))
        return pairs

    @staticmethod
    def _resolves(task: Task, margin: float) -> bool:
        """Whether validation accuracy alone resolves ``margin``: it is worth :data:`RESOLVED_INPUTS` inputs."""
        return margin / 100.0 * len(task.val) >= RESOLVED_INPUTS

    @staticmethod
    def _search_inputs(task: Task, margin: float) -> Tensor | None:
        """Where accuracy cannot resolve the ``margin`` (it is worth fewer than :data:`RESOLVED_INPUTS`
        validation inputs), the inputs on which the search also compares predictions with the dense
        network's (no labels needed): the validation inputs, then evenly spaced training inputs up to
        :data:`SEARCH_INPUTS`. None where accuracy alone resolves the margin. The training inputs are read
        untransformed (``take``), like the validation inputs: the probe stands for the data the task is judged
        on, not for its augmentation, and a bounded sample keeps a dataset-backed split out of memory."""
        if CLNP._resolves(task, margin):
            return None
        extra = min(len(task.train), SEARCH_INPUTS - len(task.val))
        if extra <= 0:
            return task.val.x
        index = torch.linspace(0, len(task.train) - 1, extra).round().long()
        return torch.cat([task.val.x, task.train.take(index)])

    @torch.no_grad()
    def _score(self, task: Task, task_id: int, keep: list[Tensor], cut: list[Tensor] | None, probe: Tensor | None,
               reference: Tensor | None, cache: SearchCache | None = None) -> Score:
        """Validation accuracy; with a ``probe`` (where accuracy cannot resolve the margin), agreement with the
        dense network's predictions on it and the mean true-class probability. Units ``~keep`` are silenced
        and the old units ``cut`` disconnected from the task."""
        pairs = self._reuse_cut_masks(task_id, cut) if cut is not None else []
        saved = [weight.detach().clone() for weight, _ in pairs]
        n_val = len(task.val)
        try:
            for weight, mask in pairs:
                weight.masked_fill_(mask, 0.0)
            predicted, confidence = self._predict_shared(task_id, task.val.x if probe is None else probe,
                                                         task.val.y, keep, cache, cut)
        finally:
            for (weight, _), value in zip(pairs, saved, strict=True):
                weight.copy_(value)
        acc = float((predicted[:n_val] == task.val.y).sum()) / n_val
        agreement = 1.0 if reference is None else float((predicted == reference).sum()) / reference.numel()
        return Score(acc, agreement, None if reference is None else confidence)

    @staticmethod
    def _shares(n_inputs: int, n_labelled: int) -> tuple[slice, slice]:
        """This rank's rows of ``n_inputs`` search inputs, and those of them among the first ``n_labelled``."""
        rows = distributed.shard(n_inputs)
        return rows, slice(rows.start, max(rows.start, min(rows.stop, n_labelled)))

    def _search_cache(self, task_id: int, inputs: Tensor, labels: Tensor) -> SearchCache:
        """A :class:`SearchCache` of this rank's share of the search's inputs, batched as :meth:`_predict_shared`
        batches them."""
        rows, labelled = self._shares(inputs.shape[0], labels.shape[0])
        parts = [(inputs[labelled], labels[labelled])]
        if labelled.stop < rows.stop:
            parts.append((inputs[labelled.stop:rows.stop], None))
        return SearchCache(self.net, task_id, parts, self.config.eval_batch_size)

    def _predict_shared(self, task_id: int, inputs: Tensor, labels: Tensor | None,
                        keep: Sequence[Tensor] | None, cache: SearchCache | None = None,
                        cut: Sequence[Tensor] | None = None) -> tuple[Tensor, float]:
        """Predictions for every one of ``inputs`` and the mean probability of the true class over the
        first ``len(labels)`` of them (the labelled ones; 0.0 without labels). Under torchrun each rank
        predicts its share of the inputs and every rank gets them all, so the ranks judge alike at a
        fraction of the cost. With a ``cache`` of this rank's share (the search), only the layers from the
        first one that ``keep`` or the reuse ``cut`` changed since its last call are computed."""
        n_labelled = 0 if labels is None else labels.shape[0]
        rows, labelled = self._shares(inputs.shape[0], n_labelled)
        batch = self.config.eval_batch_size
        predicted, confidence = torch.zeros(0, dtype=torch.long), 0.0
        if cache is not None and keep is not None:
            predicted, total = cache.predict(keep, cut)
            confidence = total / max(1, labelled.stop - labelled.start)
        elif labels is not None:
            predicted, _, confidence = predict_with_loss(self.net, task_id, inputs[labelled], labels[labelled],
                                                         keep, batch)
        if cache is None and labelled.stop < rows.stop:
            more, _, _ = predict_with_loss(self.net, task_id, inputs[labelled.stop:rows.stop], None, keep, batch)
            predicted = torch.cat([predicted, more])
        if distributed.is_distributed():
            predicted = distributed.gather_rows(predicted, inputs.shape[0], self.device)
            if labels is not None:
                share = torch.tensor(confidence * (labelled.stop - labelled.start), dtype=torch.float64,
                                     device=self.device)
                confidence = float(distributed.sum_scalar(share)) / max(1, n_labelled)
        return predicted, confidence

    def _check_trained(self, task: Task, task_id: int) -> None:
        """Refuse to prune and freeze a task whose dense network learned nothing.

        Nothing learned: validation accuracy about chance (below ``min_gain`` of the way from the most
        frequent class to 100 %) *and* a validation loss no better than predicting the class frequencies
        (within 5 % of their entropy). The loss tells a collapsed network (L1 too strong: 2.305 against
        an entropy of 2.292 on permuted digits) from one that is merely young (2 epochs on split-digits:
        accuracy at chance, but loss 0.62 against 0.69), which goes on to learn.
        """
        if self.config.min_gain <= 0:
            return
        predicted, loss, _ = predict_with_loss(self.net, task_id, task.val.x, task.val.y,
                                               batch_size=self.config.eval_batch_size)
        acc = float((predicted == task.val.y).sum()) / len(task.val)
        acc, loss = distributed.agree((acc, loss))  # every rank raises, or none
        prior = torch.bincount(task.val.y, minlength=task.n_classes).double() / len(task.val)
        chance = float(prior.max())
        entropy = float(-(prior[prior > 0] * prior[prior > 0].log()).sum())
        if acc < chance + self.config.min_gain * (1.0 - chance) and loss >= (1 - LOSS_GAIN) * entropy:
            raise TrainingFailedError(
                f"task {task_id} ({task.name}): after training, validation accuracy is {100 * acc:.1f} %, about "
                f"chance ({100 * chance:.1f} %, the most frequent class), and the loss {loss:.3f} no better than "
                f"guessing the class frequencies ({entropy:.3f}): nothing was learned, so nothing is frozen. "
                f"Likely causes: an L1 penalty too strong for this network (l1={self.config.l1}; try a tenth of "
                f"it) or a learning rate too high or too low (lr={self.config.lr})")

    def _train(self, task: Task, task_id: int, epochs: int, phase: str, generator: torch.Generator,
               keep: Sequence[Tensor] | None, l1: bool, log: list[dict],
               reuse_cut: Sequence[tuple[Tensor, Tensor]] = ()) -> None:
        """One phase (``train`` with the L1 penalty, or ``finetune`` with ``keep``) through the one loop.

        ``reuse_cut``: (weight, mask) pairs held at zero after every step (old features the task does without).
        """
        net = self.net
        trainable = [block.layer.train_rows for block in net.blocks]
        self._phase = _Phase(task=task, keep=keep, l1=l1, trainable=trainable,
                             nonnegative=net.nonnegative_activity(),
                             l1_weights=l1_unit_weights(self.l1, trainable)
                             if l1 and self.config.sparsity == "activations" else None,
                             reuse_cut=list(reuse_cut))
        try:
            log += fit(self, net, net.trainable_parameters(task_id), task.train, self.config,
                       generator, epochs=epochs, head=task_id, task=task_id, phase=phase,
                       label=f"task {task_id} ({task.name})", on_epoch=self.on_epoch)
        finally:
            self._phase = None

    # ------------------------------------------------------------------- hooks of the one loop
    divergence_hint = "lower the learning rate or the L1 coefficient"

    def batch_loss(self, batch: tuple[Tensor, ...], head: int, step: int, n_steps: int) -> Tensor:
        phase = self._phase
        assert phase is not None
        xb, yb = batch
        weights = phase.l1_weights
        if weights is not None and self.loss_scale is not None:  # fp16: the L1 gradient is scaled as the loss is
            weights = [None if w is None else w * self.loss_scale for w in weights]
        logits, self._activity = self.net.forward_with_activity(xb, head, phase.keep, weights)
        return F.cross_entropy(logits, yb)

    def extra_loss(self, head: int) -> Tensor | None:
        """The L1 penalty: on activations its value only (its gradient is added in place by the trunk's backward
        pass); on weights the differentiable term."""
        phase = self._phase
        assert phase is not None
        acts, self._activity = self._activity, []
        if not phase.l1:
            return None
        if self.config.sparsity == "weights":  # differentiable: the loop back-propagates it
            layers = [block.layer for block in self.net.blocks]
            return l1_weight_penalty([layer.weight for layer in layers], self.l1, phase.trainable,
                                     [layer.bias for layer in layers])
        with torch.no_grad():
            return l1_activity_penalty(acts, self.l1, phase.trainable, phase.nonnegative)

    def after_step(self, head: int) -> None:
        self.net.restore_frozen_()  # weight decay moves frozen rows too: put them back
        phase = self._phase
        if phase is not None:
            for weight, mask in phase.reuse_cut:
                weight.detach().masked_fill_(mask, 0.0)

    def validate(self, head: int) -> float:
        phase = self._phase
        assert phase is not None
        val = phase.task.val
        with self._precision():
            predicted, _ = self._predict_shared(head, val.x, None, phase.keep)
        return float((predicted == val.y).sum()) / max(1, len(val))

    @torch.no_grad()
    def _reused(self, task_id: int) -> list[int]:
        """Per layer: old units the task's logits depend on, directly or through other reused units."""
        used = self.net.units_used_by(task_id)
        return [int((u & live_units(o, task_id - 1)).sum()) for u, o in zip(used, self.net.owners, strict=True)]

@dataclass
class _Phase:
    """What the loop's hooks need to know about the phase being trained."""

    task: Task
    keep: Sequence[Tensor] | None
    l1: bool
    trainable: list[Tensor]
    nonnegative: list[bool]
    l1_weights: list[Tensor | None] | None
    reuse_cut: list[tuple[Tensor, Tensor]] = field(default_factory=list)
