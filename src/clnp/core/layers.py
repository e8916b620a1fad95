"""Masked layers: dense, conv and batch-norm modules whose frozen part cannot move.

A masked layer keeps the usual ``weight``/``bias`` parameters plus one persistent ``owner`` buffer
(see :mod:`clnp.core.partition`). From the owner vectors it derives, as non-persistent buffers:

* ``train_rows``: the units the current task trains (the free ones);
* ``frozen_index`` / ``frozen_rows`` / ``frozen_bias``: the owned units and a compact snapshot of
  their incoming weights and biases, with cut (interference) weights set to exactly zero.

The partition is by rows: every weight into a free unit is trainable, every weight into an owned
unit is frozen or cut. The forward pass never mutates a parameter, and frozen rows always compute
with their frozen values:

* while training (grad enabled) and the parameter is untouched since the last restore, the layer
  multiplies by ``weight`` itself, as a plain layer does (no masked copy per step), and the
  gradient of ``weight`` and ``bias`` is exactly zero in frozen rows (zeroed in the backward pass),
  so optimisers without weight decay never move them;
* :meth:`MaskedMixin.restore_frozen_` copies the snapshot back into the frozen rows; the CLNP
  method calls it after every optimiser step (weight decay moves every row);
* otherwise (evaluation, or a parameter moved by code that did not restore it, e.g. a user's own
  loop with AdamW) the layer computes with an out-of-place copy of the weight whose frozen rows
  come from the snapshot. Evaluation always takes that path, so even an edit through
  ``param.data`` (invisible to autograd's version counter) cannot change an earlier task's outputs.

:meth:`MaskedMixin.consolidate_` restores eagerly, so ``state_dict()`` taken between tasks holds
the true weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .partition import FREE, cut_mask, trainable_units


def _unsqueeze_like(mask: Tensor, ndim: int) -> Tensor:
    """Reshape a per-unit mask ``[U]`` to broadcast over a weight or activation with ``ndim`` dims."""
    return mask.view(-1, *([1] * (ndim - 1)))


class _FrozenRowsGrad(torch.autograd.Function):
    """Identity on a parameter; its backward zeroes the gradient in the frozen rows (in place)."""

    @staticmethod
    def forward(ctx, param: Tensor, frozen_index: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(frozen_index)
        return param.view_as(param)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (frozen_index,) = ctx.saved_tensors
        if 0 in grad.stride():
            grad = grad.clone()  # a broadcast gradient: never write through it
        # Otherwise the gradient is the fresh result of the layer's backward (possibly a transposed
        # view of it, as for ``F.linear``): writing into it in place spares a copy of the weight.
        return grad.index_fill_(0, frozen_index, 0.0), None


class MaskedMixin:
    """Shared logic of :class:`MaskedLinear` and :class:`MaskedConv2d` (units = output rows)."""

    weight: Tensor
    bias: Tensor | None
    owner: Tensor
    train_rows: Tensor
    frozen_index: Tensor
    frozen_rows: Tensor
    frozen_bias: Tensor
    _all_free: bool
    _versions: tuple[int, int]

    def _init_masks(self, n_units: int) -> None:
        module: nn.Module = self  # type: ignore[assignment]
        module.register_buffer("owner", torch.full((n_units,), FREE, dtype=torch.long))
        module.register_buffer("train_rows", torch.ones(n_units, dtype=torch.bool), persistent=False)
        module.register_buffer("frozen_index", torch.zeros(0, dtype=torch.long), persistent=False)
        module.register_buffer("frozen_rows", self.weight.new_zeros((0, *self.weight.shape[1:])),
                               persistent=False)
        module.register_buffer("frozen_bias", self.weight.new_zeros(0), persistent=False)
        self._all_free = True
        self._versions = (-1, -1)

    @property
    def n_units(self) -> int:
        return self.owner.numel()

    def _param_versions(self) -> tuple[int, int]:
        return self.weight._version, -1 if self.bias is None else self.bias._version

    def _frozen_intact(self) -> bool:
        """True when no tracked in-place change reached the parameters since the last restore."""
        return self._param_versions() == self._versions

    @torch.no_grad()
    def restore_frozen_(self) -> None:
        """Copy the snapshot back into the frozen rows (after an optimiser step may have moved them)."""
        if self._all_free:
            return
        self.weight.index_copy_(0, self.frozen_index, self.frozen_rows)
        if self.bias is not None:
            self.bias.index_copy_(0, self.frozen_index, self.frozen_bias)
        self._versions = self._param_versions()

    def _effective(self, param: Tensor, frozen: Tensor, from_snapshot: bool) -> Tensor:
        if not from_snapshot and torch.is_grad_enabled() and param.requires_grad and self._frozen_intact():
            return _FrozenRowsGrad.apply(param, self.frozen_index)
        return param.index_copy(0, self.frozen_index, frozen)  # out of place: the parameter is untouched

    def effective_weight(self, from_snapshot: bool = False) -> Tensor:
        """The weight the layer computes with: the parameter, its frozen rows at their frozen values.

        ``from_snapshot`` always reads frozen rows from the snapshot (a learned task's forward pass,
        in any grad mode), so not even an edit through ``param.data`` reaches an old task.
        """
        if self._all_free:
            return self.weight
        return self._effective(self.weight, self.frozen_rows, from_snapshot)

    def effective_bias(self, from_snapshot: bool = False) -> Tensor | None:
        if self.bias is None or self._all_free:
            return self.bias
        return self._effective(self.bias, self.frozen_bias, from_snapshot)

    def in_features_count(self) -> int:
        return self.weight.shape[1]

    def _narrowed(self, x: Tensor, from_snapshot: bool, out_units: int | None) -> tuple[Tensor, Tensor | None]:
        """The weight and bias to compute with: narrowed to ``out_units`` rows and to the input's width for an
        old task of a network grown since it was learned, and made contiguous, so that the task computes
        with the very shapes (and so the kernels) it was learned with: bit-identical outputs."""
        w, b = self.effective_weight(from_snapshot), self.effective_bias(from_snapshot)
        rows = w.shape[0] if out_units is None else out_units
        if from_snapshot and (rows < w.shape[0] or x.shape[1] < w.shape[1]):
            w = w[:rows, :x.shape[1]].contiguous()
            b = None if b is None else b[:rows].contiguous()
        return w, b

    @torch.no_grad()
    def grow_units_(self, k: int) -> None:
        """``k`` more units, free: new (zero) rows of the weight and bias; masks follow at the next refresh."""
        module: nn.Module = self  # type: ignore[assignment]
        w = self.weight
        module.weight = nn.Parameter(torch.cat([w.detach(), w.new_zeros((k, *w.shape[1:]))]),
                                     requires_grad=w.requires_grad)
        if self.bias is not None:
            module.bias = nn.Parameter(torch.cat([self.bias.detach(), self.bias.new_zeros(k)]),
                                       requires_grad=self.bias.requires_grad)
        self.owner = torch.cat([self.owner, self.owner.new_full((k,), FREE)])
        self.train_rows = torch.ones(self.owner.numel(), dtype=torch.bool, device=w.device)
        self._set_shape()

    @torch.no_grad()
    def grow_inputs_(self, k: int) -> None:
        """``k`` more inputs (the new units of the layer before): new zero columns of the weight."""
        module: nn.Module = self  # type: ignore[assignment]
        w = self.weight
        module.weight = nn.Parameter(torch.cat([w.detach(), w.new_zeros((w.shape[0], k, *w.shape[2:]))], dim=1),
                                     requires_grad=w.requires_grad)
        self._set_shape()

    def _set_shape(self) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def consolidate_(self) -> None:
        """Write the frozen values back into the parameters (they may have moved under an optimiser).

        The per-layer hook of :meth:`CLNPNet.consolidate_`, which calls it on every masked layer and batch norm.
        """
        self.restore_frozen_()

    @torch.no_grad()
    def refresh_(self, owner_in: Tensor | None) -> None:
        """Derive the masks from the owner vectors; zero cut weights; snapshot the frozen rows.

        Call only when the parameters are consolidated (between tasks, or right after loading).
        """
        cut = cut_mask(owner_in, self.owner)
        if self.weight.dim() == 4:
            cut = cut[:, :, None, None]
        self.weight.masked_fill_(cut, 0.0)
        self.train_rows.copy_(trainable_units(self.owner))
        self._all_free = bool(self.train_rows.all())
        self.frozen_index = torch.nonzero(~self.train_rows).flatten()
        self.frozen_rows = self.weight.index_select(0, self.frozen_index)
        if self.bias is not None:
            self.frozen_bias = self.bias.index_select(0, self.frozen_index)
        self._versions = self._param_versions()

    @torch.no_grad()
    def reset_free_(self) -> None:
        """Fresh default initialisation of the free units' incoming weights and biases."""
        free = trainable_units(self.owner)
        if not free.any():
            return
        fresh = torch.empty_like(self.weight)
        nn.init.kaiming_uniform_(fresh, a=math.sqrt(5))
        self.weight[free] = fresh[free]
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            self.bias[free] = torch.empty(int(free.sum()), dtype=self.bias.dtype,
                                          device=self.bias.device).uniform_(-bound, bound)


