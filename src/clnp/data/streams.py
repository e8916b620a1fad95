"""Task streams from a data set (task-incremental, one head per task): split by class groups, or the same
classes under seeded pixel permutations; each task's validation split carved from its training data."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import overload

import torch
from torch import Tensor

from .datasets import Dataset, load_digits
from .tasks import Split, Task


def carve_validation(x: Tensor, y: Tensor, fraction: float, seed: int) -> tuple[Split, Split]:
    """Seeded random split of a training set into (train, validation); at least one of each."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the validation fraction must lie in (0, 1), got {fraction}")
    n = y.shape[0]
    n_val = min(n - 1, max(1, round(fraction * n)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val, train = order[:n_val], order[n_val:]
    return Split(x[train], y[train]), Split(x[val], y[val])


def split_tasks(data: Dataset, groups: Sequence[Sequence[int]], val_fraction: float = 0.1,
                seed: int = 0, prefix: str | None = None) -> list[Task]:
    """One task per group of classes; labels renumbered ``0..len(group)-1`` in group order."""
    tasks = []
    for t, group in enumerate(groups):
        classes = torch.tensor(list(group))
        lookup = torch.full((int(max(data.n_classes, int(classes.max()) + 1)),), -1, dtype=torch.long)
        lookup[classes] = torch.arange(len(classes))
        tr = torch.isin(data.y_train, classes)
        te = torch.isin(data.y_test, classes)
        train, val = carve_validation(data.x_train[tr], lookup[data.y_train[tr]], val_fraction, seed * 7919 + t)
        test = Split(data.x_test[te], lookup[data.y_test[te]])
        name = f"{prefix or data.name}:{_group_name(group)}"
        tasks.append(Task(name, len(group), train, val, test))
    return tasks


def _group_name(group: Sequence[int]) -> str:
    """``0/1`` for a pair, ``10-19`` for a longer run of consecutive classes."""
    g = list(group)
    if len(g) > 2 and g == list(range(g[0], g[0] + len(g))):
        return f"{g[0]}-{g[-1]}"
    return "/".join(str(c) for c in g)


class PermutedTasks(Sequence[Task]):
    """Permuted-X tasks built on access: task ``k`` applies a fixed, seeded pixel permutation
    (task 0: identity). Only the base images are held, so ten tasks of MNIST cost one copy, not ten;
    the two most recently used tasks are cached."""

    def __init__(self, data: Dataset, n_tasks: int, val_fraction: float = 0.1, seed: int = 0,
                 prefix: str | None = None) -> None:
        if n_tasks < 1:
            raise ValueError(f"n_tasks must be >= 1, got {n_tasks}")
        self.shape = data.input_shape
        self.n_classes = data.n_classes
        self.n_tasks = n_tasks
        self.seed = seed
        self.prefix = prefix or data.name
        self.train, self.val = carve_validation(data.x_train, data.y_train, val_fraction, seed * 7919)
        self.test = Split(data.x_test, data.y_test)
        self._cache: OrderedDict[int, Task] = OrderedDict()

    def __len__(self) -> int:
        return self.n_tasks

    @overload
    def __getitem__(self, index: int) -> Task: ...

    @overload
    def __getitem__(self, index: slice) -> list[Task]: ...

    def __getitem__(self, index: int | slice) -> Task | list[Task]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.n_tasks))]
        if not -self.n_tasks <= index < self.n_tasks:
            raise IndexError(f"task {index} out of range: the stream has {self.n_tasks} tasks")
        t = index % self.n_tasks
        if t in self._cache:
            self._cache.move_to_end(t)
            return self._cache[t]
        task = self._build(t)
        self._cache[t] = task
        while len(self._cache) > 2:
            self._cache.popitem(last=False)
        return task

    def permutation(self, t: int) -> Tensor:
        """The pixel permutation of task ``t``."""
        n_pixels = int(torch.tensor(self.shape).prod())
        if t == 0:
            return torch.arange(n_pixels)
        return torch.randperm(n_pixels, generator=torch.Generator().manual_seed(self.seed * 104729 + t))

    def _build(self, t: int) -> Task:
        perm = self.permutation(t)

        def apply(split: Split) -> Split:
            x = split.x
            return Split(x.reshape(x.shape[0], -1)[:, perm].reshape(x.shape[0], *self.shape), split.y)

        return Task(f"{self.prefix}:perm{t}", self.n_classes, apply(self.train), apply(self.val), apply(self.test))


def permuted_tasks(data: Dataset, n_tasks: int, val_fraction: float = 0.1, seed: int = 0,
                   prefix: str | None = None) -> list[Task]:
    """Task ``k`` applies a fixed, seeded pixel permutation to every image (task 0: identity)."""
    return list(PermutedTasks(data, n_tasks, val_fraction, seed, prefix))


def class_pairs(n_classes: int, per_task: int = 2) -> list[list[int]]:
    return [list(range(i, min(i + per_task, n_classes))) for i in range(0, n_classes, per_task)]


def split_digits(seed: int = 0, val_fraction: float = 0.15) -> list[Task]:
    """scikit-learn digits, classes in pairs: 5 tasks of 2 classes."""
    data = load_digits(seed=seed)
    return split_tasks(data, class_pairs(10), val_fraction, seed, prefix="split-digits")


def permuted_digits(n_tasks: int = 5, seed: int = 0, val_fraction: float = 0.15) -> list[Task]:
    """scikit-learn digits under ``n_tasks`` seeded pixel permutations, 10 classes each."""
    data = load_digits(seed=seed)
    return permuted_tasks(data, n_tasks, val_fraction, seed, prefix="permuted-digits")
