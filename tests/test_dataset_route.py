"""Dataset-backed tasks train through the DataLoader in every method: the train-only transform runs once per
training item per epoch, in the loader's worker processes, and runs repeat and resume exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset, get_worker_info

from clnp.cli import main
from clnp.data.benchmarks import get_benchmark, split_digits
from clnp.data.tasks import DatasetSplit, Split, Task
from clnp.methods import METHODS, build_method
from clnp.methods.common.plain_net import PlainNet
from clnp.methods.common.quadratic import fisher_diagonal

from .conftest import quick_config, read_results, reference_run
from .test_kill import DRIVER, _assert_same_run, _finished_tasks

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


# ------------------------------------------------------------------- the command line: split-digits-loader
LOADER_ARGS = ["--benchmark", "split-digits-loader", "--tasks", "3", "--model", "mlp:32,32", "--epochs", "2",
               "--lr", "0.01", "--finetune-epochs", "1", "--seed", "1", "--no-progress"]


def test_split_digits_loader_serves_split_digits_through_a_dataloader_with_workers_and_a_transform():
    loader, tensors = get_benchmark("split-digits-loader", 2, seed=1), get_benchmark("split-digits", 2, seed=1)
    for a, b in zip(loader, tensors, strict=True):
        assert isinstance(a.train, DatasetSplit) and a.train.workers == WORKERS and a.train.transform is not None
        assert torch.equal(a.train.y, b.train.y) and torch.equal(a.val.x, b.val.x) and torch.equal(a.test.x, b.test.x)


@pytest.fixture(scope="module")
def loader_reference(tmp_path_factory) -> Path:
    """The dataset-backed run left alone."""
    return reference_run(tmp_path_factory, LOADER_ARGS)


@pytest.mark.parametrize("kill_at, finished", [("train:1:5", 1), ("finetune:2:2", 2)])
def test_a_dataset_backed_run_killed_mid_task_resumes_to_the_same_results(kill_at, finished, tmp_path,
                                                                           loader_reference):
    out = tmp_path / "killed"
    env = {**os.environ, "CLNP_TEST_KILL_AT": kill_at, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", DRIVER, "run", *LOADER_ARGS, "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed at {kill_at}: {proc.stderr[-2000:]}"
    assert _finished_tasks(out) == finished
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    _assert_same_run(out, loader_reference)
    assert read_results(out)["resumed_at_tasks"] == [finished]
