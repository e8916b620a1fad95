"""Plain multi-head networks for the baselines, built from the same model spec as CLNP's.

The baselines do not partition units, so they get ordinary ``nn.Linear``/``nn.Conv2d``/batch-norm
modules instead of CLNP's masked layers: the owner bookkeeping and ``where``-masking would be dead
weight for EWC and friends, and would fight PackNet's weight-level masks and HAT's unit gates.
The network is *converted* from :func:`clnp.core.network.build_model`, so every method reads the same
spec grammar and, under the same seed, starts from the same initial weights as CLNP.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ...core.layers import MaskedBatchNorm, MaskedConv2d, MaskedLinear
from ...core.network import build_model


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

    def __init__(self, layer: nn.Module, post: Sequence[nn.Module], tail: Sequence[nn.Module]) -> None:
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
    """A feed-forward trunk with one linear head per task (task-incremental, multi-head)."""

    def __init__(self, spec: str, input_shape: Sequence[int]) -> None:
        super().__init__()
        source = build_model(spec, input_shape)
        self.spec = spec
        self.input_shape = tuple(int(s) for s in input_shape)
        self.stem = source.stem
        blocks = []
        for block in source.blocks:
            conv = isinstance(block.layer, MaskedConv2d)
            blocks.append(PlainBlock(_plain(block.layer, conv), [_plain(m, conv) for m in block.post],
                                     [_plain(m, conv) for m in block.tail]))
        self.blocks = nn.ModuleList(blocks)
        self.feature_dim = int(source.feature_dim)
        self.heads = nn.ModuleList()

    @property
    def layers(self) -> list[nn.Module]:
        """The ``Linear``/``Conv2d`` layer of every block, in forward order."""
        return [block.layer for block in self.blocks]

    @property
    def has_batch_norm(self) -> bool:
        return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.modules())

    @property
    def n_tasks(self) -> int:
        return len(self.heads)

    def add_head(self, n_classes: int) -> int:
        """Add the output head of a new task; return its index."""
        weight = self.blocks[0].layer.weight  # the trunk's device and dtype
        self.heads.append(nn.Linear(self.feature_dim, n_classes).to(device=weight.device, dtype=weight.dtype))
        return len(self.heads) - 1

    def trunk_parameters(self) -> list[nn.Parameter]:
        """The parameters every task shares (everything but the heads)."""
        return list(self.stem.parameters()) + list(self.blocks.parameters())

    def features(self, x: Tensor, gates: Sequence[Tensor | None] | None = None) -> Tensor:
        dtype = self.blocks[0].layer.weight.dtype  # float64 or float16 inputs: converted, as CLNPNet does
        x = self.stem(x if x.dtype == dtype or not x.is_floating_point() else x.to(dtype))
        for i, block in enumerate(self.blocks):
            x = block(x, None if gates is None else gates[i])
        return x

    def forward(self, x: Tensor, task: int, gates: Sequence[Tensor | None] | None = None) -> Tensor:
        """Logits of task ``task``; ``gates`` (optional, one per block) scale each unit's activity."""
        if not 0 <= task < len(self.heads):
            raise IndexError(f"unknown task id {task}: this network has {len(self.heads)} task heads")
        return self.heads[task](self.features(x, gates))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
