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

**With a capacity plan** (``budget``, per layer the most units the task may keep; ``clnp.core.capacity``), the
margin is the most a task may lose, not what it must lose: the rounds first prune what costs next to nothing
(:data:`FREE_SHARE` of the margin on every measure the search holds, the confidence :data:`FREE_CONFIDENCE_SLACK`
times it), then, only in layers still over their budget, spend up to the margin until the budget is met; a layer the
margin cannot bring to its budget is reported (``over_budget``). Old features are then cut only where that costs next
to nothing more (a cut frees no unit).

**Silent units cost no evaluation.** Where the caller measured activity on every input the search judges
(``silent_is_free``), a candidate of activity 0 computes 0 on all of them, and an old unit of strength 0 sends the
task nothing: a proposal of such units alone changes no prediction, so it is taken at the current score without
evaluating it, and the decisions are those of evaluating it. A unit silent in the dense network may wake once an
active unit it reads is pruned, so a layer's silence counts only while nothing upstream of it lost an active unit
(:meth:`CLNPNet.stays_silent`: earlier layers in a stack, any unit set in a traced network).

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

from .network import CLNPNet
from .partition import live_units, trainable_units

CONFIDENCE_SLACK = 3.0
"""The mean true-class probability may fall by this many margins (it falls faster than accuracy). Measured on
split-digits: at 1x ``cnn:16,16/64:bn`` kept 14-15 of 16 channels per task and ran out of capacity at task 2;
at 3x mlp:256,256 scored 100 % with 207 and 199 of 256 units free, the CNN learned all 5 tasks (98.7 %); at
10x the MLP fell to 99.6 %."""


FREE_SHARE = 0.1
"""With a plan, the loss the search counts as free: this share of the margin (noise level). At 0 the confidence is not
held at all, and on split-digits task 2 kept 3 and 8 units and scored 99.1 % where the greedy search scores 100 %."""

FREE_CONFIDENCE_SLACK = CONFIDENCE_SLACK
"""Within the free loss, how many times that loss the mean true-class probability may fall: as when spending the
margin. Holding it to the loss itself (1) was measured on every stream (``bench/RESULTS.md``, "The capacity plan",
twelfth session; ``bench/with_constants.py clnp.core.pruning.FREE_CONFIDENCE_SLACK=1.0 -- run ...``): split-digits
99.66 -> 99.74 % over 5 seeds (100 % at seed 0), its batch-norm CNN 99.25 -> 99.56 %, permuted-digits (10 tasks)
97.24 -> 97.48 %, split-fashion-mnist 99.31 -> 99.33 %, the wide permuted stream and the small protocol level, and 50
permuted-digits tasks 95.05 -> 94.96 % (2 seeds), in the last tasks' 1-3 units: not kept."""


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
    budget: list[int] | None = None
    """Per layer, the most units the plan let the task keep (None: the greedy search, without a plan)."""
    over_budget: list[int] = field(default_factory=list)
    """Per layer, units kept beyond the budget because the margin did not allow pruning them."""
    given_up: list[float] = field(default_factory=list)
    """Per layer, validation accuracy (points) the search gave up to prune that layer's units."""
    val_accuracy_lossless: float | None = None
    """After the pruning that cost no accuracy (the plan's first step; without a plan, after the search)."""

    @property
    def pruned(self) -> list[int]:
        return [int((~k).sum()) for k in self.keep]


class _LayerProposals:
    """One layer's ordered candidates and the step of the next proposal."""

    def __init__(self, layer: int, order: Tensor, share: float, silent: int = 0) -> None:
        self.layer = layer
        self.order = order
        self.done = 0
        self.step = 1 if order.numel() else 0
        self.share = share
        self.silent = silent
        """How many candidates at the head of ``order`` change no score when pruned (activity 0)."""

    @property
    def open(self) -> bool:
        return self.step >= 1 and self.done < self.order.numel()

    def next(self) -> Tensor:
        return self.order[self.done:self.done + min(self.step, self.order.numel() - self.done)]


