"""Unit activity on held-out data (what pruning reads) and the accuracy (and loss) of a task's head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .network import CLNPNet
from .partition import expand_owner, trainable_units

ACTIVITY_MEASURES = ("mean_abs", "firing_rate", "contribution")
"""``mean_abs``: mean absolute activation (the paper's measure); ``firing_rate``: fraction of inputs on
which the unit is active; ``contribution``: mean absolute activation times the summed magnitude of the
unit's weights into the task's units of the next layer (or its head), what the unit passes on."""


@torch.no_grad()
def outgoing_weight(net: CLNPNet, layer: int, task: int, keep: Sequence[Tensor] | None = None) -> Tensor:
    """Per unit of ``layer``: summed magnitude of its weights into task ``task``'s trainable units of the
    next layer (those ``keep[layer + 1]`` allows, all without ``keep``) or, after the last layer, its head."""
    owner = net.blocks[layer].layer.owner
    if layer + 1 < len(net.blocks):
        consumer = net.blocks[layer + 1].layer
        rows = trainable_units(consumer.owner)
        if keep is not None:
            rows = rows & keep[layer + 1].to(consumer.owner.device)
    else:
        consumer = net.heads[task]
        rows = torch.ones(consumer.n_units, dtype=torch.bool, device=owner.device)
    w = consumer.weight.detach()[rows].abs()
    if w.dim() > 2:
        w = w.flatten(2).sum(2)
    per_input = w.sum(0)
    expand_owner(owner, per_input.numel())  # checks the layout
    return per_input.view(owner.numel(), -1).sum(1)


@torch.no_grad()
def unit_activity(net: CLNPNet, task: int, x: Tensor, measure: str = "mean_abs",
                  batch_size: int = 1024) -> list[Tensor]:
    """Per-unit activity of every prunable layer on inputs ``x`` (evaluation mode).

    ``mean_abs``: mean absolute activation; ``firing_rate``: fraction of inputs with activation
    > 0; ``contribution``: ``mean_abs`` times :func:`outgoing_weight`. Conv channels are averaged over
    positions as well as inputs.

    ``contribution`` is there because the L1 penalty acts on activations alone: a unit can meet it with
    a small activation and large weights out of it, and then matters more than its activity says.
    """
    if measure not in ACTIVITY_MEASURES:
        raise ValueError(f"unknown activity measure {measure!r}; expected one of {ACTIVITY_MEASURES}")
    was_training = net.training
    net.eval()
    sums: list[Tensor] | None = None
    count = 0
    device = net.device
    for start in range(0, x.shape[0], batch_size):
        _, taps = net.forward_with_activity(x[start:start + batch_size].to(device, non_blocking=True), task)
        stats = []
        for a in taps:
            a = a.float()  # sums in float32 also under autocast
            v = (a > 0).to(a.dtype) if measure == "firing_rate" else a.abs()
            if v.dim() > 2:
                v = v.flatten(2).mean(2)
            stats.append(v.sum(0))
        sums = stats if sums is None else [s + t for s, t in zip(sums, stats, strict=True)]
        count += taps[0].shape[0]
    net.train(was_training)
    assert sums is not None
    means = [s / count for s in sums]
    if measure == "contribution":
        means = [m * outgoing_weight(net, i, task).to(m.device, m.dtype) for i, m in enumerate(means)]
    return means


def accuracy(net: CLNPNet, task: int, x: Tensor, y: Tensor, keep: Sequence[Tensor | None] | None = None,
             batch_size: int = 1024) -> float:
    """Accuracy (a fraction in [0, 1]) of task ``task``'s head on ``(x, y)`` in evaluation mode."""
    predicted, _, _ = predict_with_loss(net, task, x, None, keep, batch_size)
    return float((predicted == y).sum()) / max(1, x.shape[0])


@torch.no_grad()
def predict_with_loss(net: CLNPNet, task: int, x: Tensor, y: Tensor | None = None,
                      keep: Sequence[Tensor | None] | None = None,
                      batch_size: int = 1024) -> tuple[Tensor, float, float]:
    """Predicted classes (on the CPU) of task ``task``'s head on ``x`` and, with labels ``y``, the mean
    cross-entropy and the mean probability given to the true class (a continuous stand-in for accuracy;
    0.0 without labels). Batches go to the network's device; the sums stay there until the end."""
    was_training = net.training
    net.eval()
    device = net.device
    predictions = []
    total = torch.zeros((), dtype=torch.float64, device=device)
    confidence = torch.zeros((), dtype=torch.float64, device=device)
    for start in range(0, x.shape[0], batch_size):
        logits = net(x[start:start + batch_size].to(device, non_blocking=True), task, keep).float()
        predictions.append(logits.argmax(1))
        if y is not None:
            yb = y[start:start + batch_size].to(device, non_blocking=True)
            total += F.cross_entropy(logits, yb, reduction="sum").double()
            confidence += logits.softmax(1).gather(1, yb[:, None]).sum().double()
    net.train(was_training)
    n = max(1, x.shape[0])
    predicted = torch.cat(predictions).cpu() if predictions else torch.zeros(0, dtype=torch.long)
    return predicted, float(total) / n, float(confidence) / n
