"""A task: labelled train, validation and test data with their own label space.

In-memory tensors (:class:`Split`) are the fast path, used by every shipped benchmark. A task can
also be built from any map-style :class:`torch.utils.data.Dataset` (:meth:`Task.from_datasets`):
its training split is then read through a :class:`~torch.utils.data.DataLoader` every epoch
(workers, pinned memory, a train-only transform for augmentation), while the validation and test
splits are read once into tensors, because the threshold search evaluates the validation split
tens of times per task.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass
class Split:
    """Inputs ``x`` (float, ``[N, ...]``) and integer labels ``y`` in ``0..n_classes-1``."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def take(self, index: Tensor) -> Tensor:
        """The inputs at ``index`` (no transform)."""
        return self.x[index]

    def input_batches(self, batch_size: int) -> Iterator[Tensor]:
        """Every input, in order, ``batch_size`` at a time."""
        yield from self.x.split(batch_size)


class DatasetSplit:
    """A training split read from a map-style dataset whose items are ``(input tensor, integer label)``.

    ``transform`` (applied to the input, in the loader's workers) is for training only: augmentation.
    ``workers`` is the DataLoader's ``num_workers``. Batches are drawn by index lists the training loop
    makes (seeded, so a resumed run reads the same batches); worker RNGs are seeded from the same seed.
    Every method trains through :meth:`batches`; what reads inputs outside training reads them untransformed,
    a bounded sample (:meth:`take`) or batch by batch (:meth:`input_batches`). ``x`` (every input at once,
    untransformed) is for a user's own code: no method reads it.
    """

    def __init__(self, dataset: Any, transform: Callable[[Tensor], Tensor] | None = None, workers: int = 0) -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError("expected a map-style dataset (with __getitem__ and __len__), "
                            f"got {type(dataset).__name__}")
        if not isinstance(workers, int) or workers < 0:
            raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
        self.dataset = dataset
        self.transform = transform
        self.workers = workers
        self._x: Tensor | None = None
        self._y: Tensor | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def y(self) -> Tensor:
        """Every label (read once: from ``dataset.targets`` when it has them, else item by item)."""
        if self._y is None:
            targets = getattr(self.dataset, "targets", None)
            if targets is not None and len(targets) == len(self.dataset):
                self._y = torch.as_tensor(targets, dtype=torch.long)
            else:
                self._y = torch.as_tensor([int(self.dataset[i][1]) for i in range(len(self.dataset))], dtype=torch.long)
        return self._y

    @property
    def x(self) -> Tensor:
        """Every input, untransformed (read once and cached; see the class docstring)."""
        if self._x is None:
            self._x = self.take(torch.arange(len(self)))
        return self._x

    def take(self, index: Tensor) -> Tensor:
        """The inputs at ``index``, untransformed."""
        return torch.stack([torch.as_tensor(self.dataset[int(i)][0]) for i in index])

    def input_batches(self, batch_size: int) -> Iterator[Tensor]:
        """Every input, untransformed, in order, ``batch_size`` at a time, through a DataLoader with the split's
        workers: a pass over the split that never holds it whole in memory."""
        from torch.utils.data import DataLoader

        for x, *_ in DataLoader(_Transformed(self.dataset, None), batch_size=batch_size, num_workers=self.workers):
            yield x

    def sample_shape(self) -> tuple[int, ...]:
        return tuple(torch.as_tensor(self.dataset[0][0]).shape)

    def batches(self, chunks: Sequence[Tensor], pin_memory: bool, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
        """``(inputs, labels)`` for each index list of ``chunks``, through a DataLoader."""
        from torch.utils.data import DataLoader

        loader = DataLoader(_Transformed(self.dataset, self.transform), batch_sampler=[c.tolist() for c in chunks],
                            num_workers=self.workers, pin_memory=pin_memory,
                            generator=torch.Generator().manual_seed(seed))
        yield from loader


class _Transformed:
    """``dataset`` with ``transform`` applied to its inputs (picklable, for the loader's workers). Integer fields
    after the label (a task index, see :func:`union_split`) pass through."""

    def __init__(self, dataset: Any, transform: Callable[[Tensor], Tensor] | None) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Tensor, ...]:
        x, y, *rest = self.dataset[i]
        x = torch.as_tensor(x)
        return ((self.transform(x) if self.transform is not None else x), torch.as_tensor(int(y)),
                *(torch.as_tensor(int(r)) for r in rest))


