"""A task: labelled train, validation and test tensors with their own label space."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Split:
    """Inputs ``x`` (float, ``[N, ...]``) and integer labels ``y`` in ``0..n_classes-1``."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass
class Task:
    """One task of a stream. The validation split drives pruning; test accuracy uses ``test`` only."""

    name: str
    n_classes: int
    train: Split
    val: Split
    test: Split

    def validate(self, input_shape: tuple[int, ...] | None = None) -> None:
        """Check the task at the door; raise ``ValueError`` saying what is wrong and what was expected."""
        if self.n_classes < 2:
            raise ValueError(f"task {self.name!r} has {self.n_classes} class; a task needs at least 2")
        for part in ("train", "val", "test"):
            split: Split = getattr(self, part)
            if len(split) == 0:
                raise ValueError(f"task {self.name!r}: the {part} split is empty")
            if split.y.dim() != 1:
                raise ValueError(
                    f"task {self.name!r}: {part} labels have shape {tuple(split.y.shape)}; expected one label "
                    f"per input, shape [{split.x.shape[0]}]"
                )
            if split.x.shape[0] != split.y.shape[0]:
                raise ValueError(
                    f"task {self.name!r}: {part} has {split.x.shape[0]} inputs but {split.y.shape[0]} labels"
                )
            if not torch.is_floating_point(split.x):
                raise ValueError(f"task {self.name!r}: {part} inputs must be floating point, got {split.x.dtype}")
            if not torch.isfinite(split.x).all():
                raise ValueError(f"task {self.name!r}: {part} inputs contain NaN or infinite values")
            if split.y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
                raise ValueError(f"task {self.name!r}: {part} labels must be integers, got {split.y.dtype}")
            lo, hi = int(split.y.min()), int(split.y.max())
            if lo < 0 or hi >= self.n_classes:
                raise ValueError(
                    f"task {self.name!r}: {part} labels range over {lo}..{hi}; expected 0..{self.n_classes - 1}"
                )
            if input_shape is not None and tuple(split.x.shape[1:]) != tuple(input_shape):
                raise ValueError(
                    f"task {self.name!r}: {part} inputs have shape {tuple(split.x.shape[1:])}; "
                    f"the model expects {tuple(input_shape)}"
                )
        if int(torch.unique(self.train.y).numel()) < 2:
            raise ValueError(f"task {self.name!r}: the training split holds a single class")
