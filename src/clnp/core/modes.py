"""Evaluation mode for a while: the one save-and-restore of a module's training mode.

Every evaluation (activity statistics, predictions, importance estimates, test accuracy) computes in
evaluation mode and gives the module back in the mode it came in, also when the evaluation fails.
:func:`clnp.engine.devices.evaluating` adds no-grad and the run's precision on top of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def evaluation_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in evaluation mode inside the block; its training mode as it was after."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


__all__ = ["evaluation_mode"]
