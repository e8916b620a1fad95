"""Precisions: how the forward passes of training and evaluation compute, one object per name.

Like Lightning's precision plugins: a :class:`Precision` holds its name (Lightning's), the autocast dtype
and whether training needs a gradient scaler, so the loop asks the object and never branches on a name.
A new precision is one more entry in :data:`PRECISIONS`. Importing this module imports no torch (the CLI
offers the names).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported when a precision is used: the CLI lists the names without it
    import torch


@dataclass(frozen=True)
class Precision:
    """One precision: ``name`` as given to ``--precision``, the autocast ``dtype`` (None: plain float32), and
    how the loop takes a step in it (plain here; :class:`ScaledPrecision` scales the loss)."""

    name: str
    dtype: str | None
    """The name of the ``torch`` dtype autocast computes in (``"bfloat16"``); None: float32, no autocast."""

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """``torch.autocast`` in this dtype on ``device``'s type; a no-op context in float32.

        The cast cache is off: with it, a region casts a weight once and serves that copy to every later
        forward pass in the region, so an edit in place (the pruning search tries its reuse cuts on the new
        head's weight inside one region) would be scored on the weight as it was before the edit. A cast
        computes the same values as a cached one, so results are unchanged wherever nothing was edited.
        """
        if self.dtype is None:
            return contextlib.nullcontext()
        import torch

        return torch.autocast(device_type=device.type, dtype=getattr(torch, self.dtype), cache_enabled=False)

    def grad_scaler(self, device: torch.device) -> Any:
        """A gradient scaler where this precision needs one; None otherwise."""
        return None

    def set_loss_scale(self, hooks: Any, scaler: Any, device: torch.device) -> None:
        """Before a step: tell the hooks the loss scale (for a hook that writes or reads gradients)."""

    def backward_and_step(self, hooks: Any, optimizer: Any, scaler: Any, loss: torch.Tensor,
                          extra: torch.Tensor | None, head: int, step: int, n_steps: int) -> None:
        """One optimiser step of the one loop: the hooks' backward pass, their gradient edits, the step."""
        hooks.backward(loss, extra)
        hooks.after_backward(head, step, n_steps)
        optimizer.step()


@dataclass(frozen=True)
class ScaledPrecision(Precision):
    """A precision whose gradients need a scaled loss (fp16): a gradient scaler, and the hooks edit true
    gradients (unscaled before :meth:`LoopHooks.after_backward`)."""

    def grad_scaler(self, device: torch.device) -> Any:
        import torch

        return torch.amp.GradScaler(device.type)

    def set_loss_scale(self, hooks: Any, scaler: Any, device: torch.device) -> None:
        import torch

        hooks.loss_scale = scaler.scale(torch.ones((), device=device))  # no host sync

    def backward_and_step(self, hooks: Any, optimizer: Any, scaler: Any, loss: torch.Tensor,
                          extra: torch.Tensor | None, head: int, step: int, n_steps: int) -> None:
        hooks.backward(scaler.scale(loss), None if extra is None else scaler.scale(extra))
        scaler.unscale_(optimizer)  # the hooks edit true gradients
        hooks.after_backward(head, step, n_steps)
        scaler.step(optimizer)  # skipped when a gradient overflowed; the scale then shrinks
        scaler.update()


PRECISIONS: dict[str, Precision] = {p.name: p for p in (
    Precision("32", None),
    Precision("bf16-mixed", "bfloat16"),
    ScaledPrecision("16-mixed", "float16"),
)}
"""Precision name -> the object (``TrainConfig.precision``, ``clnp run --precision``)."""


def check_precision(precision: str) -> None:
    """Refuse a precision name clnp does not know (``ValueError`` naming the known ones)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")


def get_precision(precision: str) -> Precision:
    """The :class:`Precision` named ``precision`` (``ValueError`` for an unknown name)."""
    check_precision(precision)
    return PRECISIONS[precision]


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """:meth:`Precision.autocast` of the precision named ``precision``."""
    return get_precision(precision).autocast(device)


def grad_scaler(precision: str, device: torch.device) -> Any:
    """:meth:`Precision.grad_scaler` of the precision named ``precision``."""
    return get_precision(precision).grad_scaler(device)


__all__ = ["PRECISIONS", "Precision", "ScaledPrecision", "autocast", "check_precision", "get_precision", "grad_scaler"]
