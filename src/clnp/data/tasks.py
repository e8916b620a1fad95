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
from torch.utils.data import Dataset

MAX_CLASSES = 100_000
"""The most classes a task may have. A head is a layer, capped as a layer's width is (``clnp run``'s
``MAX_LAYER_WIDTH``): ``n_classes=10**7``, a typo, would allocate and compute for minutes before failing."""


class ItemError(ValueError):
    """A dataset item that does not fit (shape, dtype, NaN or inf), named by its index where it is read."""


def check_item(x: Tensor, index: int, shape: tuple[int, ...], where: str, after: str = "") -> None:
    """Refuse item ``index`` of a dataset (``where``: e.g. ``task 'a': train``) unless it is a float tensor of
    ``shape``. Checked as items are read (cheap: no pass over the values), so that a bad item is named where a
    batch of it would fail to stack or to compute; NaN and inf are checked per batch (:func:`check_finite`)."""
    if tuple(x.shape) != shape:
        raise ItemError(f"{where} item {index} has shape {tuple(x.shape)}{after}; expected {shape} "
                        "(the shape of item 0)")
    if not torch.is_floating_point(x):
        raise ItemError(f"{where} item {index} is {x.dtype}{after}; expected floating-point inputs "
                        "(e.g. x.float() / 255 for 8-bit images)")


def check_finite(x: Tensor, index: Sequence[int], where: str, after: str = "") -> None:
    """Refuse a batch ``x`` of the items ``index`` that holds NaN or inf, naming the first such item: one pass over
    the batch (a small fraction of reading it), where the loss would only say so an epoch later."""
    if not torch.isfinite(x).all():
        row = int((~torch.isfinite(x)).flatten(1).any(1).nonzero()[0])
        raise ItemError(f"{where} item {index[row]} contains NaN or infinite values{after}")


