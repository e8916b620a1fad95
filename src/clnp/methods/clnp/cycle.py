"""CLNP's cycle for one task: train with the L1 penalty, check it learned, measure activity, search the
pruning, fine-tune the kept units, freeze them; and the hooks it gives the one loop.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ...core.activity import accuracy, predict_with_loss, unit_activity
from ...core.capacity import (
    MIN_TRAINED,
    pull_scale,
    reserve_units,
    tasks_to_plan_for,
    unit_budget,
    units_to_train,
)
from ...core.partition import FREE, live_units
from ...core.pruning import FREE_SHARE, choose_pruning
from ...core.sparsity import l1_activity_penalty, l1_unit_weights, l1_weight_penalty
from ...data.tasks import Task
from ...engine import distributed
from ...engine.loop import steps_per_epoch
from .report import TaskReport

if TYPE_CHECKING:
    import contextlib

    from ...engine.learner import Learner
    from .search import SearchMixin

    class _CycleHost(SearchMixin, Learner):
        """For mypy only: what the cycle reads of the learner it is mixed into (:class:`~clnp.methods.clnp.CLNP`):
        the search's scoring, the one loop (:meth:`Learner.train_phase`) and the run's precision."""

        def _precision(self) -> contextlib.AbstractContextManager: ...
else:
    _CycleHost = object


class TrainingFailedError(FloatingPointError):
    """A task's network trained to about chance (or diverged): it is not pruned or frozen.

    A ``FloatingPointError`` like a diverged loss, so callers that stop a run on one stop on both.
    """


ANNEAL_AFTER_STEPS = 40
"""Annealing waits for this many training steps: the activity of a younger network ranks noise (split-digits on
``mlp:32``, 3 tasks of 4 epochs of 10 steps: annealed from the first 10 steps, task 1 stayed at chance). On the
benchmarks measured it delays annealing only on the digits streams (split-digits: 9 steps an epoch, annealing
starts after the fifth of 60; permuted-digits: 34, after the second of 30; 10 tasks 97.22 % against 97.19 % from
the first)."""

L1_BY_FREE_SHARE = True
"""With a plan, the L1 pull on each unit a task trains is the coefficient times the share of its layer still free: as
a layer fills, a task's units are a smaller part of what the next layer reads, and the full pull idled them while
the task leaned on old units (permuted-fashion-mnist, ``mlp:100,100``: the last task kept 2-5 of its 10-15
units of layer 0 and scored 81-84 % against 85-86 %). Measured (bench/RESULTS.md, "The capacity plan", seventh
session, 3 seeds): the small protocol 85.12 -> 85.61 %, the wide permuted stream 87.85 (seed 0) -> 88.48 %;
split-fashion-mnist 99.34 -> 99.29 %, permuted-digits 97.63 -> 97.43 %. The greedy search (``plan=False``, the
paper's) keeps the flat pull."""

L1_FOLLOWS_BUDGET = True
"""With a plan, a layer's pull is also relaxed where every earlier task left most of its budget there unused
(:func:`~clnp.core.capacity.pull_scale`: to as little as a third): the pull idles units to free them for later
tasks, and where the tasks take far fewer free units than the plan gives them, it costs accuracy for nothing.
Measured (bench/RESULTS.md, "The capacity plan", fourteenth session, one machine): split-fashion-mnist 99.29 ->
99.32 % over 5 seeds, split-digits 99.62 -> 99.77 % (seed 0 100 % both); every stream whose tasks fill at least half
their budgets (the small protocol, the wide permuted stream, permuted-digits with 10 and 50 tasks, split-digits'
batch-norm CNN) computes exactly what it did."""

L1_WARMUP_EPOCHS = 0.0
"""The training phase's L1 pull rises linearly from 0 to its full value over this many epochs (by optimiser step),
so that a task's units learn features before the pull idles the weak ones; 0: the full pull from the first step.
Measured as a variant (bench/RESULTS.md, "The capacity plan", eleventh and thirteenth sessions;
``bench/with_constants.py clnp.methods.clnp.cycle.L1_WARMUP_EPOCHS=1 -- run ...``): one epoch moved every stream by
less than its seed spread (split-fashion-mnist +0.02, the small protocol -0.03 points), so it is off."""

ANNEAL_OPEN_ENDED = True
"""A task of an open-ended stream (no ``expected_tasks``) is annealed to the doubling rule's budget like one of a
stream of known length. False (before the fourteenth session): it trained on a few times its budget and the search
cut it within the margin, and the first tasks kept far more than their budgets: open-ended permuted-digits (10 tasks,
seeds 0-2) 94.45 % with 0-4 units left free, against 96.23 % and 21-27 annealed; on ``mlp:64,64`` it stopped at task 7
or 8, annealed it learns all ten (bench/RESULTS.md, "The capacity plan", fourteenth session;
``bench/open_ended.py``)."""

LOSS_GAIN = 0.05
"""A dense network whose validation loss is within this fraction of the class prior's entropy learned nothing."""


def _class_prior(task: Task) -> Tensor:
    """The frequencies of the classes in the task's validation split."""
    return torch.bincount(task.val.y, minlength=task.n_classes).double() / max(1, len(task.val))


class CycleMixin(_CycleHost):
    """The cycle of :class:`~clnp.methods.clnp.CLNP` and its hooks of the one loop."""

    net: Any
    config: Any
    reports: list
    l1: list
    loss_scale: Tensor | None
    _phase: _Phase | None
    _activity: list[Tensor]

    def _learn(self, task: Task, task_id: int, generator: torch.Generator) -> TaskReport:
        cfg = self.config
        net = self.net
        tasks_left = tasks_to_plan_for(cfg.expected_tasks, task_id)
        budget = unit_budget(net.free_units(), tasks_left, cfg.share,
                             [reserve_units(o.numel(), cfg.expected_tasks) for o in net.owners]) if cfg.plan else None
        # Annealed (between epochs, once ANNEAL_AFTER_STEPS are taken) the task learns within its budget, open-ended
        # too, where the budget is the doubling rule's; a task too short for that is cut by the search.
        steps = steps_per_epoch(len(task.train), cfg.batch_size, distributed.world_size())
        annealed = (cfg.anneal and budget is not None and (cfg.expected_tasks is not None or ANNEAL_OPEN_ENDED)
                    and (cfg.epochs - 1) * steps >= ANNEAL_AFTER_STEPS)
        trained = None if budget is None else units_to_train(net.owners, budget, tasks_left, cfg.share, annealed)
        net.reset_free_units_()
        if trained is not None:
            self._silence_untrained(trained)
        net.add_head(task.n_classes)
        seconds: dict[str, float] = {}
        log: list[dict] = []

        t0 = time.perf_counter()
        train_keep = None if trained is None else [t | (o != FREE) for t, o in zip(trained, net.owners, strict=True)]
        trained_at_start = [] if trained is None else [int(t.sum()) for t in trained]
        anneal = (_Anneal(task_id, list(budget), trained_at_start, trained)
                  if annealed and budget is not None and trained is not None else None)
        pull = self._l1_pull()
        self._train(task, task_id, cfg.epochs, "train", generator, keep=train_keep, l1=pull, log=log, anneal=anneal)
        seconds["train"] = time.perf_counter() - t0
        # From here to the freeze the task's dense network is its trained units: units annealed away keep their
        # weights and batch-norm shifts (zeroing a layer's rows would not silence a unit behind a batch norm), so
        # every evaluation below masks them, as training did.
        with self._precision():
            self._check_trained(task, task_id, train_keep)

            t0 = time.perf_counter()
            activity = unit_activity(net, task_id, task.val.x, cfg.activity, cfg.eval_batch_size, keep=train_keep)
            seconds["activity"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            # With a plan, most pruning happens within the free loss, a tenth of the margin: whether accuracy
            # resolves that decides whether the finer measures are held.
            probe = self._search_inputs(task, FREE_SHARE * cfg.margin if cfg.plan else cfg.margin)
            reference = None if probe is None else predict_with_loss(net, task_id, probe, keep=train_keep,
                                                                     batch_size=cfg.eval_batch_size)[0]
            cache = self._search_cache(task_id, task.val.x if probe is None else probe, task.val.y)
            decision = choose_pruning(net, task_id, activity,
                                      lambda keep, cut: self._score(task, task_id, keep, cut, probe, reference,
                                                                    cache),
                                      cfg.margin, weighted=cfg.activity == "contribution", budget=budget,
                                      trained=trained, fine_at_margin=not self._resolves(task, cfg.margin),
                                      silent_is_free=self._silent_is_free(task, probe))
            # Every rank searched the same validation set; rank 0's masks are the partition, on all.
            distributed.agree_tensors_([*decision.keep, *decision.reuse_cut])
        seconds["search"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        reuse_cut = self.net.reuse_cut_pairs(task_id, decision.reuse_cut)
        with torch.no_grad():
            for weight, mask in reuse_cut:
                weight.masked_fill_(mask, 0.0)  # the old features the task does without: cut for good
        if cfg.finetune_epochs:
            snapshot = copy.deepcopy(net.state_dict(keep_vars=False))
            self._train(task, task_id, cfg.finetune_epochs, "finetune", generator, keep=decision.keep,
                        l1=None, log=log, reuse_cut=reuse_cut)
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
            trained=trained_at_start,
            l1_pull=pull,
        )
        self.reports.append(report)
        return report

    def _l1_pull(self) -> list[float]:
        """Per layer, the share of the L1 coefficient the coming task's units train under. With a plan: the share
        of the layer still free (:data:`L1_BY_FREE_SHARE`), times the budget's slack (:data:`L1_FOLLOWS_BUDGET`);
        without one, the full coefficient."""
        owners = self.net.owners
        if not self.config.plan:
            return [1.0] * len(owners)
        pull = [float((o == FREE).sum()) / max(1, o.numel()) if L1_BY_FREE_SHARE else 1.0 for o in owners]
        if L1_FOLLOWS_BUDGET:
            slack = pull_scale([r.owned for r in self.reports], [r.budget for r in self.reports], len(owners))
            pull = [p * s for p, s in zip(pull, slack, strict=True)]
        return pull

    def _silent_is_free(self, task: Task, probe: Tensor | None) -> bool:
        """Whether a unit of activity 0 changes no score of the search: activity was measured on every input the
        search judges (the validation split; not where the probe adds training inputs), and 0 means the unit passes
        nothing on (not so for ``firing_rate``: a unit that never fires may still output a negative value)."""
        return self.config.activity != "firing_rate" and (probe is None or probe.shape[0] == len(task.val))

    @torch.no_grad()
    def _silence_untrained(self, trained: Sequence[Tensor]) -> None:
        """Zero the incoming weights and biases of the free units the task does not train (the plan keeps them for
        later tasks): they compute 0, so neither the activity measure nor the search sees random features."""
        self.net.silence_free_units_(trained)

    def _check_trained(self, task: Task, task_id: int, keep: Sequence[Tensor] | None = None) -> None:
        """Refuse to prune and freeze a task whose dense network learned nothing.

        Nothing learned: validation accuracy about chance (below ``min_gain`` of the way from the most
        frequent class to 100 %) *and* a validation loss no better than predicting the class frequencies
        (within 5 % of their entropy). The loss tells a collapsed network (L1 too strong: 2.305 against
        an entropy of 2.292 on permuted digits) from one that is merely young (2 epochs on split-digits:
        accuracy at chance, but loss 0.62 against 0.69), which goes on to learn.
        """
        if self.config.min_gain <= 0:
            return
        predicted, loss, _ = predict_with_loss(self.net, task_id, task.val.x, task.val.y, keep=keep,
                                               batch_size=self.config.eval_batch_size)
        acc = float((predicted == task.val.y).sum()) / len(task.val)
        acc, loss = distributed.agree((acc, loss))  # every rank raises, or none
        prior = _class_prior(task)
        chance = float(prior.max())
        entropy = float(-(prior[prior > 0] * prior[prior > 0].log()).sum())
        if acc < self._learned_line(task) and loss >= (1 - LOSS_GAIN) * entropy:
            raise TrainingFailedError(
                f"task {task_id} ({task.name}): after training, validation accuracy is {100 * acc:.1f} %, about "
                f"chance ({100 * chance:.1f} %, the most frequent class), and the loss {loss:.3f} no better than "
                f"guessing the class frequencies ({entropy:.3f}): nothing was learned, so nothing is frozen. "
                f"Likely causes: an L1 penalty too strong for this network (l1={self.config.l1}; try a tenth of "
                f"it) or a learning rate too high or too low (lr={self.config.lr})")

    def _learned_line(self, task: Task) -> float:
        """The validation accuracy a task must pass to count as learning: ``min_gain`` of the way from chance (the
        most frequent class) to 100 %."""
        chance = float(_class_prior(task).max())
        return chance + self.config.min_gain * (1.0 - chance)

    def _train(self, task: Task, task_id: int, epochs: int, phase: str, generator: torch.Generator,
               keep: Sequence[Tensor] | None, l1: Sequence[float] | None, log: list[dict],
               reuse_cut: Sequence[tuple[Tensor, Tensor]] = (), anneal: _Anneal | None = None) -> None:
        """One phase through the one loop: ``train`` under the L1 penalty (``l1``: per layer, the share of the
        coefficient its units feel, :meth:`_l1_pull`), or ``finetune`` with ``keep`` and no penalty (``l1`` None).

        ``reuse_cut``: (weight, mask) pairs held at zero after every step (old features the task does without).
        """
        net = self.net
        trainable = [o == FREE for o in net.owners]
        coefficients = [0.0] * len(trainable) if l1 is None else [c * p for c, p in zip(self.l1, l1, strict=True)]
        self._phase = _Phase(task=task, keep=keep, l1=l1 is not None, trainable=trainable,
                             l1_coefficients=coefficients, nonnegative=net.nonnegative_activity(),
                             l1_weights=l1_unit_weights(coefficients, trainable)
                             if l1 is not None and self.config.sparsity == "activations" else None,
                             reuse_cut=list(reuse_cut), anneal=anneal)
        try:
            log += self.train_phase(net.trainable_parameters(task_id), task.train, generator, epochs=epochs,
                                    head=task_id, task=task_id, phase=phase, label=f"task {task_id} ({task.name})")
        finally:
            self._phase = None

    # ------------------------------------------------------------------- hooks of the one loop
    divergence_hint = "lower the learning rate or the L1 coefficient"

    def batch_loss(self, batch: tuple[Tensor, ...], head: int, step: int, n_steps: int) -> Tensor:
        phase = self._phase
        assert phase is not None
        xb, yb = batch
        phase.steps += 1
        weights = phase.l1_weights
        phase.steps_per_epoch = n_steps
        ramp = phase.l1_ramp()
        if weights is not None and ramp < 1.0:
            weights = [None if w is None else w * ramp for w in weights]
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
            layers = [block.layer for block in self.net.blocks]  # a stack only: CLNP refuses a graph network with it
            coefficients = [c * phase.l1_ramp() for c in phase.l1_coefficients]
            return l1_weight_penalty([layer.weight for layer in layers], coefficients, phase.trainable,
                                     [layer.bias for layer in layers])
        with torch.no_grad():
            coefficients = [c * phase.l1_ramp() for c in phase.l1_coefficients]
            return l1_activity_penalty(acts, coefficients, phase.trainable, phase.nonnegative)

    def after_step(self, head: int) -> None:
        self.net.restore_frozen_()  # weight decay moves frozen rows too: put them back
        phase = self._phase
        if phase is not None:
            for weight, mask in phase.reuse_cut:
                weight.detach().masked_fill_(mask, 0.0)

    def after_epoch(self, head: int, epoch: int, epochs: int) -> None:
        """With a plan, between the training epochs: prune the task's least active trained units towards its
        budget on a cubic schedule (:class:`_Anneal`), so that it learns within the budget. Not before
        :data:`ANNEAL_AFTER_STEPS` steps, nor while validation accuracy is still about chance (``min_gain``): a
        3-epoch task of split-digits on 32 units, annealed from its first epoch, stayed at chance."""
        phase = self._phase
        if phase is None or phase.anneal is None or epoch >= epochs - 1:
            return
        anneal = phase.anneal
        if phase.steps < ANNEAL_AFTER_STEPS or phase.val_accuracy < self._learned_line(phase.task):
            return  # not learned yet: its activity ranks noise (the schedule catches up at the next epochs)
        targets = anneal.targets(epoch, epochs)
        if all(int(t.sum()) <= n for t, n in zip(anneal.trained, targets, strict=True)):
            return
        assert phase.keep is not None
        with self._precision():
            activity = unit_activity(self.net, anneal.task, phase.task.val.x, self.config.activity,
                                     self.config.eval_batch_size, keep=phase.keep)
        for i, (t, n) in enumerate(zip(anneal.trained, targets, strict=True)):
            idx = torch.nonzero(t).flatten()
            if idx.numel() <= n:
                continue
            drop = idx[torch.argsort(activity[i].to(idx.device)[idx], stable=True)[:idx.numel() - n]]
            t[drop] = False
            phase.keep[i][drop] = False  # type: ignore[index]
        distributed.agree_tensors_([*anneal.trained, *phase.keep])  # type: ignore[list-item]

    def validate(self, head: int) -> float:
        phase = self._phase
        assert phase is not None
        val = phase.task.val
        with self._precision():
            predicted, _ = self._predict_shared(head, val.x, None, phase.keep)
        phase.val_accuracy = float((predicted == val.y).sum()) / max(1, len(val))
        return phase.val_accuracy

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
    l1_coefficients: list[float]
    """Per layer, the L1 pull on each trainable unit in this phase (:meth:`CycleMixin._l1_pull`)."""
    nonnegative: list[bool]
    l1_weights: list[Tensor | None] | None
    reuse_cut: list[tuple[Tensor, Tensor]] = field(default_factory=list)
    anneal: _Anneal | None = None
    val_accuracy: float = 0.0
    """The last epoch's validation accuracy (:meth:`CycleMixin.validate`)."""
    steps: int = 0
    """Optimiser steps taken so far in the phase."""
    steps_per_epoch: int = 0
    """The phase's optimiser steps an epoch (from the loop, at each batch)."""

    def l1_ramp(self) -> float:
        """The fraction of the L1 pull the current step feels (:data:`L1_WARMUP_EPOCHS`)."""
        if L1_WARMUP_EPOCHS <= 0 or self.steps_per_epoch <= 0:
            return 1.0
        return min(1.0, self.steps / (L1_WARMUP_EPOCHS * self.steps_per_epoch))


@dataclass
class _Anneal:
    """The training phase's pruning schedule: per layer from the ``start`` units trained down to the ``budget``,
    cubic in the epochs (most pruning early, when the network adapts most easily; Zhu & Gupta 2017), reaching the
    budget before the last epoch, which trains exactly the units the task may keep. Never below
    :data:`~clnp.core.capacity.MIN_TRAINED` units: a budget of one or two units is left to the search, within the
    margin (annealed to one channel per unit set, resnet18:4's first task on split-digits learned nothing).
    ``trained`` is pruned in place: the search starts from it."""

    task: int
    budget: list[int]
    start: list[int]
    trained: list[Tensor]

    def targets(self, epoch: int, epochs: int) -> list[int]:
        """Per layer, the most units trained after epoch ``epoch`` (from 0) of ``epochs``."""
        left = max(0.0, 1.0 - (epoch + 1) / max(1, epochs - 1)) ** 3
        floors = [max(b, MIN_TRAINED) for b in self.budget]
        return [n if n <= f else f + math.ceil((n - f) * left) for f, n in zip(floors, self.start, strict=True)]
