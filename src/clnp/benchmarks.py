"""Benchmark streams: sequences of tasks built from a data set (task-incremental, one head per task)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .data import Dataset, load_digits
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
        name = f"{prefix or data.name}:{'/'.join(str(c) for c in group)}"
        tasks.append(Task(name, len(group), train, val, test))
    return tasks


def permuted_tasks(data: Dataset, n_tasks: int, val_fraction: float = 0.1, seed: int = 0,
                   prefix: str | None = None) -> list[Task]:
    """Task ``k`` applies a fixed, seeded pixel permutation to every image (task 0: identity)."""
    if n_tasks < 1:
        raise ValueError(f"n_tasks must be >= 1, got {n_tasks}")
    shape = data.input_shape
    n_pixels = int(torch.tensor(shape).prod())
    train, val = carve_validation(data.x_train, data.y_train, val_fraction, seed * 7919)
    tasks = []
    for t in range(n_tasks):
        if t == 0:
            perm = torch.arange(n_pixels)
        else:
            perm = torch.randperm(n_pixels, generator=torch.Generator().manual_seed(seed * 104729 + t))

        def apply(x: Tensor, perm: Tensor = perm) -> Tensor:
            return x.reshape(x.shape[0], -1)[:, perm].reshape(x.shape[0], *shape)

        tasks.append(Task(
            f"{prefix or data.name}:perm{t}", data.n_classes,
            Split(apply(train.x), train.y), Split(apply(val.x), val.y), Split(apply(data.x_test), data.y_test),
        ))
    return tasks


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


@dataclass(frozen=True)
class BenchmarkSpec:
    """A named benchmark: how to build its stream, and the defaults a run uses for it."""

    name: str
    description: str
    build: Callable[..., list[Task]]
    defaults: dict = field(default_factory=dict)
    default_tasks: int | None = None
    """Number of tasks when ``--tasks`` is not given; None when the stream has a fixed length."""


def _digits_split(n_tasks: int | None, seed: int, data_dir: str | None) -> list[Task]:
    tasks = split_digits(seed=seed)
    return tasks if n_tasks is None else tasks[:n_tasks]


def _digits_permuted(n_tasks: int | None, seed: int, data_dir: str | None) -> list[Task]:
    return permuted_digits(n_tasks or 5, seed=seed)


DIGITS_DEFAULTS = {"model": "mlp:256,256", "epochs": 60, "finetune_epochs": 5, "batch_size": 32,
                   "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "l1": 1e-2, "margin": 1.0}

BENCHMARKS: dict[str, BenchmarkSpec] = {
    "split-digits": BenchmarkSpec(
        "split-digits", "scikit-learn 8x8 digits, classes in pairs: 5 tasks of 2 classes (bundled, no download)",
        _digits_split, DIGITS_DEFAULTS),
    "permuted-digits": BenchmarkSpec(
        "permuted-digits", "scikit-learn 8x8 digits under seeded pixel permutations, 10 classes each",
        _digits_permuted, {**DIGITS_DEFAULTS, "epochs": 30, "margin": 2.0}, default_tasks=5),
}


def get_benchmark(name: str, n_tasks: int | None = None, seed: int = 0, data_dir: str | None = None) -> list[Task]:
    """The task stream of a named benchmark."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; expected one of: {', '.join(BENCHMARKS)}")
    if n_tasks is not None and n_tasks < 1:
        raise ValueError(f"--tasks must be >= 1, got {n_tasks}")
    return BENCHMARKS[name].build(n_tasks, seed, data_dir)