def _rounds(axes: list[_LayerProposals], masks: list[Tensor], value: bool,
            passes: Callable[[list[Tensor]], Score | None], current: Score, history: list[tuple[str, float]],
            label: str, spent: list[float] | None = None, changed: set[int] | None = None,
            stays_silent: Callable[[int, set[int]], bool] | None = None) -> Score:
    """Rounds over ``axes``, scarcest layer first: set ``masks[layer][units] = value`` wherever it passes.

    ``spent``: per layer, adds the validation accuracy (a fraction) each accepted proposal cost. ``changed``: the
    layers where a unit that was not silent has been pruned, this call adding to it; a layer's silent units are
    known silent only while ``stays_silent(layer, changed)`` (pruning an active unit may wake a silent one
    downstream). None: silence stays known (an old unit computes the same whatever the task prunes)."""
    order = sorted(axes, key=lambda a: (a.share, a.layer))
    while any(a.open for a in order):
        for axis in order:
            if not axis.open:
                continue
            units = axis.next()
            trial = list(masks)
            trial[axis.layer] = masks[axis.layer].clone()
            trial[axis.layer][units] = value
            # Silent units change no prediction: the score is the current one, which passed (module docstring).
            silent = axis.done + units.numel() <= axis.silent and (
                changed is None or stays_silent is None or stays_silent(axis.layer, changed))
            result = current if silent else passes(trial)
            history.append((f"{label}{axis.layer}:+{units.numel()}", -1.0 if result is None else result.accuracy))
            if result is None:
                axis.step //= 2
                continue
            masks[axis.layer] = trial[axis.layer]
            axis.done += units.numel()
            axis.step *= 2
            if changed is not None and not silent:
                changed.add(axis.layer)
            if spent is not None:
                spent[axis.layer] += current.accuracy - result.accuracy
            current = result
    return current