class _Union:
    """Items ``(input, label, k)`` of the training splits ``parts`` one after another, each input through its
    own split's transform (a tensor split's: none)."""

    def __init__(self, parts: Sequence[Split | DatasetSplit]) -> None:
        self.parts = [(_Transformed(p.dataset, p.transform) if isinstance(p, DatasetSplit) else p) for p in parts]
        self.ends = torch.tensor([len(p) for p in parts]).cumsum(0).tolist()
        self.targets = torch.cat([p.y for p in parts])

    def __len__(self) -> int:
        return self.ends[-1] if self.ends else 0

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, int]:
        k = bisect.bisect_right(self.ends, i)
        part, j = self.parts[k], i - (self.ends[k - 1] if k else 0)
        x, y = (part.x[j], part.y[j]) if isinstance(part, Split) else part[j]
        return x, y, k


def union_split(parts: Sequence[Split | DatasetSplit]) -> DatasetSplit:
    """The training splits ``parts`` as one dataset-backed split of items ``(input, label, k)``, ``k`` the
    index of the item's split: each input through its own split's transform, read with the most workers any
    part asks for (joint training on the tasks seen so far)."""
    workers = max((p.workers for p in parts if isinstance(p, DatasetSplit)), default=0)
    return DatasetSplit(_Union(parts), None, workers)


def read_split(dataset: Any, batch_size: int = 1024, workers: int = 0) -> Split:
    """Every item of a map-style dataset, read once through a DataLoader into a :class:`Split`."""
    from torch.utils.data import DataLoader

    xs, ys = [], []
    for x, y in DataLoader(_Transformed(dataset, None), batch_size=batch_size, num_workers=workers):
        xs.append(x)
        ys.append(y)
    if not xs:
        return Split(torch.zeros(0), torch.zeros(0, dtype=torch.long))
    return Split(torch.cat(xs), torch.cat(ys).long())


@dataclass
class Task:
    """One task of a stream. The validation split drives pruning; test accuracy uses ``test`` only."""

    name: str
    n_classes: int
    train: Split | DatasetSplit
    val: Split
    test: Split

    @classmethod
    def from_datasets(cls, name: str, n_classes: int, train: Any, val: Any, test: Any, *,
                      transform: Callable[[Tensor], Tensor] | None = None, workers: int = 0) -> Task:
        """A task whose training split is read through a DataLoader (``workers``, the train-only
        ``transform``); ``val`` and ``test`` are read once into tensors. Each dataset is map-style with
        items ``(input tensor, integer label)``."""
        return cls(name, n_classes, DatasetSplit(train, transform, workers), read_split(val, workers=workers),
                   read_split(test, workers=workers))

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input (without the batch dimension)."""
        return tuple(self.val.x.shape[1:])

    def validate(self, input_shape: tuple[int, ...] | None = None) -> None:
        """Check the task at the door; raise ``ValueError`` saying what is wrong and what was expected."""
        if self.n_classes < 2:
            raise ValueError(f"task {self.name!r} has {self.n_classes} class; a task needs at least 2")
        if isinstance(self.train, DatasetSplit):
            self._validate_dataset_split(input_shape)
        for part in ("val", "test") if isinstance(self.train, DatasetSplit) else ("train", "val", "test"):
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

    def _validate_dataset_split(self, input_shape: tuple[int, ...] | None) -> None:
        split = self.train
        assert isinstance(split, DatasetSplit)
        if len(split) == 0:
            raise ValueError(f"task {self.name!r}: the train split is empty")
        y = split.y
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= self.n_classes:
            raise ValueError(f"task {self.name!r}: train labels range over {lo}..{hi}; "
                             f"expected 0..{self.n_classes - 1}")
        shape = split.sample_shape()
        expected = tuple(input_shape) if input_shape is not None else tuple(self.val.x.shape[1:])
        if shape != expected:
            raise ValueError(f"task {self.name!r}: train inputs have shape {shape}; expected {expected}")
