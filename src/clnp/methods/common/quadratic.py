"""Weight-elasticity methods: a quadratic pull of the shared weights towards earlier tasks' values.

``penalty = strength * sum_k sum_i importance_k[i] * (theta[i] - anchor_k[i]) ** 2`` over the
shared trunk (heads are task-specific and only the current one trains). This is the form of
Hsu, Liu & Kira 2018 ("Re-evaluating continual learning scenarios", arXiv 1810.12488, code
GT-RIPL/Continual-Learning-Benchmark), whose strengths for task-incremental split MNIST are the
defaults here, so they carry over without a factor of two. EWC keeps one term per task; online
EWC, SI and MAS keep one running term anchored at the latest weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor
from torch.func import functional_call, grad, vmap

from ...core.modes import evaluation_mode
from ...engine.config import TrainConfig
from .plain_net import PlainNet
from .sequential import SequentialLearner, check_consumed, tensor_list


class QuadraticLearner(SequentialLearner):
    """Sequential training plus a quadratic penalty; subclasses say how importance is measured."""

    def __init__(self, net: PlainNet, config: TrainConfig, strength: float) -> None:
        super().__init__(net, config)
        if strength < 0:
            raise ValueError(f"{self.method}: the strength must be >= 0, got {strength}")
        self.strength = float(strength)
        self.terms: list[tuple[list[Tensor], list[Tensor]]] = []
        """(importance, anchor) per term, one tensor per trunk parameter."""

    def extra_loss(self, task_id: int) -> Tensor | None:
        if not self.terms or self.strength == 0:
            return None
        params = self.net.trunk_parameters()
        total = params[0].new_zeros(())
        for importance, anchor in self.terms:
            for p, w, a in zip(params, importance, anchor, strict=True):
                total = total + (w * (p - a) ** 2).sum()
        return self.strength * total

    def penalty(self) -> float:
        """The current penalty (0.0 before any task has been consolidated)."""
        with torch.no_grad():
            value = self.extra_loss(len(self.reports))
        return 0.0 if value is None else float(value)

    def anchor(self) -> list[Tensor]:
        return [p.detach().clone() for p in self.net.trunk_parameters()]

    def state_tensors(self) -> dict[str, Tensor]:
        out = {}
        for t, (importance, anchor) in enumerate(self.terms):
            out.update({f"terms.{t}.importance.{i}": w for i, w in enumerate(importance)})
            out.update({f"terms.{t}.anchor.{i}": a for i, a in enumerate(anchor)})
        return out

    def state_meta(self) -> dict:
        return {"terms": len(self.terms)}

    def load_state_tensors(self, tensors: Mapping[str, Tensor], meta: dict, n_tasks: int) -> None:
        n_terms = meta.get("terms")
        if not isinstance(n_terms, int) or not 0 <= n_terms <= max(1, n_tasks):
            raise ValueError(f"{self.method}: 'terms' must be a count of penalty terms, got {n_terms!r}")
        like = self.net.trunk_parameters()
        self.terms = [(tensor_list(tensors, f"terms.{t}.importance", like),
                       tensor_list(tensors, f"terms.{t}.anchor", like)) for t in range(n_terms)]
        check_consumed(tensors, {f"terms.{t}.{kind}.{i}" for t in range(n_terms) for kind in ("importance", "anchor")
                                 for i in range(len(like))}, self.method)


def per_sample_gradient_mean(net: PlainNet, task_id: int, x: Tensor, score: Callable[[Tensor], Tensor],
                             transform: Callable[[Tensor], Tensor], chunk: int = 32) -> list[Tensor]:
    """Mean over the examples of ``transform(d score(logits of one example) / d theta)``.

    One gradient per example (``torch.func.vmap``), over the trunk parameters, in evaluation mode.
    """
    names = {id(p) for p in net.trunk_parameters()}
    params = {n: p.detach() for n, p in net.named_parameters() if id(p) in names}
    order = [n for n, p in net.named_parameters() if id(p) in names]

    def one(theta: dict[str, Tensor], xi: Tensor) -> Tensor:
        return score(functional_call(net, theta, (xi.unsqueeze(0), task_id))[0])

    per_example = vmap(grad(one), in_dims=(None, 0))
    sums = {n: torch.zeros_like(p) for n, p in params.items()}
    with evaluation_mode(net), torch.no_grad():  # torch.func.grad still differentiates; no-grad keeps the heads out
        for i in range(0, x.shape[0], chunk):
            grads = per_example(params, x[i:i + chunk].to(sums[order[0]].device, non_blocking=True))
            for n in order:
                sums[n] += transform(grads[n].detach()).sum(0)
    return [sums[n] / max(1, x.shape[0]) for n in order]


def squared_output_norm(logits: Tensor) -> Tensor:
    """||f(x)||_2^2 of the task's outputs (Aljundi et al.'s MAS)."""
    return logits.pow(2).sum()


def fisher_diagonal(net: PlainNet, task_id: int, batches: Iterable[Tensor]) -> list[Tensor]:
    """Diagonal Fisher information of the trunk, estimated as Hsu et al.'s EWC does (their strengths
    assume it): over the minibatches ``batches`` of inputs, the squared gradient of the batch's mean negative
    log-likelihood of the model's own predictions, times the batch length, averaged over batches.

    EWC passes ``task.train.input_batches(batch_size)``: the whole training split, untransformed, batch by
    batch. Untransformed because the penalty protects the task's outputs on its data as it is judged
    (validation and test are never transformed), not on augmented copies, and so that the estimate does not
    depend on which random transform a run drew; batch by batch so that a dataset-backed split is never held
    whole in memory.
    """
    params = net.trunk_parameters()
    sums = [torch.zeros_like(p) for p in params]
    n_batches = 0
    with evaluation_mode(net):
        for xb in batches:
            n_batches += 1
            xb = xb.to(params[0].device, non_blocking=True)
            logits = net(xb, task_id)
            loss = torch.nn.functional.cross_entropy(logits, logits.argmax(1))
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            for s, g in zip(sums, grads, strict=True):
                if g is not None:
                    s += g.detach() ** 2 * xb.shape[0]
    return [s / n_batches for s in sums]


def sensitivity(net: PlainNet, task_id: int, x: Tensor) -> list[Tensor]:
    """MAS importance: mean absolute gradient of the squared output norm, on inputs ``x``."""
    return per_sample_gradient_mean(net, task_id, x, squared_output_norm, torch.abs)


def n_samples(options: dict) -> int:
    value = int(options.get("samples", 1024))
    if value < 1:
        raise ValueError(f"option 'samples' must be >= 1, got {value}")
    return value
