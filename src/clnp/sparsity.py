"""The sparsity penalty: L1 on hidden activations, which drives most units of a task to idleness."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor


def l1_activity_penalty(activity: Sequence[Tensor], coefficients: Sequence[float],
                        trainable: Sequence[Tensor] | None = None,
                        nonnegative: Sequence[bool] | None = None) -> Tensor:
    """Sum over layers of ``coefficient * mean |activation|`` of the layer's trainable units.

    The mean runs over the batch, the units and (for conv layers) the positions, so one coefficient
    suits layers of any width. Units of earlier tasks are left out: nothing the current task trains
    can change them. ``nonnegative[i]`` (e.g. the layer ends in a ReLU) skips the ``abs``, which
    would change nothing there but cost two passes over the activations.
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
        if rows is None or bool(rows.all()):
            total = total + coef * a.mean()
            continue
        n = int(rows.sum())
        if n == 0:
            continue
        # One reduction to per-unit sums, then the trainable units' share of the mean.
        per_unit = a.sum(dim=[d for d in range(a.dim()) if d != 1])
        positions = a.numel() // (a.shape[0] * a.shape[1])
        scale = coef / (a.shape[0] * positions * n)
        total = total + scale * per_unit[rows].sum()
    return total


def per_layer(value: float | Sequence[float], n_layers: int) -> list[float]:
    """Expand one coefficient, or check a per-layer list, for ``n_layers`` prunable layers."""
    if isinstance(value, (int, float)):
        return [float(value)] * n_layers
    values = [float(v) for v in value]
    if len(values) != n_layers:
        raise ValueError(f"expected 1 or {n_layers} L1 coefficients (one per prunable layer), got {len(values)}")
    return values


__all__ = ["l1_activity_penalty", "per_layer"]
