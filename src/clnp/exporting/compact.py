"""The units one task uses, as a plain ``nn.Sequential`` without masks (:func:`export`).

Task ``K`` of a :class:`~clnp.core.network.CLNPNet` computes with the units it owns and the older units
it reads; free units, later tasks' units and older units nothing of ``K`` reads contribute exactly
zero (their weights into ``K``'s computation are cut or zero). :func:`export` keeps only the units
that do contribute, found backwards from ``K``'s head: a unit is kept when it is live for ``K``
(owned by ``K`` or an earlier task) and has a non-zero weight into a kept unit of the next layer
(or into the head). The result is an ordinary ``nn.Sequential`` of ``Linear``/``Conv2d``,
activations, pooling and ``Flatten`` (batch norm folded into the layer before it, or kept as a plain
``BatchNorm`` where it does not directly follow one), in evaluation mode, whose logits equal
``net(x, K)`` up to float rounding, and which runs faster in proportion to the units removed.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from ..core.graph_net import GraphNet
from ..core.layers import MaskedBatchNorm, MaskedConv2d, MaskedLinear
from ..core.network import CLNPNet
from .graph import export_graph


def used_units(net: CLNPNet, task: int) -> list[Tensor]:
    """Per prunable layer, boolean per unit: the units task ``task``'s logits depend on
    (:meth:`CLNPNet.units_used_by`), with at least one unit per layer so that every layer exists in the
    exported model (a unit the task does not read has zero weights into it)."""
    needed = net.units_used_by(task)
    for k in needed:
        if not k.any():
            k[0] = True
    return needed


def _input_index(kept: Tensor, n_inputs: int) -> Tensor:
    """Indices of the input features of a layer that reads ``n_inputs`` features from units ``kept``."""
    factor = n_inputs // kept.numel()
    units = torch.nonzero(kept).flatten()
    if factor == 1:
        return units
    return (units[:, None] * factor + torch.arange(factor)[None, :]).flatten()


def _slice_layer(layer: MaskedLinear | MaskedConv2d, rows: Tensor, cols: Tensor | None) -> nn.Linear | nn.Conv2d:
    w = layer.weight.detach()[rows]
    if cols is not None:
        w = w[:, cols]
    b = None if layer.bias is None else layer.bias.detach()[rows]
    out: nn.Linear | nn.Conv2d
    if isinstance(layer, MaskedConv2d):
        out = nn.Conv2d(w.shape[1], w.shape[0], layer.kernel_size, stride=layer.stride,
                        padding=layer.padding, dilation=layer.dilation, bias=b is not None)
    else:
        out = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    with torch.no_grad():
        out.weight.copy_(w)
        if b is not None:
            assert out.bias is not None  # built with bias=True just above
            out.bias.copy_(b)
    return out


def _plain_batch_norm(bn: MaskedBatchNorm, rows: Tensor, conv: bool) -> nn.BatchNorm1d | nn.BatchNorm2d:
    cls = nn.BatchNorm2d if conv else nn.BatchNorm1d
    out = cls(int(rows.sum()), eps=bn.eps, affine=bn.affine)
    assert out.running_mean is not None and out.running_var is not None  # track_running_stats: torch's default
    with torch.no_grad():
        out.running_mean.copy_(bn.running_mean[rows])
        out.running_var.copy_(bn.running_var[rows])
        if bn.affine:
            out.weight.copy_(bn.weight[rows])
            out.bias.copy_(bn.bias[rows])
    return out


@torch.no_grad()
def _fold(layer: nn.Linear | nn.Conv2d, bn: nn.BatchNorm1d | nn.BatchNorm2d) -> None:
    """Fold an evaluation-mode batch norm into the linear or conv layer right before it."""
    assert bn.running_mean is not None and bn.running_var is not None  # a batch norm of _plain_batch_norm
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.affine:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.affine:
        shift = shift + bn.bias
    w = layer.weight
    w.mul_(scale.view(-1, *([1] * (w.dim() - 1))))
    if layer.bias is None:
        layer.bias = nn.Parameter(shift.clone())
    else:
        layer.bias.copy_(layer.bias * scale + shift)


@torch.no_grad()
def export(net: CLNPNet, task: int, fold_batch_norm: bool = True) -> nn.Module:
    """A plain ``nn.Sequential`` (evaluation mode) computing task ``task``'s logits with only its units; for a traced
    graph network, a plain ``GraphModule`` and head (:func:`clnp.exporting.graph.export_graph`).

    ``fold_batch_norm`` folds each batch norm that directly follows a ``Linear``/``Conv2d`` into it;
    other batch norms are kept as plain ``BatchNorm1d/2d`` over the kept channels. Call it between
    tasks; frozen values a user's own loop moved are put back first.
    """
    if isinstance(net, GraphNet):
        return export_graph(net, task, used_units(net, task))
    net.consolidate_()
    keep = used_units(net, task)
    modules: list[nn.Module] = [copy.deepcopy(m) for m in net.stem]
    prev: Tensor | None = None
    for block, rows in zip(net.blocks, keep, strict=True):
        layer = block.layer
        cols = None if prev is None else _input_index(prev, layer.in_features_count())
        compact = _slice_layer(layer, rows, cols)
        modules.append(compact)
        conv = isinstance(layer, MaskedConv2d)
        for j, m in enumerate((*block.post, *block.tail)):
            if isinstance(m, MaskedBatchNorm):
                if fold_batch_norm and j == 0:
                    _fold(compact, _plain_batch_norm(m, rows, conv))
                else:
                    modules.append(_plain_batch_norm(m, rows, conv))
            else:
                modules.append(copy.deepcopy(m))
        prev = rows
    assert prev is not None
    head = net.heads[task]
    modules.append(_slice_layer(head, torch.ones(head.n_units, dtype=torch.bool),
                                _input_index(prev, head.in_features)))
    model = nn.Sequential(*modules)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()



def n_parameters(module: nn.Module) -> int:
    """Number of parameter values of ``module`` (masks and other buffers not counted)."""
    return sum(p.numel() for p in module.parameters())
