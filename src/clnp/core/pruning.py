"""The choice of what a task gives up under the graceful-forgetting margin: units, then old features.

:func:`choose_pruning` takes the trained network of the current task, its units' activity on the
validation split and an ``evaluate(keep, cut)`` callable (validation accuracy, and finer measures
where accuracy cannot resolve the margin, with the units where ``keep`` is False silenced and the
old units where ``cut`` is True disconnected from the task), and returns a :class:`PruneDecision`. One
margin serves the whole task: every configuration the search accepts is one it has evaluated,
with validation accuracy at least ``dense - margin`` and, where ``evaluate`` reports them, the finer
measures below within the margin too.

**Finer measures than accuracy.** Where the margin is worth only a few validation inputs, accuracy
cannot resolve it, and a search on accuracy alone prunes until the first validation error appears,
far past what the test set tolerates. On 37 validation inputs accuracy moves in steps of 2.7 points
(split-digits, ``l1`` 1e-3: task 0 kept 1 and 4 units at 100 % validation accuracy and scored 97.2 %
on its test set); a margin of 0.1 points on 1200 inputs allows one error (split-fashion-mnist's
near-perfect tasks kept 0-12 units and scored 99.9 % where PackNet scored 100.0 %). There the
caller also reports two finer measures, and the search holds both within the margin: agreement of
the pruned network's predictions with the dense network's (CLNP: on the validation inputs, plus
training inputs up to 1000 for a small split; no labels needed), and the mean probability the
network gives the true class of each validation input, which moves continuously (it may fall by
:data:`CONFIDENCE_SLACK` margins, as it falls faster than accuracy; agreement on training inputs
alone let task 2 of split-digits keep 1 and 3 units and lose 3.7 test points). Where the margin is
worth many inputs, accuracy alone judges: the finer measures then only keep more units (CLNP's
``RESOLVED_INPUTS`` draws the line; figures in ``bench/RESULTS.md``).

**Units, in rounds, scarcest layer first.** Each layer keeps its candidates (the free units, which
the task trained) in order of activity, lowest first, and a step size (one unit to begin with).
A round visits the layers in order of their share of free units, the scarcest first (ties: first
layer first), and in each proposes to prune its next ``step`` units: a proposal within the margin
is taken and doubles the layer's step, one that is not halves it. The search ends when every step
is below one unit. So the margin is spent in small pieces, shared by all layers, and first where
units are scarce: a layer that is filling up is not left to fill because another layer spent the
margin in one large step (the first version of this search began with steps of half a layer,
and one step of the second conv layer of ``cnn:16,16/32:bn`` took the whole margin; the search
before it visited the last layer first, to the end, kept the first conv layer of
``cnn:16,16/64:bn`` at 14-16 of 16 channels and ran out of capacity at task 2).

**Old features (reuse).** Then, within the same margin, the same rounds over the old units
of each layer (units of earlier tasks, read by the task's units of the next layer or by its head):
an old unit whose connections into the task are cut is not reused. Their order is the unit's
activity on this task's inputs times the summed magnitude of its weights into the task. Those
connections are then held at zero, like interference weights, so the task keeps only the old
features it needs, and :attr:`PruneDecision.reuse_cut` says which.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor

from .activity import outgoing_weight
from .network import CLNPNet
from .partition import live_units, trainable_units

CONFIDENCE_SLACK = 3.0
"""The mean true-class probability may fall by this many margins (it falls faster than accuracy). Measured on
split-digits: at 1x ``cnn:16,16/64:bn`` kept 14-15 of 16 channels per task and ran out of capacity at task 2;
at 3x mlp:256,256 scored 100 % with 207 and 199 of 256 units free, the CNN learned all 5 tasks (98.7 %); at
10x the MLP fell to 99.6 %."""


class Score(NamedTuple):
    """What an evaluation of a pruning configuration saw."""

    accuracy: float
    """Validation accuracy, a fraction in [0, 1]."""
    agreement: float = 1.0
    """Fraction of the search's inputs on which the predictions equal the dense network's."""
    confidence: float | None = None
    """Mean validation probability of the true class, where the caller asks the search to hold it too."""


Evaluate = Callable[[list[Tensor], list[Tensor] | None], Score]
"""``evaluate(keep, cut)``: validation score with units ``~keep`` silenced and old units ``cut`` disconnected."""


@dataclass
class PruneDecision:
    """Which units of the task survive pruning, which old units it reads, and what the search saw."""

    keep: list[Tensor]
    """Per layer, boolean per unit: True for units kept (old units are always True)."""
    reuse_cut: list[Tensor]
    """Per layer, boolean per unit: True for old units whose connections into the task are cut."""
    thresholds: list[float]
    """Per layer: the highest activity among the task's pruned units (0 where none was pruned)."""
    val_accuracy_before: float
    val_accuracy_after: float
    evaluations: int = 0
    history: list[tuple[str, float]] = field(default_factory=list)

    @property
    def pruned(self) -> list[int]:
        return [int((~k).sum()) for k in self.keep]


