"""The one evaluation of a task's outputs: every method's test accuracy comes from :func:`accuracy`.

A comparison compares what this one function computes, for CLNP and every baseline alike: batches of
``batch_size`` inputs moved to the module's device, evaluation mode without gradients in the run's
precision (:func:`~clnp.engine.devices.evaluating`), logits brought back to the CPU as float32, the
arg-max against the labels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .devices import evaluating, module_device


@torch.no_grad()
def logits(module: nn.Module, head: int, x: Tensor, batch_size: int, precision: str) -> Tensor:
    """``module(x, head)`` (on the CPU, float32), computed in batches on ``module``'s device in evaluation mode
    and the run's ``precision``; the module's mode is restored after."""
    device = module_device(module)
    with evaluating(module, precision):
        return torch.cat([module(x[i:i + batch_size].to(device, non_blocking=True), head).float().cpu()
                          for i in range(0, x.shape[0], batch_size)])


def accuracy(module: nn.Module, head: int, x: Tensor, y: Tensor, batch_size: int, precision: str) -> float:
    """The fraction of ``x`` whose arg-max of :func:`logits` is the label ``y``."""
    predicted = logits(module, head, x, batch_size, precision).argmax(1)
    return float((predicted == y.cpu()).sum()) / max(1, int(y.shape[0]))


__all__ = ["accuracy", "logits"]
