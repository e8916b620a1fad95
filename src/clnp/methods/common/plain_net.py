"""Plain multi-head networks for the baselines, built from the same model spec as CLNP's.

The baselines do not partition units, so they get ordinary ``nn.Linear``/``nn.Conv2d``/batch-norm
modules instead of CLNP's masked layers: the owner bookkeeping and ``where``-masking would be dead
weight for EWC and friends, and would fight PackNet's weight-level masks and HAT's unit gates.

Two kinds of trunk, one interface (:attr:`PlainNet.layers`, :meth:`PlainNet.trunk_parameters`,
:meth:`PlainNet.features`, :attr:`PlainNet.has_batch_norm`), which is all the baselines use:

* a *chain* (``mlp:...``, ``cnn:...``): *converted* from :func:`clnp.core.network.build_model` into a
  stem and plain blocks, so every method reads the same spec grammar and, under the same seed, starts
  from the same initial weights as CLNP; unit gates (HAT) act on its blocks;
* a *graph* (a built-in model of :mod:`clnp.models`: ``resnet18:NF``, ``alexnet``): the plain module
  :func:`clnp.models.build` returns, as it is (``trunk``); it takes no unit gates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast, overload

import torch
from torch import Tensor, nn

from ...core.layers import MaskedBatchNorm, MaskedConv2d, MaskedLinear
from ...core.network import build_model
from ...models import MODELS
from ...models import build as build_graph_model

if TYPE_CHECKING:
    from ...core.network import _ModuleListOf


def is_graph_spec(spec: str) -> bool:
    """Whether ``spec`` names a built-in graph model of :mod:`clnp.models` (``resnet18:20``, ``alexnet``)."""
    return spec.strip().partition(":")[0] in MODELS


@overload
def _plain(module: MaskedLinear | MaskedConv2d, conv: bool) -> nn.Linear | nn.Conv2d: ...
@overload
def _plain(module: nn.Module, conv: bool) -> nn.Module: ...
def _plain(module: nn.Module, conv: bool) -> nn.Module:
    """The ordinary twin of a masked module (same shape and values); other modules as they are."""
    if isinstance(module, MaskedLinear):
        twin: nn.Module = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
    elif isinstance(module, MaskedConv2d):
        twin = nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, stride=module.stride,
                         padding=module.padding, dilation=module.dilation, bias=module.bias is not None)
    elif isinstance(module, MaskedBatchNorm):
        cls = nn.BatchNorm2d if conv else nn.BatchNorm1d
        twin = cls(module.num_features, eps=module.eps, momentum=module.momentum, affine=module.affine)
    else:
        return module
    twin.load_state_dict(module.state_dict(), strict=False)
    return twin


class PlainBlock(nn.Module):
    """A layer, its element-wise ``post`` modules (batch norm, activation) and its ``tail``."""

    layer: nn.Linear | nn.Conv2d
    post: nn.Sequential
    tail: nn.Sequential

    def __init__(self, layer: nn.Linear | nn.Conv2d, post: Sequence[nn.Module], tail: Sequence[nn.Module]) -> None:
        super().__init__()
        self.layer = layer
        self.post = nn.Sequential(*post)
        self.tail = nn.Sequential(*tail)

    def forward(self, x: Tensor, gate: Tensor | None = None) -> Tensor:
        a = self.post(self.layer(x))
        if gate is not None:  # one factor per unit (feature or channel)
            a = a * gate.view(-1, *([1] * (a.dim() - 2)))
        return self.tail(a)


class PlainNet(nn.Module):
    """A feed-forward trunk with one linear head per task (task-incremental, multi-head).

    The trunk is a chain (``stem`` and ``blocks``) for the ``mlp``/``cnn`` specs, or the built-in graph
    model (``trunk``) for a spec of :data:`clnp.models.MODELS`; :attr:`graph` says which. The baselines
    read it through :attr:`layers`, :meth:`trunk_parameters`, :meth:`features` and :attr:`has_batch_norm`
    only, never through ``blocks``, so each runs on both.
    """

    blocks: _ModuleListOf[PlainBlock]
    heads: _ModuleListOf[nn.Linear]

    def __init__(self, spec: str, input_shape: Sequence[int]) -> None:
        super().__init__()
        self.spec = spec
        self.input_shape = tuple(int(s) for s in input_shape)
        self.graph = is_graph_spec(spec)
        if self.graph:
            self.trunk = build_graph_model(spec, self.input_shape)
            if not self.layers:
                raise ValueError(f"model spec {spec!r}: the model has no Linear or Conv2d layer")
            was_training = self.trunk.training
            self.trunk.eval()  # the probe must not touch batch-norm statistics
            try:
                with torch.no_grad():
                    probe = self.trunk(torch.zeros(1, *self.input_shape))
            finally:
                self.trunk.train(was_training)
            if probe.dim() != 2:
                raise ValueError(f"model spec {spec!r}: the model returns {tuple(probe.shape)} per batch, "
                                 "expected [batch, features]")
            self.feature_dim = int(probe.shape[1])
        else:
            source = build_model(spec, input_shape)
            self.stem = source.stem
            blocks = []
            for block in source.blocks:
                conv = isinstance(block.layer, MaskedConv2d)
                blocks.append(PlainBlock(_plain(block.layer, conv), [_plain(m, conv) for m in block.post],
                                         [_plain(m, conv) for m in block.tail]))
            self.blocks = cast("_ModuleListOf[PlainBlock]", nn.ModuleList(blocks))
            self.feature_dim = int(source.feature_dim)
        self.heads = cast("_ModuleListOf[nn.Linear]", nn.ModuleList())

    @property
    def layers(self) -> list[nn.Linear | nn.Conv2d]:
        """Every ``Linear``/``Conv2d`` layer of the trunk: a chain's in forward order (one per block), a
        graph's in the order the model defines them."""
        if self.graph:
            return [m for m in self.trunk.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        return [block.layer for block in self.blocks]

    @property
    def has_batch_norm(self) -> bool:
        return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.modules())

    @property
    def n_tasks(self) -> int:
        return len(self.heads)

    def _first_weight(self) -> Tensor:
        """The first layer's weight: the trunk's device and dtype."""
        return self.layers[0].weight if self.graph else self.blocks[0].layer.weight

    def add_head(self, n_classes: int) -> int:
        """Add the output head of a new task; return its index."""
        weight = self._first_weight()
        self.heads.append(nn.Linear(self.feature_dim, n_classes).to(device=weight.device, dtype=weight.dtype))
        return len(self.heads) - 1

    def trunk_parameters(self) -> list[nn.Parameter]:
        """The parameters every task shares (everything but the heads)."""
        if self.graph:
            return list(self.trunk.parameters())
        return list(self.stem.parameters()) + list(self.blocks.parameters())

    def features(self, x: Tensor, gates: Sequence[Tensor | None] | None = None) -> Tensor:
        """The trunk's ``[batch, feature_dim]`` output; ``gates`` (a chain's only, one per block or None)
        scale each unit's activity."""
        dtype = self._first_weight().dtype  # float64 or float16 inputs: converted, as CLNPNet does
        x = x if x.dtype == dtype or not x.is_floating_point() else x.to(dtype)
        if self.graph:
            if gates is not None:
                raise ValueError(f"unit gates act on a chain of layers (mlp/cnn specs); the graph model "
                                 f"{self.spec!r} takes none")
            return self.trunk(x)
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x = block(x, None if gates is None else gates[i])
        return x

    def forward(self, x: Tensor, task: int, gates: Sequence[Tensor | None] | None = None) -> Tensor:
        """Logits of task ``task``; ``gates`` (optional, one per block of a chain) scale each unit's activity."""
        if not 0 <= task < len(self.heads):
            raise IndexError(f"unknown task id {task}: this network has {len(self.heads)} task heads")
        return self.heads[task](self.features(x, gates))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
