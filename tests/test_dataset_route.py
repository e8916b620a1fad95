"""Dataset-backed tasks train through the DataLoader in every method: the train-only transform runs once per
training item per epoch, in the loader's worker processes, and runs repeat and resume exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset, get_worker_info

from clnp.data.benchmarks import split_digits
from clnp.data.tasks import Split, Task
from clnp.methods import METHODS, build_method
from clnp.methods.plain_net import PlainNet
from clnp.methods.quadratic import fisher_diagonal

from .conftest import quick_config

SHAPE = (1, 8, 8)
WORKERS = 2


class Items(Dataset):
    """A user's own map-style dataset, items built on the fly."""

    def __init__(self, split: Split) -> None:
        self.x, self.y = split.x, split.y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i].clone(), int(self.y[i])


class CountingJitter:
    """A random train-only augmentation that appends, per call, the id of the loader worker it ran in (-1: the
    main process) to a file: the calls of every worker process add up there."""

    def __init__(self, log: Path) -> None:
        self.log = str(log)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        info = get_worker_info()
        with open(self.log, "a") as fh:
            fh.write(f"{-1 if info is None else info.id}\n")
        return x + 0.02 * torch.randn_like(x)


def _dataset_tasks(log: Path, n: int = 2) -> list[Task]:
    transform = CountingJitter(log)
    return [Task.from_datasets(t.name, t.n_classes, Items(t.train), Items(t.val), Items(t.test), transform=transform,
                               workers=WORKERS) for t in split_digits(seed=0)[:n]]


def _calls(log: Path) -> list[int]:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def _learn(method: str, tasks: list[Task], draws: int = 0):
    """Build ``method``'s learner under seed 0 (as a run does), draw ``draws`` numbers from the global RNG, and
    learn ``tasks``; return the learner and its epoch log."""
    torch.manual_seed(0)
    learner = build_method(method, "mlp:32,32", SHAPE, quick_config(epochs=2, finetune_epochs=1, lr=1e-2), {})
    torch.rand(draws)
    rows: list[dict] = []
    learner.on_epoch = rows.append
    for task in tasks:
        learner.learn(task)
    return learner, rows


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_runs_the_transform_once_per_training_item_per_epoch_in_worker_processes(method, tmp_path):
    log = tmp_path / "calls.txt"
    tasks = _dataset_tasks(log)
    rows = _learn(method, tasks)[1]
    sizes = [len(t.train) for t in tasks]
    assert sizes[0] > 100 and len(rows) >= 2 * len(tasks)
    # Joint trains task t's epochs on the union of tasks 0..t; every other method on task t alone.
    due = sum(sum(sizes[:r["task"] + 1]) if method == "joint" else sizes[r["task"]] for r in rows)
    calls = _calls(log)
    assert len(calls) == due, f"{method}: the transform ran {len(calls)} times where {due} were due"
    assert set(calls) == set(range(WORKERS)), f"{method}: the transform ran in {set(calls)}, not in the workers"
    assert all(t.train._x is None for t in tasks), f"{method} read a dataset split whole into memory"


@pytest.mark.parametrize("method", sorted(METHODS))
def test_two_runs_of_a_dataset_backed_stream_with_a_random_transform_and_workers_are_bit_identical(method, tmp_path):
    states, accuracies = [], []
    for run in range(2):
        tasks = _dataset_tasks(tmp_path / f"run{run}.txt")
        learner = _learn(method, tasks, draws=run)[0]  # the global RNG differs: only the run's seeds may count
        states.append(learner.learner_state()[0])
        accuracies.append([learner.accuracy(k, t.test.x, t.test.y) for k, t in enumerate(tasks)])
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0]), method
    assert accuracies[0] == accuracies[1]
    calls = [_calls(tmp_path / f"run{run}.txt") for run in range(2)]
    assert len(calls[0]) == len(calls[1]) > 0, f"{method}: the random transform did not run in both runs"


def test_the_fisher_of_a_dataset_task_is_the_fisher_of_its_untransformed_training_inputs(tmp_path):
    task = _dataset_tasks(tmp_path / "calls.txt", n=1)[0]
    tensors = split_digits(seed=0)[0]
    torch.manual_seed(0)
    net = PlainNet("mlp:32,32", SHAPE)
    net.add_head(2)
    from_loader = fisher_diagonal(net, 0, task.train.input_batches(32))
    from_tensors = fisher_diagonal(net, 0, Split(tensors.train.x, tensors.train.y).input_batches(32))
    assert all(torch.equal(a, b) for a, b in zip(from_loader, from_tensors, strict=True))
    assert _calls(tmp_path / "calls.txt") == [] and task.train._x is None