def _one_line(batches: Iterator[Any]) -> Iterator[Any]:
    """``batches`` of a DataLoader, an :class:`ItemError` raised in a worker told in its own one line (the loader
    appends the worker's traceback to the message)."""
    try:
        yield from batches
    except ItemError as exc:
        text = str(exc).strip()
        if "\n" not in text:
            raise
        line = text.splitlines()[-1]
        raise ItemError(line.partition("ItemError: ")[2] or line) from None


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
    ``workers`` is the DataLoader's ``num_workers``. ``where`` names the split in errors (``task 'a': train``):
    every item is checked as it is read (its shape against item 0's and a float dtype, after the transform too;
    no NaN or inf, per batch), on every route. Batches are drawn by index lists the training loop makes (seeded,
    so a resumed run reads the same batches); worker RNGs are seeded from the same seed.
    Every method trains through :meth:`batches`; what reads inputs outside training reads them untransformed,
    a bounded sample (:meth:`take`) or batch by batch (:meth:`input_batches`). ``x`` (every input at once,
    untransformed) is for a user's own code: no method reads it.
    """

    def __init__(self, dataset: Any, transform: Callable[[Tensor], Tensor] | None = None, workers: int = 0, *,
                 where: str = "train") -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError("expected a map-style dataset (with __getitem__ and __len__), "
                            f"got {type(dataset).__name__}")
        if not isinstance(workers, int) or workers < 0:
            raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
        self.dataset = dataset
        self.transform = transform
        self.workers = workers
        self.where = where
        self._shape: tuple[int, ...] | None = None
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
        """The inputs at ``index``, untransformed (each checked: :func:`check_item`)."""
        shape = self.sample_shape()
        items = []
        for i in index.tolist():
            x = torch.as_tensor(self.dataset[i][0])
            check_item(x, i, shape, self.where)
            items.append(x)
        out = torch.stack(items)
        check_finite(out, index.tolist(), self.where)
        return out

    def input_batches(self, batch_size: int) -> Iterator[Tensor]:
        """Every input, untransformed, in order, ``batch_size`` at a time, through a DataLoader with the split's
        workers: a pass over the split that never holds it whole in memory."""
        from torch.utils.data import DataLoader

        items = _Transformed(self.dataset, None, self.sample_shape(), self.where)
        for x, *_ in _one_line(iter(DataLoader(items, batch_size=batch_size, num_workers=self.workers))):
            yield x

    def sample_shape(self) -> tuple[int, ...]:
        """The shape of item 0, which every item must have."""
        if self._shape is None:
            known = getattr(self.dataset, "sample_shape", None)  # a union of splits knows it without a transform
            self._shape = tuple(known()) if callable(known) else tuple(torch.as_tensor(self.dataset[0][0]).shape)
        return self._shape

    def batches(self, chunks: Sequence[Tensor], pin_memory: bool, seed: int) -> Iterator[tuple[Tensor, ...]]:
        """``(inputs, labels, ...)`` for each index list of ``chunks``, through a DataLoader (a union split's items
        carry their task index too)."""
        from torch.utils.data import DataLoader

        loader = DataLoader(_Transformed(self.dataset, self.transform, self.sample_shape(), self.where),
                            batch_sampler=[c.tolist() for c in chunks], num_workers=self.workers,
                            pin_memory=pin_memory, generator=torch.Generator().manual_seed(seed))
        after = " (after the transform)" if self.transform is not None else ""
        for chunk, (x, *rest) in zip(chunks, _one_line(iter(loader)), strict=True):
            check_finite(x, chunk.tolist(), self.where, after)
            yield x, *rest


class _Transformed(Dataset[tuple[Tensor, ...]]):
    """``dataset`` with ``transform`` applied to its inputs (picklable, for the loader's workers); each item's shape
    and dtype are checked (:func:`check_item`) before and after the transform, in the worker that reads it. Integer
    fields after the label (a task index, see :func:`union_split`) pass through."""

    def __init__(self, dataset: Any, transform: Callable[[Tensor], Tensor] | None, shape: tuple[int, ...],
                 where: str) -> None:
        self.dataset, self.transform, self.shape, self.where = dataset, transform, shape, where

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Tensor, ...]:
        x, y, *rest = self.dataset[i]
        x = torch.as_tensor(x)
        check_item(x, i, self.shape, self.where)
        if self.transform is not None:
            x = self.transform(x)
            check_item(x, i, self.shape, self.where, after=" after the transform")
        return x, torch.as_tensor(int(y)), *(torch.as_tensor(int(r)) for r in rest)


class _Union:
    """Items ``(input, label, k)`` of the training splits ``parts`` one after another, each input through its
    own split's transform (a tensor split's: none)."""

    def __init__(self, parts: Sequence[Split | DatasetSplit]) -> None:
        self.parts = [_Transformed(p.dataset, p.transform, p.sample_shape(), p.where) if isinstance(p, DatasetSplit)
                      else p for p in parts]
        self.ends = torch.tensor([len(p) for p in parts]).cumsum(0).tolist()
        self.targets = torch.cat([p.y for p in parts])

    def __len__(self) -> int:
        return self.ends[-1] if self.ends else 0

    def sample_shape(self) -> tuple[int, ...]:
        """The shape of an input, read without running a transform (which a spy may count)."""
        first = self.parts[0]
        return tuple(first.x.shape[1:]) if isinstance(first, Split) else first.shape

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


def read_split(dataset: Any, batch_size: int = 1024, workers: int = 0, where: str = "") -> Split:
    """Every item of a map-style dataset, read once through a DataLoader into a :class:`Split` (each item checked
    by :func:`check_item`; ``where`` names the split in its errors)."""
    from torch.utils.data import DataLoader

    if len(dataset) == 0:
        return Split(torch.zeros(0), torch.zeros(0, dtype=torch.long))
    xs, ys = [], []
    checked = _Transformed(dataset, None, tuple(torch.as_tensor(dataset[0][0]).shape), where or "dataset")
    for start, (x, y) in enumerate(_one_line(iter(DataLoader(checked, batch_size=batch_size, num_workers=workers)))):
        check_finite(x, range(start * batch_size, start * batch_size + x.shape[0]), checked.where)
        xs.append(x)
        ys.append(y)
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
        return cls(name, n_classes, DatasetSplit(train, transform, workers, where=f"task {name!r}: train"),
                   read_split(val, workers=workers, where=f"task {name!r}: val"),
                   read_split(test, workers=workers, where=f"task {name!r}: test"))

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input (without the batch dimension)."""
        return tuple(self.val.x.shape[1:])

    def validate(self, input_shape: tuple[int, ...] | None = None) -> None:
        """Check the task at the door; raise ``ValueError`` saying what is wrong and what was expected."""
        if self.n_classes < 2:
            raise ValueError(f"task {self.name!r} has {self.n_classes} class; a task needs at least 2")
        if self.n_classes > MAX_CLASSES:
            raise ValueError(f"task {self.name!r} has {self.n_classes} classes; at most {MAX_CLASSES} are allowed "
                             "(a head is a layer, capped as a layer's width; a larger count is taken for a typo)")
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
