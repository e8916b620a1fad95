"""Unit activity on held-out data (what pruning reads) and the accuracy (and loss) of a task's head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .modes import evaluation_mode
from .network import CLNPNet

ACTIVITY_MEASURES = ("mean_abs", "firing_rate", "contribution")
"""``mean_abs``: mean absolute activation (the paper's measure); ``firing_rate``: fraction of inputs on
which the unit is active; ``contribution``: mean absolute activation times the summed magnitude of the
unit's weights into the task's units of the next layer (or its head), what the unit passes on."""


@torch.no_grad()
def unit_activity(net: CLNPNet, task: int, x: Tensor, measure: str = "mean_abs",
                  batch_size: int = 1024, keep: Sequence[Tensor] | None = None) -> list[Tensor]:
    """Per-unit activity of every prunable layer on inputs ``x`` (evaluation mode).

    ``mean_abs``: mean absolute activation; ``firing_rate``: fraction of inputs with activation
    > 0; ``contribution``: ``mean_abs`` times :meth:`CLNPNet.outgoing_weight`. Conv channels are averaged over
    positions as well as inputs. ``keep``: per layer, the units that compute (the others are silenced), as in
    :meth:`CLNPNet.forward_with_activity`.

    ``contribution`` is there because the L1 penalty acts on activations alone: a unit can meet it with
    a small activation and large weights out of it, and then matters more than its activity says.
    """
    if measure not in ACTIVITY_MEASURES:
        raise ValueError(f"unknown activity measure {measure!r}; expected one of {ACTIVITY_MEASURES}")
    sums: list[Tensor] | None = None
    count = 0
    device = net.device
    with evaluation_mode(net):
        for start in range(0, x.shape[0], batch_size):
            _, taps = net.forward_with_activity(x[start:start + batch_size].to(device, non_blocking=True), task, keep)
            stats = []
            for a in taps:
                a = a.float()  # sums in float32 also under autocast
                v = (a > 0).to(a.dtype) if measure == "firing_rate" else a.abs()
                if v.dim() > 2:
                    v = v.flatten(2).mean(2)
                stats.append(v.sum(0))
            sums = stats if sums is None else [s + t for s, t in zip(sums, stats, strict=True)]
            count += taps[0].shape[0]
    assert sums is not None
    means = [s / count for s in sums]
    if measure == "contribution":
        means = [m * net.outgoing_weight(i, task).to(m.device, m.dtype) for i, m in enumerate(means)]
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
    device = net.device
    predictions = []
    total = torch.zeros((), dtype=torch.float64, device=device)
    confidence = torch.zeros((), dtype=torch.float64, device=device)
    with evaluation_mode(net):
        for start in range(0, x.shape[0], batch_size):
            logits = net(x[start:start + batch_size].to(device, non_blocking=True), task, keep).float()
            predictions.append(logits.argmax(1))
            if y is not None:
                yb = y[start:start + batch_size].to(device, non_blocking=True)
                total += F.cross_entropy(logits, yb, reduction="sum").double()
                confidence += logits.softmax(1).gather(1, yb[:, None]).sum().double()
    n = max(1, x.shape[0])
    predicted = torch.cat(predictions).cpu() if predictions else torch.zeros(0, dtype=torch.long)
    return predicted, float(total) / n, float(confidence) / n


def _nbytes(state: Tensor | tuple) -> int:
    """Bytes of what a layer reads: a tensor (a stack), or the tuple of values live at a point of a graph."""
    if isinstance(state, Tensor):
        return state.numel() * state.element_size()
    return sum(_nbytes(t) for t in state)


SEARCH_CACHE_BYTES = 1 << 30
""":class:`SearchCache` keeps what each layer reads only while it fits in this many bytes (else it recomputes)."""


class SearchCache:
    """Predictions of the task being learned on fixed inputs, under changing unit masks and reuse cuts, computed
    from the first layer that changed.

    The pruning search changes one layer per proposal: silencing units of layer ``i`` changes what layer ``i``
    gives on, cutting old units of layer ``i`` out of the task changes the weights of layer ``i + 1`` (or of the
    head). What every layer read is kept for the last few evaluations (one per prunable layer and one more: the
    search visits the layers in turn, so the evaluation that shares most with a proposal is usually a few calls
    back, the last one having tried another layer); a proposal recomputes only the layers from the first one it
    changes, relative to the closest of them: the same operations on the same values, so the same predictions
    as a full pass.
    """

    def __init__(self, net: CLNPNet, task: int, parts: Sequence[tuple[Tensor, Tensor | None]], batch_size: int = 1024,
                 max_bytes: int = SEARCH_CACHE_BYTES) -> None:
        """``parts``: (inputs, labels or None), each cut into batches of ``batch_size`` as
        :func:`predict_with_loss` would cut it (so the predictions are those of a full pass, bit for bit)."""
        self.net, self.task, self.max_bytes = net, task, max_bytes
        self.batches = [(x[s:s + batch_size], None if y is None else y[s:s + batch_size])
                        for x, y in parts for s in range(0, x.shape[0], batch_size)]
        self.states: list[tuple[list[Tensor], list[Tensor] | None, list[list[Tensor]]]] = []
        """(keep, cut, what each layer read per batch) of the last evaluations, newest last."""
        self.recomputed_layers = 0
        """Layers computed so far, over every call (a full pass counts every layer): the cache's saving, measured."""

    def _start(self, keep: Sequence[Tensor], cut: Sequence[Tensor] | None,
               state: tuple[list[Tensor], list[Tensor] | None, list[list[Tensor]]]) -> int:
        """The first layer whose output differs between ``state`` and the configuration (``keep``, ``cut``)."""
        net, n = self.net, self.net.n_layers
        old_keep, old_cut, _ = state
        changed = [net.search_point(i, cut=False) for i in range(n) if not torch.equal(keep[i], old_keep[i])]
        for i in range(n):
            before = old_cut[i] if old_cut is not None else None
            after = cut[i] if cut is not None else None
            if (before is None or not before.any()) and (after is None or not after.any()):
                continue
            if before is None or after is None or not torch.equal(before, after):
                changed.append(net.search_point(i, cut=True))
        return min(changed, default=net.n_search_points - 1)

    @torch.no_grad()
    def predict(self, keep: Sequence[Tensor], cut: Sequence[Tensor] | None = None) -> tuple[Tensor, float]:
        """Predicted classes (on the CPU) and the summed probability of the true class over the labelled inputs,
        with units ``~keep`` silenced; ``cut`` says which reuse cuts the caller has made in the weights."""
        net = self.net
        n_points = net.n_search_points
        start, base = 0, None
        for state in self.states:
            here = self._start(keep, cut, state)
            if here > start or base is None and here == start:
                start, base = here, state
        if base is None:
            start = 0
        self.recomputed_layers += (n_points - start) * len(self.batches)
        device = net.device
        keep_on = [k.to(device) for k in keep]
        predictions, confidence = [], torch.zeros((), dtype=torch.float64, device=device)
        reads: list[list[Tensor]] = []
        with evaluation_mode(net):
            for b, (xb, yb) in enumerate(self.batches):
                fresh: list[Tensor] = []
                if start == 0 or base is None:
                    xin = net.check_input(xb.to(device, non_blocking=True), self.task)
                    logits = net.forward_from(xin, self.task, keep_on, 0, fresh)
                    reads.append(fresh)
                else:
                    logits = net.forward_from(base[2][b][start], self.task, keep_on, start, fresh)
                    reads.append(base[2][b][:start] + fresh)
                logits = logits.float()
                predictions.append(logits.argmax(1))
                if yb is not None:
                    confidence += logits.softmax(1).gather(1, yb.to(device)[:, None]).sum().double()
        size = sum(_nbytes(t) for row in reads for t in row)
        depth = max(1, min(n_points, self.max_bytes // max(1, size)))  # tensors shared between states count once
        if size <= self.max_bytes:
            self.states.append(([k.clone() for k in keep], None if cut is None else [c.clone() for c in cut], reads))
            del self.states[:-depth]
        else:
            self.states.clear()
        predicted = torch.cat(predictions).cpu() if predictions else torch.zeros(0, dtype=torch.long)
        return predicted, float(confidence)
