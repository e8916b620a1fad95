"""Helpers shared by the performance benchmarks: machine line, interleaved timing, networks at task > 0.

Every figure a benchmark prints is a ratio of two variants measured in the same run: the variants
are run in turn (A, B, A, B, ...) after a warm-up, and each one's median is taken, so that load from
other processes on a shared machine falls on both alike.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

import clnp
from clnp.core.network import CLNPNet


def machine() -> str:
    """One line naming the machine: cores, threads torch uses, torch version, platform."""
    return (f"{os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} thread(s), "
            f"{platform.machine()} {platform.system()}, python {platform.python_version()}")


MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "4294967296"}
"""glibc settings that keep freed memory in the heap instead of returning it to the system.

Without them, which variant's large temporaries land on fresh pages (page faults, tens of
thousands per step) depends on the allocator's history and swings a variant's time by ~15% either
way; with them neither variant page-faults after the warm-up. Nothing in clnp depends on them.
"""


def steady_allocator(argv: Sequence[str]) -> None:
    """Re-run this script with :data:`MALLOC_ENV` set, unless it is set already or ``--no-malloc-env``."""
    if "--no-malloc-env" in argv or all(os.environ.get(k) == v for k, v in MALLOC_ENV.items()):
        return
    os.execve(sys.executable, [sys.executable, *argv], {**os.environ, **MALLOC_ENV})


def allocator_line() -> str:
    tuned = all(os.environ.get(k) == v for k, v in MALLOC_ENV.items())
    return ("allocator: " + " ".join(f"{k}={v}" for k, v in MALLOC_ENV.items())) if tuned else "allocator: default"


def interleaved(variants: dict[str, Callable[[], None]], reps: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each variant, run in turn ``reps`` times after ``warmup`` untimed rounds."""
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(reps):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(v) for name, v in times.items()}


def own_units(net: CLNPNet, fractions: Sequence[float], n_classes: int = 10, seed: int = 0) -> None:
    """Give earlier tasks a random share of every layer's units, as if they had been learned.

    ``fractions[k]`` of each layer's units go to task ``k`` (from the units still free); the free
    units are then re-initialised, as ``CLNP.learn`` does before a new task.
    """
    g = torch.Generator().manual_seed(seed)
    for k, share in enumerate(fractions):
        net.add_head(n_classes)
        keep = []
        for owner in net.owners:
            free = owner == clnp.FREE
            pick = torch.rand(owner.numel(), generator=g) < share / max(1e-9, float(free.float().mean()))
            keep.append(free & pick)
        net.assign_units_(k, keep)
        net.reset_free_units_()


def plain_twin(net: CLNPNet, n_classes: int) -> nn.Sequential:
    """A plain PyTorch network of the same shape as ``net``'s trunk plus one head (fresh init)."""
    layers: list[nn.Module] = list(net.stem)
    for block in net.blocks:
        layer = block.layer
        if isinstance(layer, nn.Conv2d):
            layers.append(nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                                    padding=layer.padding, bias=layer.bias is not None))
        else:
            layers.append(nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None))
        for m in (*block.post, *block.tail):
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                bn_cls = nn.BatchNorm2d if isinstance(layer, nn.Conv2d) else nn.BatchNorm1d
                layers.append(bn_cls(m.num_features))
            else:
                layers.append(m)
    layers.append(nn.Linear(net.feature_dim, n_classes))
    return nn.Sequential(*layers)


def permuted_fashion_slice(n_tasks: int, n_train: int, n_test: int = 1000, seed: int = 0):
    """``n_tasks`` permuted tasks on the first ``n_train`` Fashion-MNIST training images (10% of them
    carved out for validation) and ``n_test`` test images; permuted digits where Fashion-MNIST is absent."""
    from clnp.data.benchmarks import PermutedTasks
    from clnp.data.datasets import Dataset, load_fashion_mnist

    try:
        data = load_fashion_mnist()
    except (FileNotFoundError, ValueError, OSError):
        return clnp.permuted_digits(n_tasks, seed=seed), "permuted-digits (Fashion-MNIST not found)"
    part = Dataset("fashion-mnist", data.x_train[:n_train], data.y_train[:n_train], data.x_test[:n_test],
                   data.y_test[:n_test], data.n_classes)
    return PermutedTasks(part, n_tasks, val_fraction=0.1, seed=seed, prefix="permuted-fashion-mnist"), (
        f"permuted-fashion-mnist, first {n_train} training images (10% validation), {n_test} test images")


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table with columns padded to their widest cell."""
    cells = [[str(h) for h in header]] + [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