def choose_pruning(net: CLNPNet, task: int, activity: Sequence[Tensor], evaluate: Evaluate,
                   margin: float, weighted: bool = False, budget: Sequence[int] | None = None,
                   trained: Sequence[Tensor] | None = None, fine_at_margin: bool = True,
                   silent_is_free: bool = False) -> PruneDecision:
    """Units to prune and old units to disconnect, within the ``margin`` (accuracy points).

    Without a ``budget`` (greedy): as much as the margin allows. With one (per layer, the most units the task
    may keep, :func:`clnp.core.capacity.unit_budget`): first whatever costs next to nothing (:data:`FREE_SHARE`
    of the margin); then, only in layers still over their budget, up to the margin until the budget is met; and
    old features only where cutting them costs next to nothing more. So the margin is the most a task may lose,
    not what it must lose.
    See the module docstring for the rounds. ``evaluate`` may also return a bare accuracy (a float).
    ``weighted``: ``activity`` already counts each unit's weights into the task (the ``contribution``
    measure), so the order of the old units does not multiply by them a second time. ``trained``: per layer, the
    free units the task trained (the others are silent and pruned from the start); None: all of them.
    ``fine_at_margin``: hold the finer measures ``evaluate`` reports (agreement, confidence) when spending the whole
    margin too, not only within the free loss; False where accuracy alone resolves the margin.
    ``silent_is_free``: ``activity`` was measured on every input ``evaluate`` judges, so a unit of activity 0 (and
    an old unit of strength 0) changes no score; proposals of such units alone are then taken without evaluating
    them, and the search takes the same decisions in fewer evaluations.
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
    if budget is not None and len(budget) != len(candidates):
        raise ValueError(f"budget has {len(budget)} entries; the network has {len(candidates)} prunable layers")
    keep = [torch.ones_like(c) for c in candidates]
    if trained is not None:  # free units the task did not train are pruned from the start
        candidates = [c & t.to(c.device) for c, t in zip(candidates, trained, strict=True)]
        keep = [~(trainable_units(o) & ~c) for o, c in zip(owners, candidates, strict=True)]
    act = [a.to(c.device) for a, c in zip(activity, candidates, strict=True)]
    no_cut = [torch.zeros_like(c) for c in candidates]
    dense = score(keep, None)
    history.append(("dense", dense.accuracy))

    def within(reference: Score, tolerance: float, fine: bool = True,
               slack: float = CONFIDENCE_SLACK) -> Callable[[Score], Score | None]:
        """Accept a result no more than ``tolerance`` (points) below ``reference`` on every measure (on accuracy
        alone unless ``fine``), the confidence no more than ``slack`` times it."""
        def accept(result: Score) -> Score | None:
            drop = tolerance / 100.0
            ok = result.accuracy >= reference.accuracy - drop - 1e-9
            if not fine:
                return result if ok else None
            ok = ok and result.agreement >= reference.agreement - drop - 1e-9
            if result.confidence is not None and reference.confidence is not None and tolerance > 0:
                # At tolerance 0 no prediction may change: accuracy and agreement already hold the line.
                ok = ok and result.confidence >= reference.confidence - slack * drop - 1e-9
            return result if ok else None
        return accept

    def silent_prefix(ordered: Tensor) -> int:
        """How many of these scores, in ascending order, are 0 (all of them change nothing), where that is known."""
        return int((ordered <= 0).sum()) if silent_is_free else 0

    orders = []
    for a, cand in zip(act, candidates, strict=True):
        idx = torch.nonzero(cand).flatten()
        orders.append(idx[torch.argsort(a[idx], stable=True)])

    def unit_axes(limit: Sequence[int] | None) -> list[_LayerProposals]:
        """One axis per layer over its candidates, from the ``keep`` mask's pruned prefix on (the rounds always
        prune a prefix of the order), at most ``limit[i]`` more units."""
        axes = []
        for i, (order, cand) in enumerate(zip(orders, candidates, strict=True)):
            done = int((cand & ~keep[i]).sum())
            stop = order.numel() if limit is None else min(order.numel(), done + max(0, limit[i]))
            axis = _LayerProposals(i, order[:stop], share=max(1, int(cand.sum()) - done) / cand.numel(),
                                   silent=silent_prefix(act[i][order[:stop]]))
            axis.done = done
            axes.append(axis)
        return axes

    spent = [0.0] * len(candidates)
    changed: set[int] = set()
    if budget is None:
        current = _rounds(unit_axes(None), keep, False, lambda k: within(dense, margin)(score(k, None)), dense,
                          history, "units", spent, changed, net.stays_silent)
        lossless = current
        reuse_checks = [within(dense, margin)]
    else:
        # Accuracy first: whatever costs nothing; then, where a layer is over its budget, up to the margin.
        free_loss = FREE_SHARE * margin
        free = within(dense, free_loss, slack=FREE_CONFIDENCE_SLACK)
        current = _rounds(unit_axes(None), keep, False, lambda k: free(score(k, None)), dense,
                          history, "free", spent, changed, net.stays_silent)
        lossless = current
        excess = [int((c & k).sum()) - b for c, k, b in zip(candidates, keep, budget, strict=True)]
        if any(e > 0 for e in excess):
            current = _rounds([a for a in unit_axes(excess) if excess[a.layer] > 0], keep, False,
                              lambda k: within(dense, margin, fine_at_margin)(score(k, None)), current, history,
                              "budget", spent, changed, net.stays_silent)
        # Cutting old features frees no unit: only where it costs next to nothing, and never past the margin.
        reuse_checks = [within(dense, margin, fine_at_margin),
                        within(current, free_loss, slack=FREE_CONFIDENCE_SLACK)]

    old = [live_units(o, task - 1) for o in owners]  # earlier tasks' units
    cut = [c.clone() for c in no_cut]
    reuse_axes = []
    for i, o in enumerate(old):
        idx = torch.nonzero(o).flatten()
        if idx.numel() == 0:
            continue
        strength = act[i][idx] if weighted else act[i][idx] * net.outgoing_weight(i, task, keep)[idx].to(act[i].device)
        by_strength = torch.argsort(strength, stable=True)
        reuse_axes.append(_LayerProposals(i, idx[by_strength], share=1.0, silent=silent_prefix(strength[by_strength])))
    if reuse_axes:
        def reuse_passes(c: list[Tensor]) -> Score | None:
            result = score(keep, c)
            return result if all(check(result) is not None for check in reuse_checks) else None

        current = _rounds(reuse_axes, cut, True, reuse_passes, current, history, "reuse")

    thresholds = []
    for a, cand, k in zip(act, candidates, keep, strict=True):
        pruned = cand & ~k
        thresholds.append(float(a[pruned].max()) if pruned.any() else 0.0)
    kept = [int((c & k).sum()) for c, k in zip(candidates, keep, strict=True)]
    return PruneDecision(keep=keep, reuse_cut=cut, thresholds=thresholds, val_accuracy_before=dense.accuracy,
                         val_accuracy_after=current.accuracy, evaluations=evaluations, history=history,
                         budget=None if budget is None else [int(b) for b in budget],
                         over_budget=[0] * len(kept) if budget is None
                         else [max(0, k - int(b)) for k, b in zip(kept, budget, strict=True)],
                         given_up=[100.0 * s for s in spent], val_accuracy_lossless=lossless.accuracy)
