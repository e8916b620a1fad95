"""The base of every baseline: sequential multi-head training of a :class:`PlainNet`, with hooks.

Same budget as CLNP: ``config.epochs`` epochs per task through the one loop
(:meth:`clnp.engine.learner.Learner.train_phase`), the same batch size, optimiser (a fresh one per task),
learning rate, weight decay and seeded batch order (:func:`clnp.engine.learner.task_seed`). Also the
helpers the baselines share: their state's tensor lists, sampled inputs, the batch-norm refusal.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...data.tasks import DatasetSplit, Task
from ...engine import evaluate
from ...engine.config import TrainConfig
from ...engine.learner import Learner
from .plain_net import PlainNet, count_parameters

BYTES_PER_FLOAT = 4


class SequentialLearner(Learner):
    """Plain sequential multi-head training (``finetune``); subclasses add penalties or masks.

    Hooks: :meth:`before_task` and :meth:`after_task` around the task; :meth:`forward_batch` (a
    batch's logits) and the loop's hooks of :class:`~clnp.engine.loop.LoopHooks` (``extra_loss``,
    ``backward``, ``after_backward``, ``after_step``) inside it. Each is plain or a no-op here.
    """

    method = "finetune"

    def __init__(self, net: PlainNet, config: TrainConfig) -> None:
        super().__init__(net, config)
        self._task: Task | None = None

    def _report(self, task: Task, task_id: int, outcome: Any, started: float) -> dict:
        report = {
            "task": task_id, "name": task.name, "method": self.method,
            "val_accuracy_final": self.accuracy(task_id, task.val.x, task.val.y),
            **(outcome or {}),
            **self.footprint(),
            "seconds": {"total": time.perf_counter() - started},
        }
        self.reports.append(report)
        return report

    # ------------------------------------------------------------------- the state (data only)
    def _state(self) -> tuple[dict[str, Tensor], dict]:
        """The network (``net.*``), the method's own tensors and JSON-able state."""
        tensors = {f"net.{k}": v for k, v in self._net_state().items()}
        tensors.update(self.state_tensors())
        meta = {"method": self.method, "heads": self._heads(), "reports": list(self.reports), **self.state_meta()}
        return tensors, meta

    def _load_state(self, tensors: Mapping[str, Tensor], meta: dict) -> None:
        if meta.get("method") != self.method:
            raise ValueError(f"the state is of method {meta.get('method')!r}, this learner is {self.method!r}")
        heads, reports = meta.get("heads"), meta.get("reports")
        if not isinstance(heads, list) or not isinstance(reports, list) or len(reports) != len(heads):
            raise ValueError("the state needs one head size and one report per finished task")
        if not all(isinstance(r, dict) for r in reports):
            raise ValueError("every report must be a JSON object")
        used = {k for k in tensors if k.startswith("net.")}
        self._load_net({k[4:]: tensors[k] for k in used}, [int(h) for h in heads])
        own = {k: v for k, v in tensors.items() if k not in used}
        self.load_state_tensors(own, meta, len(heads))
        self.reports = [dict(r) for r in reports]

    def _heads(self) -> list[int]:
        return [int(h.out_features) for h in self.net.heads]

    def _net_state(self) -> dict[str, Tensor]:
        return self.net.state_dict()

    def _load_net(self, state: dict[str, Tensor], heads: list[int]) -> None:
        for n_classes in heads:
            self.net.add_head(n_classes)
        self.net.load_state_dict(state, strict=True)

    def state_tensors(self) -> dict[str, Tensor]:
        """The method's own tensors besides the network (penalty terms, masks); none here."""
        return {}

    def state_meta(self) -> dict:
        """The method's own JSON-able state besides the reports; none here."""
        return {}

    def load_state_tensors(self, tensors: Mapping[str, Tensor], meta: dict, n_tasks: int) -> None:
        """Restore :meth:`state_tensors` (and :meth:`state_meta`); refuse tensors the method does not know."""
        if tensors:
            raise ValueError(f"unexpected tensors in a {self.method} state: {', '.join(sorted(tensors)[:3])}")

    def footprint(self) -> dict:
        """Parameters, and bytes needed to store the model for every task learned so far (float32)."""
        n = count_parameters(self.net)
        return {"parameters": n, "storage_bytes": n * BYTES_PER_FLOAT}

    # ------------------------------------------------------------------------------- the loop
    def _learn(self, task: Task, task_id: int, generator: torch.Generator) -> dict | None:
        self.net.add_head(task.n_classes)
        self.before_task(task, task_id)
        self._fit(task, task_id, self.config.epochs, self._trainable(task_id), generator)
        return self.after_task(task, task_id, generator)

    def _trainable(self, task_id: int) -> list[nn.Parameter]:
        return self.net.trunk_parameters() + list(self.net.heads[task_id].parameters())

    def _fit(self, task: Task, task_id: int, epochs: int, params: Sequence[nn.Parameter],
             generator: torch.Generator, phase: str = "train",
             data: Sequence[Tensor] | DatasetSplit | None = None) -> None:
        """Train ``params`` on ``task`` through the one loop (on ``data`` instead, aligned tensors or a split for
        :meth:`batch_loss`, where given). The training split goes to the loop as it is: a dataset-backed one
        is read through its DataLoader (workers, transform), never whole into memory."""
        self._task = task
        source = task.train if data is None else data
        self.train_phase(params, source, generator, epochs=epochs, head=task_id, task=len(self.reports), phase=phase,
                         label=f"{self.method}: task {task_id} ({task.name})")

    # ------------------------------------------------------------------- hooks of the one loop
    divergence_hint = "lower the learning rate or the method's strength"

    def batch_loss(self, batch: tuple[Tensor, ...], head: int, step: int, n_steps: int) -> Tensor:
        x, y = batch
        return F.cross_entropy(self.forward_batch(x, head, step, n_steps), y)

    def validate(self, head: int) -> float:
        assert self._task is not None
        return self._val_accuracy(self._task, head)

    def _accuracy_of(self, module: nn.Module, head: int, x: Tensor, y: Tensor) -> float:
        """The one evaluation's accuracy of any module computing ``module(x, head)`` (a network under masks)."""
        return evaluate.accuracy(module, head, x, y, self.config.eval_batch_size, self.config.precision)

    def _val_accuracy(self, task: Task, task_id: int) -> float:
        """Validation accuracy of the task being learned, for the epoch log."""
        return self.accuracy(task_id, task.val.x, task.val.y)

    # --------------------------------------------------------------------------------- hooks
    def forward_batch(self, x: Tensor, task_id: int, step: int, n_steps: int) -> Tensor:
        return self.net(x, task_id)

    def before_task(self, task: Task, task_id: int) -> None:
        pass

    def after_task(self, task: Task, task_id: int, generator: torch.Generator) -> dict | None:
        return None


def tensor_list(tensors: Mapping[str, Tensor], prefix: str, like: Sequence[Tensor]) -> list[Tensor]:
    """``prefix.0``, ``prefix.1``, ... from ``tensors``, each the shape and dtype of ``like[i]`` (else ValueError)."""
    out = []
    for i, ref in enumerate(like):
        name = f"{prefix}.{i}"
        if name not in tensors:
            raise ValueError(f"the state lacks tensor {name}")
        t = tensors[name]
        if t.shape != ref.shape or t.dtype != ref.dtype:
            raise ValueError(f"tensor {name} is {tuple(t.shape)} {t.dtype}, expected {tuple(ref.shape)} {ref.dtype}")
        out.append(t.to(ref.device, copy=True))
    return out


def check_consumed(tensors: Mapping[str, Tensor], used: set[str], method: str) -> None:
    extra = sorted(set(tensors) - used)
    if extra:
        raise ValueError(f"unexpected tensors in a {method} state: {', '.join(extra[:3])}")


def sample_inputs(task: Task, n: int, generator: torch.Generator) -> Tensor:
    """Up to ``n`` training inputs of ``task``, drawn without replacement (seeded), untransformed: an importance
    estimate (MAS) is of the data the task is judged on, not of its augmentation, and stays the same whichever
    random transform a run draws; ``take`` reads only the ``n`` items, never a dataset-backed split whole."""
    order = torch.randperm(len(task.train), generator=generator)[:n]
    return task.train.take(order)


def require_no_batch_norm(net: PlainNet, method: str) -> None:
    if net.has_batch_norm:
        raise ValueError(
            f"{method} needs a model without batch norm (shared running statistics would change earlier "
            f"tasks' outputs); drop ':bn' from the model spec {net.spec!r}"
        )


def options_float(options: dict[str, Any], key: str, default: float) -> float:
    """A float option (``--option key=value``), with a clear error for a bad value."""
    value = options.get(key, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"option {key!r} must be a number, got {value!r}") from None