class MaskedLinear(MaskedMixin, nn.Linear):
    """``nn.Linear`` whose units (output features) carry an owner; see the module docstring."""

    # torch infers ``Linear.bias`` as ``Parameter`` from its __init__, though ``bias=False`` makes it None.
    bias: Tensor | None  # type: ignore[assignment]

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias=bias)
        self._init_masks(out_features)

    def forward(self, x: Tensor, from_snapshot: bool = False, out_units: int | None = None) -> Tensor:
        return F.linear(x, *self._narrowed(x, from_snapshot, out_units))

    def _set_shape(self) -> None:
        self.out_features, self.in_features = self.weight.shape


class MaskedConv2d(MaskedMixin, nn.Conv2d):
    """``nn.Conv2d`` whose units (output channels) carry an owner; see the module docstring."""

    # torch types these as ``tuple[int, ...]`` (on the n-d base class); ``nn.Conv2d.__init__`` makes each a pair.
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: str | tuple[int, int]
    dilation: tuple[int, int]

    def __init__(self, *args, **kwargs) -> None:
        nn.Conv2d.__init__(self, *args, **kwargs)
        if self.groups != 1:
            raise ValueError("grouped convolutions are not supported by clnp (groups must be 1)")
        self._init_masks(self.out_channels)

    def in_features_count(self) -> int:
        return self.in_channels

    def forward(self, x: Tensor, from_snapshot: bool = False, out_units: int | None = None) -> Tensor:
        return self._conv_forward(x, *self._narrowed(x, from_snapshot, out_units))

    def _set_shape(self) -> None:
        self.out_channels, self.in_channels = self.weight.shape[:2]


class MaskedBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm (1d or 2d) whose channels belong to the task of their unit.

    Channels of earlier tasks are computed in evaluation mode (their frozen running statistics)
    even while the network trains, so later tasks see old features exactly as they are at test
    time; their running statistics are restored after every training step and their affine
    parameters are served from frozen buffers, so none of it ever moves.
    """

    # Always tracked (track_running_stats=True): torch types these as optional.
    running_mean: Tensor
    running_var: Tensor
    num_batches_tracked: Tensor
    train_rows: Tensor
    frozen_weight: Tensor
    frozen_bias: Tensor
    frozen_mean: Tensor
    frozen_var: Tensor
    _all_free: bool

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine,
                         track_running_stats=True)
        n = num_features
        self.register_buffer("train_rows", torch.ones(n, dtype=torch.bool), persistent=False)
        for name in ("frozen_weight", "frozen_bias", "frozen_mean", "frozen_var"):
            self.register_buffer(name, torch.zeros(n), persistent=False)
        self._all_free = True

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() not in (2, 3, 4):
            raise ValueError(f"expected a 2D, 3D or 4D input to batch norm, got {x.dim()}D")

    @torch.no_grad()
    def consolidate_(self) -> None:
        if self._all_free:
            return
        if self.affine:
            self.weight.copy_(torch.where(self.train_rows, self.weight, self.frozen_weight))
            self.bias.copy_(torch.where(self.train_rows, self.bias, self.frozen_bias))
        self.running_mean.copy_(torch.where(self.train_rows, self.running_mean, self.frozen_mean))
        self.running_var.copy_(torch.where(self.train_rows, self.running_var, self.frozen_var))

    @torch.no_grad()
    def refresh_(self, owner: Tensor) -> None:
        """Follow the owner vector of the block's prunable layer; snapshot the frozen channels."""
        self.train_rows.copy_(trainable_units(owner))
        self._all_free = bool(self.train_rows.all())
        if self.affine:
            self.frozen_weight.copy_(self.weight)
            self.frozen_bias.copy_(self.bias)
        self.frozen_mean.copy_(self.running_mean)
        self.frozen_var.copy_(self.running_var)

    @torch.no_grad()
    def grow_(self, k: int) -> None:
        """``k`` more channels (for the layer's new units): fresh affine parameters and statistics."""
        n = self.num_features + k
        if self.affine:
            self.weight = nn.Parameter(torch.cat([self.weight.detach(), self.weight.new_ones(k)]),
                                       requires_grad=self.weight.requires_grad)
            self.bias = nn.Parameter(torch.cat([self.bias.detach(), self.bias.new_zeros(k)]),
                                     requires_grad=self.bias.requires_grad)
        self.running_mean = torch.cat([self.running_mean, self.running_mean.new_zeros(k)])
        self.running_var = torch.cat([self.running_var, self.running_var.new_ones(k)])
        self.train_rows = torch.ones(n, dtype=torch.bool, device=self.running_mean.device)
        for name in ("frozen_weight", "frozen_bias", "frozen_mean", "frozen_var"):
            setattr(self, name, self.running_mean.new_zeros(n))
        self.num_features = n

    @torch.no_grad()
    def reset_free_(self) -> None:
        free = self.train_rows
        if self.affine:
            self.weight[free] = 1.0
            self.bias[free] = 0.0
        self.running_mean[free] = 0.0
        self.running_var[free] = 1.0
        self.num_batches_tracked.zero_()

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        if x.shape[1] < self.num_features:  # an old task of a grown network: its own channels only
            return self._narrow_forward(x)
        if self._all_free:
            return super().forward(x)
        w = b = None
        if self.affine:
            w = torch.where(self.train_rows, self.weight, self.frozen_weight)
            b = torch.where(self.train_rows, self.bias, self.frozen_bias)
        if not self.training:
            # Old channels read their frozen statistics, whatever touched the running buffers.
            mean = torch.where(self.train_rows, self.running_mean, self.frozen_mean)
            var = torch.where(self.train_rows, self.running_var, self.frozen_var)
            return F.batch_norm(x, mean, var, w, b, False, 0.0, self.eps)
        old = F.batch_norm(x, self.frozen_mean, self.frozen_var, w, b, False, 0.0, self.eps)
        if self.momentum is None:  # cumulative average, restarted for each task's channels
            self.num_batches_tracked.add_(1)
            momentum = 1.0 / float(self.num_batches_tracked)
        else:
            momentum = self.momentum
        # Update copies of the statistics (autograd keeps them), then take only the free channels'.
        mean, var = self.running_mean.clone(), self.running_var.clone()
        new = F.batch_norm(x, mean, var, w, b, True, momentum, self.eps)
        with torch.no_grad():
            self.running_mean.copy_(torch.where(self.train_rows, mean, self.frozen_mean))
            self.running_var.copy_(torch.where(self.train_rows, var, self.frozen_var))
        return torch.where(_unsqueeze_like(self.train_rows, x.dim() - 1), new, old)

    def _narrow_forward(self, x: Tensor) -> Tensor:
        """The first ``x.shape[1]`` channels, all of an old task's width, from their frozen values."""
        c = x.shape[1]
        w = b = None
        if self.affine:
            w = torch.where(self.train_rows, self.weight, self.frozen_weight)[:c].contiguous()
            b = torch.where(self.train_rows, self.bias, self.frozen_bias)[:c].contiguous()
        mean = torch.where(self.train_rows, self.running_mean, self.frozen_mean)[:c].contiguous()
        var = torch.where(self.train_rows, self.running_var, self.frozen_var)[:c].contiguous()
        return F.batch_norm(x, mean, var, w, b, False, 0.0, self.eps)
