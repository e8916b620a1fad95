"""The one training loop: every method, CLNP and every baseline, trains through :func:`fit`.

The loop owns what a comparison must hold equal: seeded shuffling and batching, a fresh optimiser
per task and phase, epochs, per-epoch validation, the epoch log, progress, the non-finite-loss
check. A method adds what is its own through the hooks of :class:`LoopHooks`, called in this
order for every batch::

    loss  = hooks.batch_loss(batch, head, step, n_steps)   # the task's own loss (and forward pass)
    extra = hooks.extra_loss(head)                         # penalties (EWC, SI, L1, ...) or None
    optimizer.zero_grad(); hooks.backward(loss, extra)
    hooks.after_backward(head, step, n_steps)             # gradient edits (masks, compensation)
    optimizer.step()
    hooks.after_step(head)                                # restore frozen values, path integrals

and :meth:`LoopHooks.validate` once per epoch. Work before and after a task belongs to the
method's ``learn`` (see :class:`clnp.methods.sequential.SequentialLearner`). The loop knows
nothing of masks, frozen rows or CLNP: it asks the hooks.

The loss is accumulated on the device and checked for NaN/inf once per epoch, so the hot loop does
not wait for the device at every step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from .config import TrainConfig, make_optimizer

EpochCallback = Callable[[dict], None]
"""Called after every epoch with ``task, phase, epoch, loss, val_accuracy, seconds``."""


class LoopHooks:
    """What a method adds to :func:`fit`. Every hook but :meth:`batch_loss` has a plain default."""

    divergence_hint = "lower the learning rate"
    """The advice of the error raised when the loss stops being finite."""

    def batch_loss(self, batch: tuple[Tensor, ...], head: int, step: int, n_steps: int) -> Tensor:
        """The task's own loss on one batch (e.g. cross-entropy of head ``head``'s logits)."""
        raise NotImplementedError

    def extra_loss(self, head: int) -> Tensor | None:
        """Terms added to the loss (penalties), or None."""
        return None

    def backward(self, loss: Tensor, extra: Tensor | None) -> None:
        """Back-propagate the objective (override to see the task loss's gradient alone, as SI does)."""
        (loss if extra is None else loss + extra).backward()

    def after_backward(self, head: int, step: int, n_steps: int) -> None:
        """Edit gradients before the optimiser step."""

    def after_step(self, head: int) -> None:
        """Work after the optimiser step (e.g. put frozen values back)."""

    def validate(self, head: int) -> float:
        """Validation accuracy (a fraction) of the task being learned, for the epoch log."""
        raise NotImplementedError


def shuffled_batches(data: Sequence[Tensor], batch_size: int,
                     generator: torch.Generator) -> Iterator[tuple[Tensor, ...]]:
    """Minibatches of the aligned tensors ``data`` (inputs, labels, ...) in an order set by ``generator``.

    A last batch of a single input joins the one before it: batch norm cannot train on one input.
    """
    order = torch.randperm(int(data[0].shape[0]), generator=generator)
    chunks = list(order.split(batch_size))
    if len(chunks) > 1 and chunks[-1].numel() == 1:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    for idx in chunks:
        yield tuple(t[idx] for t in data)


def fit(hooks: LoopHooks, module: nn.Module, params: Sequence[nn.Parameter], data: Sequence[Tensor],
        config: TrainConfig, generator: torch.Generator, *, epochs: int, head: int, task: int, phase: str,
        label: str, on_epoch: EpochCallback | None = None) -> list[dict]:
    """Train ``params`` of ``module`` for ``epochs`` epochs over ``data``; return the epoch log rows.

    ``head`` is passed to every hook; ``task`` and ``phase`` go into the log; ``label`` names the task
    in errors. A fresh optimiser is made from ``config``.
    """
    optimizer = make_optimizer(list(params), config)
    n = int(data[0].shape[0])
    n_steps = -(-n // config.batch_size) - (1 if n > config.batch_size and n % config.batch_size == 1 else 0)
    rows: list[dict] = []
    bar = None
    if config.progress:  # one bar over every batch of the phase: a long epoch shows it is moving
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs * n_steps, desc=f"task {task} {phase}", leave=False, unit="batch")
    module.train()
    for epoch in range(epochs):
        started = time.perf_counter()
        running: Tensor | None = None
        for step, batch in enumerate(shuffled_batches(data, config.batch_size, generator)):
            loss = hooks.batch_loss(batch, head, step, n_steps)
            extra = hooks.extra_loss(head)
            objective = (loss if extra is None else loss + extra).detach() * batch[0].shape[0]
            running = objective if running is None else running + objective
            optimizer.zero_grad(set_to_none=True)
            hooks.backward(loss, extra)
            hooks.after_backward(head, step, n_steps)
            optimizer.step()
            hooks.after_step(head)
            if bar is not None:
                bar.update(1)
        mean_loss = float(running) / max(1, n) if running is not None else 0.0
        if not math.isfinite(mean_loss):
            raise FloatingPointError(
                f"{label}: the loss became {mean_loss} in epoch {epoch + 1}; {hooks.divergence_hint}")
        val = hooks.validate(head)
        module.train()
        row = {"task": task, "phase": phase, "epoch": epoch + 1, "loss": mean_loss, "val_accuracy": val,
               "seconds": time.perf_counter() - started}
        rows.append(row)
        if on_epoch is not None:
            on_epoch(row)
        if bar is not None:
            bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{mean_loss:.3f}", val=f"{100 * val:.1f}%")
    if bar is not None:
        bar.close()
    return rows