class _Axis:
    """One layer's ordered candidates and the step of the next proposal."""

    def __init__(self, layer: int, order: Tensor, share: float) -> None:
        self.layer = layer
        self.order = order
        self.done = 0
        self.step = 1 if order.numel() else 0
        self.share = share

    @property
    def open(self) -> bool:
        return self.step >= 1 and self.done < self.order.numel()

    def next(self) -> Tensor:
        return self.order[self.done:self.done + min(self.step, self.order.numel() - self.done)]


def _rounds(axes: list[_Axis], masks: list[Tensor], value: bool, passes: Callable[[list[Tensor]], Score | None],
            current: Score, history: list[tuple[str, float]], label: str) -> Score:
    """Rounds over ``axes``, scarcest layer first: set ``masks[layer][units] = value`` wherever it passes."""
    order = sorted(axes, key=lambda a: (a.share, a.layer))
    while any(a.open for a in order):
        for axis in order:
            if not axis.open:
                continue
            units = axis.next()
            trial = list(masks)
            trial[axis.layer] = masks[axis.layer].clone()
            trial[axis.layer][units] = value
            result = passes(trial)
            history.append((f"{label}{axis.layer}:+{units.numel()}", -1.0 if result is None else result.accuracy))
            if result is None:
                axis.step //= 2
                continue
            masks[axis.layer] = trial[axis.layer]
            axis.done += units.numel()
            axis.step *= 2
            current = result
    return current


def choose_pruning(net: CLNPNet, task: int, activity: Sequence[Tensor], evaluate: Evaluate,
                   margin: float, weighted: bool = False) -> PruneDecision:
    """Units to prune and old units to disconnect, as much as the ``margin`` (accuracy points) allows.

    See the module docstring for the search. ``evaluate`` may also return a bare accuracy (a float).
    ``weighted``: ``activity`` already counts each unit's weights into the task (the ``contribution``
    measure), so the order of the old units does not multiply by them a second time.
    """
    if not 0 <= margin < float("inf"):
        raise ValueError(f"the margin must be >= 0 accuracy points and finite, got {margin}")
    history: list[tuple[str, float]] = []
    evaluations = 0

    def score(keep: list[Tensor], cut: list[Tensor] | None = None) -> Score:
        nonlocal evaluations
        evaluations += 1
        result = evaluate(keep, cut)
        return result if isinstance(result, Score) else Score(float(result))  # type: ignore[arg-type]

    owners = net.owners
    candidates = [trainable_units(o) for o in owners]
    act = [a.to(c.device) for a, c in zip(activity, candidates, strict=True)]
    keep = [torch.ones_like(c) for c in candidates]
    no_cut = [torch.zeros_like(c) for c in candidates]
    dense = score(keep, None)
    history.append(("dense", dense.accuracy))
    floor = dense.accuracy - margin / 100.0

    unit_axes = []
    for i, (a, cand) in enumerate(zip(act, candidates, strict=True)):
        idx = torch.nonzero(cand).flatten()
        order = idx[torch.argsort(a[idx], stable=True)]
        unit_axes.append(_Axis(i, order, share=max(1, int(cand.sum())) / cand.numel()))
    agree_floor = 1.0 - margin / 100.0

    def within(result: Score) -> Score | None:
        ok = result.accuracy >= floor - 1e-9 and result.agreement >= agree_floor - 1e-9
        if result.confidence is not None and dense.confidence is not None and margin > 0:
            # At margin 0 no prediction may change: accuracy and agreement already hold the line.
            ok = ok and result.confidence >= dense.confidence - CONFIDENCE_SLACK * margin / 100.0 - 1e-9
        return result if ok else None

    current = _rounds(unit_axes, keep, False, lambda k: within(score(k, None)), dense, history, "units")

    old = [live_units(o, task - 1) for o in owners]  # earlier tasks' units
    cut = [c.clone() for c in no_cut]
    reuse_axes = []
    for i, o in enumerate(old):
        idx = torch.nonzero(o).flatten()
        if idx.numel() == 0:
            continue
        strength = act[i][idx] if weighted else act[i][idx] * outgoing_weight(net, i, task, keep)[idx].to(act[i].device)
        reuse_axes.append(_Axis(i, idx[torch.argsort(strength, stable=True)], share=1.0))
    if reuse_axes:
        current = _rounds(reuse_axes, cut, True, lambda c: within(score(keep, c)), current, history, "reuse")

    thresholds = []
    for a, cand, k in zip(act, candidates, keep, strict=True):
        pruned = cand & ~k
        thresholds.append(float(a[pruned].max()) if pruned.any() else 0.0)
    return PruneDecision(keep=keep, reuse_cut=cut, thresholds=thresholds, val_accuracy_before=dense.accuracy,
                         val_accuracy_after=current.accuracy, evaluations=evaluations, history=history)
