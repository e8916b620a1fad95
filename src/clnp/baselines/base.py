"""The training loop every sequential baseline shares, with hooks for what each method adds.

Same budget as CLNP: ``config.epochs`` epochs per task, the same batch size, optimiser (a fresh one
per task), learning rate, weight decay and seeded batch order (``seed * 1_000_003 + task``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..tasks import Task
from ..trainer import CLNPConfig, iterate_batches, make_optimizer
from .net import PlainNet, count_parameters

BYTES_PER_FLOAT = 4


class SequentialLearner:
    """Plain sequential multi-head training (``finetune``); subclasses add penalties or masks.

    Hooks, each a no-op here: :meth:`_before_task`, :meth:`_penalty`, :meth:`_after_backward`,
    :meth:`_after_step`, :meth:`_after_task`; :meth:`_forward` computes a batch's logits.
    """

    method = "finetune"

    def __init__(self, net: PlainNet, config: CLNPConfig) -> None:
        self.net = net
        self.config = config
        self.reports: list[dict] = []
        self.on_epoch: Callable[[dict], None] | None = None
        """Called after every epoch with task, phase, epoch, loss, val_accuracy, seconds (the runner's log)."""

    # -------------------------------------------------------------------------------- public
    def learn(self, task: Task) -> dict:
        """Learn ``task`` with its own new head; return a report (a dict)."""
        task.validate(self.net.input_shape)
        task_id = len(self.reports)
        seed = self.config.seed * 1_000_003 + task_id
        started = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            generator = torch.Generator().manual_seed(seed)
            extra = self._learn(task, task_id, generator) or {}
        report = {
            "task": task_id, "name": task.name, "method": self.method,
            "val_accuracy_final": self.accuracy(task_id, task.val.x, task.val.y),
            **extra,
            **self.footprint(),
            "seconds": {"total": time.perf_counter() - started},
        }
        self.reports.append(report)
        return report

    def accuracy(self, task_id: int, x: Tensor, y: Tensor) -> float:
        """Test accuracy (a fraction) of an already learned task."""
        predicted = self.logits(task_id, x).argmax(1)
        return float((predicted == y).sum()) / max(1, int(y.shape[0]))

    @torch.no_grad()
    def logits(self, task_id: int, x: Tensor) -> Tensor:
        """Outputs of task ``task_id``'s head on ``x``, in evaluation mode (batched)."""
        module, head = self._evaluator(task_id)
        was = module.training
        module.eval()
        size = self.config.eval_batch_size
        out = torch.cat([module(x[i:i + size], head) for i in range(0, x.shape[0], size)])
        module.train(was)
        return out

    def _evaluator(self, task_id: int) -> tuple[nn.Module, int]:
        """The module that computes task ``task_id``'s logits as ``module(x, head)``, and the head."""
        return self.net, task_id

    def capacity(self) -> list[dict]:
        """Unit capacity does not apply to this method."""
        return []

    def footprint(self) -> dict:
        """Parameters, and bytes needed to store the model for every task learned so far (float32)."""
        n = count_parameters(self.net)
        return {"parameters": n, "storage_bytes": n * BYTES_PER_FLOAT}

    # ------------------------------------------------------------------------------- the loop
    def _learn(self, task: Task, task_id: int, generator: torch.Generator) -> dict | None:
        self.net.add_head(task.n_classes)
        self._before_task(task, task_id)
        self._fit(task, task_id, self.config.epochs, self._trainable(task_id), generator)
        return self._after_task(task, task_id, generator)

    def _trainable(self, task_id: int) -> list[nn.Parameter]:
        return self.net.trunk_parameters() + list(self.net.heads[task_id].parameters())

    def _fit(self, task: Task, task_id: int, epochs: int, params: Sequence[nn.Parameter],
             generator: torch.Generator, phase: str = "train") -> None:
        optimizer = make_optimizer(list(params), self.config)
        self.net.train()
        for epoch in range(epochs):
            t0 = time.perf_counter()
            total_loss, seen = 0.0, 0
            batches = iterate_batches(task.train, self.config.batch_size, generator)
            for step, (xb, yb) in enumerate(batches):
                logits = self._forward(xb, task_id, step, len(batches))
                loss = F.cross_entropy(logits, yb)
                penalty = self._penalty(task_id)
                total = loss if penalty is None else loss + penalty
                if not torch.isfinite(total):
                    raise FloatingPointError(
                        f"{self.method}: task {task_id} ({task.name}): the loss became {total.item()} in epoch "
                        f"{epoch + 1}; lower the learning rate or the method's strength"
                    )
                optimizer.zero_grad(set_to_none=True)
                self._backward(loss, penalty)
                self._after_backward(task_id, step, len(batches))
                optimizer.step()
                self._after_step(task_id)
                total_loss += float(loss.detach()) * yb.shape[0]
                seen += yb.shape[0]
            if self.on_epoch is not None:
                self.on_epoch({"task": len(self.reports), "phase": phase, "epoch": epoch + 1,
                               "loss": total_loss / max(1, seen), "val_accuracy": self._val_accuracy(task, task_id),
                               "seconds": time.perf_counter() - t0})
                self.net.train()

    def _val_accuracy(self, task: Task, task_id: int) -> float:
        """Validation accuracy of the task being learned, for the epoch log."""
        return self.accuracy(task_id, task.val.x, task.val.y)

    def _backward(self, loss: Tensor, penalty: Tensor | None) -> None:
        (loss if penalty is None else loss + penalty).backward()

    # --------------------------------------------------------------------------------- hooks
    def _forward(self, x: Tensor, task_id: int, step: int, n_steps: int) -> Tensor:
        return self.net(x, task_id)

    def _before_task(self, task: Task, task_id: int) -> None:
        pass

    def _penalty(self, task_id: int) -> Tensor | None:
        return None

    def _after_backward(self, task_id: int, step: int, n_steps: int) -> None:
        pass

    def _after_step(self, task_id: int) -> None:
        pass

    def _after_task(self, task: Task, task_id: int, generator: torch.Generator) -> dict | None:
        return None


def sample_inputs(task: Task, n: int, generator: torch.Generator) -> Tensor:
    """Up to ``n`` training inputs of ``task``, drawn without replacement (seeded)."""
    order = torch.randperm(len(task.train), generator=generator)[:n]
    return task.train.x[order]


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
