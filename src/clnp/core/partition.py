"""The unit partition: which task owns each unit, and the weight masks that follow from it.

Every prunable layer keeps one *owner vector*: ``owner[u]`` is the id (0, 1, ...) of the task that
owns unit ``u``, or :data:`FREE`. All weight masks are derived from the owner vectors of the two
layers a weight joins (HAT's rule, at the level of units): a weight from unit ``i`` into unit ``o``
is part of task ``k``'s computation when both units are live for ``k``. So, for ``W[o, i]``:

* ``owner[o] == FREE``: trainable (the free units learn the current task, reading every input);
* ``owner[i]`` is FREE or a *later* task than ``owner[o]``: cut (held at exactly zero);
* otherwise: frozen (part of an earlier task, never moves).

Input features of the network belong to no task and are readable by all.
"""

from __future__ import annotations

import torch
from torch import Tensor

FREE = -1
"""Owner value of a unit that belongs to no task yet."""


def expand_owner(owner: Tensor, n_inputs: int) -> Tensor:
    """Owner of each input feature of a layer that reads ``n_inputs`` features from ``owner``'s units.

    A dense layer after ``Flatten`` of a conv layer with ``C`` channels reads ``C * H * W`` features,
    channel-major; each feature belongs to its channel.
    """
    if n_inputs % owner.numel():
        raise ValueError(
            f"a layer reads {n_inputs} features from a layer of {owner.numel()} units; "
            "expected a whole multiple (channels x positions)"
        )
    factor = n_inputs // owner.numel()
    return owner if factor == 1 else owner.repeat_interleave(factor)


def cut_mask(owner_in: Tensor | None, owner_out: Tensor) -> Tensor:
    """Boolean ``[out, in]`` mask, True where a weight is cut (an interference weight, held at 0).

    ``owner_in`` is None for the network's input, whose features are never cut.
    """
    if owner_in is None:
        return torch.zeros(owner_out.numel(), 1, dtype=torch.bool, device=owner_out.device)
    out = owner_out[:, None]
    inp = owner_in[None, :]
    return (out != FREE) & ((inp == FREE) | (inp > out))


def trainable_units(owner: Tensor) -> Tensor:
    """Boolean per-unit mask of the units the current task may train: the free ones."""
    return owner == FREE


def live_units(owner: Tensor, task: int) -> Tensor:
    """Units that take part in task ``task``'s computation: owned by it or an earlier task."""
    return (owner != FREE) & (owner <= task)
