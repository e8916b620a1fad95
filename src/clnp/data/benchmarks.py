"""Named benchmarks: each a :class:`BenchmarkSpec` in :data:`BENCHMARKS` (its data, its length, a run's defaults
on it), and :func:`get_benchmark`, the stream of a name. How a data set becomes a task stream (split by class
groups, permuted pixels) is :mod:`clnp.data.streams`; its names are reached from here too."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .datasets import (
    DATA_SOURCES,
    Dataset,
    load_cifar10,
    load_cifar100,
    load_fashion_mnist,
    load_mnist,
    load_tiny_imagenet,
)
from .streams import (
    PermutedTasks,
    carve_validation,
    class_pairs,
    permuted_digits,
    permuted_tasks,
    split_digits,
    split_tasks,
)
from .tasks import DatasetSplit, Split, Task

MAX_PERMUTED_TASKS = 100
"""Upper bound of ``--tasks`` for permuted benchmarks: every task is a permuted copy of the data set's images
(built when it is needed, but checked at the start of a run), and 100 tasks already exceed any published
permuted-MNIST protocol (10 to 50 tasks)."""


@dataclass(frozen=True)
class BenchmarkSpec:
    """A named benchmark: how to build its stream, the defaults a run uses, and the data it needs."""

    name: str
    description: str
    build: Callable[..., Sequence[Task]]
    """``build(n_tasks, seed, data_dir, download)`` -> the task stream."""
    defaults: dict = field(default_factory=dict)
    default_tasks: int | None = None
    """Number of tasks when ``--tasks`` is not given; None when the stream has a fixed length."""
    data: tuple[str, ...] = ()
    """Names of the data sets it reads (keys of :data:`clnp.data.datasets.DATA_SOURCES`)."""
    max_tasks: int = MAX_PERMUTED_TASKS
    """The most tasks ``--tasks`` may ask for (the stream's length for split benchmarks)."""
    input_shape: tuple[int, ...] = ()
    """The shape of one input (C, H, W), known without loading the data."""

    def length(self, n_tasks: int | None = None) -> int:
        """How many tasks a stream of this benchmark has for ``--tasks n_tasks`` (None: its default)."""
        if n_tasks is not None:
            return n_tasks
        return self.default_tasks if self.default_tasks is not None else self.max_tasks

    def data_present(self, data_dir: str | None = None) -> bool:
        """Whether every data set the benchmark needs is on this machine."""
        return all(DATA_SOURCES[d].present(data_dir) for d in self.data)

    def how_to_get(self) -> str:
        """How to get the data, one clause per data set."""
        download = f"clnp benchmarks --download {self.name}"
        return "; ".join(f"{d}: {DATA_SOURCES[d].how_to_get.format(download=download)}" for d in self.data)


def _digits_split(n_tasks: int | None, seed: int, data_dir: str | None, download: bool = False) -> list[Task]:
    tasks = split_digits(seed=seed)
    return tasks if n_tasks is None else tasks[:n_tasks]


LOADER_WORKERS = 2
"""DataLoader workers of each training split of ``split-digits-loader``."""
LOADER_JITTER = 0.02
"""Standard deviation of the Gaussian noise ``split-digits-loader`` adds to training inputs (pixels in [0, 1])."""


class SplitItems:
    """A tensor split as a map-style dataset of ``(input, label)`` items, as a user's own dataset would be."""

    def __init__(self, split: Split) -> None:
        self.x, self.targets = split.x, split.y

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.x[i], int(self.targets[i])


def jitter(x: Tensor) -> Tensor:
    """Train-only augmentation: Gaussian pixel noise (module-level: the loader's workers pickle it)."""
    return x + LOADER_JITTER * torch.randn_like(x)


def through_loader(task: Task, workers: int = LOADER_WORKERS) -> Task:
    """``task`` with its training split served as a map-style dataset through a DataLoader (``workers``, the
    :func:`jitter` transform); validation and test stay the same tensors."""
    train = task.train
    assert isinstance(train, Split)
    return Task(task.name, task.n_classes, DatasetSplit(SplitItems(train), jitter, workers), task.val, task.test)


def _digits_loader(n_tasks: int | None, seed: int, data_dir: str | None, download: bool = False) -> list[Task]:
    return [through_loader(t) for t in _digits_split(n_tasks, seed, data_dir, download)]


def _digits_permuted(n_tasks: int | None, seed: int, data_dir: str | None, download: bool = False) -> list[Task]:
    return permuted_digits(n_tasks or 5, seed=seed)


def _permuted(loader: Callable[..., Dataset], name: str) -> Callable[..., Sequence[Task]]:
    def build(n_tasks: int | None, seed: int, data_dir: str | None, download: bool = False) -> Sequence[Task]:
        data = loader(data_dir, download=download)
        return PermutedTasks(data, n_tasks or 10, 0.1, seed, prefix=name)
    return build


def _split(loader: Callable[..., Dataset], name: str, per_task: int = 2) -> Callable[..., list[Task]]:
    """The builder of a split benchmark: the data set's classes ``per_task`` at a time in label order (0-1, 2-3, ...
    for pairs; 0-9, 10-19, ... for tens), each task's validation split a seeded 10 % of its training images
    (:func:`carve_validation`), its test split every official test image of its classes."""
    def build(n_tasks: int | None, seed: int, data_dir: str | None, download: bool = False) -> list[Task]:
        data = loader(data_dir, download=download)
        groups = class_pairs(data.n_classes, per_task)
        return split_tasks(data, groups[:n_tasks] if n_tasks else groups, 0.1, seed, prefix=name)
    return build


CIFAR100_GROUPS = [list(range(lo, lo + 10)) for lo in range(0, 50, 10)]
"""The CIFAR-100 classes of tasks 2..6 of split-cifar10-100."""


def _split_cifar10_100(n_tasks: int | None, seed: int, data_dir: str | None, download: bool = False) -> list[Task]:
    n = 1 + len(CIFAR100_GROUPS) if n_tasks is None else n_tasks
    tasks = split_tasks(load_cifar10(data_dir, download=download), [list(range(10))], 0.1, seed,
                        prefix="split-cifar10-100:cifar10")
    if n > 1:
        tasks += split_tasks(load_cifar100(data_dir, download=download), CIFAR100_GROUPS[:n - 1], 0.1, seed + 1,
                             prefix="split-cifar10-100:cifar100")
    return tasks


# A benchmark sets only its data, model, epochs and batch size. Every method's settings (CLNP's L1, margin,
# fine-tuning; the optimiser and learning rate) have one default for every benchmark, declared with the method
# (clnp.methods.clnp.config.CLNPConfig, clnp.engine.config.TrainConfig): the capacity plan, not a per-benchmark margin,
# fits each stream into its network (docs/design.md, "Capacity is a budget").
DIGITS_DEFAULTS = {"model": "mlp:256,256", "epochs": 60, "batch_size": 32}
MNIST_PERMUTED_DEFAULTS = {"model": "mlp:1000,1000", "epochs": 10, "batch_size": 128}
MNIST_SPLIT_DEFAULTS = {"model": "mlp:400,400", "epochs": 10, "batch_size": 128}
CIFAR_DEFAULTS = {"model": "cnn:32,32,64,64/512", "epochs": 10, "batch_size": 128}
CIFAR100_DEFAULTS = {"model": "alexnet", "epochs": 50, "batch_size": 64}
"""GPM's and WSN's network on split CIFAR-100 (the 5-layer AlexNet with batch norm, :mod:`clnp.models`) and batch
size. GPM trains each task for up to 200 epochs, stopping early on the validation loss; clnp has no early stopping
and trains a fixed 50. Each task's validation split is GPM's: a seeded 10 % of its training images. Inputs are in
[0, 1], not standardised, as in split-cifar10-100 (GPM subtracts each channel's mean and divides by its standard
deviation)."""
TINY_IMAGENET_DEFAULTS = {"model": "cnn:160,160,160,160/640,640", "epochs": 50, "batch_size": 64}
"""WSN's Tiny ImageNet network as closely as clnp's ``cnn:`` grammar can say it: 4 convolutions of 160 channels,
dense layers of 640 and 640, and one head per task (its 3 dense layers). WSN's network (La-MAML's) convolves with
stride 2 and does not pool (64 -> 4 pixels: 2,560 features into the first dense layer); the grammar pools 2x2 after
each pair of stride-1 convolutions (64 -> 16 pixels: 40,960 features, so that layer holds 26 M weights, not 1.6 M).
Epochs and batch size are split-cifar100's, clnp's choice rather than WSN's schedule."""

BENCHMARKS: dict[str, BenchmarkSpec] = {
    "split-digits": BenchmarkSpec(
        "split-digits", "scikit-learn 8x8 digits, classes in pairs: 5 tasks of 2 classes (bundled, no download)",
        _digits_split, DIGITS_DEFAULTS, data=("digits",), max_tasks=5, input_shape=(1, 8, 8)),
    "split-digits-loader": BenchmarkSpec(
        "split-digits-loader", "split-digits with each training split read as a torch Dataset through a "
        f"DataLoader ({LOADER_WORKERS} workers, Gaussian jitter as train-only augmentation)",
        _digits_loader, DIGITS_DEFAULTS, data=("digits",), max_tasks=5, input_shape=(1, 8, 8)),
    "permuted-digits": BenchmarkSpec(
        "permuted-digits", "scikit-learn 8x8 digits under seeded pixel permutations, 10 classes each",
        _digits_permuted, {**DIGITS_DEFAULTS, "epochs": 30}, default_tasks=5, data=("digits",),
        input_shape=(1, 8, 8)),
    "permuted-fashion-mnist": BenchmarkSpec(
        "permuted-fashion-mnist", "Fashion-MNIST under seeded pixel permutations: 10 tasks of 10 classes",
        _permuted(load_fashion_mnist, "permuted-fashion-mnist"), MNIST_PERMUTED_DEFAULTS, default_tasks=10,
        data=("fashion-mnist",), input_shape=(1, 28, 28)),
    "split-fashion-mnist": BenchmarkSpec(
        "split-fashion-mnist", "Fashion-MNIST, classes in pairs: 5 tasks of 2 classes",
        _split(load_fashion_mnist, "split-fashion-mnist"), MNIST_SPLIT_DEFAULTS, data=("fashion-mnist",),
        max_tasks=5, input_shape=(1, 28, 28)),
    "permuted-mnist": BenchmarkSpec(
        "permuted-mnist", "MNIST under seeded pixel permutations: 10 tasks of 10 classes",
        _permuted(load_mnist, "permuted-mnist"), MNIST_PERMUTED_DEFAULTS, default_tasks=10, data=("mnist",),
        input_shape=(1, 28, 28)),
    "split-mnist": BenchmarkSpec(
        "split-mnist", "MNIST, classes in pairs: 5 tasks of 2 classes",
        _split(load_mnist, "split-mnist"), MNIST_SPLIT_DEFAULTS, data=("mnist",), max_tasks=5,
        input_shape=(1, 28, 28)),
    "split-cifar10-100": BenchmarkSpec(
        "split-cifar10-100", "CIFAR-10 (10 classes), then CIFAR-100 classes 0-9, 10-19, ..., 40-49: 6 tasks",
        _split_cifar10_100, CIFAR_DEFAULTS, data=("cifar10", "cifar100"), max_tasks=6,
        input_shape=(3, 32, 32)),
    "split-cifar100": BenchmarkSpec(
        "split-cifar100", "CIFAR-100, classes 0-9, 10-19, ..., 90-99: 10 tasks of 10 classes (GPM's and WSN's "
        "split; GPM trains up to 200 epochs with early stopping, clnp a fixed --epochs)",
        _split(load_cifar100, "split-cifar100", 10), CIFAR100_DEFAULTS, data=("cifar100",), max_tasks=10,
        input_shape=(3, 32, 32)),
    "split-tinyimagenet": BenchmarkSpec(
        "split-tinyimagenet", "Tiny ImageNet (64x64), classes 5 at a time in wnids.txt order: 40 tasks of 5 "
        "classes (WSN's split), tested on the official labelled val images; the default cnn pools where WSN's "
        "network strides, so its first dense layer reads 16x more features",
        _split(load_tiny_imagenet, "split-tinyimagenet", 5), TINY_IMAGENET_DEFAULTS, data=("tiny-imagenet",),
        max_tasks=40, input_shape=(3, 64, 64)),
}


def check_n_tasks(name: str, n_tasks: int | None) -> None:
    """Refuse a number of tasks the benchmark cannot give (``ValueError`` with the allowed range)."""
    spec = BENCHMARKS[name]
    if n_tasks is None:
        return
    if isinstance(n_tasks, bool) or not isinstance(n_tasks, int):
        raise ValueError(f"--tasks must be an integer, got {n_tasks!r}")
    if n_tasks < 1:
        raise ValueError(f"--tasks must be >= 1, got {n_tasks} (expected 1..{spec.max_tasks} for {name})")
    if n_tasks > spec.max_tasks:
        if spec.default_tasks is None:
            raise ValueError(f"benchmark {name!r} has {spec.max_tasks} tasks; --tasks {n_tasks} asks for more "
                             f"(expected 1..{spec.max_tasks})")
        raise ValueError(f"--tasks must be <= {spec.max_tasks} for {name}, got {n_tasks} "
                         f"(expected 1..{spec.max_tasks})")


def get_benchmark(name: str, n_tasks: int | None = None, seed: int = 0, data_dir: str | None = None,
                  download: bool = False) -> Sequence[Task]:
    """The task stream of a named benchmark; ``download=True`` fetches missing data first."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; expected one of: {', '.join(BENCHMARKS)}")
    check_n_tasks(name, n_tasks)
    stream = BENCHMARKS[name].build(n_tasks, seed, data_dir, download)
    if n_tasks is not None and len(stream) < n_tasks:
        raise ValueError(f"benchmark {name!r} has {len(stream)} tasks; --tasks {n_tasks} asks for more")
    return stream


def fetch_data(name: str, data_dir: str | None = None) -> tuple[str, ...]:
    """Download (where missing), checksum and load-check the data sets benchmark ``name`` reads;
    return their names."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; expected one of: {', '.join(BENCHMARKS)}")
    for d in BENCHMARKS[name].data:
        DATA_SOURCES[d].load(data_dir, download=True)
    return BENCHMARKS[name].data


__all__ = ["BENCHMARKS", "MAX_PERMUTED_TASKS", "BenchmarkSpec", "PermutedTasks", "carve_validation", "check_n_tasks",
           "class_pairs", "fetch_data", "get_benchmark", "permuted_digits", "permuted_tasks", "split_digits",
           "split_tasks"]
