"""CLNP's pruning search scoring: how a candidate pruning is judged on the validation split.

:func:`clnp.core.pruning.choose_pruning` proposes which units to keep; :meth:`SearchMixin._score` says what
that costs: validation accuracy, and where accuracy cannot resolve the margin, agreement with the dense
network and the true-class confidence on more inputs. Under torchrun each rank scores its share.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ...core.activity import SearchCache, predict_with_loss
from ...core.pruning import Score
from ...data.tasks import Task
from ...engine import distributed

RESOLVED_INPUTS = 10
"""Accuracy alone judges the pruning search where the margin is worth at least this many validation inputs;
below, the search also holds agreement with the dense network and the true-class confidence. Measured: at
1.2 inputs (split-fashion-mnist, margin 0.1) the finer measures lift ACC from 99.31 to 99.34 %; at 15
(permuted-fashion-mnist, margin 0.25) they keep more units per task and cost the last tasks accuracy."""

SEARCH_INPUTS = 1000
"""Where it holds the finer measures, the search compares predictions with the dense network's on at least
this many inputs (the validation inputs, then training inputs)."""


class SearchMixin:
    """The search scoring of :class:`~clnp.methods.clnp.CLNP`."""

    net: Any
    config: Any
    device: Any

    @staticmethod
    def _resolves(task: Task, margin: float) -> bool:
        """Whether validation accuracy alone resolves ``margin``: it is worth :data:`RESOLVED_INPUTS` inputs."""
        return margin / 100.0 * len(task.val) >= RESOLVED_INPUTS

    @staticmethod
    def _search_inputs(task: Task, margin: float) -> Tensor | None:
        """Where accuracy cannot resolve the ``margin`` (it is worth fewer than :data:`RESOLVED_INPUTS`
        validation inputs), the inputs on which the search also compares predictions with the dense
        network's (no labels needed): the validation inputs, then evenly spaced training inputs up to
        :data:`SEARCH_INPUTS`. None where accuracy alone resolves the margin. The training inputs are read
        untransformed (``take``), like the validation inputs: the probe stands for the data the task is judged
        on, not for its augmentation, and a bounded sample keeps a dataset-backed split out of memory."""
        if SearchMixin._resolves(task, margin):
            return None
        extra = min(len(task.train), SEARCH_INPUTS - len(task.val))
        if extra <= 0:
            return task.val.x
        index = torch.linspace(0, len(task.train) - 1, extra).round().long()
        return torch.cat([task.val.x, task.train.take(index)])

    @torch.no_grad()
    def _score(self, task: Task, task_id: int, keep: list[Tensor], cut: list[Tensor] | None, probe: Tensor | None,
               reference: Tensor | None, cache: SearchCache | None = None) -> Score:
        """Validation accuracy; with a ``probe`` (where accuracy cannot resolve the margin), agreement with the
        dense network's predictions on it and the mean true-class probability. Units ``~keep`` are silenced
        and the old units ``cut`` disconnected from the task."""
        pairs = self.net.reuse_cut_pairs(task_id, cut) if cut is not None else []
        saved = [weight.detach().clone() for weight, _ in pairs]
        n_val = len(task.val)
        try:
            for weight, mask in pairs:
                weight.masked_fill_(mask, 0.0)
            predicted, confidence = self._predict_shared(task_id, task.val.x if probe is None else probe,
                                                         task.val.y, keep, cache, cut)
        finally:
            for (weight, _), value in zip(pairs, saved, strict=True):
                weight.copy_(value)
        acc = float((predicted[:n_val] == task.val.y).sum()) / n_val
        agreement = 1.0 if reference is None else float((predicted == reference).sum()) / reference.numel()
        return Score(acc, agreement, None if reference is None else confidence)

    @staticmethod
    def _shares(n_inputs: int, n_labelled: int) -> tuple[slice, slice]:
        """This rank's rows of ``n_inputs`` search inputs, and those of them among the first ``n_labelled``."""
        rows = distributed.shard(n_inputs)
        return rows, slice(rows.start, max(rows.start, min(rows.stop, n_labelled)))

    def _search_cache(self, task_id: int, inputs: Tensor, labels: Tensor) -> SearchCache:
        """A :class:`SearchCache` of this rank's share of the search's inputs, batched as :meth:`_predict_shared`
        batches them."""
        rows, labelled = self._shares(inputs.shape[0], labels.shape[0])
        parts: list[tuple[Tensor, Tensor | None]] = [(inputs[labelled], labels[labelled])]
        if labelled.stop < rows.stop:
            parts.append((inputs[labelled.stop:rows.stop], None))
        return SearchCache(self.net, task_id, parts, self.config.eval_batch_size)

    def _predict_shared(self, task_id: int, inputs: Tensor, labels: Tensor | None,
                        keep: Sequence[Tensor] | None, cache: SearchCache | None = None,
                        cut: Sequence[Tensor] | None = None) -> tuple[Tensor, float]:
        """Predictions for every one of ``inputs`` and the mean probability of the true class over the
        first ``len(labels)`` of them (the labelled ones; 0.0 without labels). Under torchrun each rank
        predicts its share of the inputs and every rank gets them all, so the ranks judge alike at a
        fraction of the cost. With a ``cache`` of this rank's share (the search), only the layers from the
        first one that ``keep`` or the reuse ``cut`` changed since its last call are computed."""
        n_labelled = 0 if labels is None else labels.shape[0]
        rows, labelled = self._shares(inputs.shape[0], n_labelled)
        batch = self.config.eval_batch_size
        predicted, confidence = torch.zeros(0, dtype=torch.long), 0.0
        if cache is not None and keep is not None:
            predicted, total = cache.predict(keep, cut)
            confidence = total / max(1, labelled.stop - labelled.start)
        elif labels is not None:
            predicted, _, confidence = predict_with_loss(self.net, task_id, inputs[labelled], labels[labelled],
                                                         keep, batch)
        if cache is None and labelled.stop < rows.stop:
            more, _, _ = predict_with_loss(self.net, task_id, inputs[labelled.stop:rows.stop], None, keep, batch)
            predicted = torch.cat([predicted, more])
        if distributed.is_distributed():
            predicted = distributed.gather_rows(predicted, inputs.shape[0], self.device)
            if labels is not None:
                share = torch.tensor(confidence * (labelled.stop - labelled.start), dtype=torch.float64,
                                     device=self.device)
                confidence = float(distributed.sum_scalar(share)) / max(1, n_labelled)
        return predicted, confidence
