"""The sparsity penalty that drives most units of a task to idleness: L1 on hidden activations (the default), or
on the units' incoming weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def l1_activity_penalty(activity: Sequence[Tensor], coefficients: Sequence[float],
                        trainable: Sequence[Tensor] | None = None,
                        nonnegative: Sequence[bool] | None = None) -> Tensor:
    """Sum over layers of ``coefficient * sum over trainable units of mean |activation|``.

    The mean runs over the batch and (for conv layers) the positions; the sum runs over the units,
    so each unit feels the same pull ``coefficient``, whatever the layer's width and however many
    of its units are still free (a mean over units would weaken the pull as a layer widens and
    strengthen it as the layer fills: 16x for a conv layer with 1 of 16 units free). Units of earlier
    tasks are left out: nothing the current task trains can change them. ``nonnegative[i]`` (e.g.
    the layer ends in a ReLU) skips the ``abs``, which would change nothing there but cost two
    passes over the activations.
    """
    if len(activity) != len(coefficients):
        raise ValueError(f"{len(activity)} layers of activity but {len(coefficients)} L1 coefficients")
    total = activity[0].new_zeros(())
    for i, (a, coef) in enumerate(zip(activity, coefficients, strict=True)):
        if coef == 0.0:
            continue
        if nonnegative is None or not nonnegative[i]:
            a = a.abs()
        rows = None if trainable is None else trainable[i]
        positions = a.numel() // (a.shape[0] * a.shape[1])
        scale = coef / (a.shape[0] * positions)
        if rows is None:
            total = total + scale * a.sum()
            continue
        # One reduction to per-unit sums, then the trainable units' share (a product, not a boolean index:
        # no wait for the device to say how many units are trainable).
        per_unit = a.sum(dim=[d for d in range(a.dim()) if d != 1])
        total = total + scale * (per_unit * rows.to(per_unit.dtype)).sum()
    return total


def l1_weight_penalty(weights: Sequence[Tensor], coefficients: Sequence[float], trainable: Sequence[Tensor],
                      biases: Sequence[Tensor | None] | None = None) -> Tensor:
    """Sum over layers of ``coefficient * sum over trainable units of mean |incoming weight|`` (and ``|bias|``).

    The L1 penalty on weights of the public re-implementation of CLNP that NISPA (ICML 2022) compares with,
    per unit like :func:`l1_activity_penalty`: the mean over a unit's incoming weights (its fan-in, times the
    kernel for a conv layer) makes the pull on each unit the same at every width and input size. A unit's mean
    incoming weight is much smaller than its mean activation, so this penalty needs a coefficient about 10-30
    times larger to idle as many units (split-digits, bench/RESULTS.md). Differentiable: add it to the loss. Rows of
    earlier tasks' units are left out (their weights never move).
    """
    if not (len(weights) == len(coefficients) == len(trainable)):
        raise ValueError(f"{len(weights)} layers of weights, {len(coefficients)} L1 coefficients and "
                         f"{len(trainable)} masks of trainable units")
    total = weights[0].new_zeros(())
    for i, (w, coef, rows) in enumerate(zip(weights, coefficients, trainable, strict=True)):
        if coef == 0.0:
            continue
        per_unit = w.abs().flatten(1).mean(1)
        bias = None if biases is None else biases[i]
        if bias is not None:
            per_unit = per_unit + bias.abs()
        total = total + coef * (per_unit * rows.to(per_unit.dtype)).sum()
    return total


def l1_unit_weights(coefficients: Sequence[float], trainable: Sequence[Tensor]) -> list[Tensor | None]:
    """Per layer, per unit: ``coefficient`` for trainable units, 0 for the others.

    Divided by batch x positions, this is the gradient of :func:`l1_activity_penalty` with respect
    to a (non-negative) activation; :func:`add_l1_gradient` adds it in the backward pass.
    """
    out: list[Tensor | None] = []
    for coef, rows in zip(coefficients, trainable, strict=True):
        out.append(None if coef == 0.0 or not bool(rows.any()) else rows.to(torch.get_default_dtype()) * coef)
    return out


class _AddL1Gradient(torch.autograd.Function):
    """Identity on a layer's activity; its backward adds the L1 penalty's gradient in place."""

    @staticmethod
    def forward(ctx, a: Tensor, weights: Tensor, nonnegative: bool) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(weights, None if nonnegative else a)
        return a.view_as(a)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        weights, a = ctx.saved_tensors
        scale = (weights / (grad.numel() // grad.shape[1])).view(1, -1, *([1] * (grad.dim() - 2)))
        if 0 in grad.stride():
            grad = grad.clone()  # a broadcast gradient: never write through it
        # Otherwise the gradient is the fresh result of the next module's backward: adding in place
        # spares the activation-sized tensor that autograd's accumulation of two branches would make.
        if a is None:
            grad.add_(scale.to(grad.dtype))
        else:
            grad.addcmul_(torch.sign(a), scale.to(grad.dtype))
        return grad, None, None


def add_l1_gradient(a: Tensor, weights: Tensor, nonnegative: bool) -> Tensor:
    """``a`` itself, whose gradient gains that of ``l1_activity_penalty`` for this layer (see
    :mod:`clnp.methods.clnp.cycle`).

    ``weights`` comes from :func:`l1_unit_weights`. Use it in place of adding the penalty to the
    loss (add the penalty's value under ``torch.no_grad`` then), never on top of it.
    """
    if not (torch.is_grad_enabled() and a.requires_grad):
        return a
    return _AddL1Gradient.apply(a, weights.to(a.device), nonnegative)


def per_layer(value: float | Sequence[float], n_layers: int) -> list[float]:
    """Expand one coefficient, or check a per-layer list, for ``n_layers`` prunable layers."""
    if isinstance(value, (int, float)):
        return [float(value)] * n_layers
    values = [float(v) for v in value]
    if len(values) != n_layers:
        raise ValueError(f"expected 1 or {n_layers} L1 coefficients (one per prunable layer), got {len(values)}")
    return values


__all__ = ["add_l1_gradient", "l1_activity_penalty", "l1_unit_weights", "l1_weight_penalty", "per_layer"]
