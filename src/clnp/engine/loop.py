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

and :meth:`LoopHooks.validate`, then :meth:`LoopHooks.after_epoch`, once per epoch. Work before and
after a task belongs to the method's ``learn`` (see :class:`clnp.engine.learner.Learner`). The loop knows
nothing of masks, frozen rows or CLNP: it asks the hooks.

The loss is accumulated on the device and checked for NaN/inf once per epoch, so the hot loop does
not wait for the device at every step. Batches move to the module's device (``non_blocking``); the
forward passes and the step run as the config's precision says (:mod:`.precision`: autocast, a gradient
scaler for fp16); under
``torchrun`` the module trains wrapped in ``DistributedDataParallel`` (see :mod:`.distributed`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from ..data.tasks import DatasetSplit, Split
from . import distributed
from .config import TrainConfig, make_optimizer, scheduled_lr
from .devices import module_device
from .precision import autocast, get_precision

EpochCallback = Callable[[dict], None]
"""Called after every epoch with ``task, phase, epoch, loss, val_accuracy, seconds``."""


class LoopHooks:
    """What a method adds to :func:`fit`. Every hook but :meth:`batch_loss` has a plain default."""

    divergence_hint = "lower the learning rate"
    """The advice of the error raised when the loss stops being finite."""

    uses_every_parameter = True
    """Whether every trained parameter gets a gradient at every step (False for ``joint``, whose batch may
    miss a task's head); under DDP, False costs a traversal of the graph per step."""

    loss_scale: Tensor | None = None
    """Under ``16-mixed``, the gradient scaler's current scale (set by :func:`fit` before each step),
    for a hook that writes gradients itself or reads them in :meth:`backward` (where they are scaled)."""

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

    def after_epoch(self, head: int, epoch: int, epochs: int) -> None:
        """Work between epochs, after validation (``epoch`` counts from 0 of ``epochs``; e.g. a pruning schedule)."""


def _merge_single(chunks: list[Tensor]) -> list[Tensor]:
    """A last batch of a single input joins the one before it: batch norm cannot train on one input."""
    if len(chunks) > 1 and chunks[-1].numel() == 1:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return chunks


def shuffled_batches(data: Sequence[Tensor], batch_size: int,
                     generator: torch.Generator) -> Iterator[tuple[Tensor, ...]]:
    """Minibatches of the aligned tensors ``data`` (inputs, labels, ...) in an order set by ``generator``.

    A last batch of a single input joins the one before it: batch norm cannot train on one input.
    """
    order = torch.randperm(int(data[0].shape[0]), generator=generator)
    for idx in _merge_single(list(order.split(batch_size))):
        yield tuple(t[idx] for t in data)


def rank_share(n: int, world: int) -> int:
    """Each of ``world`` ranks' share of ``n`` (inputs of an epoch, or of a global batch): ``ceil(n / world)``."""
    return -(-n // world)


def steps_per_epoch(n: int, batch_size: int, world: int = 1) -> int:
    """Optimiser steps one epoch of ``n`` inputs takes on each of ``world`` ranks at a global ``batch_size``: each
    rank takes its :func:`rank_share` of the inputs in batches of its share of ``batch_size``, a last batch of one
    input merged into the one before it (:class:`_PhaseBatches`)."""
    per_rank, batch = rank_share(n, world), rank_share(batch_size, world)
    full, rest = divmod(per_rank, batch)
    return full + (1 if rest > 1 or (rest == 1 and full == 0) else 0)


class _PhaseBatches:
    """The batches of every epoch of one phase, on this rank, moved to ``device``.

    In-memory tensors in one process: :func:`shuffled_batches` (the fast path, and the order every
    result so far was made with); on an accelerator the tensors are moved there once per phase. Under
    data parallelism, or for a dataset-backed split: a
    :class:`~torch.utils.data.distributed.DistributedSampler` (one replica in one process) seeded
    once per phase from ``generator`` and set to each epoch, so a resumed run reads the same batches;
    each rank takes ``ceil(batch_size / world)`` of every global batch of ``batch_size``. Dataset
    batches come through a :class:`~torch.utils.data.DataLoader` (the split's workers and train-only
    transform, pinned memory on CUDA).
    """

    def __init__(self, data: Sequence[Tensor] | DatasetSplit, batch_size: int, generator: torch.Generator,
                 device: torch.device) -> None:
        if device.type != "cpu" and not isinstance(data, DatasetSplit):
            # In-memory tensors go to the accelerator once per phase; batches are then cut there.
            data = [t.to(device) for t in data]
        self.data = data
        self.device = device
        self.world, self.rank = distributed.world_size(), distributed.rank()
        self.n = len(data) if isinstance(data, DatasetSplit) else int(data[0].shape[0])
        self.sampled = isinstance(data, DatasetSplit) or self.world > 1
        self.generator = generator
        if self.sampled:
            from torch.utils.data.distributed import DistributedSampler

            # The sampler reads only the length of what it samples: the indices stand for the data.
            self.sampler: DistributedSampler[int] = DistributedSampler(
                range(self.n), num_replicas=self.world, rank=self.rank, shuffle=True,  # type: ignore[arg-type]
                seed=int(torch.randint(2**31 - 1, (1,), generator=generator)))
        self.batch_size = rank_share(batch_size, self.world)  # unsampled, world is 1
        self.n_steps = steps_per_epoch(self.n, batch_size, self.world)

    def epoch(self, epoch: int) -> Iterator[tuple[Tensor, ...]]:
        if not self.sampled:
            batches: Iterator[tuple[Tensor, ...]] = shuffled_batches(self.data, self.batch_size,  # type: ignore[arg-type]
                                                                     self.generator)
        else:
            self.sampler.set_epoch(epoch)
            index = torch.tensor(list(self.sampler), dtype=torch.long)
            chunks = _merge_single(list(index.split(self.batch_size)))
            if isinstance(self.data, DatasetSplit):
                batches = self.data.batches(chunks, pin_memory=self.device.type == "cuda",
                                            seed=self.sampler.seed + epoch)
            else:
                batches = (tuple(t[idx] for t in self.data) for idx in chunks)
        for batch in batches:
            yield tuple(t.to(self.device, non_blocking=True) for t in batch)


class _TrainStep(nn.Module):
    """Runs the loss hooks as a module's forward pass, so that DDP sees each training forward whatever a
    method's hooks compute. Its parameters are exactly the trained ones (HAT's task embeddings, outside
    the network, included): DDP reduces those gradients and nothing else, and syncs no buffer (masks and
    frozen snapshots are the same on every rank by construction)."""

    def __init__(self, params: Sequence[nn.Parameter]) -> None:
        super().__init__()
        self.trained = nn.ParameterList(list(params))

    def forward(self, hooks: LoopHooks, batch: tuple[Tensor, ...], head: int, step: int,
                n_steps: int) -> tuple[Tensor, Tensor | None]:
        return hooks.batch_loss(batch, head, step, n_steps), hooks.extra_loss(head)


def fit(hooks: LoopHooks, module: nn.Module, params: Sequence[nn.Parameter],
        data: Sequence[Tensor] | Split | DatasetSplit, config: TrainConfig, generator: torch.Generator, *,
        epochs: int, head: int, task: int, phase: str, label: str, on_epoch: EpochCallback | None = None) -> list[dict]:
    """Train ``params`` of ``module`` for ``epochs`` epochs over ``data``; return the epoch log rows.

    ``data``: aligned tensors (inputs, labels, ...), a task's training split as it is (``task.train``: a
    dataset-backed one is read through its DataLoader, never whole into memory). ``head`` is passed to
    every hook; ``task`` and ``phase`` go into the log; ``label`` names the task in errors. A fresh
    optimiser is made from ``config`` (the ``finetune`` phase from ``config.finetuning()``: its rate and schedule),
    and its rate follows ``lr_schedule`` over the phase's steps.
    Batches go to ``module``'s device; the forward passes run in ``config.precision``; under
    ``torchrun`` the module trains wrapped in DDP (:mod:`.distributed`).
    """
    if isinstance(data, Split):
        data = (data.x, data.y)
    phase_config = config.finetuning() if phase == "finetune" else config
    optimizer = make_optimizer(list(params), phase_config)
    device = module_device(module)
    phase_batches = _PhaseBatches(data, config.batch_size, generator, device)
    n_steps = phase_batches.n_steps
    scheduled = phase_config.lr_schedule != "constant"
    precision = get_precision(config.precision)
    scaler = precision.grad_scaler(device)
    step_module: nn.Module = _TrainStep(params)
    if distributed.is_distributed():
        from torch.nn.parallel import DistributedDataParallel

        step_module = DistributedDataParallel(step_module, device_ids=[device] if device.type == "cuda" else None,
                                              find_unused_parameters=not hooks.uses_every_parameter)
    rows: list[dict] = []
    bar = None
    if config.progress and distributed.is_main():  # one bar over every batch of the phase
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs * n_steps, desc=f"task {task} {phase}", leave=False, unit="batch")
    module.train()
    for epoch in range(epochs):
        started = time.perf_counter()
        running = torch.zeros((), dtype=torch.float64, device=device)
        seen = 0
        for step, batch in enumerate(phase_batches.epoch(epoch)):
            precision.set_loss_scale(hooks, scaler, device)
            with autocast(config.precision, device):
                loss, extra = step_module(hooks, batch, head, step, n_steps)
            objective = (loss if extra is None else loss + extra).detach() * batch[0].shape[0]
            running += objective.double()
            seen += int(batch[0].shape[0])
            optimizer.zero_grad(set_to_none=True)
            if scheduled:
                for group in optimizer.param_groups:
                    group["lr"] = scheduled_lr(phase_config, epoch * n_steps + step, epochs * n_steps)
            precision.backward_and_step(hooks, optimizer, scaler, loss, extra, head, step, n_steps)
            hooks.after_step(head)
            if bar is not None:
                bar.update(1)
        if distributed.is_distributed():
            totals = distributed.sum_scalar(torch.stack([running, torch.tensor(float(seen), dtype=torch.float64,
                                                                               device=device)]))
            mean_loss = float(totals[0]) / max(1.0, float(totals[1]))
        else:
            mean_loss = float(running) / max(1, seen)
        if not math.isfinite(mean_loss):
            raise FloatingPointError(
                f"{label}: the loss became {mean_loss} in epoch {epoch + 1}; {hooks.divergence_hint}")
        val = hooks.validate(head)
        row = {"task": task, "phase": phase, "epoch": epoch + 1, "loss": mean_loss, "val_accuracy": val,
               "seconds": time.perf_counter() - started}
        rows.append(row)
        if on_epoch is not None and distributed.is_main():
            on_epoch(row)
        if bar is not None:
            bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{mean_loss:.3f}", val=f"{100 * val:.1f}%")
        hooks.after_epoch(head, epoch, epochs)
        module.train()
    if bar is not None:
        bar.close()
    hooks.loss_scale = None
    distributed.agree_batch_norm_(module)
    return rows
