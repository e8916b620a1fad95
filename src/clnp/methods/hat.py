"""``hat``: Hard Attention to the Task (Serra, Suris, Miron & Karatzoglou 2018, ICML, arXiv 1801.01423).

Every hidden unit (feature or channel) of every block has a learned embedding per task; the
task's gate is ``sigmoid(s * e)``, multiplied into the unit's activity. During training ``s``
anneals linearly over each epoch's batches from ``1/s_max`` to ``s_max``; the embeddings'
gradients get the paper's compensation ``s_max/s * (cosh(s e) + 1) / (cosh(e) + 1)`` and are
clamped to ``[-6, 6]``; a regulariser ``c * sum(a_t * (1 - a_<t)) / sum(1 - a_<t)`` keeps new
tasks off units not yet used. Gradients of a weight are scaled by
``1 - min(a_<t[out], a_<t[in])``, ``a_<t`` the union of earlier tasks' masks.

Defaults ``s_max = 400``, ``c = 0.75`` (the paper's values). Options ``smax``, ``c``.

One deviation, for exactness: a learned task's mask is the binary ``e > 0`` (the paper uses
``sigmoid(s_max e)``, within 1e-3 of it unless ``|e| < 0.02``), both at test time and in
``a_<t``. Weights between two units of an earlier task then get exactly zero gradient, and their
values are restored after every step in case the optimiser's weight decay moves them, so earlier
tasks' outputs are bit-identical after later tasks. Needs a stack of layers (``mlp``/``cnn`` specs)
without batch norm: the built-in graph models (``resnet18:NF``, ``alexnet``) are refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ..data.tasks import Task
from ..engine.config import TrainConfig
from ..engine.method import Method
from ..engine.options import Option
from .common.plain_net import PlainNet, count_parameters
from .common.sequential import (
    BYTES_PER_FLOAT,
    SequentialLearner,
    check_consumed,
    options_float,
    require_no_batch_norm,
    tensor_list,
)

DEFAULT_SMAX = 400.0
DEFAULT_C = 0.75
EMBEDDING_CLAMP = 6.0
COSH_CLAMP = 50.0
GRAD_CLIP = 10_000.0


def _units(layer: nn.Linear | nn.Conv2d) -> int:
    return int(layer.weight.shape[0])


def _require_gateable(net: PlainNet) -> None:
    """Refuse, in one line, a network whose units HAT cannot gate: a built-in graph model (residual
    additions, batch norm) or a chain with batch norm."""
    if net.graph:
        why = "has batch norm" if net.has_batch_norm else "is a graph model, not a stack of layers"
        raise ValueError(f"hat gates the units of a stack of layers and needs a model without batch norm; "
                         f"{net.spec} {why}: use packnet, or clnp")
    require_no_batch_norm(net, "hat")


class HAT(SequentialLearner):
    method = "hat"

    def __init__(self, net: PlainNet, config: TrainConfig, smax: float = DEFAULT_SMAX, c: float = DEFAULT_C) -> None:
        super().__init__(net, config)
        _require_gateable(net)
        if smax < 1:
            raise ValueError(f"hat: smax must be >= 1, got {smax}")
        if c < 0:
            raise ValueError(f"hat: c must be >= 0, got {c}")
        self.smax, self.c = float(smax), float(c)
        self.units = [_units(layer) for layer in net.layers]
        self.embeddings: list[nn.ParameterList] = []
        self.masks: list[list[Tensor]] = []
        """Binary mask (float 0/1) per learned task and layer."""
        self.used = [torch.zeros(u, device=self.device) for u in self.units]
        """Union of the learned tasks' masks, per layer (float 0/1)."""
        self._s = 1.0
        self._gates: list[Tensor] = []
        self._weight_keep: list[Tensor] = []
        self._bias_keep: list[Tensor] = []
        self._frozen: list[tuple[Tensor, Tensor | None]] = []

    # --------------------------------------------------------------------------- the task
    def _learn(self, task: Task, task_id: int, generator: torch.Generator) -> dict | None:
        self.net.add_head(task.n_classes)
        emb = nn.ParameterList([nn.Parameter(torch.randn(u).to(self.device)) for u in self.units])
        self.embeddings.append(emb)
        self._prepare_conditioning()
        params = self.net.trunk_parameters() + list(self.net.heads[task_id].parameters()) + list(emb)
        self._fit(task, task_id, self.config.epochs, params, generator)
        with torch.no_grad():
            mask = [(e > 0).float() for e in emb]
        self.masks.append(mask)
        before = [u.clone() for u in self.used]
        self.used = [torch.maximum(u, m) for u, m in zip(self.used, mask, strict=True)]
        return {"units_used": [int(m.sum()) for m in mask],
                "units_new": [int((m * (1 - b)).sum()) for m, b in zip(mask, before, strict=True)],
                "units_free_after": [int((1 - u).sum()) for u in self.used]}

    def _prepare_conditioning(self) -> None:
        """Per layer, which weights and biases the new task may change (float 0/1)."""
        self._weight_keep, self._bias_keep, self._frozen = [], [], []
        previous: Tensor | None = None
        for layer, used in zip(self.net.layers, self.used, strict=True):
            w = layer.weight
            out_used = used.view(-1, *([1] * (w.dim() - 1)))
            if previous is None:
                in_used = torch.ones((), device=w.device)  # the inputs are never gated: every task reads them all
            else:
                per_unit = w.shape[1] // previous.numel()
                in_used = previous.repeat_interleave(per_unit).view(1, -1, *([1] * (w.dim() - 2)))
            self._weight_keep.append(1.0 - torch.minimum(out_used, in_used).expand_as(w))
            self._bias_keep.append(1.0 - used)
            self._frozen.append((w.detach().clone(), None if layer.bias is None else layer.bias.detach().clone()))
            previous = used

    def forward_batch(self, x: Tensor, task_id: int, step: int, n_steps: int) -> Tensor:
        progress = step / (n_steps - 1) if n_steps > 1 else 1.0
        self._s = 1.0 / self.smax + (self.smax - 1.0 / self.smax) * progress
        self._gates = [torch.sigmoid(self._s * e) for e in self.embeddings[task_id]]
        return self.net(x, task_id, self._gates)

    def extra_loss(self, task_id: int) -> Tensor | None:
        free = [1.0 - u for u in self.used]
        denominator = sum(float(f.sum()) for f in free)
        if denominator == 0 or self.c == 0:
            return None
        penalty = sum((g * f).sum() for g, f in zip(self._gates, free, strict=True))
        assert isinstance(penalty, Tensor)  # one gate per layer, at least one layer: never sum's start value 0
        return self.c * penalty / denominator

    @torch.no_grad()
    def after_backward(self, task_id: int, step: int, n_steps: int) -> None:
        for layer, wk, bk in zip(self.net.layers, self._weight_keep, self._bias_keep, strict=True):
            if layer.weight.grad is not None:
                layer.weight.grad.mul_(wk)
            if layer.bias is not None and layer.bias.grad is not None:
                layer.bias.grad.mul_(bk)
        for e in self.embeddings[task_id]:
            if e.grad is not None:
                num = torch.cosh(torch.clamp(self._s * e, -COSH_CLAMP, COSH_CLAMP)) + 1
                e.grad.mul_(self.smax / self._s * num / (torch.cosh(e) + 1))
        params = [p for p in self.net.parameters() if p.grad is not None] + list(self.embeddings[task_id])
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)

    @torch.no_grad()
    def after_step(self, task_id: int) -> None:
        for layer, wk, bk, (w0, b0) in zip(self.net.layers, self._weight_keep, self._bias_keep, self._frozen,
                                           strict=True):
            layer.weight.copy_(torch.where(wk > 0, layer.weight, w0))
            if layer.bias is not None and b0 is not None:
                layer.bias.copy_(torch.where(bk > 0, layer.bias, b0))
        for e in self.embeddings[task_id]:
            e.clamp_(-EMBEDDING_CLAMP, EMBEDDING_CLAMP)

    # ------------------------------------------------------------------------- checkpoint
    def state_tensors(self) -> dict[str, Tensor]:
        out = {f"used.{i}": u for i, u in enumerate(self.used)}
        for t, (emb, mask) in enumerate(zip(self.embeddings, self.masks, strict=True)):
            out.update({f"embeddings.{t}.{i}": e.detach() for i, e in enumerate(emb)})
            out.update({f"masks.{t}.{i}": m for i, m in enumerate(mask)})
        return out

    def load_state_tensors(self, tensors: Mapping[str, Tensor], meta: dict, n_tasks: int) -> None:
        like = [torch.zeros(u, device=self.device) for u in self.units]
        self.used = tensor_list(tensors, "used", like)
        self.embeddings = [nn.ParameterList([nn.Parameter(e) for e in tensor_list(tensors, f"embeddings.{t}", like)])
                           for t in range(n_tasks)]
        self.masks = [tensor_list(tensors, f"masks.{t}", like) for t in range(n_tasks)]
        check_consumed(tensors, {f"used.{i}" for i in range(len(like))}
                       | {f"{kind}.{t}.{i}" for kind in ("embeddings", "masks") for t in range(n_tasks)
                          for i in range(len(like))}, self.method)

    # ---------------------------------------------------------------------------- public
    def _evaluator(self, task_id: int) -> tuple[nn.Module, int]:
        return _Gated(self.net, self.masks[task_id]), task_id

    def _val_accuracy(self, task: Task, task_id: int) -> float:
        """During training: under the current embeddings' binary mask."""
        mask = [(e.detach() > 0).float() for e in self.embeddings[task_id]]
        return self._accuracy_of(_Gated(self.net, mask), task_id, task.val.x, task.val.y)

    def capacity(self) -> list[dict]:
        """Per layer: units, and per task the units it uses that no earlier task used, free units
        after it (used by no task) and units it shares with earlier tasks."""
        rows = []
        for i, u in enumerate(self.units):
            seen = torch.zeros(u, device=self.device)
            owned, free, reused = [], [], []
            for mask in self.masks:
                m = mask[i]
                owned.append(int((m * (1 - seen)).sum()))
                reused.append(int((m * seen).sum()))
                seen = torch.maximum(seen, m)
                free.append(int((1 - seen).sum()))
            kind = "Conv2d" if self.net.layers[i].weight.dim() == 4 else "Linear"
            rows.append({"layer": f"{i}:{kind}({self.net.layers[i].weight.shape[1]}->{u})", "units": u,
                         "owned_by_task": owned, "free_after_task": free, "reused_by_task": reused})
        return rows

    def footprint(self) -> dict:
        n = count_parameters(self.net) + sum(sum(self.units) for _ in self.embeddings)
        mask_bytes = len(self.masks) * sum((u + 7) // 8 for u in self.units)  # one bit per unit and task
        return {"parameters": n, "storage_bytes": count_parameters(self.net) * BYTES_PER_FLOAT + mask_bytes}


class _Gated(nn.Module):
    """The network under one task's binary unit masks (for evaluation)."""

    def __init__(self, net: PlainNet, masks: Sequence[Tensor]) -> None:
        super().__init__()
        self.inner = net
        self.masks = list(masks)

    def forward(self, x: Tensor, task: int) -> Tensor:
        return self.inner(x, task, self.masks)


def build(model: str, input_shape: Sequence[int], config: TrainConfig, options: dict) -> HAT:
    return HAT(PlainNet(model, input_shape), config, options_float(options, "smax", DEFAULT_SMAX),
               options_float(options, "c", DEFAULT_C))


METHOD = Method(
    name="hat", build=build, summary="unit-level hard attention masks",
    options={"smax": Option("number", DEFAULT_SMAX, low=1, help="largest gate slope"),
             "c": Option("number", DEFAULT_C, low=0, help="strength of the capacity regulariser")},
    # HAT (Serra et al. 2018): the ranges of the paper's sensitivity study, s_max 25-800 and c 0.1-2.5
    # (defaults 400 and 0.75); the points in between are ours.
    tuning={"smax": (25.0, 50.0, 100.0, 200.0, 400.0, 800.0), "c": (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5)},
)
