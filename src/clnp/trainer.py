"""The continual trainer: learn tasks one after another on one network, with zero forgetting.

``CLNP.learn(task)`` runs the method's cycle on the free units of the network: re-initialise them,
train with cross-entropy plus the L1 activity penalty, measure activity on the validation split,
choose the pruning under the graceful-forgetting margin, fine-tune the kept units with the pruned
ones silenced, and freeze the kept units as the task's own (cutting their interference weights).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from .network import CLNPNet
from .partition import FREE, expand_owner
from .pruning import accuracy, choose_pruning, unit_activity
from .sparsity import l1_activity_penalty, l1_unit_weights, per_layer
from .tasks import Split, Task


class CapacityError(RuntimeError):
    """A layer has no free unit left for a new task."""


class ConfigTypeError(ValueError, TypeError):
    """A configuration value of the wrong type (a ``ValueError`` too, so callers refuse it as bad input)."""


@dataclass
class CLNPConfig:
    """Hyper-parameters of CLNP (constructor state; learned state lives in the network)."""

    epochs: int = 20
    """Training epochs per task, before pruning."""
    finetune_epochs: int = 3
    """Epochs of fine-tuning the kept units after pruning (0 turns it off)."""
    batch_size: int = 64
    optimizer: str = "adam"
    """``adam`` or ``sgd``; a fresh one is made for every task and phase."""
    lr: float = 1e-3
    momentum: float = 0.9
    """SGD momentum (ignored by Adam)."""
    weight_decay: float = 0.0
    l1: float | tuple[float, ...] = 1e-3
    """L1 coefficient on mean absolute activation: one value for all layers, or one per layer."""
    margin: float = 1.0
    """Graceful-forgetting margin: the validation accuracy (in points) the pruning may cost."""
    activity: str = "mean_abs"
    """Unit activity measure: ``mean_abs`` or ``firing_rate``."""
    seed: int = 0
    eval_batch_size: int = 1024
    progress: bool = False
    """Show a progress bar over epochs."""

    def __post_init__(self) -> None:
        _check_types(self)
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.finetune_epochs < 0:
            raise ValueError(f"finetune_epochs must be >= 0, got {self.finetune_epochs}")
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0 accuracy points, got {self.margin}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        for name in ("weight_decay", "momentum"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if any(v < 0 for v in ((self.l1,) if isinstance(self.l1, (int, float)) else self.l1)):
            raise ValueError(f"l1 coefficients must be >= 0, got {self.l1}")
        if self.activity not in ("mean_abs", "firing_rate"):
            raise ValueError(f"activity must be 'mean_abs' or 'firing_rate', got {self.activity!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_types(config: CLNPConfig) -> None:
    """Refuse a value of the wrong type (``ConfigTypeError`` naming the field) before it fails deep in training."""
    expected = {
        "epochs": "int", "finetune_epochs": "int", "batch_size": "int", "seed": "int", "eval_batch_size": "int",
        "lr": "number", "momentum": "number", "weight_decay": "number", "margin": "number",
        "optimizer": "str", "activity": "str", "progress": "bool",
    }
    for name, kind in expected.items():
        value = getattr(config, name)
        ok = {"int": isinstance(value, int) and not isinstance(value, bool), "number": _is_number(value),
              "str": isinstance(value, str), "bool": isinstance(value, bool)}[kind]
        if not ok:
            raise ConfigTypeError(f"CLNPConfig.{name} must be {'a' if kind != 'int' else 'an'} {kind}, "
                            f"got {value!r} ({type(value).__name__})")
    l1 = config.l1
    if not (_is_number(l1) or (isinstance(l1, (list, tuple)) and l1 and all(_is_number(v) for v in l1))):
        raise ConfigTypeError(f"CLNPConfig.l1 must be a number or a list of numbers (one per layer), got {l1!r}")


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

    def to_dict(self) -> dict:
        return asdict(self)


def make_optimizer(params: list[torch.nn.Parameter], config: CLNPConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def iterate_batches(split: Split, batch_size: int, generator: torch.Generator) -> list[tuple[Tensor, Tensor]]:
    """Shuffled minibatches of a split, in an order set by ``generator``."""
    order = torch.randperm(len(split), generator=generator)
    return [(split.x[idx], split.y[idx]) for idx in order.split(batch_size)]


class CLNP:
    """Continual learning via neural pruning on a :class:`~clnp.network.CLNPNet`.

    Example::

        net = clnp.mlp(64, (256, 256))
        learner = clnp.CLNP(net, clnp.CLNPConfig(epochs=20, margin=1.0))
        for task in clnp.split_digits():
            learner.learn(task)
        learner.accuracy(0, x, y)   # task 0 exactly as it was right after it was learned
    """

    def __init__(self, net: CLNPNet, config: CLNPConfig | None = None,
                 on_epoch: Callable[[dict], None] | None = None) -> None:
        self.net = net
        self.config = config or CLNPConfig()
        self.reports: list[TaskReport] = []
        self.on_epoch = on_epoch
        self.l1 = per_layer(self.config.l1, len(net.blocks))

    # -------------------------------------------------------------------------------- public
    def learn(self, task: Task) -> TaskReport:
        """Learn ``task`` on the free units; afterwards its units are frozen for ever."""
        task.validate(self.net.input_shape)
        self._check_capacity()
        task_id = self.net.n_tasks
        seed = self.config.seed * 1_000_003 + task_id
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                generator = torch.Generator().manual_seed(seed)
                return self._learn(task, task_id, generator)
        except BaseException:
            self._rollback(task_id)
            raise

    def accuracy(self, task_id: int, x: Tensor, y: Tensor) -> float:
        """Test accuracy (a fraction) of an already learned task."""
        self._check_eval_inputs(task_id, x, y)
        return accuracy(self.net, task_id, x, y, batch_size=self.config.eval_batch_size)

    @torch.no_grad()
    def predict(self, x: Tensor, task_id: int) -> Tensor:
        """Class predictions of task ``task_id`` (evaluation mode)."""
        self._check_eval_inputs(task_id, x)
        was = self.net.training
        self.net.eval()
        out = torch.cat([self.net(x[i:i + self.config.eval_batch_size], task_id).argmax(1)
                         for i in range(0, x.shape[0], self.config.eval_batch_size)])
        self.net.train(was)
        return out

    def capacity(self) -> list[dict]:
        """Per prunable layer: units, and per task the units owned, free after and reused."""
        rows = []
        for i, name in enumerate(self.net.layer_names):
            rows.append({
                "layer": name,
                "units": self.net.blocks[i].layer.n_units,
                "owned_by_task": [r.owned[i] for r in self.reports],
                "free_after_task": [r.free_after[i] for r in self.reports],
                "reused_by_task": [r.reused[i] for r in self.reports],
            })
        return rows

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
        if not torch.is_floating_point(x) or not torch.isfinite(x).all():
            raise ValueError(f"task {task_id}: inputs must be finite floating-point values (no NaN or inf)")
        if y is None:
            return
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

        Earlier tasks never changed (their units are frozen); free units are re-initialised by the
        next task anyway. Afterwards the learner can learn the next task as if nothing had happened.
        """
        net = self.net
        if net.n_tasks <= task_id:
            return
        net.consolidate_()  # frozen rows back to their frozen values (an optimiser may have drifted them)
        for block in net.blocks:
            for bn in block.batch_norms():
                bn.running_mean.copy_(torch.where(bn.train_rows, bn.running_mean, bn.frozen_mean))
                bn.running_var.copy_(torch.where(bn.train_rows, bn.running_var, bn.frozen_var))
        for owner in net.owners:
            owner[owner >= task_id] = FREE
        while net.n_tasks > task_id:
            del net.heads[net.n_tasks - 1]
        net.refresh_masks()
        del self.reports[task_id:]

    def _check_capacity(self) -> None:
        for name, free in zip(self.net.layer_names, self.net.free_units(), strict=True):
            if free == 0:
                raise CapacityError(
                    f"layer {name} has no free unit left for task {self.net.n_tasks}: every unit belongs "
                    "to an earlier task. Use a wider layer, or a larger margin (or a stronger L1 penalty) "
                    "so that each task keeps fewer units."
                )

    def _learn(self, task: Task, task_id: int, generator: torch.Generator) -> TaskReport:
        cfg = self.config
        net = self.net
        net.reset_free_units_()
        net.add_head(task.n_classes)
        seconds: dict[str, float] = {}
        log: list[dict] = []

        t0 = time.perf_counter()
        self._train(task, task_id, cfg.epochs, "train", generator, keep=None, l1=True, log=log)
        seconds["train"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        activity = unit_activity(net, task_id, task.val.x, cfg.activity, cfg.eval_batch_size)
        seconds["activity"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        decision = choose_pruning(
            net, task_id, activity,
            lambda keep: accuracy(net, task_id, task.val.x, task.val.y, keep, cfg.eval_batch_size),
            cfg.margin,
        )
        seconds["search"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        if cfg.finetune_epochs:
            snapshot = copy.deepcopy(net.state_dict(keep_vars=False))
            self._train(task, task_id, cfg.finetune_epochs, "finetune", generator, keep=decision.keep,
                        l1=False, log=log)
            tuned = accuracy(net, task_id, task.val.x, task.val.y, decision.keep, cfg.eval_batch_size)
            if tuned < decision.val_accuracy_after:
                # Fine-tuning lost accuracy: return to the pruned network, which met the margin.
                with torch.no_grad():
                    for name, value in net.state_dict(keep_vars=True).items():
                        value.copy_(snapshot[name])
        seconds["finetune"] = time.perf_counter() - t0

        net.zero_grad(set_to_none=True)
        net.assign_units_(task_id, decision.keep)
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
        )
        self.reports.append(report)
        return report

    def _train(self, task: Task, task_id: int, epochs: int, phase: str, generator: torch.Generator,
               keep: Sequence[Tensor] | None, l1: bool, log: list[dict]) -> None:
        cfg = self.config
        net = self.net
        optimizer = make_optimizer(net.trainable_parameters(task_id), cfg)
        trainable = [block.layer.train_rows for block in net.blocks]
        nonnegative = net.nonnegative_activity()
        l1_weights = l1_unit_weights(self.l1, trainable) if l1 else None
        net.train()
        epochs_iter: range | object = range(epochs)
        if cfg.progress:
            from tqdm.auto import tqdm

            epochs_iter = tqdm(range(epochs), desc=f"task {task_id} {phase}", leave=False, unit="epoch")
        for epoch in epochs_iter:  # type: ignore[union-attr]
            total, n = 0.0, 0
            epoch_start = time.perf_counter()
            for xb, yb in iterate_batches(task.train, cfg.batch_size, generator):
                logits, acts = net.forward_with_activity(xb, task_id, keep, l1_weights)
                loss = F.cross_entropy(logits, yb)
                if l1:
                    with torch.no_grad():  # its gradient is added in place by the trunk's backward pass
                        penalty = l1_activity_penalty(acts, self.l1, trainable, nonnegative)
                    loss = loss + penalty
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"task {task_id} ({task.name}): the loss became {loss.item()} in epoch {epoch + 1}; "
                        "lower the learning rate or the L1 coefficient"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                net.restore_frozen_()  # weight decay moves frozen rows too: put them back
                total += float(loss.detach()) * yb.shape[0]
                n += yb.shape[0]
            val = accuracy(net, task_id, task.val.x, task.val.y, keep, cfg.eval_batch_size)
            row = {"task": task_id, "phase": phase, "epoch": epoch + 1, "loss": total / max(1, n),
                   "val_accuracy": val, "seconds": time.perf_counter() - epoch_start}
            log.append(row)
            if self.on_epoch is not None:
                self.on_epoch(row)
            if cfg.progress:
                epochs_iter.set_postfix(loss=f"{row['loss']:.3f}", val=f"{100 * val:.1f}%")  # type: ignore[union-attr]

    @torch.no_grad()
    def _reused(self, task_id: int) -> list[int]:
        """Per layer: old units with a non-zero weight into a unit (or the head) of ``task_id``."""
        net = self.net
        counts = []
        for i, block in enumerate(net.blocks):
            owner = block.layer.owner
            old = (owner != FREE) & (owner < task_id)
            if i + 1 < len(net.blocks):
                consumer = net.blocks[i + 1].layer
                rows = consumer.owner == task_id
            else:
                consumer = net.heads[task_id]
                rows = torch.ones(consumer.n_units, dtype=torch.bool)
            w = consumer.weight[rows].abs()
            if w.dim() > 2:
                w = w.flatten(2).sum(2)
            per_input = w.sum(0)
            n_in = per_input.numel()
            expand_owner(owner, n_in)  # checks the layout
            per_unit = per_input.view(owner.numel(), n_in // owner.numel()).sum(1)
            counts.append(int((old & (per_unit > 0)).sum()))
        return counts
