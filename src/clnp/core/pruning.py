"""The choice of units to prune under the graceful-forgetting margin."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from .network import CLNPNet
from .partition import trainable_units


@dataclass
class PruneDecision:
    """Which units of the task survive pruning, and what the search saw."""

    keep: list[Tensor]
    """Per layer, boolean per unit: True for units kept (old units are always True)."""
    thresholds: list[float]
    """Per layer: the activity below which the task's units were pruned."""
    val_accuracy_before: float
    val_accuracy_after: float
    evaluations: int = 0
    history: list[tuple[str, float]] = field(default_factory=list)

    @property
    def pruned(self) -> list[int]:
        return [int((~k).sum()) for k in self.keep]


def _keep_below(activity: Tensor, candidates: Tensor, threshold: float) -> Tensor:
    return ~(candidates & (activity < threshold))


def choose_pruning(net: CLNPNet, task: int, activity: Sequence[Tensor], evaluate: Callable[[list[Tensor]], float],
                   margin: float) -> PruneDecision:
    """Find per-layer thresholds: the most pruning whose validation accuracy drop stays within ``margin``.

    ``evaluate(keep)`` returns validation accuracy (a fraction) with the units where ``keep`` is
    False silenced; ``margin`` is in accuracy points (percent). Only the current task's units (the
    free ones) are candidates. Two stages, each accepting only configurations it has evaluated, so
    the result is always within the margin:

    1. one relative threshold for all layers, ``c * max activity of the layer``, the largest ``c``
       on a log grid that passes (bisection, assuming accuracy falls as ``c`` grows);
    2. per layer, from the last to the first, prune further units in order of activity, the
       largest number that passes (bisection).
    """
    if margin < 0:
        raise ValueError(f"the margin must be >= 0 accuracy points, got {margin}")
    candidates = [trainable_units(o) for o in net.owners]
    act = [a.to(c.device) for a, c in zip(activity, candidates, strict=True)]
    full = [torch.ones_like(c) for c in candidates]
    base = evaluate(full)
    floor = base - margin / 100.0
    history: list[tuple[str, float]] = [("dense", base)]
    evaluations = 1

    def passes(keep: list[Tensor], label: str) -> bool:
        nonlocal evaluations
        acc = evaluate(keep)
        evaluations += 1
        history.append((label, acc))
        return acc >= floor - 1e-9

    # Stage 1: a shared relative threshold.
    maxima = [float(a[c].max()) if c.any() else 0.0 for a, c in zip(act, candidates, strict=True)]
    grid = np.concatenate([[0.0], np.geomspace(1e-4, 1.0, 25)])

    def keep_at(c: float) -> list[Tensor]:
        return [_keep_below(a, cand, c * m) for a, cand, m in zip(act, candidates, maxima, strict=True)]

    lo, hi = 0, len(grid) - 1  # grid[lo] passes (c=0 prunes nothing)
    best = full
    while lo < hi:
        mid = (lo + hi + 1) // 2
        keep = keep_at(float(grid[mid]))
        if passes(keep, f"c={grid[mid]:.2e}"):
            lo, best = mid, keep
        else:
            hi = mid - 1

    # Stage 2: per-layer refinement, last layer first.
    best = [k.clone() for k in best]
    for layer in reversed(range(len(best))):
        kept_candidates = torch.nonzero(candidates[layer] & best[layer]).flatten()
        if kept_candidates.numel() == 0:
            continue
        order = kept_candidates[torch.argsort(act[layer][kept_candidates], stable=True)]
        lo, hi = 0, order.numel()  # prune the first n of `order`; n = lo passes
        chosen = best[layer]
        while lo < hi:
            mid = (lo + hi + 1) // 2
            trial = best[layer].clone()
            trial[order[:mid]] = False
            keep = [*best[:layer], trial, *best[layer + 1:]]
            if passes(keep, f"layer{layer}:prune{mid}"):
                lo, chosen = mid, trial
            else:
                hi = mid - 1
        best[layer] = chosen

    thresholds = []
    for a, cand, k in zip(act, candidates, best, strict=True):
        pruned = cand & ~k
        thresholds.append(float(a[pruned].max()) if pruned.any() else 0.0)
    final = evaluate(best)
    evaluations += 1
    return PruneDecision(keep=best, thresholds=thresholds, val_accuracy_before=base,
                         val_accuracy_after=final, evaluations=evaluations, history=history)
