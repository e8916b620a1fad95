"""A task of a traced graph network (:class:`~clnp.core.graph_net.GraphNet`) as a plain ``GraphModule`` plus its head.

The traced model is copied with plain ``Linear``/``Conv2d`` in place of the masked ones and each batch norm as the
per-channel affine map it computes in evaluation (:class:`ChannelAffine`), holding the task's frozen values; the
taps become the identity, or a fixed channel mask where the task does not own every channel a layer keeps. A
compact export (``clnp.export``) keeps only the unit groups the task's logits depend on
(:meth:`GraphNet.units_used_by`, at least one per unit set): every layer of a group drops the same channels, so
additions and concatenations stay aligned, and the logits equal ``net(x, task)`` up to float rounding (smaller
kernels add in another order). Without ``keep`` every channel the task was learned with stays (units grown since
are dropped): the same kernels on the same shapes, so the logits are ``torch.equal`` to ``net(x, task)``.
"""

from __future__ import annotations

import copy
from typing import cast

import torch
from torch import Tensor, fx, nn

from ..core.graph_net import GraphBatchNorm, GraphConv2d, GraphLinear, GraphNet, Tap
from ..core.layers import MaskedConv2d
from ..core.partition import live_units


class ChannelMask(nn.Module):
    """Zero the channels (dim 1) where ``keep`` is False: units a layer keeps that the task does not own."""

    keep: Tensor

    def __init__(self, keep: Tensor) -> None:
        super().__init__()
        self.register_buffer("keep", keep.clone())

    def forward(self, a: Tensor) -> Tensor:
        keep = self.keep.view(1, -1, *([1] * (a.dim() - 2)))
        return torch.where(keep, a, torch.zeros((), dtype=a.dtype, device=a.device))


class GraphExport(nn.Module):
    """``head(trunk(x))``: a task's traced trunk (plain modules) and its head."""

    def __init__(self, trunk: fx.GraphModule, head: nn.Linear) -> None:
        super().__init__()
        self.trunk, self.head = trunk, head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(x))


def _set(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


def _plain_layer(layer: nn.Module, weight: Tensor, bias: Tensor | None) -> nn.Module:
    out: nn.Linear | nn.Conv2d
    if isinstance(layer, MaskedConv2d):
        out = nn.Conv2d(weight.shape[1], weight.shape[0], layer.kernel_size, stride=layer.stride,
                        padding=layer.padding, dilation=layer.dilation, bias=bias is not None)
    else:
        out = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    out = out.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        out.weight.copy_(weight)
        if bias is not None:
            assert out.bias is not None  # built with bias=True just above
            out.bias.copy_(bias)
    return out


class ChannelAffine(nn.Module):
    """``x * scale + shift`` per channel (dim 1): a batch norm in evaluation, computed as the network computes it."""

    scale: Tensor
    shift: Tensor

    def __init__(self, scale: Tensor, shift: Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale.clone())
        self.register_buffer("shift", shift.clone())

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1, *([1] * (x.dim() - 2)))
        return torch.addcmul(self.shift.view(shape), x, self.scale.view(shape))


@torch.no_grad()
def export_graph(net: GraphNet, task: int, keep: list[Tensor] | None = None) -> GraphExport:
    """Task ``task`` of ``net`` as a plain module in evaluation mode (see the module docstring), with the units
    ``keep`` (per unit set: :func:`clnp.exporting.compact.used_units` for a compact model) or all of them."""
    if not net.is_learned(task):
        raise ValueError(f"task {task} is not learned yet: only a learned task's units are fixed")
    net.consolidate_()
    live = live_units(torch.cat(net.owners), task)
    widths = net.task_widths[task].tolist()  # units added since the task was learned are none of its own
    kept = torch.cat([torch.arange(w, device=live.device) < widths[s] for s, w in enumerate(net.widths)])
    if keep is not None:
        kept = kept & torch.cat(keep).to(live.device)
    trunk = copy.deepcopy(net.trunk)
    for j, name in enumerate(net.layer_modules):
        layer = cast("GraphLinear | GraphConv2d", net.get_submodule(f"trunk.{name}"))  # a traced net's layers
        units, columns = net.get_buffer(f"_units_{j}"), net.get_buffer(f"_columns_{j}")
        rows = kept[units]
        cols = torch.where(columns >= 0, kept[columns.clamp(min=0)], torch.ones_like(columns, dtype=torch.bool))
        w = layer.effective_weight(True).detach()[rows][:, cols].clone()
        b = layer.effective_bias(True)
        _set(trunk, name, _plain_layer(layer, w, None if b is None else b.detach()[rows].clone()))
        owned = live[units][rows]
        _set(trunk, f"clnp_tap_{j}", nn.Identity() if bool(owned.all()) else ChannelMask(owned))
    for k, name in enumerate(net.norm_modules):
        bn = cast(GraphBatchNorm, net.get_submodule(f"trunk.{name}"))  # a traced net's batch norms
        channels = kept[net.get_buffer(f"_norm_{k}")]
        scale, shift = bn.fixed_affine(task=task)
        _set(trunk, name, ChannelAffine(scale.detach()[channels], shift.detach()[channels]))
    for module in trunk.modules():
        if isinstance(module, Tap):  # pragma: no cover - every tap was replaced above
            raise AssertionError("a tap was left in the exported model")
    output = net.get_buffer("_output")
    head = net.heads[task]
    columns = torch.where(output >= 0, kept[output.clamp(min=0)], torch.ones_like(output, dtype=torch.bool))
    bias = head.effective_bias(True)
    plain_head = _plain_layer(head, head.effective_weight(True).detach()[:, columns].clone(),
                              None if bias is None else bias.detach().clone())
    model = GraphExport(trunk, plain_head)  # type: ignore[arg-type]
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


__all__ = ["ChannelAffine", "ChannelMask", "GraphExport", "export_graph"]
